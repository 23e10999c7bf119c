"""Nearest-code search and the VQ loss: vqfast against the authors' formulas and other libraries.

    python bench/quantize.py [--quick] [--json PATH] [--device cpu|cuda] [--repeats N]
                             [--budget S] [--case N,K,D ...] [--mem-limit-gb G]

Drives the per-op benchmarks ``bench/ops/nearest_code.py`` and ``bench/ops/vq_loss.py`` over a
sweep of cases; every implementation of a case gets the same inputs (``z = randn(N, D) * scale``,
``codebook = randn(K, D) * scale``, seeded). The acceptance summary (``bench/acceptance.py``)
comes last.

Columns: median time [interquartile range] over the timed repeats, tokens/s, peak extra memory of
one call, speed-up over the authors' formula in the same case, and correctness: for nearest code
the fraction of tokens whose chosen code is at the fp64 minimum distance; for the loss the
relative difference of the value and of both gradients against the authors' formula in float32
(``||a - b|| / ||b||``; the JSON also has ``max|a - b| / max|b|``) and, for smaller cases, against
the same formula in float64.
"""

from __future__ import annotations

import argparse
import gc
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as H  # noqa: E402
import acceptance as A  # noqa: E402
from ops import nearest_code, vq_loss  # noqa: E402

ACCEPTANCE = tuple(A.CASE.values())
FULL_TOKENS = (1_024, 16_384, 65_536, 262_144, 1_048_576)
FULL_CODES = (64, 512, 4096)
FULL_DIMS = (8, 32)
# --quick: (N, K, D, nearest code?, VQ loss?). Every implementation runs the acceptance case (first,
# so a run cut short still has it); the others leave out "vqfast reference" (the authors' formula
# behind vqfast's API) to save time.
QUICK_CASES = (
    (*ACCEPTANCE, True, True),
    (1_024, 4_096, 32, False, True),
    (16_384, 512, 8, True, True),
    (262_144, 64, 8, True, False),
    (16_384, 4_096, 32, True, False),
)


@dataclass
class Case:
    n: int
    k: int
    d: int
    nearest: bool = True
    loss: bool = True
    every_impl: bool = True


def make_inputs(n: int, k: int, d: int, scale: float, seed: int, device: torch.device):
    gen = torch.Generator().manual_seed(seed + 1_000 * k + d)
    z = torch.randn(n, d, generator=gen) * scale
    codebook = torch.randn(k, d, generator=gen) * scale
    return z.to(device), codebook.to(device)


def run_case(case: Case, args, cfg: H.Settings) -> list[dict]:
    z, codebook = make_inputs(case.n, case.k, case.d, args.scale, args.seed, cfg.device)
    rows = []
    if case.nearest:
        rows += nearest_code.run(z, codebook, cfg, case.every_impl)
    if case.loss:
        rows += vq_loss.run(z, codebook, cfg, case.every_impl)
    gc.collect()
    return rows


def cases(args) -> list[Case]:
    if args.case:
        return [Case(*map(int, c.split(","))) for c in args.case]
    if args.quick:
        return [Case(n, k, d, near, loss, (n, k, d) == ACCEPTANCE)
                for n, k, d, near, loss in QUICK_CASES]
    return [Case(n, k, d) for n in FULL_TOKENS for k in FULL_CODES for d in FULL_DIMS]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a subset (<= 3 min on 2 CPU cores)")
    p.add_argument("--json", help="write all rows and the environment here (atomically)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--repeats", type=int, default=None, help="max timed calls per row")
    p.add_argument("--budget", type=float, default=None, help="seconds of timed calls per row")
    p.add_argument("--scale", type=float, default=1.0, help="inputs are randn * scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mem-limit-gb", type=float, default=4.0,
                   help="skip implementations that store tokens x codes above this (GiB)")
    p.add_argument("--case", action="append", metavar="N,K,D", help="run only these cases")
    return p.parse_args(argv)


def settings_from(args, device: torch.device) -> H.Settings:
    return H.Settings(
        device=device,
        budget_s=args.budget if args.budget is not None else (0.4 if args.quick else 1.0),
        repeats=args.repeats if args.repeats is not None else (15 if args.quick else 30),
        mem_limit=int(args.mem_limit_gb * H.GiB),
    )


def add_speedups(rows: list[dict]) -> None:
    H.add_speedups(rows, ("op", "N", "K", "D", "mode"))


def save(args, cfg: H.Settings, run: H.Run, rows: list[dict], done: bool) -> None:
    """Writes the JSON (after every case, so a run cut short still leaves its rows)."""
    if not args.json:
        return
    add_speedups(rows)
    payload = {
        "benchmark": "quantize",
        "complete": done,
        "environment": run.env,
        "settings": {**vars(args), "budget_s": cfg.budget_s, "max_repeats": cfg.repeats},
        "loss_args": vq_loss.LOSS_ARGS,
        "elapsed_s": run.elapsed(),
        "acceptance": A.acceptance(rows),
        "rows": rows,
    }
    H.write_json(args.json, payload)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = H.resolve_device(args.device)
    cfg = settings_from(args, device)
    run = H.start_run(device)
    rows: list[dict] = []
    for case in cases(args):
        print(f"... N={case.n} K={case.k} D={case.d} ({run.elapsed():.0f} s)", flush=True)
        rows += run_case(case, args, cfg)
        save(args, cfg, run, rows, done=False)
    add_speedups(rows)
    nearest_code.print_rows(rows)
    vq_loss.print_rows(rows)
    A.print_acceptance(A.acceptance(rows))
    H.finish_run(run)
    save(args, cfg, run, rows, done=True)
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
