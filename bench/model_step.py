"""One pre-training step of ``vqfast.VQShape``: vqfast's compiled ops against the reference path.

    python bench/model_step.py [--device cpu|cuda] [--preset default|paper ...] [--batch B]
                               [--bf16] [--json PATH]

A step is ``model(x, mode="pretrain")``, the weighted total loss, backward and an AdamW update.
The same model (same weights, same random masks: the RNG is re-seeded before every step) runs
with ``backend="reference"`` (the authors' formulas behind vqfast's API) and ``backend="auto"``
(C++ ops on CPU, Triton kernels on CUDA). Reported per row: median [interquartile range] step time,
series per second, peak extra memory, and for ``auto`` the speed-up over the reference and how far
its first step lies from the reference's: every loss (relative difference), whether the chosen
codes agree, and the gradients (norm-relative difference, over all parameters).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as H  # noqa: E402

from vqfast import VQShape  # noqa: E402
from vqfast.presets import PRESETS  # noqa: E402

BACKENDS = ("reference", "auto")


def step_fn(model, optimizer, x, seed: int, bf16: bool):
    """One optimizer step; returns ``(losses, code indices)`` of the step."""
    device = x.device

    def step():
        torch.manual_seed(seed)
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
                    else contextlib.nullcontext())
        with autocast:
            outputs, losses = model(x, mode="pretrain")
            loss = model.total_loss(losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return losses, outputs["code_idx"]

    return step


def first_step(model, x, seed: int, bf16: bool):
    """Losses, codes and gradients of one step of a copy of ``model`` (left unchanged)."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    losses, codes = step_fn(model, optimizer, x, seed, bf16)()
    grads = torch.cat([p.grad.detach().double().flatten() for p in model.parameters()
                       if p.grad is not None])
    losses = {k: float(v.detach().mean()) for k, v in losses.items()}
    return losses, codes.detach().cpu(), grads.cpu()


def compare(ref, got) -> dict:
    ref_losses, ref_codes, ref_grads = ref
    losses, codes, grads = got
    loss_rel = {k: abs(losses[k] - v) / max(abs(v), 1e-30) for k, v in ref_losses.items()}
    return {
        "loss_rel_diff_max": max(loss_rel.values()),
        "loss_rel_diff": loss_rel,
        "codes_equal_frac": float((codes == ref_codes).double().mean()),
        "grad_norm_rel_diff": float((grads - ref_grads).norm() / ref_grads.norm()),
    }


def run_preset(name: str, args, device: torch.device) -> list[dict]:
    preset = PRESETS[name]
    torch.manual_seed(args.seed)
    model = VQShape(**preset.model).to(device).train()
    batch = args.batch or preset.train.batch_size
    x = (torch.randn(batch, model.len_input).cumsum(-1) / model.len_input**0.5).to(device)
    rows, ref = [], None
    for backend in BACKENDS:
        model.backend = backend
        row = {"preset": name, "backend": backend, "batch": batch, "bf16": args.bf16,
               "device": str(device),
               "parameters": sum(p.numel() for p in model.parameters())}
        try:
            check = first_step(model, x, args.seed, args.bf16)
            timed = copy.deepcopy(model)
            optimizer = torch.optim.AdamW(timed.parameters(), lr=1e-4)
            step = step_fn(timed, optimizer, x, args.seed, args.bf16)
            row.update(H.time_call(step, device, budget_s=args.budget, max_repeats=args.repeats))
            row["series_per_s"] = batch / row["median_s"]
            row["peak_extra_bytes"], _ = H.measure_peak(step, device)
            if ref is None:
                ref = check
            else:
                row.update(compare(ref, check))
            del timed, optimizer
        except Exception as exc:  # record, do not crash the benchmark
            row["error"] = H.error_text(exc)
        rows.append(row)
    model.backend = None
    if "median_s" in rows[0] and "median_s" in rows[-1]:
        rows[-1]["speedup_vs_reference"] = rows[0]["median_s"] / rows[-1]["median_s"]
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'preset':10s} {'backend':10s} {'batch':>5s} {'bf16':>5s} {'ms/step':>22s} "
          f"{'series/s':>9s} {'peak MiB':>9s} {'speed-up':>8s}  first step vs reference")
    for r in rows:
        if "error" in r:
            print(f"{r['preset']:10s} {r['backend']:10s} ERROR {r['error'][:200]}")
            continue
        iqr = f"{r['median_s'] * 1e3:.2f} [{r['q1_s'] * 1e3:.2f}-{r['q3_s'] * 1e3:.2f}]"
        peak = "-" if r.get("peak_extra_bytes") is None else f"{r['peak_extra_bytes'] / 2**20:.0f}"
        speed = f"{r['speedup_vs_reference']:.2f}x" if "speedup_vs_reference" in r else "-"
        diff = ""
        if "loss_rel_diff_max" in r:
            diff = (f"losses {r['loss_rel_diff_max']:.1e}, codes equal "
                    f"{r['codes_equal_frac']:.4f}, grads {r['grad_norm_rel_diff']:.1e}")
        print(f"{r['preset']:10s} {r['backend']:10s} {r['batch']:5d} {str(r['bf16']):>5s} "
              f"{iqr:>22s} {r['series_per_s']:9.0f} {peak:>9s} {speed:>8s}  {diff}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--preset", action="append", choices=sorted(PRESETS),
                   help="presets to run (default: default; on CUDA also paper)")
    p.add_argument("--batch", type=int, default=None, help="series per step (default: preset's)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (as the authors on GPUs)")
    p.add_argument("--repeats", type=int, default=10, help="max timed steps per row")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timed steps per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write all rows and the environment here (atomically)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = H.resolve_device(args.device)
    presets = args.preset or (["default", "paper"] if device.type == "cuda" else ["default"])
    env = H.environment(device)
    print("Environment:")
    H.print_environment(env)
    rows = []
    for name in presets:
        print(f"... preset {name}", flush=True)
        rows += run_preset(name, args, device)
    print_rows(rows)
    if args.json:
        H.write_json(args.json, {"benchmark": "model_step", "environment": env,
                                 "settings": vars(args), "rows": rows})
        print(f"wrote {args.json}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
