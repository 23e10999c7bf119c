"""Pictures of a trained VQShape: loss curves, code usage, the codebook decoded into shapes, and
series with their reconstruction and shape tokens. Every function writes a PNG atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vqfast.fileio import atomic_write


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path) -> Path:
    """Write ``fig`` to ``path`` atomically and close it."""
    plt = pyplot()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return Path(path)


def loss_curves(history: list[dict], path) -> Path:
    """Total and per-term training losses against the optimizer step, the learning rate, and the
    token metrics (x and shape R²) when the history holds them."""
    plt = pyplot()
    steps = [h["step"] for h in history]
    has_lr = all("lr" in h for h in history)
    r2 = {key: [(h.get("tokens") or {}).get(key) for h in history] for key in ("x_r2", "shape_r2")}
    has_r2 = any(v is not None for values in r2.values() for v in values)
    panels = 2 + has_lr + has_r2
    rows = 1 if panels == 2 else 2
    fig, grid = plt.subplots(rows, 2, figsize=(11, 3.6 * rows), layout="constrained",
                             squeeze=False)
    axes = grid.flat[:panels]
    for ax in grid.flat[panels:]:
        ax.axis("off")
    axes[0].plot(steps, [h["loss"] for h in history], color="black", label="total")
    axes[0].set_title("training objective")
    axes[0].set_ylabel("loss")
    for key, label in (("ts_loss", "reconstruction"), ("vq_loss", "VQ"),
                       ("shape_loss", "shape"), ("dist_loss", "disentanglement")):
        axes[1].plot(steps, [h[key] for h in history], label=label)
    axes[1].set_title("terms (unweighted)")
    axes[1].set_yscale("symlog", linthresh=1e-2)
    axes[1].set_ylabel("loss")
    rest = list(axes[2:])
    if has_lr:
        ax = rest.pop(0)
        ax.plot(steps, [h["lr"] for h in history], color="tab:green", label="learning rate")
        ax.set_title("learning rate")
        ax.set_ylabel("lr")
    if has_r2:
        ax = rest.pop(0)
        for key, label in (("x_r2", "series (x) R²"), ("shape_r2", "shape R²")):
            ax.plot(steps, [np.nan if v is None else v for v in r2[key]], marker=".",
                    label=label)
        ax.axhline(0, color="0.6", lw=0.8, ls="--")
        ax.set_title("reconstruction R² (training batches)")
        ax.set_ylabel("R²")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_png(fig, path)


def code_usage(histograms: torch.Tensor, path, title: str = "") -> Path:
    """How often each code was chosen, codes sorted by use."""
    plt = pyplot()
    counts = histograms.sum(0).double().numpy()
    order = np.argsort(-counts)
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.bar(np.arange(len(counts)), counts[order] / max(counts.sum(), 1), width=1.0)
    ax.set_xlabel("codes, most used first")
    ax.set_ylabel("share of tokens")
    ax.set_title(title or "code usage")
    ax.grid(alpha=0.3, axis="y")
    return save_png(fig, path)


def token_attributes(sigma: torch.Tensor, l: torch.Tensor, path, sigma_min: float,
                     title: str = "") -> Path:
    """Histograms of every token's scale ``sigma`` (log axis, the degenerate threshold
    ``sigma_min`` marked) and window length ``l``, medians marked."""
    plt = pyplot()
    sigma = sigma.flatten().double().numpy()
    l = l.flatten().double().numpy()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    positive = sigma[sigma > 0]
    low = min(positive.min() if positive.size else sigma_min, sigma_min) / 2
    high = max(positive.max() if positive.size else 1.0, 1.0) * 1.5
    a.hist(np.clip(sigma, low, None), bins=np.geomspace(low, high, 50), color="tab:blue")
    a.set_xscale("log")
    a.axvline(sigma_min, color="tab:red", ls="--", label=f"degenerate below {sigma_min:g}")
    a.axvline(np.median(sigma), color="black", label=f"median {np.median(sigma):.3g}")
    a.set_xlabel("sigma (scale of the token, in series std units)")
    a.set_title("token scale sigma")
    b.hist(l, bins=np.linspace(0, 1, 41), color="tab:orange")
    b.axvline(np.median(l), color="black", label=f"median {np.median(l):.3g}")
    b.set_xlim(0, 1)
    b.set_xlabel("l (window length, share of the series)")
    b.set_title("token length l")
    for ax in (a, b):
        ax.set_ylabel("tokens")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, path)


@torch.no_grad()
def reconstructions(model, x: torch.Tensor, path, labels=None, max_channels: int = 8) -> Path:
    """Series ``x (n, C, T)`` (grey), their reconstruction (blue) and every shape token drawn
    over the stretch ``[t, t + l]`` it describes: one row per series, one column per channel
    (univariate series three to a row); at most ``max_channels`` channels, said in the title."""
    plt = pyplot()
    n, C, T = x.shape
    shown_c = min(C, max_channels)
    _, out = model(x[:, :shown_c].reshape(n * shown_c, T).to(model.device), mode="tokenize")
    panels = [(i, c) for i in range(n) for c in range(shown_c)]
    cols = min(3, n) if shown_c == 1 else shown_c
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.4, rows * 2.4 + 0.6), squeeze=False,
                             sharex=True, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    grid = np.linspace(0, 1, T)
    for row, (ax, (i, c)) in enumerate(zip(axes.flat, panels)):
        ax.axis("on")
        ax.plot(grid, x[i, c].numpy(), color="gray", lw=3, alpha=0.35, label="series")
        ax.plot(grid, out["x_pred"][row].float().cpu().numpy(), color="tab:blue", lw=1,
                label="reconstruction")
        t = out["t_pred"][row, :, 0].float().cpu().numpy()
        l = out["l_pred"][row, :, 0].float().cpu().numpy()
        s = out["s_pred"][row].float().cpu().numpy()
        for j in range(len(t)):
            ax.plot(np.linspace(t[j], min(t[j] + l[j], 1.0), s.shape[-1]), s[j], lw=0.9,
                    color=plt.cm.tab10((j + 2) % 10), label="shape tokens" if j == 0 else None)
        name = str(labels[i]) if labels is not None else f"series {i}"
        ax.set_title(f"{name}, channel {c}" if C > 1 else name, fontsize=8)
        ax.tick_params(labelsize=7)
        if c == 0 or shown_c == 1:
            ax.set_ylabel("value", fontsize=8)
        if row >= len(panels) - cols:
            ax.set_xlabel("time (share of the series)", fontsize=8)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=3, fontsize=8)
    if shown_c < C:
        fig.suptitle(f"channels 0-{shown_c - 1} of {C} shown", fontsize=9)
    return save_png(fig, path)
