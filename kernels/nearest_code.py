"""Nearest-code search: ``z (M, D)``, ``codebook (K, D)`` -> ``(idx (M,) int64, dist (M,))``.

Each program owns ``BLOCK_M`` tokens and streams the codebook in tiles of ``BLOCK_K`` codes,
keeping a running minimum and its index, so nothing of size tokens x codes is stored. Distances
are computed directly as ``sum_d (z_d - e_d)^2`` (no ``|z|^2 + |e|^2 - 2 z.e`` expansion, no
``tl.dot``) in float32, or float64 when either input is float64. Ties go to the lowest index, as
``torch.argmin``: ``tl.min(..., return_indices=True)`` breaks ties to the left within a tile and a
later tile must be strictly smaller to win.

Every kernel that computes distances (here and in ``vq_loss.py``) is compiled without floating-point
contraction (``enable_fp_fusion=False``): each distance is then the same IEEE sequence of roundings
in every kernel, on a GPU and in the interpreter alike, so ``nearest_code`` and the VQ loss pick the
same codes and the loss's recomputed logits match its saved maximum bit for bit. (With contraction
the compiler turns ``d * s - m`` into one fma, whose result for the nearest code is the rounding
error of ``m`` instead of 0; at ``tau = 0.01`` that error, ~1e-4, wrecked the entropy gradients.)
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

# Implicit fp contraction off in every kernel that computes distances (see the module docstring).
FP_FUSION = False


@triton.jit
def distance_tile(z_rows, row_ok, c_ptr, codes, code_ok, D, ACC: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """``[BLOCK_M, BLOCK_K]`` squared distances of the rows at ``z_rows`` (pointers to each
    row's first element) to the codes ``codes``, one dimension at a time. Every entry sums its
    terms in the same order, so equal codes give bit-equal distances."""
    c_rows = c_ptr + codes * D
    dist = tl.zeros([BLOCK_M, BLOCK_K], ACC)
    for d in range(0, D):
        zd = tl.load(z_rows + d, mask=row_ok, other=0.0).to(ACC)
        ed = tl.load(c_rows + d, mask=code_ok, other=0.0).to(ACC)
        diff = zd[:, None] - ed[None, :]
        dist += diff * diff
    return dist


@triton.jit
def _nearest_code_kernel(z_ptr, c_ptr, idx_ptr, dist_ptr, M, K, D, ACC: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    z_rows = z_ptr + rows * D
    best = tl.full([BLOCK_M], float("inf"), ACC)
    best_idx = tl.zeros([BLOCK_M], tl.int32)
    for k0 in range(0, K, BLOCK_K):
        codes = k0 + tl.arange(0, BLOCK_K)
        code_ok = codes < K
        dist = distance_tile(z_rows, row_ok, c_ptr, codes, code_ok, D, ACC, BLOCK_M, BLOCK_K)
        dist = tl.where(code_ok[None, :], dist, float("inf"))
        tile_min, tile_arg = tl.min(dist, axis=1, return_indices=True)
        better = tile_min < best
        best = tl.where(better, tile_min, best)
        best_idx = tl.where(better, k0 + tile_arg, best_idx)
    tl.store(idx_ptr + rows, best_idx.to(tl.int64), mask=row_ok)
    tl.store(dist_ptr + rows, best, mask=row_ok)


def accumulate_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, else float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def tl_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def device_guard(device: torch.device):
    """Launch on ``device`` (Triton launches on the current CUDA device and its current stream)."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def block_size(n: int, lo: int, hi: int) -> int:
    """The power of two >= ``n``, clamped to ``[lo, hi]``."""
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``z (M, D)``, ``codebook (K, D)`` (same device) -> ``(idx int64, dist)``."""
    z, codebook = z.contiguous(), codebook.contiguous()
    M, D = z.shape
    K = codebook.shape[0]
    acc = accumulate_dtype(z, codebook)
    idx = torch.empty(M, dtype=torch.int64, device=z.device)
    dist = torch.empty(M, dtype=acc, device=z.device)
    if M == 0:
        return idx, dist
    block_m = block_size(M, 16, 64 if acc == torch.float32 else 32)
    block_k = block_size(K, 16, 64)
    grid = (triton.cdiv(M, block_m),)
    with device_guard(z.device):
        _nearest_code_kernel[grid](
            z, codebook, idx, dist, M, K, D,
            ACC=tl_dtype(acc), BLOCK_M=block_m, BLOCK_K=block_k, enable_fp_fusion=FP_FUSION,
        )
    return idx, dist
