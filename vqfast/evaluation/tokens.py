"""Are the shape tokens shapes? Metrics of one forward pass's ``outputs`` (``token_metrics``, cheap
enough for every training log point) or of a whole split (``token_metrics_on``, aggregated exactly).

- ``x_r2``: the series' reconstruction, ``1 - sum((x_pred - x_true)^2) / sum((x_true -
  rowmean(x_true))^2)``, rows = series: 1 is perfect, 0 is no better than each series' own mean.
- ``shape_r2``: the same for every token's decoded shape ``s_pred`` against the subsequence its
  window covers ``s_true``, rows = tokens (None when ``outputs`` has no ``s_true``, as after
  ``mode="tokenize"``).
- ``sigma`` and ``l``: median, p10 and p90 of the tokens' scale (in units of the series' standard
  deviation: the model normalizes each series before tokenizing) and window length (share of the
  series).
- ``codes_used`` of ``num_code``, and ``perplexity`` ``exp(H)`` of the code usage.
"""

from __future__ import annotations

import torch

from vqfast.evaluation.probe import codebook_usage

QUANTILES = {"p10": 0.1, "median": 0.5, "p90": 0.9}


def _sum_squares(pred: torch.Tensor, true: torch.Tensor) -> tuple[float, float]:
    """``(sum of squared errors, sum of squares about each row's mean)`` over the last dim."""
    pred, true = pred.double(), true.double()
    sse = (pred - true).pow(2).sum()
    sst = (true - true.mean(dim=-1, keepdim=True)).pow(2).sum()
    return float(sse), float(sst)


def _r2(sse: float, sst: float) -> float | None:
    return None if sst <= 0 else 1.0 - sse / sst


def _quantiles(values: torch.Tensor) -> dict:
    values = values.flatten().float()
    if values.numel() == 0:
        return {k: None for k in QUANTILES}
    q = torch.quantile(values, torch.tensor(list(QUANTILES.values())))
    return {k: float(v) for k, v in zip(QUANTILES, q)}


def _usage(counts: torch.Tensor) -> dict:
    usage = codebook_usage(counts[None])
    return {"codes_used": usage["used"], "num_code": usage["size"],
            "perplexity": usage["perplexity"]}


def _check_outputs(outputs: dict, num_code: int, where: str) -> None:
    if not isinstance(num_code, int) or num_code < 1:
        raise ValueError(f"{where}: num_code must be a positive int (model.num_code), got "
                         f"{num_code!r}")
    missing = [k for k in ("x_true", "x_pred", "s_pred", "code_idx", "l_pred", "sigma_pred")
               if outputs.get(k) is None]
    if missing:
        raise ValueError(f"{where}: outputs lack {missing}; pass the outputs of a VQShape forward "
                         "pass (mode='pretrain' or 'evaluate')")
    if outputs["x_pred"].shape != outputs["x_true"].shape:
        raise ValueError(f"{where}: x_pred {tuple(outputs['x_pred'].shape)} and x_true "
                         f"{tuple(outputs['x_true'].shape)} differ in shape")
    s_true = outputs.get("s_true")
    if s_true is not None and s_true.shape != outputs["s_pred"].shape:
        raise ValueError(f"{where}: s_pred {tuple(outputs['s_pred'].shape)} and s_true "
                         f"{tuple(s_true.shape)} differ in shape")


class _Totals:
    """Sufficient statistics of ``token_metrics``, summed over batches."""

    def __init__(self, num_code: int):
        self.x = [0.0, 0.0]
        self.s: list[float] | None = [0.0, 0.0]
        self.sigma: list[torch.Tensor] = []
        self.l: list[torch.Tensor] = []
        self.counts = torch.zeros(num_code, dtype=torch.float64)

    def add(self, outputs: dict) -> None:
        for i, v in enumerate(_sum_squares(outputs["x_pred"], outputs["x_true"])):
            self.x[i] += v
        s_true = outputs.get("s_true")
        if s_true is None:
            self.s = None
        elif self.s is not None:
            for i, v in enumerate(_sum_squares(outputs["s_pred"], s_true)):
                self.s[i] += v
        self.sigma.append(outputs["sigma_pred"].detach().float().flatten().cpu())
        self.l.append(outputs["l_pred"].detach().float().flatten().cpu())
        idx = outputs["code_idx"].detach().flatten().long().cpu()
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.counts.numel()):
            raise ValueError(f"token_metrics: code_idx holds {int(idx.min())}..{int(idx.max())}, "
                             f"outside 0..{self.counts.numel() - 1}; is num_code the model's?")
        self.counts += torch.bincount(idx, minlength=self.counts.numel()).double()

    def result(self) -> dict:
        return {
            "x_r2": _r2(*self.x),
            "shape_r2": None if self.s is None else _r2(*self.s),
            "sigma": _quantiles(torch.cat(self.sigma)),
            "l": _quantiles(torch.cat(self.l)),
            **_usage(self.counts),
            "tokens": int(self.counts.sum()),
        }


