"""Subsequence targets: vqfast's op against the authors' ``grid_sample`` + ``conv1d`` path.

Implementations: vqfast's compiled backends (C++ on CPU, Triton on CUDA) and the authors' path,
``vqfast.ops.extract_subsequence_ref``; forward (under ``no_grad``) and forward+backward
(gradients of ``x``, ``t`` and ``l`` for a fixed random upstream gradient). ``max abs diff`` is
against the authors' path in the same run (outputs for the forward; each gradient for
forward+backward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import _harness as H
import torch

import vqfast.ops as vqfast_ops

OP = "extract_subsequence"
MODES = (("fwd", "forward"), ("fwd+bwd", "forward + backward (grads of x, t, l)"))
GRADS = ("x", "t", "l")


@dataclass
class Case:
    batch: int = 512
    tokens: int = 64
    length: int = 128
    series: int = 512
    smooth: int = 1

    def shape(self) -> str:
        return f"B={self.batch} N={self.tokens} S={self.length} T={self.series}"


def make_inputs(case: Case, seed: int, device: torch.device):
    """``x`` a random walk, ``t ~ U(0, 0.95)``, ``l ~ U(0.05, 0.6)`` (so ``t + l`` sometimes passes
    1 and the clamp matters), and an upstream gradient; seeded."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(case.batch, case.series, generator=gen).cumsum(-1) / case.series**0.5
    t = torch.rand(case.batch, case.tokens, generator=gen) * 0.95
    l = 0.05 + torch.rand(case.batch, case.tokens, generator=gen) * 0.55
    grad_out = torch.randn(case.batch, case.tokens, case.length, generator=gen)
    return [v.to(device) for v in (x, t, l, grad_out)]


def op_fn(impl: str, case: Case) -> Callable:
    if impl == "authors":
        return lambda x, t, l: vqfast_ops.extract_subsequence_ref(x, t, l, case.length, case.smooth)
    backend = impl.split()[1]
    return lambda x, t, l: vqfast_ops.extract_subsequence(
        x, t, l, case.length, case.smooth, backend=backend
    )


def backward_call(fn: Callable, x, t, l, grad_out) -> Callable:
    leaves = [v.detach().requires_grad_(True) for v in (x, t, l)]

    def call():
        out = fn(*leaves)
        return torch.autograd.grad(out, leaves, grad_out)

    return call


def mode_call(fn: Callable, mode: str, inputs) -> Callable:
    x, t, l, grad_out = inputs
    return H.no_grad_call(fn, x, t, l) if mode == "fwd" else backward_call(fn, x, t, l, grad_out)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def differences(got, ref, mode: str) -> dict[str, float]:
    if mode == "fwd":
        return {"max_abs_diff_out": max_abs_diff(got, ref),
                "max_abs_ref_out": float(ref.abs().max())}
    out = {}
    for name, a, b in zip(GRADS, got, ref):
        out[f"max_abs_diff_grad_{name}"] = max_abs_diff(a, b)
        out[f"max_abs_ref_grad_{name}"] = float(b.abs().max())
    return out


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


def implementations(device: torch.device) -> list[str]:
    compiled = [label for label, _ in H.vqfast_impls(OP, device)]
    return [label for label in compiled if "reference" not in label] + ["authors"]


def run_impl(impl: str, mode: str, case: Case, inputs, ref, cfg: H.Settings) -> dict:
    row = H.new_row(OP, impl, mode=mode, runs_on=str(cfg.device), B=case.batch, N=case.tokens,
                    S=case.length, T=case.series, smooth=case.smooth)
    try:
        out = H.measure(row, mode_call(op_fn(impl, case), mode, inputs), cfg,
                        tokens=case.batch * case.tokens)
        row.update(differences(out, ref, mode))
    except Exception as exc:  # record, do not crash the benchmark
        row["error"] = H.error_text(exc)
    return row


def run(case: Case, seed: int, cfg: H.Settings) -> list[dict]:
    """One row per implementation and mode, all on the same seeded inputs."""
    inputs = make_inputs(case, seed, cfg.device)
    authors = op_fn("authors", case)
    refs = {mode: mode_call(authors, mode, inputs)() for mode, _ in MODES}
    return [run_impl(impl, mode, case, inputs, refs[mode], cfg) for mode, _ in MODES
            for impl in implementations(cfg.device)]


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------


def columns(mode: str) -> list:
    cols = H.case_columns("smooth") + H.timing_columns()
    if mode == "fwd":
        cols.append(("max abs diff", lambda r: H.fmt_sci(r.get("max_abs_diff_out"))))
    else:
        cols += [(f"diff grad {name}", lambda r, name=name: H.fmt_sci(
            r.get(f"max_abs_diff_grad_{name}"))) for name in GRADS]
    cols.append(("error", lambda r: (r.get("error") or "")[:80]))
    return cols


def print_rows(rows: list[dict], case: Case) -> None:
    for mode, title in MODES:
        print(f"\n{OP} {title}, {case.shape()} (speedup: authors' median / this median)")
        H.print_table([r for r in rows if r["mode"] == mode], columns(mode))
    print("\nScale of the authors' results (max |.|), for reading the differences:")
    for r in rows:
        if r["impl"] == "authors":
            scale = {k[len("max_abs_ref_"):]: round(v, 3) for k, v in r.items()
                     if k.startswith("max_abs_ref_")}
            print(f"  {r['mode']:7s} smooth={r['smooth']}: {scale}")
