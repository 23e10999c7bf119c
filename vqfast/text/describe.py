"""The rule-based describer: one sentence per series from its values (level, amplitude, trend,
dominant period, peaks per channel), available at train *and* test time."""

from __future__ import annotations

import numpy as np
import torch

from vqfast.text.errors import TextError, positive_int

#: Channel names per dataset name, used by :func:`texts_for` for generated descriptions.
#: BasicMotions: a smart watch's 3-D accelerometer (dimensions 1-3) then 3-D gyroscope (4-6).
DEFAULT_CHANNEL_NAMES: dict[str, tuple[str, ...]] = {
    "BasicMotions": ("acc x", "acc y", "acc z", "gyro x", "gyro y", "gyro z"),
}

#: Amplitude words by the ratio ``std / scale`` (upper bounds); above the last: "very high".
_AMPLITUDE_WORDS = ((0.25, "very low"), (0.67, "low"), (1.5, "moderate"), (4.0, "high"))
_TOP_AMPLITUDE = "very high"
_TREND_RATIO = 1.0  # |fitted change over the series| / std above this: rising or falling
_PERIOD_SHARE = 0.3  # the peak band must hold this share of the detrended spectrum's power...
_PERIOD_BINS = 6.0  # ...and at least _PERIOD_BINS / (number of frequency bins)
_PEAK_HIGH = 0.5  # a peak: the series rises above mean + 0.5 std ...
_MAX_CHANNELS = 8  # more channels than this: one summary instead of a phrase per channel


def _as_array(x, where: str, dims: tuple[int, ...]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{where}: expected a numeric array or tensor, got "
                        f"{type(x).__name__}") from e
    if a.ndim not in dims:
        shapes = {1: "(T,)", 2: "(C, T)", 3: "(n, C, T)"}
        raise TextError(f"{where}: expected {' or '.join(shapes[d] for d in dims)}, got shape "
                        f"{a.shape}")
    if a.shape[-1] < 2:
        raise TextError(f"{where}: series of {a.shape[-1]} point(s) (shape {a.shape}); a "
                        "description needs at least 2")
    if not np.isfinite(a).all():
        raise TextError(f"{where}: the series contains NaN or Inf; fill or drop them first")
    return a


def _fmt(v: float) -> str:
    if abs(v) < 1e-12:
        return "0"
    if abs(v) >= 10:
        return f"{v:.0f}"
    s = f"{v:.2g}"
    return "0" if s in ("-0", "0") else s


def _amplitude_word(ratio: float) -> str:
    for bound, word in _AMPLITUDE_WORDS:
        if ratio < bound:
            return word
    return _TOP_AMPLITUDE


def _count_peaks(s: np.ndarray, mean: float, std: float) -> int:
    """Excursions above ``mean + 0.5 std``, a new one counted only after the series falls back
    below the mean (hysteresis, so noise on a crest is one peak)."""
    state = np.where(s > mean + _PEAK_HIGH * std, 1, np.where(s < mean, -1, 0))
    z = state[state != 0]
    if z.size == 0:
        return 0
    return int(z[0] == 1) + int(((z[1:] == 1) & (z[:-1] == -1)).sum())


def _channel_facts(s: np.ndarray, scale: float) -> dict:
    t = s.shape[0]
    mean, std = float(s.mean()), float(s.std())
    if std <= 1e-12 * max(1.0, abs(mean)):
        return {"constant": True, "mean": mean}
    idx = np.arange(t, dtype=np.float64)
    centred = idx - idx.mean()
    slope = float((centred * (s - mean)).sum() / (centred * centred).sum())
    intercept = mean - slope * idx.mean()
    change = slope * (t - 1)
    trend = "flat" if abs(change) <= _TREND_RATIO * std else ("rising" if change > 0 else
                                                               "falling")
    period = None
    nbins = t // 2
    if t >= 8:
        power = np.abs(np.fft.rfft(s - (slope * idx + intercept))) ** 2
        power = power[1:nbins + 1]
        total = float(power.sum())
        if total > 0:
            k = int(np.argmax(power)) + 1  # cycles over the series
            band = float(power[max(k - 2, 0):k + 1].sum())
            if k >= 2 and band / total >= max(_PERIOD_SHARE, _PERIOD_BINS / nbins):
                period = (t / k, k)
    return {"constant": False, "mean": mean, "std": std,
            "amplitude": _amplitude_word(std / scale if scale > 0 else float("inf")),
            "trend": trend, "period": period, "peaks": _count_peaks(s, mean, std)}


