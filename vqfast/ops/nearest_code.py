"""Nearest-code search: for every vector of ``z (..., D)``, the index of the code of ``codebook
(K, D)`` at the smallest squared Euclidean distance (ties: the lowest index, like
``torch.argmin``) and that distance.

Implementations: the reference below (the authors' distance expansion + argmin; the specification
and test oracle), C++ (``csrc/nearest_code.cpp``: fused, never stores tokens x codes) and Triton
(``kernels/nearest_code.py``). Compiled implementations compute each distance as ``sum((z - e)^2)``
with float32 accumulation, which is more accurate than the expansion; tests therefore compare
chosen codes by their distance (``nearest_distance_fp64``).
"""

from __future__ import annotations

import torch

from vqfast.ops import _backend
from vqfast.ops._common import accumulate_dtype, check_codebook, check_codebook_values

# ---------------------------------------------------------------------------------------------
# Reference, and the exact oracle of tests and benchmarks
# ---------------------------------------------------------------------------------------------


def squared_distances_ref(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``(M, D), (K, D) -> (M, K)``: the authors' expansion ``|z|^2 + |e|^2 - 2 z.e``."""
    return (
        torch.sum(z**2, dim=1, keepdim=True)
        + torch.sum(codebook**2, dim=1)
        - 2 * torch.matmul(z, codebook.t())
    )


def nearest_code_ref(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``z (M, D)`` -> ``(indices (M,) int64, squared distance to the chosen code (M,))``."""
    idx = torch.argmin(squared_distances_ref(z, codebook), dim=1)
    dist = ((z - codebook[idx]) ** 2).sum(-1)
    return idx, dist


# Elements of one (tokens x codes) float64 distance block of the oracle.
_ORACLE_BLOCK = 1 << 24


def nearest_distance_fp64(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``z (M, D)``, ``codebook (K, D)`` -> ``(M,)`` float64: per token, the squared distance to
    its nearest code, exact to float64 rounding (the code is picked by the float64 expansion, its
    distance computed directly), in chunks of tokens so that memory stays bounded."""
    z64, cb64 = z.reshape(-1, z.shape[-1]).double(), codebook.double()
    chunk = max(1, _ORACLE_BLOCK // codebook.shape[0])
    best = torch.empty(z64.shape[0], dtype=torch.float64, device=z.device)
    for start in range(0, z64.shape[0], chunk):
        best[start : start + chunk] = nearest_code_ref(z64[start : start + chunk], cb64)[1]
    return best


# ---------------------------------------------------------------------------------------------
# Registered op: C++ or Triton, its fake and its autograd formula
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("vqfast::nearest_code", mutates_args=())
def _nearest_code_op(
    z: torch.Tensor, codebook: torch.Tensor, backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "cpp":
        acc = accumulate_dtype(z, codebook)
        return torch.ops.vqfast_C.nearest_code(z.to(acc), codebook.to(acc))
    from vqfast.kernels import nearest_code as kernel

    return kernel.nearest_code(z, codebook)


@_nearest_code_op.register_fake
def _(z, codebook, backend):
    M = z.shape[0]
    return z.new_empty(M, dtype=torch.int64), z.new_empty(M, dtype=accumulate_dtype(z, codebook))


def _setup_context(ctx, inputs, output):
    z, codebook, _ = inputs
    idx, _ = output
    ctx.mark_non_differentiable(idx)
    ctx.save_for_backward(z, codebook, idx)


def _backward(ctx, _grad_idx, grad_dist):
    # d/dz |z - e_k|^2 = 2 (z - e_k); the code gets the opposite, summed over its tokens.
    z, codebook, idx = ctx.saved_tensors
    diff = (z - codebook[idx]).to(grad_dist.dtype) * (2 * grad_dist[:, None])
    gz = diff.to(z.dtype) if ctx.needs_input_grad[0] else None
    gc = None
    if ctx.needs_input_grad[1]:
        gc = torch.zeros(codebook.shape, dtype=diff.dtype, device=diff.device)
        gc = gc.index_add_(0, idx, -diff).to(codebook.dtype)
    return gz, gc, None


_nearest_code_op.register_autograd(_backward, setup_context=_setup_context)

# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def nearest_code(
    z: torch.Tensor, codebook: torch.Tensor, *, backend: str | None = "auto",
    check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``z (..., D)``, ``codebook (K, D)`` -> ``(indices (...) int64, squared distances (...))``.

    Distances are float32 (float64 when either input is float64) and differentiable in ``z`` and
    ``codebook``; indices follow ``torch.argmin`` (lowest index on ties).

    NaN or Inf in ``z`` or the codebook, or distances that overflow, raise
    ``vqfast.ops.NonFiniteInputError`` naming the rows or codes (every backend would give another
    meaningless index). The check costs one device synchronization; ``check_finite=False`` skips
    it (then such inputs give unspecified indices); it is skipped inside ``torch.compile``.
    """
    check_codebook(z, codebook, "nearest_code")
    lead = z.shape[:-1]
    impl = _backend.resolve("nearest_code", backend, z.device)
    flat = z.reshape(-1, z.shape[-1])
    if impl == "reference":
        dtype = accumulate_dtype(z, codebook)
        idx, dist = nearest_code_ref(flat.to(dtype), codebook.to(dtype))
    else:
        idx, dist = _nearest_code_op(flat.contiguous(), codebook.contiguous(), impl)
    if check_finite:
        check_codebook_values(z, codebook, "nearest_code", dist)
    return idx.reshape(lead), dist.reshape(lead)
