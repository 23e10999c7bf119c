"""Small pieces of VQShape's math that are not ops: normalization statistics, the
disentanglement loss and the contrastive loss of ``VQShapeText``'s contrastive mode."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def instance_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-series ``mean`` and ``sqrt(unbiased var + 1e-5)``, both ``(B, 1)``."""
    return x.mean(dim=-1, keepdim=True), (x.var(dim=-1, keepdim=True) + 1e-5).sqrt()


def grid_windows(batch: int, num: int, length: float, like: torch.Tensor):
    """``num`` windows of ``length`` (relative to the series) evenly spaced from its start to its
    end (one window: centred): starts and lengths ``(batch, num, 1)`` in ``like``'s dtype and
    device."""
    step = (1 - length) / (num - 1) if num > 1 else 0.0
    first = 0.0 if num > 1 else (1 - length) / 2
    t = first + step * torch.arange(num, device=like.device, dtype=like.dtype)
    t = t.view(1, num, 1).expand(batch, num, 1)
    return t, torch.full_like(t, length)


def observed_stats(x: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``instance_stats`` over the values where ``observed`` (same shape, 1 or 0) is 1."""
    count = observed.sum(-1, keepdim=True)
    mean = (x * observed).sum(-1, keepdim=True) / count
    var = (((x - mean) * observed) ** 2).sum(-1, keepdim=True) / (count - 1).clamp(min=1)
    return mean, (var + 1e-5).sqrt()


def disentanglement_loss(
    t: torch.Tensor, l: torch.Tensor, l_min: float, threshold: float = 0.2
) -> torch.Tensor:
    """Push apart tokens that sit at the same place and scale.

    Each token ``(t, l)`` maps to ``r [cos(pi t), sin(pi t)]`` with ``r = log(l) / log(l_min)``;
    the loss is ``relu(threshold - |v_i - v_j|)`` over pairs ``i != j`` of a sample, averaged over
    all ``B*N*N`` entries (the zeroed diagonal included), as in the authors' code.
    """
    r = l.log() / (torch.ones_like(l) * l_min).log()
    v = torch.cat([torch.cos(math.pi * t) * r, torch.sin(math.pi * t) * r], dim=-1)
    d = torch.norm(v.unsqueeze(1) - v.unsqueeze(2), dim=-1)
    loss = torch.relu(threshold - d)
    eye = torch.eye(loss.shape[-1], device=loss.device).unsqueeze(0)
    off_diagonal = torch.ones_like(loss) - eye
    return (loss * off_diagonal).mean()


def contrastive_loss(series: torch.Tensor, text: torch.Tensor, positives: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE between ``series (B, d)`` and ``text (B, d)`` embeddings.

    ``positives (B, B)`` (bool) marks the pairs that belong together: a series and its own text,
    and every other row with the same text (label text repeats within a batch). With ``S`` the
    cosine similarities over ``temperature``, each direction is
    ``-mean_i log sum_{j in P(i)} softmax_j(S_i)`` (series -> texts on rows, texts -> series on
    columns), as CLIP's loss when every row's text is distinct.
    """
    logits = (F.normalize(series, dim=-1) @ F.normalize(text, dim=-1).T) / temperature
    losses = []
    for lg, pos in ((logits, positives), (logits.T, positives.T)):
        log_p = lg.log_softmax(dim=-1).masked_fill(~pos, float("-inf"))
        losses.append(-torch.logsumexp(log_p, dim=-1).mean())
    return (losses[0] + losses[1]) / 2

