"""Distinct shapes of a codebook: every code decoded into its shape, near-duplicates merged.

Nothing in VQShape's training makes codes specialize, so many codes decode to nearly the same
shape. :func:`distinct_codes` decodes every code with the model's shape decoder, z-scores each
shape, and merges shapes closer than ``threshold`` by average-linkage agglomerative clustering:
two groups merge while the *mean* distance between their members stays below the threshold, so a
group never chains dissimilar shapes together through intermediates.

Distances (``metric``):

- ``"correlation"`` (default): ``1 - r``, with ``r`` the Pearson correlation of two shapes (in
  ``[0, 2]``). Offset and scale do not count, as in the model, where ``mu`` and ``sigma`` carry
  them. The default threshold 0.1 merges shapes that correlate at ``r >= 0.9`` on average;
  for z-scored shapes this is an RMS difference below ``sqrt(2 * 0.1) ~ 0.45``.
- ``"rms"``: root-mean-square difference of the z-scored shapes (in ``[0, 2]``).
- any callable ``(a, b) -> float`` on two z-scored shapes (1-D float64 arrays).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

DEFAULT_THRESHOLD = 0.1
METRICS = ("correlation", "rms")
SAME = 1e-9


@dataclass
class ShapeGroup:
    """Codes that decode to one distinct shape.

    Attributes:
        representative: the member used most (ties: the one closest on average to the others).
        members: every member code, most used first.
        shape: the representative's z-scored shape, ``(len_s,)``.
        tokens: tokens assigned to any member in ``usage`` (0 when no usage was given).
        share: ``tokens`` as a share of all tokens (0 when no usage was given).
    """

    representative: int
    members: list[int]
    shape: np.ndarray = field(repr=False)
    tokens: int = 0
    share: float = 0.0

    def as_dict(self) -> dict:
        return {"representative": self.representative, "members": self.members,
                "tokens": self.tokens, "share": self.share}


@dataclass
class DistinctShapes:
    """The result of :func:`distinct_codes`: groups sorted by usage (most tokens first; without
    usage, largest group first), and ``group_of[k]``, the index in ``groups`` of code ``k``."""

    groups: list[ShapeGroup]
    group_of: np.ndarray
    num_codes: int
    used: int | None
    threshold: float
    metric: str

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def used_groups(self) -> list[ShapeGroup]:
        """Groups with at least one token (all groups when no usage was given)."""
        if self.used is None:
            return list(self.groups)
        return [g for g in self.groups if g.tokens > 0]

    def summary(self) -> str:
        """``"K codes, U used, M distinct shapes"``; M counts the shapes among the used codes."""
        if self.used is None:
            return f"{self.num_codes} codes, {len(self.groups)} distinct shapes"
        return (f"{self.num_codes} codes, {self.used} used, {len(self.used_groups)} distinct "
                f"shapes")

    def as_dict(self) -> dict:
        return {
            "num_codes": self.num_codes, "used": self.used,
            "distinct": len(self.used_groups), "distinct_all_codes": len(self.groups),
            "threshold": self.threshold, "metric": self.metric, "summary": self.summary(),
            "groups": [g.as_dict() for g in self.groups],
        }


@torch.no_grad()
def decode_codes(model) -> torch.Tensor:
    """Every code of ``model``'s codebook decoded into its (standardized) shape, ``(K, len_s)``
    float32 on the CPU."""
    if not hasattr(model, "codebook") or not hasattr(model, "shape_decoder"):
        raise TypeError(f"decode_codes: expected a VQShape model, got {type(model).__name__}")
    codes = model.codebook.embedding.weight.detach()
    return model.shape_decoder(codes[None]).squeeze(0).float().cpu()


def code_counts(usage, num_codes: int) -> np.ndarray:
    """Per-code token counts ``(K,)`` from counts ``(K,)`` or per-sample histograms ``(n, K)``
    (or ``(n, C*K)``, channels side by side)."""
    counts = usage.detach().cpu().double().numpy() if isinstance(usage, torch.Tensor) \
        else np.asarray(usage, dtype=np.float64)
    if counts.ndim == 2 and counts.shape[1] % num_codes == 0:
        counts = counts.reshape(counts.shape[0], -1, num_codes).sum((0, 1))
    if counts.shape != (num_codes,):
        raise ValueError(f"distinct_codes: usage must be ({num_codes},) code counts or "
                         f"(n, {num_codes}) histograms, got {counts.shape}")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("distinct_codes: usage must hold finite counts >= 0")
    return counts


def zscore(shapes: np.ndarray) -> np.ndarray:
    """Each row standardized to mean 0 and (population) std 1; constant rows become 0."""
    shapes = shapes - shapes.mean(1, keepdims=True)
    std = shapes.std(1, keepdims=True)
    return np.divide(shapes, std, out=np.zeros_like(shapes), where=std > 1e-12)


def pairwise(z: np.ndarray, metric: str | Callable) -> np.ndarray:
    """Condensed distance vector (scipy's layout) between z-scored rows."""
    from scipy.spatial.distance import pdist

    if callable(metric):
        return pdist(z, metric)
    if metric not in METRICS:
        raise ValueError(f"distinct_codes: metric must be one of {METRICS} or a callable "
                         f"(a, b) -> float, got {metric!r}")
    r = np.clip((z @ z.T) / z.shape[1], -1.0, 1.0)  # Pearson r of z-scored rows
    if metric == "correlation":
        full = 1.0 - r
    else:  # mean((a - b)^2) = mean(a^2) + mean(b^2) - 2 mean(ab)
        sq = (z ** 2).mean(1)
        full = np.sqrt(np.clip(sq[:, None] + sq[None] - 2 * r, 0, None))
    iu = np.triu_indices(len(z), k=1)
    return full[iu]


def distinct_codes(model, usage=None, threshold: float = DEFAULT_THRESHOLD,
                   metric: str | Callable = "correlation") -> DistinctShapes:
    """Group ``model``'s codes into distinct shapes (see the module docstring).

    Args:
        model: a VQShape model, or its decoded shapes ``(K, len_s)`` directly.
        usage: per-code token counts ``(K,)`` or histograms ``(n, K)`` / ``(n, C*K)``, e.g. the
            ``histogram`` of ``model(x, mode="tokenize")``; sets each group's token share and
            the order. None: groups ordered by size.
        threshold: the largest average distance at which two groups merge (0 merges only
            identical shapes).
        metric: ``"correlation"`` (1 - Pearson r), ``"rms"``, or a callable on two shapes.
    """
    if isinstance(model, (torch.Tensor, np.ndarray)):
        shapes = torch.as_tensor(model).detach().cpu().double().numpy()
    else:
        shapes = decode_codes(model).double().numpy()
    if shapes.ndim != 2 or shapes.shape[0] < 1:
        raise ValueError(f"distinct_codes: shapes must be (K, len_s) with K >= 1, got "
                         f"{shapes.shape}")
    if not np.isfinite(shapes).all():
        raise ValueError("distinct_codes: decoded shapes hold NaN/Inf; is the model trained "
                         "without diverging?")
    if not (isinstance(threshold, (int, float)) and threshold >= 0):
        raise ValueError(f"distinct_codes: threshold must be a number >= 0, got {threshold!r}")
    K = shapes.shape[0]
    counts = None if usage is None else code_counts(usage, K)
    z = zscore(shapes)
    labels = _cluster(z, metric, float(threshold))
    total = 0.0 if counts is None else counts.sum()
    groups = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        groups.append(_group(members, z, counts, total, metric))
    if counts is None:
        groups.sort(key=lambda g: (-len(g.members), g.representative))
    else:
        groups.sort(key=lambda g: (-g.tokens, -len(g.members), g.representative))
    group_of = np.empty(K, dtype=np.int64)
    for i, g in enumerate(groups):
        group_of[g.members] = i
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "custom")
    used = None if counts is None else int((counts > 0).sum())
    return DistinctShapes(groups, group_of, K, used, float(threshold), name)