def _period_words(period) -> str:
    if period is None:
        return "no clear period"
    p, k = period
    return f"period ~{_fmt(p)} points ({k} cycles)"


def _channel_phrase(name: str, f: dict, shared: set[str]) -> str:
    if f["constant"]:
        return f"{name}: constant at {_fmt(f['mean'])}"
    words = [f"mean {_fmt(f['mean'])}", f"{f['amplitude']} amplitude"]
    if "trend" not in shared:
        words.append(f["trend"])
    if "period" not in shared:
        words.append(_period_words(f["period"]))
    words.append(f"{f['peaks']} peak{'' if f['peaks'] == 1 else 's'}")
    return f"{name}: " + ", ".join(words)


def _count_words(values, order) -> str:
    counts = {w: 0 for w in order}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{n} {w}" for w, n in counts.items() if n)


def _summary(names: list[str], facts: list[dict]) -> str:
    live = [(n, f) for n, f in zip(names, facts) if not f["constant"]]
    means = [f["mean"] for f in facts]
    parts = [f"mean from {_fmt(min(means))} to {_fmt(max(means))}"]
    if len(live) < len(facts):
        parts.append(f"{len(facts) - len(live)} constant")
    if live:
        amp_order = [w for _, w in _AMPLITUDE_WORDS] + [_TOP_AMPLITUDE]
        parts.append("amplitude " + _count_words([f["amplitude"] for _, f in live],
                                                 amp_order[::-1]))
        parts.append("trend " + _count_words([f["trend"] for _, f in live],
                                             ["rising", "falling", "flat"]))
        periodic = [f["period"][0] for _, f in live if f["period"] is not None]
        if periodic:
            parts.append(f"{len(periodic)} periodic (median period ~{_fmt(np.median(periodic))} "
                         "points)")
        else:
            parts.append("no clear period")
        top = sorted(live, key=lambda nf: -nf[1]["std"])[:2]
        parts.append("most active " + " and ".join(n for n, _ in top))
    return "; ".join(parts)


def _channel_names(channel_names, c: int, where: str) -> list[str]:
    if channel_names is None:
        return ["series"] if c == 1 else [f"channel {i + 1}" for i in range(c)]
    if isinstance(channel_names, str) or len(channel_names) != c:
        raise TextError(f"{where}: channel_names must be a list of {c} names (one per channel), "
                        f"got {channel_names!r}")
    return [str(n) for n in channel_names]


def _scales(scale, c: int, where: str) -> np.ndarray:
    if scale is None:
        return np.ones(c)
    s = np.asarray(scale.detach().cpu().numpy() if isinstance(scale, torch.Tensor) else scale,
                   dtype=np.float64).reshape(-1)
    if s.size == 1:
        s = np.full(c, float(s[0]))
    if s.size != c or not np.isfinite(s).all() or (s <= 0).any():
        raise TextError(f"{where}: scale must be a positive number or {c} positive numbers (one "
                        f"per channel, e.g. amplitude_scale(x_train)), got {scale!r}")
    return s


def _describe(a: np.ndarray, names: list[str], scales: np.ndarray, max_channels: int) -> str:
    c, t = a.shape
    facts = [_channel_facts(a[i], float(scales[i])) for i in range(c)]
    head = f"{c} channel{'s' if c > 1 else ''} of {t} points"
    if c > max_channels:
        return f"{head}: {_summary(names, facts)}."
    # A trend or period common to every non-constant channel is said once, up front.
    live = [f for f in facts if not f["constant"]]
    shared: set[str] = set()
    if len(live) >= 2:
        if len({f["trend"] for f in live}) == 1:
            shared.add("trend")
            head += f", all {live[0]['trend']}"
        if len({f["period"] for f in live}) == 1:
            shared.add("period")
            head += f", all {_period_words(live[0]['period'])}"
    return f"{head}. " + "; ".join(_channel_phrase(n, f, shared)
                                   for n, f in zip(names, facts)) + "."


