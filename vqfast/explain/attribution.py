"""Which codes push a series toward a class, read off the histogram linear probe.

The probe (:func:`vqfast.evaluation.probe.fit_probe`) sees each sample's code histograms, channels
side by side (feature ``channel * K + code``), min-max scaled: ``logits = ((h - lo) / span) @ W +
b``. A softmax is unchanged when one number is added to every class's weight of a feature, so the
weights are first centred over the classes, ``W'[f, c] = W[f, c] - mean_c W[f, :]``. Then:

- ``effect[c, channel, code] = W'[f, c] / span[f]``: what one token of that code in that channel
  adds to class ``c``'s (centred) logit, the same for every token of the code;
- a sample's ``contribution`` of a code to class ``c`` is ``count * effect``: its weight times its
  frequency in the probe's scale (``lo`` is common to every sample and is left in the bias).

Removing every token of a code with a positive contribution lowers the class's logit by exactly
that much, which is what :mod:`vqfast.explain.faithfulness` tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vqfast.evaluation.probe import FittedProbe


def token_effects(probe: FittedProbe, num_code: int) -> torch.Tensor:
    """``(classes, channels, K)``: one token's contribution to each class's centred logit."""
    if probe.kind != "histogram":
        raise ValueError(f"token_effects: needs a histogram probe, got a {probe.kind!r} probe")
    F_ = probe.weight.shape[0]
    if num_code < 1 or F_ % num_code:
        raise ValueError(f"token_effects: the probe has {F_} features, not a multiple of the "
                         f"model's {num_code} codes; was it fit on this model's histograms?")
    centred = probe.weight - probe.weight.mean(1, keepdim=True)
    effect = centred / probe.divisor[:, None]
    return effect.T.reshape(probe.num_classes, F_ // num_code, num_code).contiguous()


def contributions(probe: FittedProbe, histograms: torch.Tensor, num_code: int) -> torch.Tensor:
    """``(n, classes, channels, K)``: every code's contribution to every class, per sample, from
    histograms ``(n, channels * K)``."""
    effect = token_effects(probe, num_code)
    channels = effect.shape[1]
    if histograms.dim() != 2 or histograms.shape[1] != channels * num_code:
        raise ValueError(f"contributions: histograms must be (n, {channels * num_code}) "
                         f"({channels} channels x {num_code} codes), got "
                         f"{tuple(histograms.shape)}")
    counts = histograms.float().reshape(len(histograms), 1, channels, num_code)
    return counts * effect[None]


@dataclass
class CodeContribution:
    """One code of one channel and what it adds to a class on average over the class's samples.

    ``effect``: per token; ``mean_count``: tokens per sample of the class; ``contribution``:
    their product averaged over the class's samples."""

    channel: int
    code: int
    effect: float
    mean_count: float
    contribution: float

    def as_dict(self) -> dict:
        return {"channel": self.channel, "code": self.code, "effect": self.effect,
                "mean_count": self.mean_count, "contribution": self.contribution}


@dataclass
class ClassAttribution:
    """The codes that push the samples of one class toward it, most first.

    ``mean_histogram``: ``(channels, K)`` mean code counts of the class's samples;
    ``contribution``: ``(channels, K)`` mean contribution of every code to this class."""

    label: int
    name: str
    samples: int
    top: list[CodeContribution]
    mean_histogram: torch.Tensor = field(repr=False)
    contribution: torch.Tensor = field(repr=False)

    def as_dict(self) -> dict:
        return {"class": self.label, "name": self.name, "samples": self.samples,
                "top_codes": [c.as_dict() for c in self.top],
                "mean_histogram": self.mean_histogram.tolist()}


def class_attribution(probe: FittedProbe, histograms: torch.Tensor, labels: torch.Tensor,
                      num_code: int, class_names=None, top: int = 6) -> list[ClassAttribution]:
    """Per class (of ``labels``, one entry per class the probe knows): class-mean histograms and
    the ``top`` codes with the largest positive mean contribution to that class on its own
    samples."""
    labels = torch.as_tensor(labels).long()
    if labels.shape != (len(histograms),):
        raise ValueError(f"class_attribution: {len(labels)} labels for {len(histograms)} "
                         "histograms")
    if top < 1:
        raise ValueError(f"class_attribution: top must be >= 1, got {top}")
    contrib = contributions(probe, histograms, num_code)
    effect = token_effects(probe, num_code)
    channels = effect.shape[1]
    counts = histograms.float().reshape(len(histograms), channels, num_code)
    names = list(class_names) if class_names is not None else \
        [str(c) for c in range(probe.num_classes)]
    out = []
    for c in range(probe.num_classes):
        members = labels == c
        n = int(members.sum())
        mean_hist = counts[members].mean(0) if n else torch.zeros(channels, num_code)
        mean_contrib = contrib[members, c].mean(0) if n else torch.zeros(channels, num_code)
        flat = mean_contrib.flatten()
        order = torch.argsort(flat, descending=True, stable=True)[:top]
        best = [CodeContribution(int(f) // num_code, int(f) % num_code,
                                 float(effect[c].flatten()[f]), float(mean_hist.flatten()[f]),
                                 float(flat[f]))
                for f in order if flat[f] > 0]
        out.append(ClassAttribution(c, names[c] if c < len(names) else str(c), n, best,
                                    mean_hist, mean_contrib))
    return out


__all__ = ["ClassAttribution", "CodeContribution", "class_attribution", "contributions",
           "token_effects"]