def _cluster(z: np.ndarray, metric, threshold: float) -> np.ndarray:
    if len(z) == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    d = pairwise(z, metric)
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError("distinct_codes: the metric gave a negative or non-finite distance")
    tree = linkage(d, method="average")
    # fcluster merges at distance <= t; "below the threshold" is strict, and distances under
    # SAME (float rounding of the z-scoring) count as 0, so threshold 0 merges identical shapes.
    return fcluster(tree, t=max(np.nextafter(threshold, -np.inf), SAME), criterion="distance")


def _group(members: np.ndarray, z, counts, total, metric) -> ShapeGroup:
    tokens = np.zeros(len(members)) if counts is None else counts[members]
    if len(members) > 1:
        sub = np.zeros((len(members), len(members)))
        sub[np.triu_indices(len(members), k=1)] = pairwise(z[members], metric)
        closeness = -(sub + sub.T).mean(1)
    else:
        closeness = np.zeros(1)
    order = np.lexsort((members, -closeness, -tokens))  # most used, then most central
    members = members[order]
    n = float(tokens.sum())
    return ShapeGroup(
        representative=int(members[0]), members=[int(m) for m in members],
        shape=z[members[0]].astype(np.float32), tokens=int(round(n)),
        share=n / total if total > 0 else 0.0,
    )


def describe_shape(shape) -> str:
    """A few words for a shape (any scale): "rising ramp", "peak late", "dip then peak",
    "oscillation", ..., from its trend and its most prominent extrema."""
    z = zscore(np.asarray(shape, dtype=np.float64)[None])[0]
    S = len(z)
    if S < 3 or not z.any():
        return "flat"
    grid = np.linspace(-1, 1, S)
    trend = float(np.corrcoef(grid, z)[0, 1])
    if abs(trend) > 0.9:
        return "rising ramp" if trend > 0 else "falling ramp"
    smooth = np.convolve(z, np.ones(max(1, S // 16)) / max(1, S // 16), mode="same")
    turns = int((np.diff(np.sign(np.diff(smooth))) != 0).sum())
    if turns >= 5:
        return "oscillation"
    where = ("early", "middle", "late")
    hi, lo = int(np.argmax(z)), int(np.argmin(z))
    interior = [(i, name) for i, name in ((hi, "peak"), (lo, "dip"))
                if S // 10 <= i < S - S // 10]
    if len(interior) == 2:
        first, second = sorted(interior)
        return f"{first[1]} then {second[1]}"
    if interior:
        i, name = interior[0]
        return f"{name} {where[min(2, 3 * i // S)]}"
    return "rising" if trend > 0 else "falling"


__all__ = ["DEFAULT_THRESHOLD", "METRICS", "DistinctShapes", "ShapeGroup", "code_counts",
           "decode_codes", "describe_shape", "distinct_codes", "pairwise", "zscore"]