def amplitude_scale(x) -> np.ndarray:
    """The reference scale of every channel for the amplitude words: the median over samples of
    each sample's standard deviation (robust to a few very active samples).

    ``x``: ``(n, C, T)`` or ``(n, T)``. Returns float64 ``(C,)``; a channel whose median is 0
    (mostly constant) falls back to its mean standard deviation, then to 1.
    """
    a = _as_array(x, "amplitude_scale", (2, 3))
    if a.ndim == 2:
        a = a[:, None, :]
    std = a.std(axis=2)
    scale = np.median(std, axis=0)
    fallback = np.where(std.mean(axis=0) > 0, std.mean(axis=0), 1.0)
    return np.where(scale > 0, scale, fallback)


def describe_series(x, channel_names=None, scale=None, max_channels: int = _MAX_CHANNELS) -> str:
    """One sentence describing a series from its values (deterministic, rule-based).

    ``x``: ``(C, T)`` or ``(T,)`` array or tensor, at least 2 points. Per channel (named by
    ``channel_names``, default ``"channel 1"``, ... or ``"series"`` for one channel):

    - **level**: the mean, as a number (2 significant digits);
    - **amplitude**: the standard deviation relative to ``scale`` (per channel; default 1, i.e.
      natural units; :func:`describe_batch` and :func:`texts_for` use the training data's
      :func:`amplitude_scale`): ratio < 0.25 "very low", < 0.67 "low", < 1.5 "moderate",
      < 4 "high", else "very high"; a series with zero spread is "constant at <mean>";
    - **trend**: from a least-squares line: its change over the series against the std;
      within +-1 std "flat", else "rising" / "falling";
    - **dominant period**: the FFT peak of the linearly detrended series, reported as
      "period ~P points (K cycles)" when it has at least 2 cycles and the peak with its two
      neighbouring bins holds at least max(30%, 6 / number of bins) of the power (so short or
      noisy series say "no clear period"; series under 8 points always do);
    - **peaks**: the number of times the series rises above mean + 0.5 std, counting a new one
      only after it has fallen back below the mean.

    A trend or period shared by every non-constant channel (two or more) is said once, up
    front ("6 channels of 512 points, all flat, all period ~43 points (12 cycles). ...").
    With more than ``max_channels`` channels the channels are summarised (range of means,
    counts of amplitude and trend words, how many are periodic, the two most active).
    """
    where = "describe_series"
    a = _as_array(x, where, (1, 2))
    if a.ndim == 1:
        a = a[None]
    names = _channel_names(channel_names, a.shape[0], where)
    max_channels = positive_int(max_channels, "max_channels", where)
    return _describe(a, names, _scales(scale, a.shape[0], where), max_channels)


def describe_batch(x, channel_names=None, scale="auto",
                   max_channels: int = _MAX_CHANNELS) -> list[str]:
    """:func:`describe_series` of every sample of ``x`` (``(n, C, T)`` or ``(n, T)``).

    ``scale``: ``"auto"`` (the batch's own :func:`amplitude_scale`), ``None`` (1), or a number
    or ``(C,)`` values. To describe train and test alike, pass the training data's
    ``amplitude_scale(x_train)`` (what :func:`texts_for` does).
    """
    where = "describe_batch"
    a = _as_array(x, where, (2, 3))
    if a.ndim == 2:
        a = a[:, None, :]
    if a.shape[0] == 0:
        raise TextError(f"{where}: the batch is empty (shape {a.shape})")
    names = _channel_names(channel_names, a.shape[1], where)
    scales = amplitude_scale(a) if isinstance(scale, str) and scale == "auto" else _scales(
        scale, a.shape[1], where)
    max_channels = positive_int(max_channels, "max_channels", where)
    return [_describe(s, names, scales, max_channels) for s in a]
