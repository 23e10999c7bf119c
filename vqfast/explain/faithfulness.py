"""Are the explanations faithful? A deletion test on the histogram probe.

For every sample, its tokens are removed one at a time (one count less in its histogram) and the
probe's probability of the class it predicted on the full histogram is recorded after each
removal: once in the order of the attribution (the token with the largest contribution to that
class first; tokens of one code tie and go together), and in random orders (several draws).
``AOPC = mean over k = 0..L of (p_0 - p_k)`` (Samek et al., 2017) over the first ``L`` removals,
averaged over the samples; the ratio ``attributed / random`` says how much more the attribution's
tokens matter than tokens picked at random (1: no better than chance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vqfast.evaluation.probe import FittedProbe
from vqfast.explain.attribution import token_effects

DEFAULT_FRACTION = 0.25
DEFAULT_DRAWS = 10


@dataclass
class Faithfulness:
    """Deletion-test results; curves are ``(L + 1,)`` mean probabilities after ``0..L`` tokens
    removed (``random_std``: spread over the draws of the sample-averaged random curve)."""

    attributed_aopc: float
    random_aopc: float
    ratio: float | None
    steps: int
    tokens_per_sample: int
    samples: int
    draws: int
    attributed_curve: list[float] = field(repr=False)
    random_curve: list[float] = field(repr=False)
    random_std: list[float] = field(repr=False)

    def as_dict(self) -> dict:
        return {"attributed_aopc": self.attributed_aopc, "random_aopc": self.random_aopc,
                "ratio": self.ratio, "steps": self.steps,
                "tokens_per_sample": self.tokens_per_sample, "samples": self.samples,
                "draws": self.draws, "attributed_curve": self.attributed_curve,
                "random_curve": self.random_curve, "random_std": self.random_std}


def token_features(histogram: torch.Tensor) -> torch.Tensor:
    """The feature index (``channel * K + code``) of every token of one histogram ``(C*K,)``."""
    counts = histogram.round().long()
    if (counts < 0).any():
        raise ValueError("token_features: negative counts in the histogram")
    return torch.repeat_interleave(torch.arange(len(counts)), counts)


def attributed_order(effect_row: torch.Tensor, histogram: torch.Tensor) -> torch.Tensor:
    """Token features of one histogram, largest per-token effect first (``effect_row (C*K,)``
    for the class in question); ties in feature order."""
    feats = token_features(histogram)
    order = torch.argsort(-effect_row[feats], stable=True)
    return feats[order]


def deletion_curve(probe: FittedProbe, histogram: torch.Tensor, order: torch.Tensor,
                   cls: int) -> torch.Tensor:
    """Probability of class ``cls`` after removing the tokens ``order`` (feature indices) one
    at a time: ``(len(order) + 1,)``, the first entry for the full histogram."""
    removed = torch.zeros(len(order) + 1, len(histogram))
    if len(order):
        removed[torch.arange(1, len(order) + 1), order] = 1.0
    hists = histogram.float()[None] - removed.cumsum(0)
    return probe.probabilities(hists)[:, cls]


def faithfulness(probe: FittedProbe, histograms: torch.Tensor, num_code: int,
                 fraction: float = DEFAULT_FRACTION, draws: int = DEFAULT_DRAWS,
                 seed: int = 0) -> Faithfulness:
    """The deletion test on histograms ``(n, C*K)`` over the first ``fraction`` of each
    sample's tokens (at least one), ``draws`` random orders per sample."""
    if not 0 < fraction <= 1:
        raise ValueError(f"faithfulness: fraction must be in (0, 1], got {fraction}")
    if draws < 1:
        raise ValueError(f"faithfulness: draws must be >= 1, got {draws}")
    if histograms.dim() != 2 or len(histograms) == 0:
        raise ValueError(f"faithfulness: histograms must be (n >= 1, C*K), got "
                         f"{tuple(histograms.shape)}")
    effects = token_effects(probe, num_code).flatten(1)  # (classes, C*K)
    predicted = probe.logits(histograms).argmax(-1)
    gen = torch.Generator().manual_seed(seed)
    attributed, randoms, totals = [], [], []
    for h, cls in zip(histograms, predicted.tolist()):
        feats = token_features(h)
        totals.append(len(feats))
        steps = max(1, round(fraction * len(feats)))
        order = attributed_order(effects[cls], h)[:steps]
        attributed.append(deletion_curve(probe, h, order, cls))
        randoms.append(torch.stack([
            deletion_curve(probe, h, feats[torch.randperm(len(feats), generator=gen)[:steps]],
                           cls)
            for _ in range(draws)
        ]))
    lengths = {len(c) for c in attributed}
    if len(lengths) != 1:
        raise ValueError(f"faithfulness: samples have different token counts ({sorted(totals)}"
                         "); every sample must have the same number of channels and tokens")
    att = torch.stack(attributed)             # (n, L + 1)
    rnd = torch.stack(randoms)                # (n, draws, L + 1)
    att_aopc = float((att[:, :1] - att).mean())
    rnd_aopc = float((rnd[..., :1] - rnd).mean())
    ratio = att_aopc / rnd_aopc if rnd_aopc > 0 else None
    return Faithfulness(
        attributed_aopc=att_aopc, random_aopc=rnd_aopc, ratio=ratio, steps=att.shape[1] - 1,
        tokens_per_sample=totals[0], samples=len(att), draws=draws,
        attributed_curve=att.mean(0).tolist(), random_curve=rnd.mean((0, 1)).tolist(),
        random_std=rnd.mean(0).std(0, unbiased=False).tolist(),
    )


__all__ = ["DEFAULT_DRAWS", "DEFAULT_FRACTION", "Faithfulness", "attributed_order",
           "deletion_curve", "faithfulness", "token_features"]
