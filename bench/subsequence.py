"""Subsequence targets: vqfast's op against the authors' ``grid_sample`` + ``conv1d`` path.

    python bench/subsequence.py [--json PATH] [--device cpu|cuda] [--repeats N]

One case: B=512 series of T=512 points, N=64 tokens each, S=128 samples per token, moving-average
widths 1 and 9. ``x`` is a random walk, ``t ~ U(0, 0.95)``, ``l ~ U(0.05, 0.6)`` (so ``t + l``
sometimes passes 1 and the clamp matters), all seeded. Two tables: forward (under ``no_grad``) and
forward+backward (gradients of ``x``, ``t`` and ``l`` for a fixed random upstream gradient).
Implementations: vqfast's compiled backends (C++ on CPU, Triton on CUDA) and the authors' path,
``vqfast.ops.extract_subsequence_ref``. ``max abs diff`` is against the authors' path in the same
run (outputs for the forward table; each gradient for forward+backward).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as H  # noqa: E402

import vqfast.ops as ops  # noqa: E402

GRADS = ("x", "t", "l")


@dataclass
class Case:
    batch: int = 512
    tokens: int = 64
    length: int = 128
    series: int = 512
    smooth: int = 1


def make_inputs(case: Case, seed: int, device: torch.device):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(case.batch, case.series, generator=gen).cumsum(-1) / case.series**0.5
    t = torch.rand(case.batch, case.tokens, generator=gen) * 0.95
    l = 0.05 + torch.rand(case.batch, case.tokens, generator=gen) * 0.55
    grad_out = torch.randn(case.batch, case.tokens, case.length, generator=gen)
    return [v.to(device) for v in (x, t, l, grad_out)]


def op_fn(impl: str, case: Case) -> Callable:
    if impl == "authors":
        return lambda x, t, l: ops.extract_subsequence_ref(x, t, l, case.length, case.smooth)
    backend = impl.split()[1]
    return lambda x, t, l: ops.extract_subsequence(
        x, t, l, case.length, case.smooth, backend=backend
    )


def forward_call(fn: Callable, x, t, l) -> Callable:
    def call():
        with torch.no_grad():
            return fn(x, t, l)

    return call


def backward_call(fn: Callable, x, t, l, grad_out) -> Callable:
    leaves = [v.detach().requires_grad_(True) for v in (x, t, l)]

    def call():
        out = fn(*leaves)
        return torch.autograd.grad(out, leaves, grad_out)

    return call


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


def impls(device: torch.device) -> list[str]:
    compiled = [label for label, b in H.vqfast_impls("extract_subsequence", device)]
    return [label for label in compiled if "reference" not in label] + ["authors"]


def new_row(impl: str, mode: str, case: Case, device: torch.device) -> dict:
    return {"op": "extract_subsequence", "impl": impl, "mode": mode, "runs_on": str(device),
            "B": case.batch, "N": case.tokens, "S": case.length, "T": case.series,
            "smooth": case.smooth}


def run_row(impl, mode, case, inputs, ref, args, device) -> dict:
    row = new_row(impl, mode, case, device)
    x, t, l, grad_out = inputs
    fn = op_fn(impl, case)
    if mode == "fwd":
        call = forward_call(fn, x, t, l)
    else:
        call = backward_call(fn, x, t, l, grad_out)
    try:
        row.update(H.time_call(call, device, budget_s=args.budget, max_repeats=args.repeats))
        row["tokens_per_s"] = case.batch * case.tokens / row["median_s"]
        row["peak_extra_bytes"], out = H.measure_peak(call, device)
        row.update(differences(out, ref, mode))
    except Exception as exc:  # record, do not crash the benchmark
        row["error"] = H.error_text(exc)
    return row


def differences(got, ref, mode: str) -> dict[str, float]:
    if mode == "fwd":
        return {"max_abs_diff_out": max_abs_diff(got, ref),
                "max_abs_ref_out": float(ref.abs().max())}
    out = {}
    for name, a, b in zip(GRADS, got, ref):
        out[f"max_abs_diff_grad_{name}"] = max_abs_diff(a, b)
        out[f"max_abs_ref_grad_{name}"] = float(b.abs().max())
    return out


def run_smooth(smooth: int, args, device: torch.device) -> list[dict]:
    case = Case(args.batch, args.tokens, args.length, args.series, smooth)
    inputs = make_inputs(case, args.seed, device)
    x, t, l, grad_out = inputs
    authors = op_fn("authors", case)
    refs = {"fwd": forward_call(authors, x, t, l)(),
            "fwd+bwd": backward_call(authors, x, t, l, grad_out)()}
    rows = []
    for mode in ("fwd", "fwd+bwd"):
        rows += [run_row(i, mode, case, inputs, refs[mode], args, device) for i in impls(device)]
    return rows


def add_speedups(rows: list[dict]) -> None:
    authors = {(r["mode"], r["smooth"]): r.get("median_s") for r in rows if r["impl"] == "authors"}
    for r in rows:
        base = authors.get((r["mode"], r["smooth"]))
        if base and "median_s" in r:
            r["speedup_vs_authors"] = base / r["median_s"]


# ---------------------------------------------------------------------------------------------
# Printing and main
# ---------------------------------------------------------------------------------------------


def columns(mode: str) -> list:
    cols = [
        ("smooth", lambda r: str(r["smooth"])),
        ("impl", lambda r: r["impl"]),
        ("on", lambda r: r["runs_on"]),
        ("median ms", lambda r: H.fmt_ms(r.get("median_s"))),
        ("IQR ms", lambda r: f"{H.fmt_ms(r.get('q1_s'))}-{H.fmt_ms(r.get('q3_s'))}"),
        ("n", lambda r: H.fmt(r.get("repeats"))),
        ("Mtok/s", lambda r: H.fmt(r.get("tokens_per_s") and r["tokens_per_s"] / 1e6, ".3g")),
        ("peak MiB", lambda r: H.fmt_mib(r.get("peak_extra_bytes"))),
        ("speedup", lambda r: H.fmt(r.get("speedup_vs_authors"), ".2f")),
    ]
    if mode == "fwd":
        cols.append(("max abs diff", lambda r: H.fmt_sci(r.get("max_abs_diff_out"))))
    else:
        for name in GRADS:
            cols.append((f"diff grad {name}", _diff(name)))
    cols.append(("error", lambda r: (r.get("error") or "")[:80]))
    return cols


def _diff(name: str) -> Callable[[dict], str]:
    return lambda r: H.fmt_sci(r.get(f"max_abs_diff_grad_{name}"))


def print_tables(rows: list[dict], args) -> None:
    shape = f"B={args.batch} N={args.tokens} S={args.length} T={args.series}"
    for mode, title in (("fwd", "forward"), ("fwd+bwd", "forward + backward (grads of x, t, l)")):
        print(f"\nextract_subsequence {title}, {shape} (speedup: authors' median / this median)")
        H.print_table([r for r in rows if r["mode"] == mode], columns(mode))
    print("\nScale of the authors' results (max |.|), for reading the differences:")
    for r in rows:
        if r["impl"] == "authors":
            scale = {k[len("max_abs_ref_"):]: round(v, 3) for k, v in r.items()
                     if k.startswith("max_abs_ref_")}
            print(f"  {r['mode']:7s} smooth={r['smooth']}: {scale}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="write all rows and the environment here (atomically)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--repeats", type=int, default=20, help="max timed calls per row")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per row")
    p.add_argument("--smooth", type=int, nargs="+", default=[1, 9])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--series", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = H.resolve_device(args.device)
    env = H.environment(device)
    print("Environment:")
    H.print_environment(env)
    H.warn_if_busy(env)
    started, snapshot = time.perf_counter(), H.cpu_snapshot()
    rows = [r for smooth in args.smooth for r in run_smooth(smooth, args, device)]
    add_speedups(rows)
    print_tables(rows, args)
    elapsed = time.perf_counter() - started
    env["load_average_at_end"] = H.load_average()
    env["cpu_during_run"] = H.other_cpu_share(snapshot, H.cpu_snapshot())
    print(f"\nTotal {elapsed:.0f} s; CPU use during the run {env['cpu_during_run']}; "
          f"load average at the end {env['load_average_at_end']}")
    if args.json:
        payload = {"benchmark": "subsequence", "environment": env, "settings": vars(args),
                   "elapsed_s": elapsed, "rows": rows}
        H.write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
