"""One pre-training step of the authors' computation against vqfast's, interleaved in one process.

    python bench/model_step.py [--device cpu|cuda] [--preset default ...] [--batch B] [--bf16]
                               [--threads N] [--steps N] [--compile] [--profile] [--json PATH]

A step is ``model(x, mode="pretrain")``, the weighted total loss, backward and an AdamW update.
Variants, built from the same initial weights:

- ``baseline``: what the authors' code computes: ``VQShape(backend="reference")`` (their
  formulas), the plain torch layers, the for-loop AdamW (torch's default on CPU). Its parity with
  the authors' fixture is tests/model/test_parity.py.
- ``ops``: vqfast's compiled ops only (``backend="auto"``), plain layers, for-loop AdamW.
- ``fast``: ``backend="auto"``, ``model.fast = True`` (vqfast.model.fast), fused AdamW
  (``vqfast.training.optim.make_optimizer``): what vqfast's training runs.
- ``fast+compile`` (``--compile``): ``fast`` with ``compile_model``; its first step (compilation
  included) is reported as the warm-up.

Each variant trains its own copy for ``--steps`` steps. Step ``i`` of every variant runs back to
back, in an order rotated each step, on the same batch ``i`` with the RNG seeded to the same value
(so the same patches and units are dropped), so a busy machine slows all of them alike. Reported
per variant: median [interquartile range] step time over the steps after ``--warmup``, the
speed-up over the baseline (ratio of medians, and the median of the per-step ratios), and how far
its losses lie from the baseline's (relative difference: at the first step, and the largest over
all steps). ``--profile`` prints torch.profiler's top entries of a few steps of each variant.
On CUDA (unverified here: no GPU was available when this was written) timings synchronize.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as H  # noqa: E402

from vqfast import VQShape  # noqa: E402
from vqfast.presets import PRESETS  # noqa: E402
from vqfast.training.optim import compile_model, make_optimizer  # noqa: E402

LOSS_KEYS = ("ts_loss", "vq_loss", "shape_loss", "dist_loss")
# Series per step where the preset's own batch (512 for the paper sizes) is too slow for a CPU.
CPU_BATCH = {"default": 64, "paper-256": 32, "paper": 32}


class Variant:
    def __init__(self, name: str, model: VQShape, optimizer, call=None):
        self.name, self.model, self.optimizer = name, model, optimizer
        self.call = call or model
        self.times: list[float] = []
        self.losses: list[dict] = []
        self.warmup_s: float | None = None

    def step(self, x, seed: int, bf16: bool) -> None:
        torch.manual_seed(seed)
        autocast = (torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16
                    else contextlib.nullcontext())
        H.sync(x.device)
        start = time.perf_counter()
        with autocast:
            _, losses = self.call(x, mode="pretrain")
            loss = self.model.total_loss(losses)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        H.sync(x.device)
        self.times.append(time.perf_counter() - start)
        self.losses.append({k: float(losses[k].detach().float().mean()) for k in LOSS_KEYS})


def build_variants(model: VQShape, args) -> list[Variant]:
    def copy_of(backend, fast):
        m = copy.deepcopy(model)
        m.backend, m.fast = backend, fast
        return m

    lr = 1e-3
    base = copy_of("reference", False)
    ops = copy_of("auto", False)
    fast = copy_of("auto", True)
    variants = [
        Variant("baseline", base, torch.optim.AdamW(base.parameters(), lr=lr, foreach=False)),
        Variant("ops", ops, torch.optim.AdamW(ops.parameters(), lr=lr, foreach=False)),
        Variant("fast", fast, make_optimizer(fast.parameters(), lr=lr)),
    ]
    if args.compile:
        compiled = copy_of("auto", True)
        variants.append(Variant("fast+compile", compiled,
                                make_optimizer(compiled.parameters(), lr=lr),
                                call=compile_model(compiled)))
    return variants


def batches(args, batch: int, length: int, device) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(args.seed + 1)
    return [(torch.randn(batch, length, generator=g).cumsum(-1) / length**0.5).to(device)
            for _ in range(args.steps)]


def run_preset(name: str, args, device: torch.device) -> list[dict]:
    torch.manual_seed(args.seed)
    model = VQShape(**PRESETS[name].model).to(device).train()
    batch = args.batch or (CPU_BATCH.get(name) if device.type == "cpu" else None) \
        or PRESETS[name].train.batch_size
    data = batches(args, batch, model.len_input, device)
    variants = build_variants(model, args)
    for i, x in enumerate(data):
        order = variants[i % len(variants):] + variants[:i % len(variants)]
        for v in order:
            v.step(x, args.seed + i, args.bf16)
    for v in variants:
        if v.name == "fast+compile":
            v.warmup_s = v.call.warmup_seconds
    if args.profile:
        profile(variants, data, args)
    return summarize(name, batch, variants, args, device)


def summarize(name, batch, variants, args, device) -> list[dict]:
    base = variants[0]
    skip = args.warmup
    rows = []
    for v in variants:
        times = v.times[skip:]
        row = {"preset": name, "variant": v.name, "batch": batch, "bf16": args.bf16,
               "device": str(device), "threads": torch.get_num_threads(),
               "parameters": sum(p.numel() for p in v.model.parameters()),
               **H.summarize_times(times), "series_per_s": batch / statistics.median(times)}
        if v is not base:
            row["speedup_vs_baseline"] = statistics.median(base.times[skip:]) / row["median_s"]
            row["speedup_per_step_median"] = statistics.median(
                b / t for b, t in zip(base.times[skip:], times))
            rel = [{k: abs(a[k] - b[k]) / max(abs(b[k]), 1e-30) for k in LOSS_KEYS}
                   for a, b in zip(v.losses, base.losses)]
            row["loss_rel_diff_first_step"] = max(rel[0].values())
            row["loss_rel_diff_max"] = max(max(r.values()) for r in rel)
        if v.warmup_s is not None:
            row["first_step_s"] = v.warmup_s
        rows.append(row)
    return rows


def profile(variants, data, args) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU]
    if data[0].device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sort = "self_cuda_time_total" if data[0].device.type == "cuda" else "self_cpu_time_total"
    for v in variants:
        with torch_profile(activities=activities) as prof:
            for i, x in enumerate(data[:3]):
                v.step(x, args.seed + i, args.bf16)
        print(f"\n--- profile: {v.name}, {min(3, len(data))} steps")
        print(prof.key_averages().table(sort_by=sort, row_limit=args.profile_rows))


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'preset':10s} {'variant':13s} {'batch':>5s} {'thr':>3s} {'ms/step [IQR]':>24s} "
          f"{'series/s':>9s} {'speed-up':>16s}  losses vs baseline (first / max rel. diff)")
    for r in rows:
        ms = f"{r['median_s'] * 1e3:.1f} [{r['q1_s'] * 1e3:.1f}-{r['q3_s'] * 1e3:.1f}]"
        speed = "-"
        if "speedup_vs_baseline" in r:
            speed = f"{r['speedup_vs_baseline']:.2f}x ({r['speedup_per_step_median']:.2f}x)"
        diff = ""
        if "loss_rel_diff_max" in r:
            diff = f"{r['loss_rel_diff_first_step']:.1e} / {r['loss_rel_diff_max']:.1e}"
        if "first_step_s" in r:
            diff += f"  first step (compiles) {r['first_step_s']:.1f} s"
        print(f"{r['preset']:10s} {r['variant']:13s} {r['batch']:5d} {r['threads']:3d} "
              f"{ms:>24s} {r['series_per_s']:9.0f} {speed:>16s}  {diff}")
    print("speed-up: ratio of medians (median of per-step ratios)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--preset", action="append", choices=sorted(PRESETS),
                   help="presets to run, repeatable (default: default; on CUDA also paper)")
    p.add_argument("--batch", type=int, default=None,
                   help="series per step (default on CPU: default 64, paper-256 and paper 32; "
                        "on CUDA the preset's)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (as the authors on GPUs)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--steps", type=int, default=12, help="steps per variant (default 12)")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    p.add_argument("--compile", action="store_true", help="add the fast+compile variant")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top entries")
    p.add_argument("--profile-rows", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write all rows and the environment here (atomically)")
    args = p.parse_args(argv)
    if args.steps < args.warmup + 3:
        p.error(f"--steps must be at least --warmup + 3 = {args.warmup + 3}")
    if args.batch is not None and args.batch < 1:
        p.error("--batch must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = H.resolve_device(args.device)
    presets = args.preset or (["default", "paper"] if device.type == "cuda" else ["default"])
    env = H.environment(device)
    print("Environment:")
    H.print_environment(env)
    start = H.cpu_snapshot()
    rows = []
    for name in presets:
        print(f"... preset {name}", flush=True)
        rows += run_preset(name, args, device)
    env["cpu_during_run"] = H.other_cpu_share(start, H.cpu_snapshot())
    print_rows(rows)
    print(f"CPU use during the run: {env['cpu_during_run']}; load average {H.load_average()}")
    if args.json:
        H.write_json(args.json, {"benchmark": "model_step", "environment": env,
                                 "settings": vars(args), "rows": rows})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
