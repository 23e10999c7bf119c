"""Subsequence targets: vqfast's op against the authors' ``grid_sample`` + ``conv1d`` path.

    python bench/subsequence.py [--json PATH] [--device cpu|cuda] [--repeats N] [--budget S]
                                [--smooth W ...] [--batch B] [--tokens N] [--length S]
                                [--series T]

Drives ``bench/ops/extract_subsequence.py``. Default case: B=512 series of T=512 points, N=64
tokens each, S=128 samples per token, moving-average widths 1 and 9. Two tables: forward and
forward+backward; ``max abs diff`` is against the authors' path in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as H  # noqa: E402
from ops import extract_subsequence  # noqa: E402


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
    cfg = H.Settings(device=device, budget_s=args.budget, repeats=args.repeats)
    run = H.start_run(device)
    case = extract_subsequence.Case(args.batch, args.tokens, args.length, args.series)
    rows = [r for smooth in args.smooth for r in
            extract_subsequence.run(dataclasses.replace(case, smooth=smooth), args.seed, cfg)]
    H.add_speedups(rows, ("op", "mode", "smooth"))
    extract_subsequence.print_rows(rows, case)
    elapsed = run.elapsed()
    H.finish_run(run)
    if args.json:
        payload = {"benchmark": "subsequence", "environment": run.env, "settings": vars(args),
                   "elapsed_s": elapsed, "rows": rows}
        H.write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
