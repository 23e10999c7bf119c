"""Short summary of a ``bench/gpu_check.sh`` run: step status, then the key benchmark numbers.

    python bench/summary.py OUT_DIR

Reads ``OUT_DIR/steps.tsv`` (written by gpu_check.sh), the pytest log and the JSON files of the
benchmarks. Needs only the standard library, so it still reports when torch or vqfast is broken.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pytest_outcome(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    pattern = re.compile(r"\b(passed|failed|error|errors|skipped|no tests ran)\b")
    for line in reversed(lines):
        if pattern.search(line):
            return line.strip("= ").strip()[:100]
    return (lines[-1][:100] if lines else "empty log")


def print_steps(out_dir: Path) -> None:
    print(f"{'step':12s} {'rc':>4s} {'seconds':>8s} {'limit':>6s}  outcome")
    try:
        steps = [line.split("\t") for line in (out_dir / "steps.tsv").read_text().splitlines()]
    except OSError:
        print("  (no steps.tsv)")
        return
    for name, rc, seconds, limit in steps:
        outcome = "ok" if rc == "0" else ("TIMED OUT" if rc in ("124", "137") else "FAILED")
        if name == "tests":
            outcome += f" ({pytest_outcome(out_dir / 'tests.log')})"
        print(f"{name:12s} {rc:>4s} {seconds:>8s} {limit:>6s}  {outcome}")


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_quantize(data: dict) -> None:
    acc = data.get("acceptance", {})
    errs = acc.get("loss_rel_err_vs_authors_fp32") or [None] * 3
    state = "" if data.get("complete") else " (INCOMPLETE: cut short)"
    env = data.get("environment", {})
    print(f"device: {env.get('device_name')} | torch {env.get('torch')} | triton "
          f"{env.get('triton')} | vqfast auto: {env.get('vqfast_backends_auto')}")
    print(f"quantize{state}, N=65,536 K=512 D=8, {acc.get('nearest_impl')}:")
    print(f"  nearest code: {fmt(acc.get('nearest_speedup_vs_authors'))}x vs authors, "
          f"FAISS(cpu) time / vqfast time {fmt(acc.get('nearest_faiss_time_over_vqfast'), '.2f')}, "
          f"correct fraction {fmt(acc.get('nearest_correct_frac'), '.6f')}")
    print(f"  vq_loss fwd+bwd: {fmt(acc.get('loss_fwd_bwd_speedup_vs_authors'))}x vs authors, "
          f"peak memory authors/vqfast "
          f"{fmt(acc.get('loss_fwd_bwd_peak_memory_authors_over_vqfast'))}x, max rel err "
          f"value/grad z/grad cb {' / '.join(fmt(e, '.1e') for e in errs)}")
    failed = [r for r in data.get("rows", []) if r.get("error")]
    for r in failed:
        print(f"  ERROR {r['op']} {r['impl']} N={r['N']} K={r['K']} D={r['D']}: "
              f"{r['error'][:120]}")


def print_subsequence(data: dict) -> None:
    print("subsequence (B=512 N=64 S=128 T=512): speedup vs authors, max abs diff")
    for r in data.get("rows", []):
        if r["impl"] == "authors":
            continue
        diffs = [v for k, v in r.items() if k.startswith("max_abs_diff")]
        worst = max(diffs) if diffs else None
        text = r.get("error") or (
            f"{fmt(r.get('speedup_vs_authors'), '.2f')}x, max abs diff {fmt(worst, '.1e')}"
        )
        print(f"  {r['mode']:7s} smooth={r['smooth']} {r['impl']:20s} {text[:120]}")


def print_large(data: dict) -> None:
    print("large cases: median ms, speed-up vs authors (x), tokens/s")
    for r in data.get("rows", []):
        what = (f"  {r['op']:12s} {r.get('mode', ''):7s} N={r['N']} K={r['K']} D={r['D']} "
                f"{r['impl']:24s}")
        if "median_s" not in r:
            print(f"{what} {(r.get('error') or r.get('skipped') or '')[:80]}")
            continue
        speedup = fmt(r.get("speedup_vs_authors"), ".1f")
        print(f"{what} {r['median_s'] * 1e3:9.3f} ms {speedup:>7s}x "
              f"{r['tokens_per_s'] / 1e6:9.1f} M/s")


def print_model_step(data: dict) -> None:
    print("model step (pretrain fwd+bwd+AdamW): ms/step, speed-up of auto over reference, diffs")
    for r in data.get("rows", []):
        what = f"  {r['preset']:8s} batch={r['batch']} bf16={r['bf16']} {r['backend']:9s}"
        if "error" in r:
            print(f"{what} ERROR {r['error'][:100]}")
            continue
        diff = ""
        if "loss_rel_diff_max" in r:
            diff = (f" losses {fmt(r['loss_rel_diff_max'], '.1e')} codes equal "
                    f"{fmt(r['codes_equal_frac'], '.4f')} "
                    f"grads {fmt(r['grad_norm_rel_diff'], '.1e')}")
        speedup = fmt(r.get("speedup_vs_reference"), ".2f")
        print(f"{what} {r['median_s'] * 1e3:8.2f} ms {speedup:>6s}x{diff}")


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1] if len(argv) > 1 else "bench/out")
    print(f"\n===== GPU check summary ({out_dir}) =====")
    print_steps(out_dir)
    for printer, name in ((print_quantize, "quantize-cuda.json"),
                          (print_subsequence, "subsequence-cuda.json"),
                          (print_large, "quantize-cuda-large.json"),
                          (print_model_step, "model-step-cuda.json"),
                          (print_model_step, "model-step-cuda-bf16.json")):
        data = load_json(out_dir / name)
        if data is None:
            print(f"no {name}")
        else:
            printer(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