@torch.no_grad()
def token_metrics(outputs: dict, num_code: int) -> dict:
    """The metrics above from one forward pass's ``outputs`` (see the module docstring)."""
    _check_outputs(outputs, num_code, "token_metrics")
    totals = _Totals(num_code)
    totals.add(outputs)
    return totals.result()


@torch.no_grad()
def token_metrics_on(model, x: torch.Tensor, batch_size: int = 256, *,
                     return_values: bool = False):
    """The metrics of ``model`` on every series of ``x`` (``(n, T)``, or ``(n, C, T)``, each
    channel a series), run with ``mode="evaluate"`` in eval mode in batches of ``batch_size``;
    sums of squares, quantiles and usage are over all series, not averages of batch metrics.

    ``return_values``: return ``(metrics, {"sigma", "l": every token's value, "counts": tokens
    per code})`` instead, for figures."""
    x = torch.as_tensor(x)
    if x.dim() not in (2, 3) or x.shape[0] == 0:
        raise ValueError(f"token_metrics_on: x must be a non-empty (n, T) or (n, C, T) tensor, "
                         f"got shape {tuple(x.shape)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"token_metrics_on: batch_size must be a positive int, got "
                         f"{batch_size!r}")
    rows = x.reshape(-1, x.shape[-1])
    totals = _Totals(model.num_code)
    was_training = model.training
    model.eval()
    try:
        for i in range(0, rows.shape[0], batch_size):
            outputs, _ = model(rows[i : i + batch_size].to(model.device), mode="evaluate")
            if i == 0:
                _check_outputs(outputs, model.num_code, "token_metrics_on")
            totals.add(outputs)
    finally:
        model.train(was_training)
    result = totals.result()
    result["series"] = int(rows.shape[0])
    if not return_values:
        return result
    return result, {"sigma": torch.cat(totals.sigma), "l": torch.cat(totals.l),
                    "counts": totals.counts}


# Degenerate shape tokens: thresholds of ``degenerate_warnings``.
SHAPE_R2_MIN = 0.0  # shapes must fit their subsequences better than each subsequence's mean
SIGMA_MEDIAN_MIN = 0.05  # median sigma, in units of the series' std (the model normalizes)
DISTINCT_FRACTION_MIN = 0.25  # distinct decoded shapes per code used


def degenerate_warnings(metrics: dict, distinct_shapes: int | None = None, *,
                        sigma_measured: bool = False) -> list[str]:
    """Sentences saying how the shape tokens of ``metrics`` (``token_metrics``) are degenerate,
    empty when they are not: shape R² <= ``SHAPE_R2_MIN``, median sigma below
    ``SIGMA_MEDIAN_MIN``, or fewer ``distinct_shapes`` than ``DISTINCT_FRACTION_MIN`` of the
    codes used. ``sigma_measured``: sigma is each window's measured std (``shape_source=
    "window"``), so a small one means windows on near-flat stretches, not a collapsed scale."""
    found = []
    r2 = metrics.get("shape_r2")
    if r2 is not None and r2 <= SHAPE_R2_MIN:
        found.append(f"shape R² is {r2:.3f} (≤ {SHAPE_R2_MIN:g}): the decoded shapes fit the "
                     "subsequences their windows cover no better than each subsequence's own "
                     "mean.")
    sigma = (metrics.get("sigma") or {}).get("median")
    if sigma is not None and sigma < SIGMA_MEDIAN_MIN and sigma_measured:
        found.append(f"median sigma is {sigma:.4f} (< {SIGMA_MEDIAN_MIN:g} of the series' "
                     "standard deviation, measured on each token's window): most windows cover "
                     "near-flat stretches of the series.")
    elif sigma is not None and sigma < SIGMA_MEDIAN_MIN:
        found.append(f"median sigma is {sigma:.4f} (< {SIGMA_MEDIAN_MIN:g} of the series' "
                     "standard deviation): most tokens are drawn as flat lines.")
    used = metrics.get("codes_used")
    if distinct_shapes is not None and used and distinct_shapes < DISTINCT_FRACTION_MIN * used:
        shapes = "shape" if distinct_shapes == 1 else "shapes"
        found.append(f"only {distinct_shapes} distinct {shapes} among the {used} codes used "
                     f"(< {DISTINCT_FRACTION_MIN:.0%}): codes differ as vectors but decode to "
                     "the same shapes.")
    return found
