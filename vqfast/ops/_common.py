"""What the ops share: the dtype rule of the compiled implementations and the codebook checks."""

from __future__ import annotations

import torch


def accumulate_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """THE dtype rule: float64 when any input is float64, else float32 (half inputs accumulate
    in float32). Every fake, entry point and launcher that decides a compute dtype asks this."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def check_codebook(z: torch.Tensor, codebook: torch.Tensor, op: str) -> None:
    """``z (..., D)`` and ``codebook (K, D)``: floating-point tensors on one device, ``K >= 1``."""
    for name, v in (("z", z), ("codebook", codebook)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(v).__name__}")
        if not v.dtype.is_floating_point:
            raise TypeError(f"{op}: {name} must be floating point, got {v.dtype}")
    if codebook.dim() != 2 or codebook.shape[0] < 1:
        raise ValueError(f"{op}: codebook must be (K, D) with K >= 1, got {tuple(codebook.shape)}")
    if z.dim() < 1 or z.shape[-1] != codebook.shape[1]:
        raise ValueError(
            f"{op}: z must be (..., D) with D = {codebook.shape[1]} (the codebook's), "
            f"got {tuple(z.shape)}"
        )
    if z.device != codebook.device:
        raise ValueError(f"{op}: z is on {z.device} but the codebook on {codebook.device}")
