"""Nearest-code search and the VQ loss: vqfast against the authors' formulas and other libraries.

    python bench/quantize.py [--quick] [--json PATH] [--device cpu|cuda] [--repeats N]

Every implementation of a case gets the same inputs (``z = randn(N, D) * scale``,
``codebook = randn(K, D) * scale``, seeded). Nearest code: vqfast's compiled backends and its
reference backend, the authors' distance expansion (``vqfast.ops.nearest_code_ref``),
``torch.cdist(z, codebook).argmin(1)``, ``torch.compile`` of the authors' formula, FAISS
``IndexFlatL2`` (k=1, CPU only) and ``vector_quantize_pytorch.VectorQuantize`` (eval forward, our
codebook copied in). VQ loss (commitment 0.25, entropy 0.1, gamma 1, temperature 0.01): forward
(under ``no_grad``) and forward+backward of vqfast against ``vq_loss_ref``, the authors'
``EuclCodebook`` computation.

Columns: median time [interquartile range] over the timed repeats, tokens/s, peak extra memory of
one call, speed-up over the authors' formula in the same case, and correctness: for nearest code
the fraction of tokens whose chosen code is at the fp64 minimum distance; for the loss the max
relative difference of the value and of both gradients against the authors' formula in float32
(``max|a - b| / max|b|``) and, for smaller cases, against the same formula in float64.
"""

from __future__ import annotations

import argparse
import gc
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

LOSS_ARGS = {
    "commit_weight": 0.25, "entropy_weight": 0.1, "entropy_gamma": 1.0, "temperature": 0.01
}
ACCEPTANCE = (65_536, 512, 8)
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
GiB = 1024**3

# Peak bytes of the implementations that store tokens x codes, in units of N*K*4 bytes (float32),
# rounded up from their measured peaks at N=65,536, K=512, D=8 on CPU. Used only to skip cases.
# (measured: 3.0, 3.0, 1.04, 1.0, 4.0, 5.1, 7.1)
MATRIX_FACTORS = {
    "authors": 3.2,
    "vqfast reference": 3.2,
    "torch.cdist+argmin": 1.5,
    "torch.compile(authors)": 1.5,
    "VectorQuantize": 4.5,
    "loss fwd": 5.5,
    "loss fwd+bwd": 7.5,
}


def matrix_bytes(name: str, n: int, k: int, itemsize: int = 4) -> int:
    return int(MATRIX_FACTORS.get(name, 0.0) * n * k * itemsize)


# ---------------------------------------------------------------------------------------------
# Inputs and the fp64 truth
# ---------------------------------------------------------------------------------------------


def make_inputs(n: int, k: int, d: int, scale: float, seed: int, device: torch.device):
    gen = torch.Generator().manual_seed(seed + 1_000 * k + d)
    z = torch.randn(n, d, generator=gen) * scale
    codebook = torch.randn(k, d, generator=gen) * scale
    return z.to(device), codebook.to(device)


