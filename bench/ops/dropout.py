"""Dropout in training: ``vqfast.ops.dropout`` against ``F.dropout`` (the authors' layers').

    python bench/ops/dropout.py [--json PATH]

Forward and forward+backward on the activation sizes of the ``default`` preset's step (attention
weights, feed-forward activations), same seed for both; ``same mask`` checks the outputs are
bit-identical (the C++ op draws F.dropout's mask from the same generator).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent.parent))

import _harness as H  # noqa: E402

import vqfast.ops as vqfast_ops  # noqa: E402

OP = "dropout"
SHAPES = ((64, 4, 48, 48), (64, 48, 256), (2048, 8, 64), (4_000_000,))
P = 0.1


def impls() -> dict:
    return {"authors (F.dropout)": lambda x: F.dropout(x, P, True),
            "vqfast auto": lambda x: vqfast_ops.dropout(x, P, True)}


def run(device: torch.device) -> list[dict]:
    rows = []
    for shape in SHAPES:
        x = torch.randn(*shape, device=device)
        outs = {}
        for name, fn in impls().items():
            torch.manual_seed(0)
            outs[name] = fn(x)
            for mode in ("fwd", "fwd+bwd"):
                leaf = x.detach().requires_grad_(mode == "fwd+bwd")

                def call(fn=fn, leaf=leaf, mode=mode):
                    out = fn(leaf)
                    if mode == "fwd+bwd":
                        out.sum().backward()

                row = H.new_row(OP, name, shape="x".join(map(str, shape)), mode=mode,
                                elements=x.numel())
                row.update(H.time_call(call, device, budget_s=0.5))
                row["ns_per_element"] = row["median_s"] / x.numel() * 1e9
                rows.append(row)
        same = torch.equal(*outs.values())
        for row in rows[-4:]:
            row["same_mask_as_f_dropout"] = same
    H.add_speedups(rows, same=("shape", "mode"), baseline="authors (F.dropout)")
    return rows


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        speed = f"{r['speedup_vs_authors']:.1f}x" if r.get('speedup_vs_authors') else "-"
        print(f"{str(r['shape']):20s} {r['mode']:8s} {r['impl']:20s} "
              f"{r['median_s'] * 1e3:8.2f} ms [{r['q1_s'] * 1e3:.2f}-{r['q3_s'] * 1e3:.2f}] "
              f"{r['ns_per_element']:6.2f} ns/elem  {speed:>6s}  same mask: "
              f"{r['same_mask_as_f_dropout']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="write the rows and the environment here (atomically)")
    args = p.parse_args(argv)
    device = torch.device("cpu")
    run_info = H.start_run(device)
    rows = run(device)
    H.finish_run(run_info)
    print_rows(rows)
    if args.json:
        H.write_json(args.json, {"benchmark": OP, "environment": run_info.env, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
