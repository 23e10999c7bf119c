"""The acceptance summary of ``bench/quantize.py``: ratios and errors read from its rows.

Everything summarized is data: ``CASE`` is the case, ``ROLES`` names the rows it compares,
``METRICS`` derives each field of the JSON's ``acceptance`` object from those rows, and ``REPORT``
is the printed text, a template over the formatted metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import _harness as H

CASE = {"N": 65_536, "K": 512, "D": 8}
AUTO = "(auto)"
# role: (op, implementation, mode). The implementation is a prefix of the row's ``impl``, or AUTO
# for the one ``backend="auto"`` picks.
ROLES = {
    "nearest": ("nearest_code", AUTO, None),
    "nearest authors": ("nearest_code", "authors", None),
    "nearest FAISS": ("nearest_code", "FAISS", None),
    "loss": ("vq_loss", AUTO, "fwd+bwd"),
    "loss authors": ("vq_loss", "authors", "fwd+bwd"),
}
LOSS_TENSORS = ("loss", "grad_z", "grad_codebook")


@dataclass(frozen=True)
class Metric:
    """``role``'s ``field``; with ``ratio_of``: that role's field divided by this role's. A
    ``{}`` in ``field`` makes a list, one value per tensor of the loss."""

    key: str
    role: str
    field: str
    ratio_of: str | None = None
    spec: str = ".1f"  # format of each value; "sci": 1 significant digit, exponent


METRICS = (
    Metric("nearest_impl", "nearest", "impl", spec=""),
    Metric("nearest_speedup_vs_authors", "nearest", "median_s", ratio_of="nearest authors"),
    Metric("nearest_faiss_time_over_vqfast", "nearest", "median_s", ratio_of="nearest FAISS",
           spec=".2f"),
    Metric("nearest_correct_frac", "nearest", "correct_frac", spec=".6f"),
    Metric("loss_fwd_bwd_speedup_vs_authors", "loss", "median_s", ratio_of="loss authors"),
    Metric("loss_fwd_bwd_peak_memory_authors_over_vqfast", "loss", "peak_extra_bytes",
           ratio_of="loss authors"),
    Metric("loss_rel_err_vs_authors_fp32", "loss", "err_vs_authors_fp32_{}", spec="sci"),
    Metric("loss_worst_element_err_vs_authors_fp32", "loss", "err_vs_authors_fp32_{}_worst",
           spec="sci"),
    Metric("loss_rel_err_vs_fp64_vqfast", "loss", "err_vs_authors_fp64_{}", spec="sci"),
    Metric("loss_rel_err_vs_fp64_authors_fp32", "loss authors", "err_vs_authors_fp64_{}",
           spec="sci"),
)

TITLE = "Acceptance (N={N:,} tokens, K={K} codes, D={D}):"
NOT_MEASURED = "  not measured in this run (run --quick or --case {N},{K},{D})"
# A list metric prints as "a, b, c"; ``[i]`` picks one value.
REPORT = """\
  nearest code, {nearest_impl}: {nearest_speedup_vs_authors}x faster than the authors' formula; \
FAISS IndexFlatL2 takes {nearest_faiss_time_over_vqfast}x vqfast's time; correct fraction \
{nearest_correct_frac}
  vq_loss fwd+bwd: {loss_fwd_bwd_speedup_vs_authors}x faster than the authors' module, \
{loss_fwd_bwd_peak_memory_authors_over_vqfast}x less peak extra memory; relative error \
(||a-b||/||b||) vs the authors in fp32: value {loss_rel_err_vs_authors_fp32[0]}, grad z \
{loss_rel_err_vs_authors_fp32[1]}, grad codebook {loss_rel_err_vs_authors_fp32[2]}
    worst element (max|a-b|/max|b|): value {loss_worst_element_err_vs_authors_fp32[0]}, grad z \
{loss_worst_element_err_vs_authors_fp32[1]}, grad codebook \
{loss_worst_element_err_vs_authors_fp32[2]}
    against the formula in fp64: vqfast {loss_rel_err_vs_fp64_vqfast}; the authors' fp32 \
{loss_rel_err_vs_fp64_authors_fp32}"""


def find(rows: list[dict], op: str, impl: str, mode: str | None) -> dict | None:
    """The first timed row of ``CASE`` for ``op``, ``impl`` and ``mode``."""
    for r in rows:
        if r["op"] != op or r.get("mode") != mode or "median_s" not in r:
            continue
        if any(r[f] != v for f, v in CASE.items()):
            continue
        if r["impl"].endswith(AUTO) if impl == AUTO else r["impl"].startswith(impl):
            return r
    return None


def value(metric: Metric, found: dict[str, dict | None]) -> object:
    row = found[metric.role]
    if metric.ratio_of is not None:
        other = found[metric.ratio_of]
        if row is None or other is None or row.get(metric.field) in (None, 0):
            return None
        numerator = other.get(metric.field)
        return None if numerator is None else numerator / row[metric.field]
    if row is None:
        return None
    if "{}" in metric.field:
        return [row.get(metric.field.format(name)) for name in LOSS_TENSORS]
    return row.get(metric.field)


def acceptance(rows: list[dict]) -> dict[str, object]:
    """The JSON's ``acceptance`` object: the case, then one entry per metric (None: not run)."""
    found = {role: find(rows, *where) for role, where in ROLES.items()}
    return {"case": dict(CASE), **{m.key: value(m, found) for m in METRICS}}


class Values(list):
    """Formatted values of a list metric: indexable, and printed as ``a, b, c``."""

    def __str__(self) -> str:
        return ", ".join(self)


def formatted(metric: Metric, v: object) -> object:
    def one(x):
        return H.fmt_sci(x) if metric.spec == "sci" else H.fmt(x, metric.spec)

    if "{}" in metric.field:
        return Values(one(x) for x in (v or [None] * len(LOSS_TENSORS)))
    return one(v)


def print_acceptance(acc: dict[str, object]) -> None:
    print("\n" + TITLE.format(**CASE))
    if acc["nearest_impl"] is None and acc["loss_fwd_bwd_speedup_vs_authors"] is None:
        print(NOT_MEASURED.format(**CASE))
        return
    print(REPORT.format_map({m.key: formatted(m, acc.get(m.key)) for m in METRICS}))
