"""Nearest-code search: vqfast against the authors' formula and other libraries.

Implementations: vqfast's compiled backends and its reference backend, the authors' distance
expansion (``vqfast.ops.nearest_code_ref``), ``torch.cdist(z, codebook).argmin(1)``,
``torch.compile`` of the authors' formula, FAISS ``IndexFlatL2`` (k=1, CPU only) and
``vector_quantize_pytorch.VectorQuantize`` (eval forward, our codebook copied in). Correctness:
the fraction of tokens whose chosen code is at the fp64 minimum distance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import _harness as H
import torch

import vqfast.ops as vqfast_ops
from vqfast.ops.nearest_code import nearest_distance_fp64

OP = "nearest_code"

# Peak bytes of the implementations that store tokens x codes, in units of N*K*4 bytes (float32),
# rounded up from their measured peaks at N=65,536, K=512, D=8 on CPU (3.0, 3.0, 1.04, 1.0, 4.0).
# Used only to skip cases.
MATRIX_FACTORS = {
    "authors": 3.2,
    "vqfast reference": 3.2,
    "torch.cdist+argmin": 1.5,
    "torch.compile(authors)": 1.5,
    "VectorQuantize": 4.5,
}


def correct_fraction(indices, z: torch.Tensor, codebook: torch.Tensor, best: torch.Tensor) -> float:
    """Fraction of tokens whose chosen code is at the fp64 minimum ``best`` (up to rounding)."""
    idx = torch.as_tensor(indices).reshape(-1).to(device=z.device, dtype=torch.int64)
    z64, cb64 = z.double(), codebook.double()
    chosen = ((z64 - cb64[idx]) ** 2).sum(-1)
    tol = 1e-12 * ((z64**2).sum(-1) + (cb64**2).sum(-1).max())
    return float((chosen <= best + tol).double().mean())


# ---------------------------------------------------------------------------------------------
# Implementations: each builds (outside the timing) a call returning the indices
# ---------------------------------------------------------------------------------------------


@dataclass
class Impl:
    name: str
    make: Callable  # (z, codebook) -> (call, info dict)
    runs_on: str | None = None  # None: the benchmark's device


def make_vqfast(backend: str) -> Callable:
    def make(z, codebook):
        return (lambda: vqfast_ops.nearest_code(z, codebook, backend=backend)[0]), {}

    return make


def make_authors(z, codebook):
    return (lambda: vqfast_ops.nearest_code_ref(z, codebook)[0]), {}


def make_cdist(z, codebook):
    return (lambda: torch.cdist(z, codebook).argmin(1)), {}


def make_compiled(z, codebook):
    torch._dynamo.reset()
    compiled = torch.compile(vqfast_ops.nearest_code_ref, dynamic=False)
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


def implementations(device: torch.device) -> list[Impl]:
    impls = [Impl(label, make_vqfast(backend)) for label, backend in H.vqfast_impls(OP, device)]
    impls += [
        Impl("authors", make_authors),
        Impl("torch.cdist+argmin", make_cdist),
        Impl("torch.compile(authors)", make_compiled),
        Impl("FAISS IndexFlatL2", make_faiss, runs_on="cpu"),
        Impl("VectorQuantize", make_vector_quantize),
    ]
    return impls


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


def run_impl(impl: Impl, z, codebook, best, cfg: H.Settings) -> dict:
    n, d = z.shape
    k = codebook.shape[0]
    runs_on = impl.runs_on or str(cfg.device)
    row = H.new_row(OP, impl.name, N=n, K=k, D=d, runs_on=runs_on)
    factor = MATRIX_FACTORS.get(impl.name.split(" (")[0], 0.0)
    reason = H.matrix_skip(factor, n, k, cfg.mem_limit)
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
        out = H.measure(row, call, cfg, tokens=n, device=runs_on)
        if info.get("same_codebook", True):
            row["correct_frac"] = correct_fraction(out, z, codebook, best)
    except Exception as exc:
        row["error"] = H.error_text(exc)
    return row


def run(z: torch.Tensor, codebook: torch.Tensor, cfg: H.Settings,
        every_impl: bool = True) -> list[dict]:
    """One row per implementation; ``every_impl=False`` leaves out ``vqfast reference``."""
    best = nearest_distance_fp64(z, codebook)
    return [run_impl(impl, z, codebook, best, cfg) for impl in implementations(cfg.device)
            if every_impl or not impl.name.startswith("vqfast reference")]


def print_rows(rows: list[dict]) -> None:
    print("\nNearest code (speedup: authors' median / this median; correct: fraction at fp64 min)")
    cols = H.case_columns("N", "K", "D") + H.timing_columns() + [
        ("correct", lambda r: H.fmt(r.get("correct_frac"), ".6f")),
        ("note", H.note),
    ]
    H.print_table([r for r in rows if r["op"] == OP], cols)
