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





def class_attribution_figure(attributions, shapes, path, channels: int = 1,
                             max_classes: int = 12, title: str = ""):
    """One row per class: its top codes drawn as shapes (z-scored, ``shapes (K, len_s)``),
    each titled with its code (and channel), its mean contribution to the class and the mean
    number of its tokens in the class's samples."""
    plt = pyplot()
    rows = attributions[:max_classes]
    cols = max(1, max((len(a.top) for a in rows), default=1))
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 1.9 + 0.8, len(rows) * 1.55 + 0.8),
                             squeeze=False, layout="constrained")
    peak = max((c.contribution for a in rows for c in a.top), default=1.0) or 1.0
    cmap = plt.get_cmap("Reds")
    for r, a in enumerate(rows):
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
        axes[r, 0].set_ylabel(f"class {a.name}\n({a.samples} samples)", fontsize=8, rotation=0,
                              ha="right", va="center", labelpad=6)
        if not a.top:
            axes[r, 0].text(0.5, 0.5, "no code pushes\ntoward this class", ha="center",
                            va="center", fontsize=7, transform=axes[r, 0].transAxes)
        for ax, c in zip(axes[r], a.top):
            shape = shapes[c.code]
            ax.plot(np.linspace(0, 1, len(shape)), shape, lw=1.8,
                    color=cmap(0.35 + 0.65 * c.contribution / peak))
            for side in ax.spines.values():
                side.set_visible(True)
                side.set_color("0.8")
            where = f"ch {c.channel} · " if channels > 1 else ""
            ax.set_title(f"{where}code {c.code}: {c.contribution:+.2f}\n"
                         f"{c.mean_count:.1f} tokens/sample", fontsize=7)
    fig.suptitle(title or "Codes that push a series toward each class (histogram probe): "
                 "mean contribution to the class's centred logit", fontsize=9)
    return save_png(fig, path)


def class_histograms_figure(attributions, path, max_codes: int = 40, title: str = ""):
    """Class-mean code counts as a heat map: classes x codes (the most used ``max_codes``
    (channel, code) pairs over all classes, most used first)."""
    plt = pyplot()
    means = np.stack([a.mean_histogram.flatten().numpy() for a in attributions])  # (classes, F)
    channels, K = attributions[0].mean_histogram.shape
    order = np.argsort(-means.sum(0), kind="stable")
    order = order[means.sum(0)[order] > 0][:max_codes]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.28 * len(order) + 2.2),
                                    0.42 * len(attributions) + 1.6), layout="constrained")
    image = ax.imshow(means[:, order], aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(attributions)), [f"class {a.name}" for a in attributions],
                  fontsize=8)
    labels = [f"{f // K}:{f % K}" if channels > 1 else str(f % K) for f in order]
    ax.set_xticks(range(len(order)), labels, fontsize=6.5, rotation=90)
    ax.set_xlabel("channel:code" if channels > 1 else "code (most used first)", fontsize=8)
    fig.colorbar(image, ax=ax, label="mean tokens per sample", shrink=0.9)
    ax.set_title(title or "Class-mean code histograms", fontsize=9)
    return save_png(fig, path)


def series_figure(explanation, path, max_channels: int = 6):
    """The series (grey) of each channel with every token's decoded shape drawn over its span
    ``[t, t + l]`` in the series' scale, coloured by its contribution to the predicted class
    (red toward it, blue against), and the explanation's text below."""
    import textwrap

    from matplotlib.colors import TwoSlopeNorm

    plt = pyplot()
    e = explanation
    C, T = e.series.shape
    shown = min(C, max_channels)
    fig, axes = plt.subplots(shown, 1, figsize=(9, 2.3 * shown + 1.6), squeeze=False,
                             sharex=True, layout="constrained")
    bound = max((abs(t.effect) for t in e.tokens), default=1.0) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    cmap = plt.get_cmap("coolwarm")
    grid = np.linspace(0, 1, T)
    for ch in range(shown):
        ax = axes[ch, 0]
        ax.plot(grid, e.series[ch], color="0.55", lw=3, alpha=0.45, label="series")
        toks = sorted((t for t in e.tokens if t.channel == ch), key=lambda t: abs(t.effect))
        for tok in toks:  # strongest drawn last, on top
            ax.plot(np.linspace(tok.t, tok.end, len(tok.shape)), tok.shape, lw=1.4,
                    color=cmap(norm(tok.effect)))
        ax.set_ylabel(f"channel {ch}" if C > 1 else "value", fontsize=8)
        ax.grid(alpha=0.25)
        ax.tick_params(labelsize=7)
    axes[0, 0].plot([], [], color=cmap(norm(bound)), lw=1.4, label="token shape (toward)")
    axes[0, 0].plot([], [], color=cmap(norm(-bound)), lw=1.4, label="token shape (against)")
    axes[0, 0].legend(fontsize=7, loc="upper right", ncol=3)
    axes[-1, 0].set_xlabel("relative time (a token covers [t, t + l])", fontsize=8)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes[:, 0].tolist(), shrink=0.8,
                 label=f"one token's contribution to '{e.class_names[e.predicted]}'")
    truth = "" if e.label is None else f" · true: {e.class_names[e.label]}"
    sample = f"sample {e.sample} · " if e.sample is not None else ""
    more = f" (first {shown} of {C} channels)" if C > shown else ""
    axes[0, 0].set_title(f"{sample}predicted: {e.class_names[e.predicted]} "
                         f"(p = {e.probability:.2f}){truth}{more}", fontsize=9)
    fig.text(0.01, -0.01, "\n".join(textwrap.wrap(e.text, 130)[:8]), fontsize=7, va="top",
             ha="left")
    return save_png(fig, path)


def faithfulness_figure(result, path, title: str = ""):
    """Mean probability of the predicted class as tokens are deleted: attributed order against
    random orders (band: spread over the draws)."""
    plt = pyplot()
    k = np.arange(result.steps + 1)
    rnd, spread = np.array(result.random_curve), np.array(result.random_std)
    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    ax.plot(k, result.attributed_curve, color="tab:red", lw=2,
            label=f"attributed order (AOPC {result.attributed_aopc:.3f})")
    ax.plot(k, rnd, color="tab:gray", lw=2,
            label=f"random order, {result.draws} draws (AOPC {result.random_aopc:.3f})")
    ax.fill_between(k, rnd - spread, rnd + spread, color="tab:gray", alpha=0.25)
    ax.set_xlabel(f"tokens removed (of {result.tokens_per_sample} per sample)")
    ax.set_ylabel("probability of the predicted class")
    ratio = "n/a" if result.ratio is None else f"{result.ratio:.2f}"
    ax.set_title(title or f"Deletion test on {result.samples} samples: AOPC ratio {ratio}",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


__all__ = ["class_attribution_figure", "class_histograms_figure", "faithfulness_figure",
           "series_figure", "shape_gallery"]
