"""What the ops share: the dtype rule of the compiled implementations and the input checks."""

from __future__ import annotations

import operator

import torch


class NonFiniteInputError(ValueError):
    """An op was given NaN or Inf (or values so large that its result overflowed): the message
    names where.

    Every backend would otherwise return a different, meaningless answer (an index 0, a NaN
    code), so the public entry points refuse instead."""


def accumulate_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """THE dtype rule: float64 when any input is float64, else float32 (half inputs accumulate
    in float32). Every fake, entry point and launcher that decides a compute dtype asks this."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def checks_skipped() -> bool:
    """Value checks need the values on the host: skipped while torch.compile traces and while a
    CUDA graph is captured (neither may synchronize)."""
    if torch.compiler.is_compiling():
        return True
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def all_finite(*tensors: torch.Tensor) -> bool:
    """Whether every element of every tensor is finite, with one device synchronization."""
    flags = [torch.isfinite(t).all() for t in tensors if t.numel()]
    return bool(torch.stack(flags).all()) if flags else True


def positions(mask: torch.Tensor, limit: int = 8) -> str:
    """``[3, 7] and 4 more`` (or ``[(0, 2), (1, 5)]`` for a mask of several dims): where ``mask``
    is True, for error messages."""
    where = mask.nonzero().tolist()
    items = [w[0] if len(w) == 1 else tuple(w) for w in where[:limit]]
    more = f" and {len(where) - limit} more" if len(where) > limit else ""
    return f"{items}{more}"


def as_int(value, name: str, op: str) -> int:
    """``value`` as an int: Python and NumPy integers pass; bools, floats (even 16.0) and
    anything else are refused (``int(16.7)`` would silently be 16)."""
    if isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an integer, got the bool {value}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{op}: {name} must be an integer, got {value!r} ({type(value).__name__})"
        ) from None


def check_codebook(z: torch.Tensor, codebook: torch.Tensor, op: str) -> None:
    """``z (..., D)`` and ``codebook (K, D)``: floating-point tensors on one device, K, D >= 1."""
    for name, v in (("z", z), ("codebook", codebook)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(v).__name__}")
        if not v.dtype.is_floating_point:
            raise TypeError(f"{op}: {name} must be floating point, got {v.dtype}")
    if codebook.dim() != 2 or codebook.shape[0] < 1:
        raise ValueError(f"{op}: codebook must be (K, D) with K >= 1, got {tuple(codebook.shape)}")
    if codebook.shape[1] < 1:
        raise ValueError(f"{op}: the codebook's vectors have D = 0 components "
                         f"{tuple(codebook.shape)}; codes need D >= 1")
    if z.dim() < 1 or z.shape[-1] != codebook.shape[1]:
        raise ValueError(
            f"{op}: z must be (..., D) with D = {codebook.shape[1]} (the codebook's), "
            f"got {tuple(z.shape)}"
        )
    if z.device != codebook.device:
        raise ValueError(f"{op}: z is on {z.device} but the codebook on {codebook.device}")


def check_codebook_values(z: torch.Tensor, codebook: torch.Tensor, op: str,
                          result: torch.Tensor | None = None) -> None:
    """Raise :class:`NonFiniteInputError` naming the vectors of ``z`` and the codes that hold NaN or
    Inf, or, when both are finite but ``result`` (distances, a loss) is not, saying that the
    squared distances overflow. One device synchronization when all is well."""
    if checks_skipped() or all_finite(z, codebook, *(() if result is None else (result,))):
        return
    bad_z = (~torch.isfinite(z).all(dim=-1)).reshape(z.shape[:-1] or (1,))
    if bad_z.any():
        where = "positions (leading indices)" if z.dim() > 2 else "rows"
        raise NonFiniteInputError(
            f"{op}: z holds NaN or Inf at {where} {positions(bad_z)} ({int(bad_z.sum())} of its "
            f"{bad_z.numel()} vectors); their nearest codes would be meaningless. Remove or "
            "fill them (in a model: its input or weights went non-finite)."
        )
    bad_codes = ~torch.isfinite(codebook).all(dim=-1)
    if bad_codes.any():
        raise NonFiniteInputError(
            f"{op}: the codebook holds NaN or Inf in codes {positions(bad_codes)} (of "
            f"{codebook.shape[0]}); distances to them are undefined. Re-initialize or reload the "
            "codebook (a diverged training run?)."
        )
    dtype = accumulate_dtype(z, codebook)
    peak = max(float(z.abs().max()), float(codebook.abs().max()))
    raise NonFiniteInputError(
        f"{op}: z and the codebook are finite but the result is not: squared distances overflow "
        f"{str(dtype).removeprefix('torch.')} (largest |component| = {peak:.3g}); rescale z and "
        "the codebook, or pass float64 tensors."
    )