def exact_distance(z64: torch.Tensor, cb64: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return ((z64 - cb64[idx]) ** 2).sum(-1)


def fp64_best_distance(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Per token, the fp64 squared distance to its nearest code, in chunks of tokens."""
    z64, cb64 = z.double(), codebook.double()
    chunk = max(1, (1 << 25) // codebook.shape[0])
    best = torch.empty(z.shape[0], dtype=torch.float64, device=z.device)
    for start in range(0, z.shape[0], chunk):
        zc = z64[start : start + chunk]
        idx = ops.nearest_code_ref(zc, cb64)[0]
        best[start : start + chunk] = exact_distance(zc, cb64, idx)
    return best


def correct_fraction(indices, z: torch.Tensor, codebook: torch.Tensor, best: torch.Tensor) -> float:
    """Fraction of tokens whose chosen code is at the fp64 minimum (up to fp64 rounding)."""
    idx = torch.as_tensor(indices).reshape(-1).to(device=z.device, dtype=torch.int64)
    z64, cb64 = z.double(), codebook.double()
    tol = 1e-12 * ((z64**2).sum(-1) + (cb64**2).sum(-1).max())
    return float((exact_distance(z64, cb64, idx) <= best + tol).double().mean())


# ---------------------------------------------------------------------------------------------
# Nearest-code implementations: each builds (outside the timing) a call returning the indices
# ---------------------------------------------------------------------------------------------


@dataclass
class Impl:
    name: str
    make: Callable  # (z, codebook) -> (call, info dict)
    runs_on: str | None = None  # None: the benchmark's device


def make_vqfast(backend: str) -> Callable:
    def make(z, codebook):
        return (lambda: ops.nearest_code(z, codebook, backend=backend)[0]), {}

    return make


def make_authors(z, codebook):
    return (lambda: ops.nearest_code_ref(z, codebook)[0]), {}


def make_cdist(z, codebook):
    return (lambda: torch.cdist(z, codebook).argmin(1)), {}


def make_compiled(z, codebook):
    torch._dynamo.reset()
    compiled = torch.compile(ops.nearest_code_ref, dynamic=False)
    H.sync(z.device)
    start = time.perf_counter()
    compiled(z, codebook)
    H.sync(z.device)
    info = {"compile_s": time.perf_counter() - start, "note": "compile_s: the first call"}
    return (lambda: compiled(z, codebook)[0]), info


def make_faiss(z, codebook):
    import faiss

    zc = z.detach().cpu().float().contiguous().numpy()
    index = faiss.IndexFlatL2(codebook.shape[1])
    index.add(codebook.detach().cpu().float().contiguous().numpy())
    note = "search only (index built outside the timing)"
    if z.device.type != "cpu":
        note = "faiss-cpu is CPU-only: ran on CPU copies; " + note
    return (lambda: index.search(zc, 1)[1][:, 0]), {"note": note}


def make_vector_quantize(z, codebook):
    from vector_quantize_pytorch import VectorQuantize

    k, d = codebook.shape
    vq = VectorQuantize(dim=d, codebook_size=k).to(z.device).eval()
    note = "eval forward (argmin + gather); our codebook copied in"
    try:
        with torch.no_grad():
            vq.codebook = codebook
    except Exception as exc:  # the attribute moved: benchmark its own codebook of the same size
        note = f"eval forward; own random codebook of the same size ({H.error_text(exc, 80)})"

    def call():
        with torch.no_grad():
            return vq(z[None])[1][0]

    return call, {"note": note, "same_codebook": "copied in" in note}


def nearest_impls(device: torch.device) -> list[Impl]:
    vqfast = H.vqfast_impls("nearest_code", device)
    impls = [Impl(label, make_vqfast(backend)) for label, backend in vqfast]
    impls += [
        Impl("authors", make_authors),
        Impl("torch.cdist+argmin", make_cdist),
        Impl("torch.compile(authors)", make_compiled),
        Impl("FAISS IndexFlatL2", make_faiss, runs_on="cpu"),
        Impl("VectorQuantize", make_vector_quantize),
    ]
    return impls


# ---------------------------------------------------------------------------------------------
# Running one row
# ---------------------------------------------------------------------------------------------


@dataclass
class Settings:
    device: torch.device
    budget_s: float
    repeats: int
    mem_limit: int
    scale: float
    seed: int


def case_row(op: str, impl: str, n: int, k: int, d: int, runs_on: str) -> dict:
    return {"op": op, "impl": impl, "N": n, "K": k, "D": d, "runs_on": runs_on}


def skip_reason(name: str, n: int, k: int, cfg: Settings) -> str | None:
    need = matrix_bytes(name, n, k)
    if need > cfg.mem_limit:
        limit = cfg.mem_limit / GiB
        return f"skipped: stores tokens x codes, ~{need / GiB:.1f} GiB > {limit:g} GiB"
    return None


def measure(row: dict, call: Callable, runs_on: str, cfg: Settings) -> object:
    """Adds timing, throughput and peak memory of ``call`` to ``row``; returns one output."""
    row.update(H.time_call(call, runs_on, budget_s=cfg.budget_s, max_repeats=cfg.repeats))
    row["tokens_per_s"] = row["N"] / row["median_s"]
    row["peak_extra_bytes"], out = H.measure_peak(call, runs_on)
    return out


def run_nearest_impl(impl: Impl, z, codebook, best, cfg: Settings) -> dict:
    n, d = z.shape
    k = codebook.shape[0]
    runs_on = impl.runs_on or str(cfg.device)
    row = case_row("nearest_code", impl.name, n, k, d, runs_on)
    reason = skip_reason(impl.name.split(" (")[0], n, k, cfg)
    if reason:
        return {**row, "skipped": reason}
    try:
        call, info = impl.make(z, codebook)
    except ImportError as exc:  # an optional library that is not installed
        return {**row, "skipped": f"not importable: {H.error_text(exc, 120)}"}
    except Exception as exc:  # record, do not crash the whole benchmark
        return {**row, "error": H.error_text(exc)}
    row.update(info)
    try:
        out = measure(row, call, runs_on, cfg)
        if info.get("same_codebook", True):
            row["correct_frac"] = correct_fraction(out, z, codebook, best)
    except Exception as exc:
        row["error"] = H.error_text(exc)
    return row


# ---------------------------------------------------------------------------------------------
# VQ loss
# ---------------------------------------------------------------------------------------------


def loss_fn(impl: str) -> Callable:
    if impl == "authors":
        return lambda z, cb: ops.vq_loss_ref(z, cb, *LOSS_ARGS.values())
    backend = impl.split()[1]
    return lambda z, cb: ops.vq_loss(z, cb, **LOSS_ARGS, backend=backend)


def loss_and_grads(fn: Callable, z, codebook) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = z.detach().requires_grad_(True)
    codebook = codebook.detach().requires_grad_(True)
    loss = fn(z, codebook)
    gz, gc = torch.autograd.grad(loss, (z, codebook))
    return loss.detach(), gz, gc


def forward_call(fn: Callable, z, codebook) -> Callable:
    def call():
        with torch.no_grad():
            return fn(z, codebook)

    return call


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def norm_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def loss_errors(got, ref, prefix: str) -> dict[str, float]:
    """Per tensor: ``||a - b|| / ||b||`` (``<prefix>_<name>``) and the worst element,
    ``max|a - b| / max|b|`` (``<prefix>_<name>_worst``)."""
    names = ("loss", "grad_z", "grad_codebook")
    out = {}
    for name, a, b in zip(names, got, ref):
        out[f"{prefix}_{name}"] = norm_rel(a, b)
        out[f"{prefix}_{name}_worst"] = max_rel(a, b)
    return out


def reference_results(z, codebook, cfg: Settings) -> dict[str, object]:
    """The authors' loss and gradients in float32 and (for smaller cases) float64, or None."""
    n, k = z.shape[0], codebook.shape[0]
    fn = loss_fn("authors")
    out: dict[str, object] = {"fp32": None, "fp64": None}
    if matrix_bytes("loss fwd+bwd", n, k) <= cfg.mem_limit:
        out["fp32"] = loss_and_grads(fn, z, codebook)
    if n * k <= 1 << 26 and matrix_bytes("loss fwd+bwd", n, k, 8) <= cfg.mem_limit:
        out["fp64"] = loss_and_grads(fn, z.double(), codebook.double())
    return out


def run_loss_impl(impl: str, mode: str, z, codebook, refs: dict, cfg: Settings) -> dict:
    n, d = z.shape
    k = codebook.shape[0]
    row = {**case_row("vq_loss", impl, n, k, d, str(cfg.device)), "mode": mode}
    if impl.startswith(("authors", "vqfast reference")):
        reason = skip_reason(f"loss {mode}", n, k, cfg)
        if reason:
            return {**row, "skipped": reason}
    fn = loss_fn(impl)
    try:
        if mode == "fwd":
            got = measure(row, forward_call(fn, z, codebook), str(cfg.device), cfg)
            for prefix in ("fp32", "fp64"):
                if refs[prefix] is not None:
                    row[f"err_vs_authors_{prefix}_loss"] = norm_rel(got, refs[prefix][0])
            return row
        got = measure(row, lambda: loss_and_grads(fn, z, codebook), str(cfg.device), cfg)
        for prefix in ("fp32", "fp64"):
            if refs[prefix] is not None:
                row.update(loss_errors(got, refs[prefix], f"err_vs_authors_{prefix}"))
    except Exception as exc:  # record, do not crash the whole benchmark
        row["error"] = H.error_text(exc)
    return row


def loss_impls(device: torch.device) -> list[str]:
    return [label for label, _ in H.vqfast_impls("vq_loss", device)] + ["authors"]


# ---------------------------------------------------------------------------------------------
# Sweep, speed-ups, printing
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    n: int
    k: int
    d: int
    nearest: bool = True
    loss: bool = True
    every_impl: bool = True


def keep(name: str, case: Case) -> bool:
    return case.every_impl or not name.startswith("vqfast reference")


def run_case(case: Case, cfg: Settings) -> list[dict]:
    z, codebook = make_inputs(case.n, case.k, case.d, cfg.scale, cfg.seed, cfg.device)
    rows = []
    if case.nearest:
        best = fp64_best_distance(z, codebook)
        for impl in nearest_impls(cfg.device):
            if keep(impl.name, case):
                rows.append(run_nearest_impl(impl, z, codebook, best, cfg))
        del best
    if case.loss:
        refs = reference_results(z, codebook, cfg)
        for mode in ("fwd", "fwd+bwd"):
            for impl in loss_impls(cfg.device):
                if keep(impl, case):
                    rows.append(run_loss_impl(impl, mode, z, codebook, refs, cfg))
    gc.collect()
    return rows


def add_speedups(rows: list[dict]) -> None:
    """``speedup_vs_authors`` = the authors' median / this median, same op, case and mode."""
    def key(r):
        return (r["op"], r["N"], r["K"], r["D"], r.get("mode"))

    authors = {key(r): r["median_s"] for r in rows if r["impl"] == "authors" and "median_s" in r}
    for r in rows:
        if "median_s" in r and key(r) in authors:
            r["speedup_vs_authors"] = authors[key(r)] / r["median_s"]


def status(r: dict) -> str:
    text = r.get("skipped") or r.get("error") or r.get("note") or ""
    if r.get("compile_s") is not None:
        text = f"first call (compiles) {r['compile_s']:.1f} s"
    return text[:90]


def iqr(r: dict) -> str:
    if "q1_s" not in r:
        return "-"
    return f"{H.fmt_ms(r['q1_s'])}-{H.fmt_ms(r['q3_s'])}"


def common_columns() -> list:
    return [
        ("N", lambda r: str(r["N"])),
        ("K", lambda r: str(r["K"])),
        ("D", lambda r: str(r["D"])),
        ("impl", lambda r: r["impl"]),
        ("on", lambda r: r["runs_on"]),
        ("median ms", lambda r: H.fmt_ms(r.get("median_s"))),
        ("IQR ms", iqr),
        ("n", lambda r: H.fmt(r.get("repeats"))),
        ("Mtok/s", lambda r: H.fmt(r.get("tokens_per_s") and r["tokens_per_s"] / 1e6, ".3g")),
        ("peak MiB", lambda r: H.fmt_mib(r.get("peak_extra_bytes"))),
        ("speedup", lambda r: H.fmt(r.get("speedup_vs_authors"), ".2f")),
    ]


def print_nearest(rows: list[dict]) -> None:
    print("\nNearest code (speedup: authors' median / this median; correct: fraction at fp64 min)")
    cols = common_columns() + [
        ("correct", lambda r: H.fmt(r.get("correct_frac"), ".6f")),
        ("note", status),
    ]
    H.print_table([r for r in rows if r["op"] == "nearest_code"], cols)


def print_loss(rows: list[dict]) -> None:
    print("\nVQ loss with entropy term "
          "(err: ||a-b||/||b|| vs the authors' formula in fp32 | in fp64; the JSON also has "
          "the worst element)")
    cols = [("mode", lambda r: r["mode"])] + common_columns() + [
        ("err loss", lambda r: errors(r, "loss")),
        ("err grad z", lambda r: errors(r, "grad_z")),
        ("err grad cb", lambda r: errors(r, "grad_codebook")),
        ("note", status),
    ]
    H.print_table([r for r in rows if r["op"] == "vq_loss"], cols)


def errors(r: dict, name: str) -> str:
    a = r.get(f"err_vs_authors_fp32_{name}")
    b = r.get(f"err_vs_authors_fp64_{name}")
    return "-" if a is None and b is None else f"{H.fmt_sci(a)} | {H.fmt_sci(b)}"


# ---------------------------------------------------------------------------------------------
# Acceptance summary (K=512, D=8, N=65,536)
# ---------------------------------------------------------------------------------------------


def find(rows: list[dict], op: str, impl_prefix: str, mode: str | None = None) -> dict | None:
    n, k, d = ACCEPTANCE
    for r in rows:
        if (r["op"], r["N"], r["K"], r["D"], r.get("mode")) == (op, n, k, d, mode) and r[
            "impl"
        ].startswith(impl_prefix):
            return r if "median_s" in r else None
    return None


def find_auto(rows: list[dict], op: str, mode: str | None = None) -> dict | None:
    n, k, d = ACCEPTANCE
    for r in rows:
        key = (r["op"], r["N"], r["K"], r["D"], r.get("mode"))
        if key == (op, n, k, d, mode) and r["impl"].endswith("(auto)") and "median_s" in r:
            return r
    return None


def ratio(a: dict | None, b: dict | None, field: str) -> float | None:
    if a is None or b is None or a.get(field) in (None, 0) or b.get(field) is None:
        return None
    return b[field] / a[field]


def acceptance(rows: list[dict]) -> dict[str, object]:
    auto = find_auto(rows, "nearest_code")
    loss_auto = find_auto(rows, "vq_loss", "fwd+bwd")
    loss_ref = find(rows, "vq_loss", "authors", "fwd+bwd")
    names = ("loss", "grad_z", "grad_codebook")
    errs = [loss_auto.get(f"err_vs_authors_fp32_{n}") for n in names] if loss_auto else None
    worst = ([loss_auto.get(f"err_vs_authors_fp32_{n}_worst") for n in names] if loss_auto
             else None)
    fp64 = [loss_auto.get(f"err_vs_authors_fp64_{n}") for n in names] if loss_auto else None
    authors_fp64 = ([loss_ref.get(f"err_vs_authors_fp64_{n}") for n in names] if loss_ref
                    else None)
    return {
        "case": dict(zip("NKD", ACCEPTANCE)),
        "nearest_impl": auto and auto["impl"],
        "nearest_speedup_vs_authors": ratio(
            auto, find(rows, "nearest_code", "authors"), "median_s"
        ),
        "nearest_faiss_time_over_vqfast": ratio(
            auto, find(rows, "nearest_code", "FAISS"), "median_s"
        ),
        "nearest_correct_frac": auto and auto.get("correct_frac"),
        "loss_fwd_bwd_speedup_vs_authors": ratio(loss_auto, loss_ref, "median_s"),
        "loss_fwd_bwd_peak_memory_authors_over_vqfast": ratio(
            loss_auto, loss_ref, "peak_extra_bytes"
        ),
        "loss_rel_err_vs_authors_fp32": errs,
        "loss_worst_element_err_vs_authors_fp32": worst,
        "loss_rel_err_vs_fp64_vqfast": fp64,
        "loss_rel_err_vs_fp64_authors_fp32": authors_fp64,
    }


def print_acceptance(acc: dict[str, object]) -> None:
    def f(v, spec=".1f"):
        return H.fmt(v, spec)

    errs = acc["loss_rel_err_vs_authors_fp32"] or [None] * 3
    print("\nAcceptance (N=65,536 tokens, K=512 codes, D=8):")
    if acc["nearest_impl"] is None and acc["loss_fwd_bwd_speedup_vs_authors"] is None:
        print("  not measured in this run (run --quick or --case 65536,512,8)")
        return
    print(f"  nearest code, {acc['nearest_impl']}: "
          f"{f(acc['nearest_speedup_vs_authors'])}x faster than the authors' formula; "
          f"FAISS IndexFlatL2 takes {f(acc['nearest_faiss_time_over_vqfast'], '.2f')}x vqfast's "
          f"time; correct fraction {f(acc['nearest_correct_frac'], '.6f')}")
    print(f"  vq_loss fwd+bwd: {f(acc['loss_fwd_bwd_speedup_vs_authors'])}x faster than the "
          f"authors' module, {f(acc['loss_fwd_bwd_peak_memory_authors_over_vqfast'])}x less peak "
          f"extra memory; relative error (||a-b||/||b||) vs the authors in fp32: value "
          f"{H.fmt_sci(errs[0])}, grad z {H.fmt_sci(errs[1])}, grad codebook "
          f"{H.fmt_sci(errs[2])}")
    worst = acc.get("loss_worst_element_err_vs_authors_fp32") or [None] * 3
    fp64 = acc.get("loss_rel_err_vs_fp64_vqfast") or [None] * 3
    authors = acc.get("loss_rel_err_vs_fp64_authors_fp32") or [None] * 3
    print(f"    worst element (max|a-b|/max|b|): value {H.fmt_sci(worst[0])}, grad z "
          f"{H.fmt_sci(worst[1])}, grad codebook {H.fmt_sci(worst[2])}")
    print(f"    against the formula in fp64: vqfast {', '.join(H.fmt_sci(v) for v in fp64)}; "
          f"the authors' fp32 {', '.join(H.fmt_sci(v) for v in authors)}")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


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


def settings_from(args, device: torch.device) -> Settings:
    return Settings(
        device=device,
        budget_s=args.budget if args.budget is not None else (0.4 if args.quick else 1.0),
        repeats=args.repeats if args.repeats is not None else (15 if args.quick else 30),
        mem_limit=int(args.mem_limit_gb * GiB),
        scale=args.scale,
        seed=args.seed,
    )


def save(args, cfg: Settings, env: dict, rows: list[dict], started: float, done: bool) -> None:
    """Writes the JSON (after every case, so a run cut short still leaves its rows)."""
    if not args.json:
        return
    add_speedups(rows)
    payload = {
        "benchmark": "quantize",
        "complete": done,
        "environment": env,
        "settings": {**vars(args), "budget_s": cfg.budget_s, "max_repeats": cfg.repeats},
        "loss_args": LOSS_ARGS,
        "elapsed_s": time.perf_counter() - started,
        "acceptance": acceptance(rows),
        "rows": rows,
    }
    H.write_json(args.json, payload)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = H.resolve_device(args.device)
    cfg = settings_from(args, device)
    env = H.environment(device)
    print("Environment:")
    H.print_environment(env)
    H.warn_if_busy(env)
    started, snapshot = time.perf_counter(), H.cpu_snapshot()
    rows: list[dict] = []
    for case in cases(args):
        elapsed = time.perf_counter() - started
        print(f"... N={case.n} K={case.k} D={case.d} ({elapsed:.0f} s)", flush=True)
        rows += run_case(case, cfg)
        save(args, cfg, env, rows, started, done=False)
    add_speedups(rows)
    print_nearest(rows)
    print_loss(rows)
    print_acceptance(acceptance(rows))
    env["load_average_at_end"] = H.load_average()
    env["cpu_during_run"] = H.other_cpu_share(snapshot, H.cpu_snapshot())
    print(f"\nTotal {time.perf_counter() - started:.0f} s; CPU use during the run "
          f"{env['cpu_during_run']}; load average at the end {env['load_average_at_end']}")
    save(args, cfg, env, rows, started, done=True)
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
