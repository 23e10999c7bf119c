"""Paired comparisons over seeds: the mean difference, a bootstrap confidence interval and two
paired tests, for "is this variant better than plain VQShape on the same seed and data order?"."""

from __future__ import annotations

import math

import numpy as np


def paired_tests(diffs) -> dict:
    """Two-sided Wilcoxon signed-rank and sign-test p-values of paired differences (zeros
    dropped, as both tests do; p = 1 when every difference is zero)."""
    from scipy.stats import binomtest, wilcoxon

    d = np.asarray(diffs, dtype=float)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return {"wilcoxon_p": 1.0, "sign_p": 1.0, "wins": wins, "losses": losses,
                "ties": int(d.size)}
    w = float(wilcoxon(nonzero).pvalue)
    s = float(binomtest(wins, wins + losses, 0.5).pvalue)
    return {"wilcoxon_p": w, "sign_p": s, "wins": wins, "losses": losses,
            "ties": int(d.size - wins - losses)}


def bootstrap_ci(groups, n_boot: int = 10_000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval of the mean over groups of each group's mean difference.

    ``groups``: one array of paired differences per group (a dataset's seeds); resampling is
    within each group (stratified), so a pooled interval weighs every dataset equally.
    """
    rng = np.random.default_rng(seed)
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return math.nan, math.nan
    means = np.zeros(n_boot)
    for g in groups:
        idx = rng.integers(0, len(g), size=(n_boot, len(g)))
        means += g[idx].mean(axis=1)
    means /= len(groups)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def compare(groups: dict, n_boot: int = 10_000, seed: int = 0) -> dict:
    """``groups``: ``{dataset: [(variant, plain), ...]}`` paired accuracies (same seed). Returns
    per dataset and ``"pooled"``: ``n``, ``mean_diff``, ``ci`` (95 %), ``wilcoxon_p``,
    ``sign_p``, wins/losses/ties, ``ci_excludes_zero`` and ``distinguishable``: the interval
    excludes 0 and, per dataset, every one of at least 5 seeds moves the same way (the strongest
    evidence 5 pairs can give: exact two-sided Wilcoxon and sign p = 0.0625), pooled, Wilcoxon
    p < 0.05."""
    out = {}
    diffs = {k: np.array([a - b for a, b in pairs], dtype=float) for k, pairs in groups.items()}
    for key, d in [*diffs.items(), ("pooled", None)]:
        parts = list(diffs.values()) if d is None else [d]
        if not parts or not sum(len(p) for p in parts):
            continue
        flat = np.concatenate(parts)
        lo, hi = bootstrap_ci(parts, n_boot=n_boot, seed=seed)
        tests = paired_tests(flat)
        excludes = bool(lo > 0 or hi < 0)
        if d is None:
            distinguishable = excludes and tests["wilcoxon_p"] < 0.05
        else:
            distinguishable = excludes and flat.size >= 5 and flat.size in (tests["wins"],
                                                                             tests["losses"])
        out[key] = {"n": int(flat.size), "mean_diff": float(np.mean([p.mean() for p in parts])),
                    "ci": [lo, hi], **tests, "ci_excludes_zero": excludes,
                    "distinguishable": bool(distinguishable)}
    return out


def mean_ci(values, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` with its 95 % percentile-bootstrap
    interval."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    lo, hi = bootstrap_ci([v], n_boot=n_boot, seed=seed)
    return float(v.mean()), lo, hi


__all__ = ["bootstrap_ci", "compare", "mean_ci", "paired_tests"]
