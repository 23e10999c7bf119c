"""Subsequence targets: the raw series sampled under each shape token.

For token ``(b, n)`` the series ``x[b]`` is sampled by linear interpolation at ``length`` points
evenly spaced from ``t*(T-1)`` to ``min(t+l, 1)*(T-1)`` (positions clamped to ``[0, T-1]``), then
smoothed by a moving average of odd width ``smooth`` whose ends are padded with copies of the end
values (width 1: no smoothing). The entry point accepts ``t`` in ``[0, 1]`` and ``l > 0`` (what
the model's sigmoid heads produce) and finite ``x``; anything else is an error naming the tokens.

Implementations: ``extract_subsequence_ref`` (the authors' ``grid_sample`` + ``conv1d`` path; the
specification and test oracle), C++ (``csrc/extract_subsequence.cpp``, bit-identical to the
reference in float32 for ``smooth=1``) and Triton (``kernels/extract_subsequence.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vqfast.ops import _backend
from vqfast.ops._common import (
    NonFiniteInputError,
    accumulate_dtype,
    as_int,
    checks_skipped,
    positions,
)

# ---------------------------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------------------------


def moving_average_ref(x: torch.Tensor, width: int) -> torch.Tensor:
    """Moving average of ``width`` over the last dim of ``(B, C, S)``, ends padded by copies."""
    B, C, _ = x.shape
    pad = width // 2
    kernel = torch.ones(C, 1, width, device=x.device, dtype=x.dtype) / width
    left = torch.ones(B, C, pad, device=x.device, dtype=x.dtype) * x[:, :, [0]]
    right = torch.ones(B, C, pad, device=x.device, dtype=x.dtype) * x[:, :, [-1]]
    return F.conv1d(torch.cat([left, x, right], dim=-1), kernel, groups=C)


def extract_subsequence_ref(
    x: torch.Tensor, t: torch.Tensor, l: torch.Tensor, length: int, smooth: int = 1
) -> torch.Tensor:
    """``x (B, T)``, ``t, l (B, N)`` -> ``(B, N, length)``, exactly as the authors compute it."""
    T = x.shape[-1]
    rel = torch.linspace(0, 1, steps=length).to(x.device)
    t = t.unsqueeze(-1)
    l = l.unsqueeze(-1)
    start = t * (T - 1)
    end = torch.clamp(t + l, max=1) * (T - 1)
    pos = start + (end - start) * rel
    grid = 2.0 * pos / (T - 1) - 1
    grid = torch.stack([grid, torch.ones_like(grid)], dim=-1)
    sampled = F.grid_sample(
        x[:, None, None, :], grid, mode="bilinear", padding_mode="border", align_corners=True
    )[:, 0]
    return moving_average_ref(sampled, smooth)


# ---------------------------------------------------------------------------------------------
# Registered op (C++ / Triton) with its fake implementation and autograd formula
# ---------------------------------------------------------------------------------------------


def _forward_impl(x, t, l, length, smooth, backend):
    if backend == "cpp":  # half precision computed in float32, as the Triton kernels do
        acc = accumulate_dtype(x)
        out = torch.ops.vqfast_C.extract_subsequence(x.to(acc), t.to(acc), l.to(acc), length,
                                                     smooth)
        return out.to(x.dtype)
    from vqfast.kernels import extract_subsequence as kernel

    return kernel.forward(x, t, l, length, smooth)


def _backward_impl(grad, x, t, l, length, smooth, backend):
    if backend == "cpp":
        acc = accumulate_dtype(x)
        grads = torch.ops.vqfast_C.extract_subsequence_backward(
            grad.to(acc), x.to(acc), t.to(acc), l.to(acc), length, smooth
        )
        return tuple(g.to(x.dtype) for g in grads)
    from vqfast.kernels import extract_subsequence as kernel

    return kernel.backward(grad, x, t, l, length, smooth)


@torch.library.custom_op("vqfast::extract_subsequence", mutates_args=())
def _extract_subsequence_op(
    x: torch.Tensor, t: torch.Tensor, l: torch.Tensor, length: int, smooth: int, backend: str
) -> torch.Tensor:
    return _forward_impl(x, t, l, length, smooth, backend)


@_extract_subsequence_op.register_fake
def _(x, t, l, length, smooth, backend):
    return x.new_empty((t.shape[0], t.shape[1], length))


@torch.library.custom_op("vqfast::extract_subsequence_backward", mutates_args=())
def _extract_subsequence_backward_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    t: torch.Tensor,
    l: torch.Tensor,
    length: int,
    smooth: int,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _backward_impl(grad, x, t, l, length, smooth, backend)


@_extract_subsequence_backward_op.register_fake
def _(grad, x, t, l, length, smooth, backend):
    return torch.empty_like(x), torch.empty_like(t), torch.empty_like(l)


def _setup_context(ctx, inputs, output):
    x, t, l, length, smooth, backend = inputs
    ctx.save_for_backward(x, t, l)
    ctx.args = (length, smooth, backend)


def _backward(ctx, grad):
    x, t, l = ctx.saved_tensors
    gx, gt, gl = _extract_subsequence_backward_op(grad.contiguous(), x, t, l, *ctx.args)
    needs = ctx.needs_input_grad
    return (gx if needs[0] else None, gt if needs[1] else None, gl if needs[2] else None,
            None, None, None)


_extract_subsequence_op.register_autograd(_backward, setup_context=_setup_context)

# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def extract_subsequence(
    x: torch.Tensor,
    t: torch.Tensor,
    l: torch.Tensor,
    length: int,
    smooth: int = 1,
    *,
    backend: str | None = "auto",
) -> torch.Tensor:
    """Sample ``length`` points of ``x`` between relative times ``t`` and ``t + l`` per token.

    ``x``: ``(B, T)`` series in their original scale; ``t``, ``l``: ``(B, N)`` or ``(B, N, 1)``.
    Returns ``(B, N, length)``. Differentiable in ``x``, ``t`` and ``l``.

    Legal values (what VQShape's heads produce: ``t`` in ``[0, 1 - l_min]``, ``l`` in
    ``[l_min, 1 - t + l_min]``): ``x`` finite, ``t`` in ``[0, 1]``, ``l > 0`` finite; a window
    reaching past the end (``t + l > 1``) ends at the last point. Anything else raises
    ``vqfast.ops.NonFiniteInputError`` (NaN, Inf) or ``ValueError`` naming the tokens (skipped
    inside ``torch.compile``).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"extract_subsequence: x must be a (B, T) tensor, got {_shape(x)}")
    t = _as_token_attr(t, "t", x)
    l = _as_token_attr(l, "l", x)
    if t.shape != l.shape:
        raise ValueError(f"extract_subsequence: t {tuple(t.shape)} and l {tuple(l.shape)} differ")
    if x.shape[1] < 2:
        raise ValueError(f"extract_subsequence: series need at least 2 points, got {x.shape[1]}")
    length = as_int(length, "length", "extract_subsequence")
    smooth = as_int(smooth, "smooth", "extract_subsequence")
    if length < 1:
        raise ValueError(f"extract_subsequence: length must be >= 1, got {length}")
    if smooth < 1 or smooth % 2 == 0:
        raise ValueError(
            f"extract_subsequence: smooth must be an odd width >= 1, got {smooth} (an even moving "
            "average with end padding would change the length)"
        )
    dtype = torch.promote_types(torch.promote_types(x.dtype, t.dtype), l.dtype)
    if not dtype.is_floating_point:
        raise TypeError(f"extract_subsequence: floating-point inputs required, got {dtype}")
    _check_values(x, t, l)
    x, t, l = x.to(dtype), t.to(dtype), l.to(dtype)
    impl = _backend.resolve("extract_subsequence", backend, x.device)
    if impl == "reference":
        return extract_subsequence_ref(x, t, l, length, smooth)
    return _extract_subsequence_op(x, t, l, length, smooth, impl)


