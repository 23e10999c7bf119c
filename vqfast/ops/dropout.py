"""Dropout in training: ``x`` -> ``x * keep / (1 - p)`` with ``keep ~ Bernoulli(1 - p)``.

Implementations: the reference below (``F.dropout``, the authors' layers' dropout) and C++
(``csrc/dropout.cpp``) for CPU tensors, which draws the *same* mask from the same default CPU
generator (so a seeded step drops the same units as the authors' layers) and leaves the
generator where ``F.dropout`` leaves it, several times faster: torch draws each element through a
serial per-element loop on CPUs where it does not use MKL (AMD, ARM). On Intel CPUs torch's
``bernoulli_`` goes through MKL (a different stream, already parallel); ``available_here()``
checks once which stream this torch draws: where it does not match, ``auto`` (and
``vqfast.ops.backends()``) use ``F.dropout`` and ``backend="cpp"`` raises, saying why.
CUDA's ``F.dropout`` is already one fused kernel (``auto`` uses it).

The C++ op has side effects on the global generator, so it is an ``autograd.Function`` over the
``vqfast_C`` library ops, not a functional custom op; under ``torch.compile`` the reference runs.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from vqfast.ops import _backend

# ---------------------------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------------------------


def dropout_ref(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)``."""
    return F.dropout(x, p, training)


# ---------------------------------------------------------------------------------------------
# C++ implementation and its gradient
# ---------------------------------------------------------------------------------------------


class _DropoutCpp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        out, keep = torch.ops.vqfast_C.dropout_forward(x, p)
        ctx.save_for_backward(keep)
        ctx.p = p
        return out

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return torch.ops.vqfast_C.dropout_backward(grad, keep, ctx.p), None


@functools.cache
def available_here() -> bool:
    """Whether the C++ op draws what ``F.dropout`` draws with this torch on this CPU: the same
    mask and the generator left in the same state (checked once, on a private seed, with the
    global generator's state restored). False when the C++ ops did not build."""
    from vqfast.ops import _extension

    if _extension.load_error() is not None:
        return False
    with torch.random.fork_rng(devices=[]):
        for n, p in ((1, 0.5), (1300, 0.1), (70_001, 0.25)):
            torch.manual_seed(20241)
            want = torch.empty(n).bernoulli_(1 - p)
            state = torch.get_rng_state()
            torch.manual_seed(20241)
            _, keep = torch.ops.vqfast_C.dropout_forward(torch.ones(n), p)
            if not (torch.equal(keep.float(), want) and torch.equal(torch.get_rng_state(), state)):
                return False
    return True


def stream_mismatch() -> str | None:
    """Why the C++ op cannot stand in for ``F.dropout`` here (the C++ ops built), or None."""
    if available_here():
        return None
    return ("this torch draws bernoulli_ through another stream here (MKL, on Intel CPUs), which "
            "the C++ op does not reproduce; F.dropout is already parallel there")


def _dense(x: torch.Tensor) -> bool:
    """Whether ``x``'s elements fill its memory without gaps or overlaps (any dim order)."""
    if x.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(x.stride(), x.shape) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def dropout(x: torch.Tensor, p: float, training: bool = True, *,
            backend: str | None = "auto") -> torch.Tensor:
    """``F.dropout(x, p, training)``: in training, each element zeroed with probability ``p`` and
    the rest scaled by ``1 / (1 - p)``; the identity otherwise.

    On CPU (float32/float64, ``backend="auto"`` or ``"cpp"``) the C++ op draws the same mask as
    ``F.dropout`` from the same generator; elsewhere ``F.dropout`` runs."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"dropout: x must be a tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"dropout: x must be a floating-point tensor, got {x.dtype}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    p = float(p)
    if not training or p == 0.0:
        return x
    impl = _backend.resolve("dropout", backend, x.device)
    if (impl == "reference" or p == 1.0 or torch.compiler.is_compiling()
            or x.dtype not in (torch.float32, torch.float64) or not _dense(x)):
        return dropout_ref(x, p, training)
    return _DropoutCpp.apply(x, p)
