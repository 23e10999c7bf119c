"""Nearest-code search and per-sample code histograms.

``nearest_code(z, codebook)``: for every vector of ``z (..., D)``, the index of the code of
``codebook (K, D)`` at the smallest squared Euclidean distance (ties: the lowest index, like
``torch.argmin``) and that distance. ``code_histogram(indices, K)``: ``(B, N)`` -> ``(B, K)``
int64 counts.

Implementations: the references below (the authors' distance expansion + argmin; the specification
and test oracle), C++ (``csrc/quantize.cpp``: fused, never stores tokens x codes) and Triton
(``kernels/nearest_code.py``, ``kernels/code_histogram.py``). Compiled implementations compute each
distance as ``sum((z - e)^2)`` with float32 accumulation, which is more accurate than the
expansion; tests therefore compare chosen codes by their distance.
"""

from __future__ import annotations

import torch

from vqfast.ops import _backend

# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def squared_distances_ref(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``(M, D), (K, D) -> (M, K)``: the authors' expansion ``|z|^2 + |e|^2 - 2 z.e``."""
    return (
        torch.sum(z**2, dim=1, keepdim=True)
        + torch.sum(codebook**2, dim=1)
        - 2 * torch.matmul(z, codebook.t())
    )


def nearest_code_ref(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``z (M, D)`` -> ``(indices (M,) int64, squared distance to the chosen code (M,))``."""
    idx = torch.argmin(squared_distances_ref(z, codebook), dim=1)
    dist = ((z - codebook[idx]) ** 2).sum(-1)
    return idx, dist


def code_histogram_ref(indices: torch.Tensor, num_code: int) -> torch.Tensor:
    """``(B, N)`` int64 -> ``(B, num_code)`` int64 counts, as the authors' ``scatter_add_``."""
    hist = torch.zeros(indices.shape[0], num_code, device=indices.device, dtype=torch.int64)
    return hist.scatter_add_(1, indices, torch.ones_like(indices))


# ---------------------------------------------------------------------------------------------
# Registered ops
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("vqfast::nearest_code", mutates_args=())
def _nearest_code_op(
    z: torch.Tensor, codebook: torch.Tensor, backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "cpp":
        return torch.ops.vqfast_C.nearest_code(z, codebook)
    from vqfast.kernels import nearest_code as kernel

    return kernel.nearest_code(z, codebook)


@_nearest_code_op.register_fake
def _(z, codebook, backend):
    acc = torch.float64 if z.dtype == torch.float64 else torch.float32
    return z.new_empty(z.shape[0], dtype=torch.int64), z.new_empty(z.shape[0], dtype=acc)


def _nearest_setup(ctx, inputs, output):
    z, codebook, _ = inputs
    idx, _ = output
    ctx.mark_non_differentiable(idx)
    ctx.save_for_backward(z, codebook, idx)


def _nearest_backward(ctx, _grad_idx, grad_dist):
    # d/dz |z - e_k|^2 = 2 (z - e_k); the code gets the opposite, summed over its tokens.
    z, codebook, idx = ctx.saved_tensors
    diff = (z - codebook[idx]).to(grad_dist.dtype) * (2 * grad_dist[:, None])
    gz = diff.to(z.dtype) if ctx.needs_input_grad[0] else None
    gc = None
    if ctx.needs_input_grad[1]:
        gc = torch.zeros(codebook.shape, dtype=diff.dtype, device=diff.device)
        gc = gc.index_add_(0, idx, -diff).to(codebook.dtype)
    return gz, gc, None


_nearest_code_op.register_autograd(_nearest_backward, setup_context=_nearest_setup)


@torch.library.custom_op("vqfast::code_histogram", mutates_args=())
def _code_histogram_op(indices: torch.Tensor, num_code: int, backend: str) -> torch.Tensor:
    if backend == "cpp":
        return torch.ops.vqfast_C.code_histogram(indices, num_code)
    from vqfast.kernels import code_histogram as kernel

    return kernel.code_histogram(indices, num_code)


@_code_histogram_op.register_fake
def _(indices, num_code, backend):
    return indices.new_empty((indices.shape[0], num_code), dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def check_codebook(z: torch.Tensor, codebook: torch.Tensor, op: str) -> None:
    for name, v in (("z", z), ("codebook", codebook)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(v).__name__}")
        if not v.dtype.is_floating_point:
            raise TypeError(f"{op}: {name} must be floating point, got {v.dtype}")
    if codebook.dim() != 2 or codebook.shape[0] < 1:
        raise ValueError(f"{op}: codebook must be (K, D) with K >= 1, got {tuple(codebook.shape)}")
    if z.dim() < 1 or z.shape[-1] != codebook.shape[1]:
        raise ValueError(
            f"{op}: z must be (..., D) with D = {codebook.shape[1]} (the codebook's), "
            f"got {tuple(z.shape)}"
        )
    if z.device != codebook.device:
        raise ValueError(f"{op}: z is on {z.device} but the codebook on {codebook.device}")


def compute_dtype(z: torch.Tensor, codebook: torch.Tensor) -> torch.dtype:
    """float64 when either input is float64, else float32 (half inputs accumulate in float32)."""
    if torch.float64 in (z.dtype, codebook.dtype):
        return torch.float64
    return torch.float32


def nearest_code(
    z: torch.Tensor, codebook: torch.Tensor, *, backend: str | None = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``z (..., D)``, ``codebook (K, D)`` -> ``(indices (...) int64, squared distances (...))``.

    Distances are float32 (float64 for float64 inputs) and differentiable in ``z`` and
    ``codebook``; indices follow ``torch.argmin`` (lowest index on ties).
    """
    check_codebook(z, codebook, "nearest_code")
    lead = z.shape[:-1]
    impl = _backend.resolve("nearest_code", backend, z.device)
    dtype = compute_dtype(z, codebook)
    flat = z.reshape(-1, z.shape[-1])
    if impl == "reference":
        idx, dist = nearest_code_ref(flat.to(dtype), codebook.to(dtype))
    else:
        idx, dist = _nearest_code_op(flat.contiguous(), codebook.contiguous(), impl)
    return idx.reshape(lead), dist.reshape(lead)


def code_histogram(
    indices: torch.Tensor, num_code: int, *, backend: str | None = "auto"
) -> torch.Tensor:
    """``indices (B, N)`` -> ``(B, num_code)`` int64 counts of each code per row (deterministic)."""
    if not isinstance(indices, torch.Tensor) or indices.dim() != 2:
        raise ValueError(f"code_histogram: indices must be a (B, N) tensor, got {indices!r:.80}")
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise TypeError(f"code_histogram: indices must be integers, got {indices.dtype}")
    num_code = int(num_code)
    if num_code < 1:
        raise ValueError(f"code_histogram: num_code must be >= 1, got {num_code}")
    if (not torch.compiler.is_compiling() and indices.numel()
            and (int(indices.min()) < 0 or int(indices.max()) >= num_code)):
        raise ValueError(
            f"code_histogram: indices must lie in [0, {num_code}), got values in "
            f"[{int(indices.min())}, {int(indices.max())}]"
        )
    indices = indices.to(torch.int64)
    impl = _backend.resolve("code_histogram", backend, indices.device)
    if impl == "reference":
        return code_histogram_ref(indices, num_code)
    return _code_histogram_op(indices.contiguous(), num_code, impl)
