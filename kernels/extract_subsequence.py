"""Subsequence targets: ``x (B, T)``, ``t, l (B, N)`` -> ``(B, N, length)``, and the backward pass.

Same math and gradient conventions as ``csrc/extract_subsequence.cpp`` and
``extract_subsequence_ref``: token ``(b, n)`` samples ``x[b]`` by linear interpolation at the
positions ``grid_sample`` (bilinear, ``align_corners=True``, border padding) sees for
``pos = t (T-1) + (min(t+l, 1) - t) (T-1) r_j``, ``r = torch.linspace(0, 1, length)`` in
float32, then smooths by a moving average of odd width ``SMOOTH`` padded with copies of the end
values. Half-precision inputs are computed in float32. Backward: the slope at an integer position
is the right-hand one, positions ``<= 0`` or ``>= T-1`` pass no gradient to ``t`` and ``l``, and
a clamped end (``t + l > 1``) none either.

``dL/dx`` is a scatter-add of every sample into ``x[b]``; it uses float32 (float64 for float64
inputs) atomics, so on a GPU its last bits may change from run to run (the order in which the
atomics land is not fixed). ``dL/dt`` and ``dL/dl`` are per-token sums in registers and are
deterministic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._helpers import FP_FUSION, accumulate_dtype, block_size, device_guard, tl_dtype

# Elements of a [BLOCK_T, BLOCK_S] tile (tokens x sample positions).
TILE = 2048


@triton.jit
def _sample_position(start, span, r, t1, half_t1, ACC: tl.constexpr):
    """The unnormalized position ``grid_sample`` sees, rounded as the reference rounds it:
    ``grid = 2 pos / (T-1) - 1`` (a correctly rounded division, not an approximate one), then
    ``(grid + 1) (T-1) / 2``."""
    pos = start + span * r
    if ACC == tl.float64:
        grid = (2.0 * pos) / t1 - 1.0
    else:
        grid = tl.fdiv(2.0 * pos, t1, ieee_rounding=True) - 1.0
    return (grid + 1.0) * half_t1


@triton.jit
def _token_setup(t_ptr, l_ptr, tok, tok_ok, T, ACC: tl.constexpr):
    t = tl.load(t_ptr + tok, mask=tok_ok, other=0.0).to(ACC)
    l = tl.load(l_ptr + tok, mask=tok_ok, other=0.0).to(ACC)
    t1 = tl.cast(T - 1, ACC)
    half_t1 = t1 / 2.0
    start = t * t1
    stop = t + l
    clamped = stop > 1.0
    end = tl.where(clamped, 1.0, stop) * t1
    return start[:, None], (end - start)[:, None], clamped, t1, half_t1


@triton.jit
def _interpolate(raw, t1, T):
    """Left index, weight of the right neighbour and whether there is one, for positions
    ``raw`` clipped to ``[0, T-1]``."""
    p = tl.minimum(tl.maximum(raw, 0.0), t1)
    x0 = tl.floor(p)
    w = p - x0
    # The clamp only guards memory against NaN positions.
    i0 = tl.minimum(tl.maximum(x0.to(tl.int32), 0), T - 1)
    has_right = i0 + 1 < T
    return i0, w, has_right


@triton.jit
def _forward_kernel(x_ptr, t_ptr, l_ptr, rel_ptr, out_ptr, BN, N, T, S, SMOOTH: tl.constexpr,
                    ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr):
    tok = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    tok_ok = tok < BN
    j = tl.program_id(1) * BLOCK_S + tl.arange(0, BLOCK_S)
    ok = tok_ok[:, None] & (j < S)[None, :]
    start, span, _, t1, half_t1 = _token_setup(t_ptr, l_ptr, tok, tok_ok, T, ACC)
    row = x_ptr + ((tok // N) * T)[:, None]
    PAD: tl.constexpr = SMOOTH // 2
    out = tl.zeros([BLOCK_T, BLOCK_S], ACC)
    # Moving average over the samples j - PAD .. j + PAD, indices clamped to the ends (the end
    # values' copies), each sample recomputed rather than exchanged between lanes.
    for k in tl.static_range(SMOOTH):
        jj = tl.minimum(tl.maximum(j + (k - PAD), 0), S - 1)
        r = tl.load(rel_ptr + jj, mask=j < S, other=0.0)[None, :]
        raw = _sample_position(start, span, r, t1, half_t1, ACC)
        i0, w, has_right = _interpolate(raw, t1, T)
        v0 = tl.load(row + i0, mask=ok, other=0.0).to(ACC)
        v1 = tl.load(row + i0 + 1, mask=ok & has_right, other=0.0).to(ACC)
        value = v1 * w + v0 * (1.0 - w)
        if SMOOTH == 1:
            out = value
        else:
            out += value * (1.0 / SMOOTH)
    dst = out_ptr + tok[:, None] * S + j[None, :]
    tl.store(dst, out.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _backward_kernel(grad_ptr, x_ptr, t_ptr, l_ptr, rel_ptr, gx_ptr, gt_ptr, gl_ptr, BN, N, T, S,
                     SMOOTH: tl.constexpr, ACC: tl.constexpr, BLOCK_T: tl.constexpr,
                     BLOCK_S: tl.constexpr, BLOCK_P: tl.constexpr):
    tok = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    tok_ok = tok < BN
    start, span, clamped, t1, half_t1 = _token_setup(t_ptr, l_ptr, tok, tok_ok, T, ACC)
    b = (tok // N)[:, None]
    row = x_ptr + b * T
    gx_row = gx_ptr + b * T
    g_row = grad_ptr + tok[:, None] * S
    PAD: tl.constexpr = SMOOTH // 2
    if PAD > 0:
        # Gradient that the end padding sends to the first and last sample: output j reads the
        # left pad max(0, PAD - j) times and the right pad max(0, j - (S-1-PAD)) times.
        u = tl.arange(0, BLOCK_P)
        copies = (PAD - u).to(ACC)[None, :]
        left_j = u[None, :]
        left_ok = tok_ok[:, None] & (u < PAD)[None, :] & (left_j < S)
        left = tl.sum(tl.load(g_row + left_j, mask=left_ok, other=0.0).to(ACC) * copies, axis=1)
        right_j = S - 1 - u[None, :]
        right_ok = tok_ok[:, None] & (u < PAD)[None, :] & (right_j >= 0)
        right = tl.sum(tl.load(g_row + right_j, mask=right_ok, other=0.0).to(ACC) * copies, axis=1)
    d_start = tl.zeros([BLOCK_T], ACC)
    d_end = tl.zeros([BLOCK_T], ACC)
    for j0 in range(0, S, BLOCK_S):
        j = j0 + tl.arange(0, BLOCK_S)
        ok = tok_ok[:, None] & (j < S)[None, :]
        if SMOOTH == 1:
            g = tl.load(g_row + j[None, :], mask=ok, other=0.0).to(ACC)
        else:
            # Adjoint of the moving average: sample i receives w * g[i + PAD - k] for each tap k,
            # plus the padding's gradient at the ends.
            g = tl.zeros([BLOCK_T, BLOCK_S], ACC)
            for k in tl.static_range(SMOOTH):
                src = j + (PAD - k)
                g += tl.load(g_row + src[None, :], mask=ok & ((src >= 0) & (src < S))[None, :],
                             other=0.0).to(ACC)
            g += tl.where((j == 0)[None, :], left[:, None], 0.0)
            g += tl.where((j == S - 1)[None, :], right[:, None], 0.0)
            g = g * (1.0 / SMOOTH)
        r = tl.load(rel_ptr + j, mask=j < S, other=0.0)[None, :]
        raw = _sample_position(start, span, r, t1, half_t1, ACC)
        i0, w, has_right = _interpolate(raw, t1, T)
        tl.atomic_add(gx_row + i0, g * (1.0 - w), mask=ok, sem="relaxed")
        tl.atomic_add(gx_row + i0 + 1, g * w, mask=ok & has_right, sem="relaxed")
        v0 = tl.load(row + i0, mask=ok, other=0.0).to(ACC)
        v1 = tl.load(row + i0 + 1, mask=ok & has_right, other=0.0).to(ACC)
        inside = ok & (raw > 0.0) & (raw < t1)
        d_pos = tl.where(inside, g * (v1 - v0), 0.0)
        d_start += tl.sum(d_pos * (1.0 - r), axis=1)
        d_end += tl.sum(d_pos * r, axis=1)
    d_end = tl.where(clamped, 0.0, d_end * t1)
    tl.store(gt_ptr + tok, (d_start * t1 + d_end).to(gt_ptr.dtype.element_ty), mask=tok_ok)
    tl.store(gl_ptr + tok, d_end.to(gl_ptr.dtype.element_ty), mask=tok_ok)


def _blocks(tokens: int, length: int) -> tuple[int, int]:
    block_s = block_size(length, 16, 256)
    return block_size(tokens, 1, max(1, TILE // block_s)), block_s


def _relative_positions(length: int, acc: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.linspace(0, 1, length, dtype=torch.float32, device=device).to(acc)


def forward(x, t, l, length, smooth):
    """``x (B, T)``, ``t, l (B, N)`` (one dtype) -> ``(B, N, length)``."""
    x, t, l = x.contiguous(), t.contiguous(), l.contiguous()
    B, N = t.shape
    T = x.shape[1]
    out = torch.empty(B, N, length, dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    acc = accumulate_dtype(x)
    rel = _relative_positions(length, acc, x.device)
    block_t, block_s = _blocks(B * N, length)
    grid = (triton.cdiv(B * N, block_t), triton.cdiv(length, block_s))
    with device_guard(x.device):
        _forward_kernel[grid](
            x, t, l, rel, out, B * N, N, T, length,
            SMOOTH=smooth, ACC=tl_dtype(acc), BLOCK_T=block_t, BLOCK_S=block_s,
            enable_fp_fusion=FP_FUSION,
        )
    return out


def backward(grad, x, t, l, length, smooth):
    """-> ``(gx (B, T), gt (B, N), gl (B, N))`` in the inputs' dtype."""
    x, t, l = x.contiguous(), t.contiguous(), l.contiguous()
    B, N = t.shape
    T = x.shape[1]
    acc = accumulate_dtype(x)
    gx = torch.zeros(B, T, dtype=acc, device=x.device)
    gt = torch.zeros_like(t)
    gl = torch.zeros_like(l)
    if B * N == 0:
        return gx.to(x.dtype), gt, gl
    grad = grad.to(x.dtype).contiguous()
    rel = _relative_positions(length, acc, x.device)
    block_t, block_s = _blocks(B * N, length)
    block_p = triton.next_power_of_2(max(smooth // 2, 1))
    with device_guard(x.device):
        _backward_kernel[(triton.cdiv(B * N, block_t),)](
            grad, x, t, l, rel, gx, gt, gl, B * N, N, T, length,
            SMOOTH=smooth, ACC=tl_dtype(acc), BLOCK_T=block_t, BLOCK_S=block_s, BLOCK_P=block_p,
            enable_fp_fusion=FP_FUSION,
        )
    return gx.to(x.dtype), gt, gl
