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
    """Total and per-term training losses against the optimizer step."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    steps = [h["step"] for h in history]
    axes[0].plot(steps, [h["loss"] for h in history], color="black", label="total")
    axes[0].set_title("training objective")
    for key, label in (("ts_loss", "reconstruction"), ("vq_loss", "VQ"),
                       ("shape_loss", "shape"), ("dist_loss", "disentanglement")):
        axes[1].plot(steps, [h[key] for h in history], label=label)
    axes[1].set_title("terms (unweighted)")
    axes[1].set_yscale("symlog", linthresh=1e-2)
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


@torch.no_grad()
def decoded_codes(model) -> torch.Tensor:
    """Every code of the codebook decoded into its standardized shape, ``(K, len_s)``."""
    codes = model.codebook.embedding.weight.detach()
    return model.shape_decoder(codes[None]).squeeze(0).float().cpu()


def merge_similar(shapes: torch.Tensor, usage: torch.Tensor, threshold: float = 0.3):
    """Group near-duplicate shapes (RMS difference below ``threshold`` of the standardized
    shapes), most used first. Returns ``[(representative, [members], total usage)]``."""
    order = torch.argsort(usage, descending=True, stable=True).tolist()
    groups: list[tuple[int, list[int], float]] = []
    for k in order:
        for i, (rep, members, total) in enumerate(groups):
            if (shapes[k] - shapes[rep]).pow(2).mean().sqrt() < threshold:
                groups[i] = (rep, members + [k], total + float(usage[k]))
                break
        else:
            groups.append((k, [k], float(usage[k])))
    return groups


def codebook_shapes(model, histograms: torch.Tensor, path, max_shapes: int = 64,
                    threshold: float = 0.3) -> tuple[Path, int]:
    """The codebook as a vocabulary of shapes: near-duplicates merged, most used first.
    Returns the path and the number of distinct shapes."""
    plt = pyplot()
    shapes = decoded_codes(model)
    usage = histograms.sum(0).double()
    share = usage / usage.sum().clamp_min(1)
    groups = merge_similar(shapes, share, threshold)
    shown = groups[:max_shapes]
    cols = 8
    rows = max(1, (len(shown) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (rep, members, total) in zip(axes.flat, shown):
        ax.plot(shapes[rep].numpy(), color="tab:blue" if total > 0 else "tab:gray", lw=1.5)
        label = f"#{rep}" + (f" +{len(members) - 1}" if len(members) > 1 else "")
        ax.set_title(f"{label}  {100 * total:.1f}%", fontsize=7)
    fig.suptitle(f"{len(groups)} distinct shapes among {len(shapes)} codes "
                 f"(RMS difference < {threshold} merged); share of tokens", fontsize=9)
    return save_png(fig, path), len(groups)


@torch.no_grad()
def reconstructions(model, x: torch.Tensor, path, labels=None, num: int = 6) -> Path:
    """A few series (grey), their reconstruction (blue) and every shape token drawn over the
    stretch ``[t, t + l]`` it describes."""
    plt = pyplot()
    x = x[:num]
    _, out = model(x.to(model.device), mode="tokenize")
    cols = min(3, len(x))
    rows = (len(x) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4.2, rows * 2.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    grid = np.linspace(0, 1, x.shape[-1])
    for i, ax in enumerate(axes.flat[: len(x)]):
        ax.axis("on")
        ax.plot(grid, x[i].numpy(), color="gray", lw=3, alpha=0.35, label="series")
        ax.plot(grid, out["x_pred"][i].float().cpu().numpy(), color="tab:blue", lw=1,
                label="reconstruction")
        t = out["t_pred"][i, :, 0].float().cpu().numpy()
        l = out["l_pred"][i, :, 0].float().cpu().numpy()
        s = out["s_pred"][i].float().cpu().numpy()
        for j in range(len(t)):
            ax.plot(np.linspace(t[j], min(t[j] + l[j], 1.0), s.shape[-1]), s[j], lw=0.8)
        title = str(labels[i]) if labels is not None else f"series {i}"
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, loc="best")
    return save_png(fig, path)
