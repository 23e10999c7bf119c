"""The VQ loss with its entropy term: vqfast against the authors' ``EuclCodebook`` computation.

Forward (under ``no_grad``) and forward+backward of vqfast's backends and of ``vq_loss_ref``, with
commitment 0.25, entropy 0.1, gamma 1, temperature 0.01. Correctness: per tensor (the loss and
both gradients) ``||a - b|| / ||b||`` and the worst element ``max|a - b| / max|b|`` against the
authors' formula in float32 and, for smaller cases, in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import _harness as H
import torch

import vqfast.ops as vqfast_ops

OP = "vq_loss"
MODES = ("fwd", "fwd+bwd")
LOSS_ARGS = {
    "commit_weight": 0.25, "entropy_weight": 0.1, "entropy_gamma": 1.0, "temperature": 0.01
}
TENSORS = ("loss", "grad_z", "grad_codebook")
# Peak bytes of the authors' loss per mode, in units of N*K*4 bytes (float32), rounded up from
# its measured peaks at N=65,536, K=512, D=8 on CPU (5.1, 7.1). Used only to skip cases.
MATRIX_FACTORS = {"fwd": 5.5, "fwd+bwd": 7.5}
FP64_MAX_MATRIX = 1 << 26  # tokens x codes up to which the float64 reference is computed


def loss_fn(impl: str) -> Callable:
    if impl == "authors":
        return lambda z, cb: vqfast_ops.vq_loss_ref(z, cb, *LOSS_ARGS.values())
    backend = impl.split()[1]
    return lambda z, cb: vqfast_ops.vq_loss(z, cb, **LOSS_ARGS, backend=backend)


def loss_and_grads(fn: Callable, z, codebook) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = z.detach().requires_grad_(True)
    codebook = codebook.detach().requires_grad_(True)
    loss = fn(z, codebook)
    gz, gc = torch.autograd.grad(loss, (z, codebook))
    return loss.detach(), gz, gc


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def norm_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def loss_errors(got, ref, prefix: str) -> dict[str, float]:
    """Per tensor: ``||a - b|| / ||b||`` (``<prefix>_<name>``) and the worst element,
    ``max|a - b| / max|b|`` (``<prefix>_<name>_worst``)."""
    out = {}
    for name, a, b in zip(TENSORS, got, ref):
        out[f"{prefix}_{name}"] = norm_rel(a, b)
        out[f"{prefix}_{name}_worst"] = max_rel(a, b)
    return out


def reference_results(z, codebook, cfg: H.Settings) -> dict[str, object]:
    """The authors' loss and gradients in float32 and (for smaller cases) float64, or None."""
    n, k = z.shape[0], codebook.shape[0]
    fn = loss_fn("authors")
    factor = MATRIX_FACTORS["fwd+bwd"]
    out: dict[str, object] = {"fp32": None, "fp64": None}
    if H.matrix_skip(factor, n, k, cfg.mem_limit) is None:
        out["fp32"] = loss_and_grads(fn, z, codebook)
    if n * k <= FP64_MAX_MATRIX and H.matrix_skip(factor, n, k, cfg.mem_limit, 8) is None:
        out["fp64"] = loss_and_grads(fn, z.double(), codebook.double())
    return out


def run_impl(impl: str, mode: str, z, codebook, refs: dict, cfg: H.Settings) -> dict:
    n, d = z.shape
    k = codebook.shape[0]
    row = H.new_row(OP, impl, N=n, K=k, D=d, runs_on=str(cfg.device), mode=mode)
    if impl.startswith(("authors", "vqfast reference")):
        reason = H.matrix_skip(MATRIX_FACTORS[mode], n, k, cfg.mem_limit)
        if reason:
            return {**row, "skipped": reason}
    fn = loss_fn(impl)
    try:
        if mode == "fwd":
            got = H.measure(row, H.no_grad_call(fn, z, codebook), cfg, tokens=n)
            for prefix in ("fp32", "fp64"):
                if refs[prefix] is not None:
                    row[f"err_vs_authors_{prefix}_loss"] = norm_rel(got, refs[prefix][0])
            return row
        got = H.measure(row, lambda: loss_and_grads(fn, z, codebook), cfg, tokens=n)
        for prefix in ("fp32", "fp64"):
            if refs[prefix] is not None:
                row.update(loss_errors(got, refs[prefix], f"err_vs_authors_{prefix}"))
    except Exception as exc:  # record, do not crash the whole benchmark
        row["error"] = H.error_text(exc)
    return row


def implementations(device: torch.device) -> list[str]:
    return [label for label, _ in H.vqfast_impls(OP, device)] + ["authors"]


def run(z: torch.Tensor, codebook: torch.Tensor, cfg: H.Settings,
        every_impl: bool = True) -> list[dict]:
    """One row per implementation and mode; ``every_impl=False`` leaves out ``vqfast reference``."""
    refs = reference_results(z, codebook, cfg)
    return [run_impl(impl, mode, z, codebook, refs, cfg) for mode in MODES
            for impl in implementations(cfg.device)
            if every_impl or not impl.startswith("vqfast reference")]


def errors(r: dict, name: str) -> str:
    a = r.get(f"err_vs_authors_fp32_{name}")
    b = r.get(f"err_vs_authors_fp64_{name}")
    return "-" if a is None and b is None else f"{H.fmt_sci(a)} | {H.fmt_sci(b)}"


def print_rows(rows: list[dict]) -> None:
    print("\nVQ loss with entropy term "
          "(err: ||a-b||/||b|| vs the authors' formula in fp32 | in fp64; the JSON also has "
          "the worst element)")
    cols = [("mode", lambda r: r["mode"])] + H.case_columns("N", "K", "D") + H.timing_columns()
    cols += [(f"err {label}", lambda r, name=name: errors(r, name))
             for label, name in (("loss", "loss"), ("grad z", "grad_z"),
                                 ("grad cb", "grad_codebook"))]
    cols.append(("note", H.note))
    H.print_table([r for r in rows if r["op"] == OP], cols)
