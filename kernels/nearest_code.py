"""Nearest-code search: ``z (M, D)``, ``codebook (K, D)`` -> ``(idx (M,) int64, dist (M,))``.

Each program owns ``BLOCK_M`` tokens and streams the codebook in tiles of ``BLOCK_K`` codes,
keeping a running minimum and its index, so nothing of size tokens x codes is stored. Distances
are computed directly as ``sum_d (z_d - e_d)^2`` (no ``|z|^2 + |e|^2 - 2 z.e`` expansion, no
``tl.dot``) in float32, or float64 when either input is float64. Ties go to the lowest index, as
``torch.argmin``: ``tl.min(..., return_indices=True)`` breaks ties to the left within a tile and a
later tile must be strictly smaller to win.

Distances come from ``_helpers.distance_tile`` without fp contraction (``_helpers`` says why).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._helpers import (
    FP_FUSION,
    accumulate_dtype,
    block_size,
    device_guard,
    distance_tile,
    tl_dtype,
)


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
