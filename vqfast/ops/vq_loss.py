"""The VQ loss of VQShape: commitment terms plus the codebook entropy term.

With ``d`` the squared distances of each token ``z_n`` to the codes, ``q_n`` its nearest code,
``p_n = softmin(d_n / temperature)`` and ``H(p) = -sum p log(max(p, 1e-5))``::

    loss = mean((sg[q] - z)^2) + commit_weight * mean((q - sg[z])^2)
         + entropy_weight * (mean_n H(p_n) - entropy_gamma * H(mean_n p_n))

(``sg``: stop-gradient). The first term trains the encoder, the second the codebook; the entropy
term makes each token sure of one code and spreads use over the codebook.

Implementations: ``vq_loss_ref`` (the authors' formula, materializing tokens x codes; the
specification and test oracle), C++ (``csrc/vq_loss.cpp``) and Triton (``kernels/vq_loss.py``),
both streaming over codes and storing O(tokens + codes) for the backward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vqfast.ops import _backend
from vqfast.ops._common import accumulate_dtype, check_codebook, check_codebook_values
from vqfast.ops.nearest_code import squared_distances_ref

ENTROPY_EPS = 1e-5

# ---------------------------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------------------------


def entropy_ref(p: torch.Tensor) -> torch.Tensor:
    return (-p * p.clamp(min=ENTROPY_EPS).log()).sum(dim=-1)


def vq_loss_ref(
    z: torch.Tensor,
    codebook: torch.Tensor,
    commit_weight: float = 1.0,
    entropy_weight: float = 0.0,
    entropy_gamma: float = 1.0,
    temperature: float = 0.01,
) -> torch.Tensor:
    """``z (..., D)``, ``codebook (K, D)`` -> 0-dim loss, the authors' ``EuclCodebook`` formula."""
    z = z.reshape(-1, z.shape[-1])
    d = squared_distances_ref(z, codebook)
    q = codebook[torch.argmin(d, dim=1)]
    loss = torch.mean((q.detach() - z) ** 2) + commit_weight * torch.mean((q - z.detach()) ** 2)
    if entropy_weight > 0:
        p = F.softmin(d / temperature, dim=-1)
        loss = loss + entropy_weight * (
            entropy_ref(p).mean() - entropy_gamma * entropy_ref(p.mean(0))
        )
    return loss


# ---------------------------------------------------------------------------------------------
# Registered op (C++ / Triton), its fake and its autograd formula. Forward returns the loss and
# what the backward pass needs, all O(M + K): nearest index, per-token softmax max and
# log-normalizer, mean code distribution.
# ---------------------------------------------------------------------------------------------


def _forward_impl(z, codebook, commit, entropy, gamma, temperature, backend):
    if backend == "cpp":
        acc = accumulate_dtype(z, codebook)
        return torch.ops.vqfast_C.vq_loss_forward(
            z.to(acc), codebook.to(acc), commit, entropy, gamma, temperature
        )
    from vqfast.kernels import vq_loss as kernel

    return kernel.forward(z, codebook, commit, entropy, gamma, temperature)


def _backward_impl(grad, z, codebook, saved, commit, entropy, gamma, temperature, backend):
    if backend == "cpp":
        acc = accumulate_dtype(z, codebook)
        gz, gc = torch.ops.vqfast_C.vq_loss_backward(
            grad, z.to(acc), codebook.to(acc), *saved, commit, entropy, gamma, temperature
        )
        return gz.to(z.dtype), gc.to(codebook.dtype)
    from vqfast.kernels import vq_loss as kernel

    return kernel.backward(grad, z, codebook, *saved, commit, entropy, gamma, temperature)


