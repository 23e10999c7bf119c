"""Triton helpers shared by the kernels: the distance tile, dtypes, block sizes, device guard.

Every kernel that computes distances (``nearest_code.py``, ``vq_loss.py``) computes them with
``distance_tile`` and is compiled without floating-point contraction (``FP_FUSION``): each
distance is then the same IEEE sequence of roundings in every kernel, on a GPU and in the
interpreter alike, so ``nearest_code`` and the VQ loss pick the same codes and the loss's
recomputed logits match its saved maximum bit for bit. (With contraction the compiler turns
``d * s - m`` into one fma, whose result for the nearest code is the rounding error of ``m``
instead of 0; at ``tau = 0.01`` that error, ~1e-4, wrecked the entropy gradients.)
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from vqfast.ops._common import accumulate_dtype

__all__ = ["FP_FUSION", "accumulate_dtype", "block_size", "device_guard", "distance_tile",
           "tl_dtype"]

# Implicit fp contraction off in every kernel: the distance kernels (see the module docstring) and
# the subsequence kernels, which round sample positions as the reference does.
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
