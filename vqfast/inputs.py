"""Checking and preparing series for the model.

``prepare_series`` turns multivariate and variable-length data into the model's ``(B*C, T)``
input; ``check_series`` is what every public entry point calls on what it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

PAD_MODES = ("pad", "resample")


class SeriesError(ValueError):
    """A series given to vqfast cannot be used as it is; the message says how to fix it."""


def describe_indices(idx, limit: int = 10) -> str:
    """``[3, 7, 9] and 4 more``: the first ``limit`` of some sample indices, for error messages."""
    items = [int(i) for i in idx]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{items[:limit]}{more}"


def check_finite(x: torch.Tensor, where: str) -> None:
    """Raise naming the samples (rows) that hold NaN or Inf (skipped inside torch.compile)."""
    if x.is_floating_point() and not torch.compiler.is_compiling():
        bad_mask = ~torch.isfinite(x)
        if bad_mask.any():
            rows = bad_mask.reshape(x.shape[0], -1).any(dim=1).nonzero().flatten()
            raise SeriesError(
                f"{where}: samples {describe_indices(rows)} contain NaN or Inf. Remove or fill "
                "them first (for unequal-length data stored NaN-padded, pass the series as a list "
                "to vqfast.prepare_series)."
            )


def as_tensor(x, where: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{where}: expected a torch.Tensor or numpy array, got {type(x).__name__}")


def check_series(
    x, length: int, where: str, *, dtype: torch.dtype | None = None, device=None
) -> torch.Tensor:
    """Validate a ``(B, length)`` batch of univariate series; return it as a tensor.

    ``dtype``/``device``: convert to these (the model's) after checking.
    """
    x = as_tensor(x, where)
    if not x.is_floating_point():
        raise TypeError(
            f"{where}: series must be floating point, got {x.dtype}; convert with x.float()"
        )
    if x.dim() != 2:
        hint = (
            " Multivariate (B, C, T) data: vqfast.prepare_series(x, length="
            f"{length}) resamples every channel and flattens to (B*C, {length})."
            if x.dim() == 3
            else ""
        )
        raise SeriesError(f"{where}: expected a (batch, {length}) tensor, got shape "
                          f"{tuple(x.shape)}.{hint}")
    if x.shape[0] == 0:
        raise SeriesError(f"{where}: the batch is empty (shape {tuple(x.shape)})")
    if x.shape[1] != length:
        raise SeriesError(
            f"{where}: series must have length {length} (the model's len_input), got "
            f"{x.shape[1]}. vqfast.prepare_series(x, length={length}) resamples them."
        )
    check_finite(x, where)
    check_scale(x, where, dtype or x.dtype)
    if dtype is not None or device is not None:
        x = x.to(dtype=dtype or x.dtype, device=device or x.device)
    return x


def normalization_limit(length: int, dtype: torch.dtype) -> float:
    """The largest ``|x|`` whose per-series normalization stays finite in ``dtype`` on every
    device: the variance sums ``length`` squares of deviations (accumulated in ``dtype`` on a
    GPU), so ``length * max|x|**2`` must fit ``dtype``."""
    return math.sqrt(torch.finfo(dtype).max / length)


def check_scale(x: torch.Tensor, where: str, dtype: torch.dtype) -> None:
    """Raise naming the series of the finite ``(B, T)`` batch ``x`` whose normalization would
    overflow ``dtype`` (the model's); skipped inside torch.compile."""
    if not dtype.is_floating_point or torch.compiler.is_compiling():
        return
    limit = normalization_limit(x.shape[1], dtype)
    peak = x.abs().amax(dim=1).double()
    too_large = peak > limit
    if bool(too_large.any()):
        rows = too_large.nonzero().flatten()
        name = str(dtype).removeprefix("torch.")
        worst = float(peak.max())
        factor = 10 ** math.ceil(math.log10(worst / limit))
        raise SeriesError(
            f"{where}: series {describe_indices(rows)} have values too large for {name} "
            f"normalization (max |x| = {worst:.3g}; with {x.shape[1]} points the variance "
            f"overflows {name} above {limit:.3g}); rescale them (e.g. divide by {factor:.0e})"
            + ("" if dtype == torch.float64 else " or use a float64 model (model.double())")
        )


def _to_float_tensor(s, where: str, samples: bool = False) -> torch.Tensor:
    """``s`` as float32; values finite in ``s`` but beyond float32's range are an error naming
    the samples (rows, when ``samples``)."""
    s = as_tensor(s, where)
    if not (s.is_floating_point() or s.dtype in (torch.int8, torch.int16, torch.int32, torch.int64,
                                                 torch.uint8)):
        raise TypeError(f"{where}: series must be numeric, got {s.dtype}")
    out = s.to(torch.float32)
    if s.is_floating_point() and s.dtype != torch.float32 and s.numel():
        overflow = torch.isfinite(s) & ~torch.isfinite(out)
        if bool(overflow.any()):
            which = " holds"
            if samples:
                rows = overflow.reshape(s.shape[0], -1).any(dim=1).nonzero().flatten()
                which = f": samples {describe_indices(rows)} hold"
            worst = float(s.abs()[overflow].max())
            factor = 10 ** math.ceil(math.log10(worst / torch.finfo(torch.float32).max))
            raise SeriesError(
                f"{where}{which} values too large for float32 (max |x| = {worst:.3g}; float32 "
                f"holds up to {torch.finfo(torch.float32).max:.3g}); rescale them (e.g. divide by "
                f"{factor:.0e})"
            )
    return out


def prepare_series(
    data, length: int = 512, how: str = "pad"
) -> torch.Tensor:
    """Turn a dataset into the model's input: every channel resampled to ``length``, flattened.

    ``data``: an array or tensor ``(B, C, T0)`` or ``(B, T0)``, or a list of ``(C, Ti)`` / ``(Ti,)``
    series of unequal lengths. ``how``:

    - ``"pad"`` (the authors' protocol): zero-pad every series at the end to the longest, then
      resample all to ``length`` with linear interpolation;
    - ``"resample"``: resample every series from its own length to ``length``.

    Returns float32 ``(B*C, length)``; sample ``b``'s channels are rows ``b*C ... b*C+C-1``
    (``out.view(B, C, length)`` recovers them).
    """
    where = "prepare_series"
    if how not in PAD_MODES:
        raise ValueError(f"{where}: how={how!r} is not one of {PAD_MODES}")
    if int(length) < 2:
        raise ValueError(f"{where}: length must be >= 2, got {length}")
    if isinstance(data, (torch.Tensor, np.ndarray)):
        x = _to_float_tensor(data, where, samples=True)
        if x.dim() == 2:
            x = x[:, None, :]
        if x.dim() != 3:
            raise SeriesError(f"{where}: expected (B, C, T) or (B, T) data, got {tuple(x.shape)}")
        series = list(x)
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        series = []
        for i, s in enumerate(data):
            s = _to_float_tensor(s, f"{where}: series {i}")
            if s.dim() == 1:
                s = s[None, :]
            if s.dim() != 2:
                raise SeriesError(
                    f"{where}: series {i} must be (C, T) or (T,), got {tuple(s.shape)}"
                )
            series.append(s)
    else:
        raise TypeError(f"{where}: expected an array, tensor or list of series, got "
                        f"{type(data).__name__}")
    if not series:
        raise SeriesError(f"{where}: no series given (empty dataset)")
    channels = {s.shape[0] for s in series}
    if len(channels) != 1:
        raise SeriesError(f"{where}: all series must have the same number of channels, got "
                          f"{sorted(channels)}")
    short = [i for i, s in enumerate(series) if s.shape[1] < 2]
    if short:
        raise SeriesError(f"{where}: series {describe_indices(torch.tensor(short))} have fewer "
                          "than 2 points; a shape needs at least 2")
    for i, s in enumerate(series):
        if not torch.isfinite(s).all():
            raise SeriesError(f"{where}: series {i} contains NaN or Inf (unequal-length data "
                              "stored NaN-padded: pass each series trimmed, as a list)")
    if how == "pad":
        longest = max(s.shape[1] for s in series)
        x = torch.stack([F.pad(s, (0, longest - s.shape[1])) for s in series])
        out = F.interpolate(x, size=int(length), mode="linear")
    else:
        out = torch.cat(
            [F.interpolate(s[None], size=int(length), mode="linear") for s in series]
        )
    return out.reshape(-1, int(length)).contiguous()
