"""One prediction explained: every shape token of a series, where it sits, what shape it is and
how much it pushed the histogram probe toward the predicted class."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vqfast.evaluation.probe import FittedProbe
from vqfast.explain.attribution import token_effects
from vqfast.explain.shapes import DistinctShapes, describe_shape


@dataclass
class Token:
    """One shape token: code ``code`` between relative times ``t`` and ``t + l`` of channel
    ``channel``, offset ``mu`` and scale ``sigma``; ``shape`` is its decoded shape in the series'
    scale, ``(shape * sigma + mu) * std + mean``; ``effect`` its contribution to the predicted
    class's centred logit."""

    channel: int
    code: int
    t: float
    l: float
    mu: float
    sigma: float
    effect: float
    shape: np.ndarray = field(repr=False)

    @property
    def end(self) -> float:
        return min(self.t + self.l, 1.0)


@dataclass
class SeriesExplanation:
    """Why one series got its class: the probe's probabilities, the tokens, and per code (of each
    channel) the tokens' total contribution, most positive first (``codes``)."""

    sample: int | None
    label: int | None
    predicted: int
    probabilities: list[float]
    class_names: list[str]
    series: np.ndarray = field(repr=False)
    tokens: list[Token] = field(repr=False)
    codes: list[dict] = field(default_factory=list)
    text: str = ""

    @property
    def probability(self) -> float:
        return self.probabilities[self.predicted]

    def as_dict(self) -> dict:
        return {"sample": self.sample, "label": self.label,
                "label_name": None if self.label is None else self.class_names[self.label],
                "predicted": self.predicted, "predicted_name": self.class_names[self.predicted],
                "probability": self.probability, "probabilities": self.probabilities,
                "codes": self.codes, "text": self.text}


@torch.no_grad()
def explain_series(model, probe: FittedProbe, x: torch.Tensor, *, label: int | None = None,
                   sample: int | None = None, class_names=None,
                   distinct: DistinctShapes | None = None, top: int = 4) -> SeriesExplanation:
    """Explain the histogram probe's prediction for one series ``x (C, T)`` (``T`` the model's
    ``len_input``; as in ``SeriesData.x_test[i]``). ``distinct`` (from ``distinct_codes``) adds
    how many alike codes each code has; ``top``: codes named in the text on each side."""
    if x.dim() != 2 or x.shape[1] != model.len_input:
        raise ValueError(f"explain_series: x must be (channels, {model.len_input}), got "
                         f"{tuple(x.shape)}; resample with vqfast.prepare_series")
    K = model.num_code
    effects = token_effects(probe, K)
    if effects.shape[1] != x.shape[0]:
        raise ValueError(f"explain_series: the probe was fit on {effects.shape[1]} channels, "
                         f"the series has {x.shape[0]}")
    names = list(class_names) if class_names is not None else \
        [str(c) for c in range(probe.num_classes)]
    was_training = model.training
    model.eval()
    rep, out = model(x.float().to(model.device), mode="tokenize")
    model.train(was_training)
    hist = rep["histogram"].float().cpu().reshape(1, -1)
    probs = probe.probabilities(hist)[0]
    pred = int(probs.argmax())
    idx = out["code_idx"].reshape(x.shape[0], -1).cpu()
    fields = {k: out[k].float().cpu().reshape(x.shape[0], -1)
              for k in ("t_pred", "l_pred", "mu_pred", "sigma_pred")}
    shapes = out["s_pred"].float().cpu().reshape(x.shape[0], idx.shape[1], -1)
    tokens = [
        Token(ch, int(idx[ch, n]), float(fields["t_pred"][ch, n]),
              float(fields["l_pred"][ch, n]), float(fields["mu_pred"][ch, n]),
              float(fields["sigma_pred"][ch, n]), float(effects[pred, ch, idx[ch, n]]),
              shapes[ch, n].numpy())
        for ch in range(x.shape[0]) for n in range(idx.shape[1])
    ]
    codes = _per_code(tokens, distinct)
    explanation = SeriesExplanation(sample, label, pred, [float(p) for p in probs], names,
                                    x.float().cpu().numpy(), tokens, codes)
    explanation.text = describe(explanation, top)
    return explanation


def _per_code(tokens: list[Token], distinct) -> list[dict]:
    by_code: dict[tuple[int, int], list[Token]] = {}
    for tok in tokens:
        by_code.setdefault((tok.channel, tok.code), []).append(tok)
    rows = []
    for (ch, code), toks in by_code.items():
        rows.append({
            "channel": ch, "code": code, "tokens": len(toks),
            "contribution": sum(t.effect for t in toks),
            "spans": merge_spans([(t.t, t.end) for t in toks]),
            "shape": describe_shape(np.mean([_unit(t.shape) for t in toks], 0)),
            "alike_codes": None if distinct is None
            else len(distinct.groups[int(distinct.group_of[code])].members),
        })
    rows.sort(key=lambda r: (-r["contribution"], r["channel"], r["code"]))
    return rows


def _unit(shape: np.ndarray) -> np.ndarray:
    std = shape.std()
    return (shape - shape.mean()) / std if std > 0 else shape * 0


def merge_spans(spans: list[tuple[float, float]]) -> list[list[float]]:
    """Union of intervals, sorted: ``[(0.1, 0.3), (0.2, 0.4), (0.6, 0.7)]`` ->
    ``[[0.1, 0.4], [0.6, 0.7]]``."""
    merged: list[list[float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def _code_phrase(row: dict, channels: int) -> str:
    where = ", ".join(f"{100 * a:.0f}–{100 * b:.0f} %" for a, b in row["spans"])
    alike = f", one of {row['alike_codes']} alike codes" if (row["alike_codes"] or 1) > 1 else ""
    count = f"{row['tokens']} token{'s' if row['tokens'] > 1 else ''}"
    channel = f"channel {row['channel']} " if channels > 1 else ""
    return (f"{channel}code {row['code']} ({row['shape']}{alike}, {count}, {where} of the "
            f"series) {row['contribution']:+.2f}")


def describe(e: SeriesExplanation, top: int = 4) -> str:
    """The one-paragraph text of an explanation."""
    channels = e.series.shape[0]
    name = e.class_names[e.predicted]
    truth = ""
    if e.label is not None:
        truth = ("; correct" if e.label == e.predicted
                 else f"; the true class is '{e.class_names[e.label]}'")
    head = (f"{'Sample ' + str(e.sample) if e.sample is not None else 'The series'} is predicted "
            f"'{name}' with probability {e.probability:.2f}{truth}.")
    pro = [r for r in e.codes if r["contribution"] > 0][:top]
    con = [r for r in reversed(e.codes) if r["contribution"] < 0][:top]
    parts = [head]
    if pro:
        parts.append(f"Toward '{name}' (contribution to its centred logit): "
                     + "; ".join(_code_phrase(r, channels) for r in pro) + ".")
    else:
        parts.append(f"No token pushes toward '{name}'; the probe's bias decides.")
    if con:
        parts.append("Against it: " + "; ".join(_code_phrase(r, channels) for r in con) + ".")
    return " ".join(parts)


__all__ = ["SeriesExplanation", "Token", "describe", "explain_series", "merge_spans"]
