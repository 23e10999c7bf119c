"""Figures of the explanations; every function writes one PNG atomically and returns its path."""

from __future__ import annotations

import numpy as np

from vqfast.evaluation.plots import pyplot, save_png
from vqfast.explain.shapes import DistinctShapes


def shape_gallery(distinct: DistinctShapes, path, max_shapes: int = 48, cols: int = 8,
                  title: str = ""):
    """The distinct shapes, most used first: each panel draws a group's representative shape,
    titled with its code, how many codes it merges and its share of tokens. Unused groups are
    left out when usage was given (the title says how many)."""
    plt = pyplot()
    groups = distinct.used_groups
    shown = groups[:max_shapes]
    if not shown:
        raise ValueError("shape_gallery: no shape to draw (no code was used)")
    cols = max(1, min(cols, len(shown)))
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.75, rows * 1.45 + 0.7),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, g in zip(axes.flat, shown):
        ax.axis("on")
        ax.plot(np.linspace(0, 1, len(g.shape)), g.shape, color="tab:blue", lw=1.6)
        ax.axhline(0, color="0.8", lw=0.6, zorder=0)
        merged = f", {len(g.members)} codes" if len(g.members) > 1 else ""
        share = f"\n{100 * g.share:.1f}% of tokens" if distinct.used is not None else ""
        ax.set_title(f"code {g.representative}{merged}{share}", fontsize=7.5)
        ax.set_xticks([])
        ax.set_yticks([])
    head = title or distinct.summary()
    more = f"; the {len(shown)} most used shown" if len(groups) > len(shown) else ""
    fig.suptitle(f"{head}{more}\n(z-scored shapes; codes closer than {distinct.threshold:g} "
                 f"in {distinct.metric} distance merged)", fontsize=9)
    return save_png(fig, path)


__all__ = ["shape_gallery"]
