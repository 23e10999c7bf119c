"""Per-sample code histograms: ``indices (B, N)`` -> ``(B, K)`` int64 counts of each code.

Implementations: the reference below (the authors' ``scatter_add_``), C++
(``csrc/code_histogram.cpp``) and Triton (``kernels/code_histogram.py``, integer atomics); all
deterministic and equal.
"""

from __future__ import annotations

import torch

from vqfast.ops import _backend
from vqfast.ops._common import as_int

# ---------------------------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------------------------


def code_histogram_ref(indices: torch.Tensor, num_code: int) -> torch.Tensor:
    """``(B, N)`` int64 -> ``(B, num_code)`` int64 counts, as the authors' ``scatter_add_``."""
    hist = torch.zeros(indices.shape[0], num_code, device=indices.device, dtype=torch.int64)
    return hist.scatter_add_(1, indices, torch.ones_like(indices))


# ---------------------------------------------------------------------------------------------
# Registered op (no gradient: integer in, integer out) and its fake
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("vqfast::code_histogram", mutates_args=())
def _code_histogram_op(indices: torch.Tensor, num_code: int, backend: str) -> torch.Tensor:
    if backend == "cpp":
        return torch.ops.vqfast_C.code_histogram(indices, num_code)
    from vqfast.kernels import code_histogram as kernel

    return kernel.code_histogram(indices, num_code)


@_code_histogram_op.register_fake
def _(indices, num_code, backend):
    return indices.new_empty((indices.shape[0], num_code), dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def code_histogram(
    indices: torch.Tensor, num_code: int, *, backend: str | None = "auto"
) -> torch.Tensor:
    """``indices (B, N)`` -> ``(B, num_code)`` int64 counts of each code per row (deterministic).

    ``num_code``: an integer (a float such as 16.7 is refused, not truncated)."""
    if not isinstance(indices, torch.Tensor) or indices.dim() != 2:
        raise ValueError(f"code_histogram: indices must be a (B, N) tensor, got {indices!r:.80}")
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise TypeError(f"code_histogram: indices must be integers, got {indices.dtype}")
    num_code = as_int(num_code, "num_code", "code_histogram")
    if num_code < 1:
        raise ValueError(f"code_histogram: num_code must be >= 1, got {num_code}")
    if (not torch.compiler.is_compiling() and indices.numel()
            and (int(indices.min()) < 0 or int(indices.max()) >= num_code)):
        raise ValueError(
            f"code_histogram: indices must lie in [0, {num_code}), got values in "
            f"[{int(indices.min())}, {int(indices.max())}]"
        )
    indices = indices.to(torch.int64)
    impl = _backend.resolve("code_histogram", backend, indices.device)
    if impl == "reference":
        return code_histogram_ref(indices, num_code)
    return _code_histogram_op(indices.contiguous(), num_code, impl)
