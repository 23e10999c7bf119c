"""Per-sample code histograms: ``indices (B, N)`` int64 -> ``(B, K)`` int64 counts.

Program ``(b, j)`` adds one to ``hist[b, indices[b, n]]`` for its block of ``BLOCK_N`` tokens with
integer atomics: integer addition is associative, so the counts do not depend on the order in
which the atomics land (deterministic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._helpers import block_size, device_guard


@triton.jit
def _code_histogram_kernel(idx_ptr, hist_ptr, N, K, BLOCK_N: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = cols < N
    codes = tl.load(idx_ptr + row * N + cols, mask=ok, other=0)
    ones = tl.full([BLOCK_N], 1, tl.int64)
    tl.atomic_add(hist_ptr + row * K + codes, ones, mask=ok, sem="relaxed")


def code_histogram(indices: torch.Tensor, num_code: int) -> torch.Tensor:
    """``indices (B, N)`` int64 (values in ``[0, num_code)``) -> ``(B, num_code)`` int64."""
    indices = indices.contiguous()
    B, N = indices.shape
    hist = torch.zeros(B, num_code, dtype=torch.int64, device=indices.device)
    if B == 0 or N == 0:
        return hist
    block_n = block_size(N, 16, 1024)
    grid = (B, triton.cdiv(N, block_n))
    with device_guard(indices.device):
        _code_histogram_kernel[grid](indices, hist, N, num_code, BLOCK_N=block_n)
    return hist