def _shape(v) -> str:
    return f"shape {tuple(v.shape)}" if hasattr(v, "shape") else type(v).__name__


def _as_token_attr(v: torch.Tensor, name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"extract_subsequence: {name} must be a tensor, got {type(v).__name__}")
    if v.dim() == 3 and v.shape[-1] == 1:
        v = v.squeeze(-1)
    if v.dim() != 2 or v.shape[0] != x.shape[0]:
        raise ValueError(
            f"extract_subsequence: {name} must be (B, N) or (B, N, 1) with B = {x.shape[0]}, "
            f"got {tuple(v.shape)}"
        )
    return v


def _check_values(x: torch.Tensor, t: torch.Tensor, l: torch.Tensor) -> None:
    """``x`` finite, ``t`` in [0, 1], ``l`` > 0 and finite (one device synchronization)."""
    if checks_skipped():
        return
    legal = (t >= 0) & (t <= 1) & (l > 0) & torch.isfinite(l)  # False for NaN
    if bool(torch.isfinite(x).all() & legal.all()):
        return
    op = "extract_subsequence"
    bad_x = ~torch.isfinite(x).all(dim=1)
    if bad_x.any():
        raise NonFiniteInputError(f"{op}: x holds NaN or Inf in series {positions(bad_x)}; "
                                  "remove or fill them first")
    for name, bad in (("t", torch.isnan(t)), ("l", ~torch.isfinite(l))):
        if bad.any():
            raise NonFiniteInputError(f"{op}: {name} holds NaN or Inf at tokens (sample, token) "
                                      f"{positions(bad)}; every backend would sample another "
                                      "window")
    outside = (t < 0) | (t > 1)
    if outside.any():
        raise ValueError(
            f"{op}: t (the window's start, relative to the series) must lie in [0, 1]; tokens "
            f"(sample, token) {positions(outside)} have t in [{float(t[outside].min()):.4g}, "
            f"{float(t[outside].max()):.4g}]"
        )
    raise ValueError(
        f"{op}: l (the window's length, relative to the series) must be > 0; tokens (sample, "
        f"token) {positions(l <= 0)} have l down to {float(l.min()):.4g}"
    )