@torch.library.custom_op("vqfast::vq_loss", mutates_args=())
def _vq_loss_op(
    z: torch.Tensor,
    codebook: torch.Tensor,
    commit_weight: float,
    entropy_weight: float,
    entropy_gamma: float,
    temperature: float,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _forward_impl(
        z, codebook, commit_weight, entropy_weight, entropy_gamma, temperature, backend
    )


@_vq_loss_op.register_fake
def _(z, codebook, commit_weight, entropy_weight, entropy_gamma, temperature, backend):
    acc = accumulate_dtype(z, codebook)
    M, K = z.shape[0], codebook.shape[0]
    return (
        z.new_empty((), dtype=acc),
        z.new_empty(M, dtype=torch.int64),
        z.new_empty(M, dtype=acc),
        z.new_empty(M, dtype=acc),
        z.new_empty(K, dtype=acc),
    )


@torch.library.custom_op("vqfast::vq_loss_backward", mutates_args=())
def _vq_loss_backward_op(
    grad: torch.Tensor,
    z: torch.Tensor,
    codebook: torch.Tensor,
    indices: torch.Tensor,
    row_max: torch.Tensor,
    log_norm: torch.Tensor,
    mean_p: torch.Tensor,
    commit_weight: float,
    entropy_weight: float,
    entropy_gamma: float,
    temperature: float,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    saved = (indices, row_max, log_norm, mean_p)
    return _backward_impl(
        grad, z, codebook, saved, commit_weight, entropy_weight, entropy_gamma, temperature,
        backend,
    )


@_vq_loss_backward_op.register_fake
def _(grad, z, codebook, indices, row_max, log_norm, mean_p, *args):
    return torch.empty_like(z), torch.empty_like(codebook)


def _setup_context(ctx, inputs, output):
    z, codebook, *args = inputs
    _, indices, row_max, log_norm, mean_p = output
    ctx.mark_non_differentiable(indices, row_max, log_norm, mean_p)
    ctx.save_for_backward(z, codebook, indices, row_max, log_norm, mean_p)
    ctx.args = args


def _backward(ctx, grad_loss, *_unused):
    z, codebook, *saved = ctx.saved_tensors
    gz, gc = _vq_loss_backward_op(grad_loss, z, codebook, *saved, *ctx.args)
    return gz, gc, None, None, None, None, None


_vq_loss_op.register_autograd(_backward, setup_context=_setup_context)

# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def vq_loss(
    z: torch.Tensor,
    codebook: torch.Tensor,
    *,
    commit_weight: float = 1.0,
    entropy_weight: float = 0.0,
    entropy_gamma: float = 1.0,
    temperature: float = 0.01,
    backend: str | None = "auto",
    check_finite: bool = True,
) -> torch.Tensor:
    """The VQ loss (0-dim, float32 or float64), differentiable in ``z (..., D)`` and ``codebook``.

    ``commit_weight`` is the authors' ``lambda_commit`` (on the codebook side), ``entropy_weight``
    their ``lambda_entropy`` and ``entropy_gamma`` their ``entropy_gamma``. NaN or Inf in ``z`` or
    the codebook, or a loss that overflows, raise ``vqfast.ops.NonFiniteInputError`` naming where
    (``check_finite=False`` skips that check and its device synchronization; it is skipped inside
    ``torch.compile``).
    """
    check_codebook(z, codebook, "vq_loss")
    if z.numel() == 0:
        raise ValueError("vq_loss: z holds no vectors (empty batch)")
    args = _scalars(commit_weight, entropy_weight, entropy_gamma, temperature)
    impl = _backend.resolve("vq_loss", backend, z.device)
    flat = z.reshape(-1, z.shape[-1])
    if impl == "reference":
        dtype = accumulate_dtype(z, codebook)
        loss = vq_loss_ref(flat.to(dtype), codebook.to(dtype), *args)
    else:
        try:
            loss = _vq_loss_op(flat.contiguous(), codebook.contiguous(), *args, impl)[0]
        except RuntimeError as e:
            # The C++ forward sums in float64 and refuses to store a float32 overflow.
            if "without overflow" not in str(e) or not check_finite:
                raise
            loss = torch.tensor(float("inf"))
    if check_finite:
        check_codebook_values(z, codebook, "vq_loss", loss)
    return loss


def _scalars(commit_weight, entropy_weight, entropy_gamma, temperature):
    values = {"commit_weight": commit_weight, "entropy_weight": entropy_weight,
              "entropy_gamma": entropy_gamma, "temperature": temperature}
    for name, v in values.items():
        try:
            if isinstance(v, (str, bytes)):
                raise TypeError
            number = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"vq_loss: {name} must be a number, got {v!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"vq_loss: {name} must be finite, got {v}")
    if not temperature > 0:
        raise ValueError(f"vq_loss: temperature must be > 0, got {temperature}")
    if entropy_weight < 0:
        raise ValueError(f"vq_loss: entropy_weight must be >= 0, got {entropy_weight}")
    return tuple(float(v) for v in values.values())
