"""Shared by the op tests: the ``backend`` fixture, the one nearest-code oracle, one scaled
``assert_close``, and ``on_device``.

``backend`` runs each test for ``cpp``, ``triton`` and ``reference``. On CPU, Triton runs under
its interpreter (``TRITON_INTERPRET=1``, set by ``tests/conftest.py``), so sizes stay small.
``VQFAST_TEST_DEVICE=cuda`` (with ``TRITON_INTERPRET=0``) runs the same tests on a GPU: every op
call goes through ``on_device``, which moves its tensor arguments to that device and its outputs
back (both moves are differentiable), so inputs, references and checks stay on the CPU; only the
Triton backend runs there. ``bench/gpu_check.sh`` does this.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from vqfast.ops import _backend
from vqfast.ops.nearest_code import nearest_distance_fp64

DEVICE = torch.device(os.environ.get("VQFAST_TEST_DEVICE", "cpu"))
F64 = torch.float64
HALF = (torch.bfloat16, torch.float16)
DTYPES = [torch.float32, F64, torch.bfloat16, torch.float16]


def _runnable(name: str) -> str:
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("VQFAST_TEST_DEVICE=cuda but torch sees no GPU")
    if name == "cpp" and DEVICE.type != "cpu":
        pytest.skip("the C++ ops run on CPU tensors only")
    if name == "reference" and DEVICE.type != "cpu":
        pytest.skip("on a GPU the check is of the Triton kernels (the reference is plain torch)")
    if name == "triton":
        pytest.importorskip("triton")
        if DEVICE.type == "cpu" and not _backend.triton_interpreter_on():
            pytest.skip("Triton on CPU tensors needs TRITON_INTERPRET=1")
    return name


@pytest.fixture(params=["cpp", "triton", "reference"])
def backend(request) -> str:
    return _runnable(request.param)


@pytest.fixture(params=["cpp", "triton"])
def compiled_backend(request) -> str:
    """The backends that run a registered custom op (opcheck's subjects)."""
    return _runnable(request.param)


@dataclasses.dataclass
class Sample:
    """One input of an op: positional and keyword arguments of its public entry point."""

    name: str
    args: tuple
    kwargs: dict = dataclasses.field(default_factory=dict)
    compile: bool = False  # also run under torch.compile (kept to a few: compiling is slow)

    def __repr__(self) -> str:
        return self.name


def ids(samples) -> list[str]:
    return [s.name for s in samples]


def _move(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return tuple(_move(v, device) for v in value)
    return value


def on_device(fn, *args, **kwargs):
    """``fn`` run with its tensor arguments on ``DEVICE``; its tensor outputs come back to the
    CPU (on the CPU both moves are no-ops)."""
    return _move(fn(*_move(args, DEVICE), **kwargs), torch.device("cpu"))


def to_device(value):
    return _move(value, DEVICE)


def randn(*shape, dtype=torch.float32, scale=1.0, gen=None):
    return (torch.randn(*shape, generator=gen) * scale).to(dtype)


def assert_close(actual, expected, rtol, name=None):
    """Elementwise, with an absolute floor at ``rtol`` times the largest magnitude of
    ``expected`` (compared in float64)."""
    actual, expected = actual.detach().double(), expected.detach().double()
    atol = rtol * max(float(expected.abs().max()) if expected.numel() else 0.0, 1e-30)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=name)


def requires_grad(args):
    """``args`` with every floating-point tensor a fresh leaf that requires grad."""
    return tuple(a.detach().clone().requires_grad_()
                 if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


def chosen_distance_fp64(z, codebook, idx):
    """The float64 squared distance of each token of ``z (M, D)`` to its code ``idx``."""
    return ((z.double() - codebook.double()[idx]) ** 2).sum(-1)


def distance_rtol(z, codebook) -> float:
    """Relative error bound of one directly computed distance: (D + 2) roundings, with margin."""
    if F64 in (z.dtype, codebook.dtype):
        return 1e-12
    return 4 * (z.shape[-1] + 2) * 2.0**-24


def assert_nearest(z, codebook, idx, dist, backend):
    """``idx`` points at a code at the oracle's minimum distance (up to the backend's rounding)
    and ``dist`` is that code's distance. The C++ search settles every float32 near-tie in
    float64, so it is held to float64 rounding; Triton to its direct float32 distances; the
    reference to the rounding of the authors' expansion."""
    z = z.reshape(-1, z.shape[-1])
    idx, dist = idx.reshape(-1), dist.reshape(-1)
    assert idx.dtype == torch.int64 and dist.shape == idx.shape == (z.shape[0],)
    if z.shape[0] == 0:
        return
    assert int(idx.min()) >= 0 and int(idx.max()) < codebook.shape[0]
    best = nearest_distance_fp64(z, codebook)
    chosen = chosen_distance_fp64(z, codebook, idx)
    z2 = (z.double() ** 2).sum(-1)
    e2 = float((codebook.double() ** 2).sum(-1).max())
    rtol = distance_rtol(z, codebook)
    if rtol == 1e-12 or backend == "cpp":
        slack = 1e-12 * (1 + best + z2 + e2)
    elif backend == "triton":
        slack = 2 * rtol * best + 1e-30
    else:
        slack = rtol * (z2 + e2 + 2 * (z2 * e2).sqrt())
    assert bool((chosen - best <= slack).all())
    torch.testing.assert_close(dist.double(), chosen, rtol=rtol, atol=1e-30)


def clear_winner(z, codebook, margin=1e-3) -> bool:
    """Every token's nearest code beats the runner-up by a relative ``margin`` (so no two
    implementations can disagree on it)."""
    if codebook.shape[0] < 2:
        return True
    z = z.reshape(-1, z.shape[-1]).double()
    d = ((z[:, None, :] - codebook.double()[None]) ** 2).sum(-1)
    two = d.topk(2, dim=1, largest=False).values
    return bool((two[:, 1] - two[:, 0] > margin * (two[:, 1] + 1e-12)).all())


def opcheck(op, args, grad: bool):
    """``torch.library.opcheck`` on ``DEVICE``, with gradients of the float inputs if ``grad``."""
    args = to_device(args)
    if grad:
        args = requires_grad(args)
    torch.library.opcheck(op, args)


def check_compiled(fn, args, grad: bool, rtol: float = 1e-6):
    """``torch.compile(fn, fullgraph=True)`` gives eager's outputs and gradients."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    results = []
    for f in (compiled, fn):
        leaves = requires_grad(to_device(args)) if grad else to_device(args)
        out = f(*leaves)
        outs = out if isinstance(out, tuple) else (out,)
        grads = ()
        if grad:
            total = sum(o.double().sum() for o in outs if o.is_floating_point())
            inputs = [a for a in leaves if isinstance(a, torch.Tensor) and a.requires_grad]
            grads = torch.autograd.grad(total, inputs)
        results.append(_move((outs, grads), torch.device("cpu")))
    (outs, grads), (eager_outs, eager_grads) = results
    for a, b in zip(outs + grads, eager_outs + eager_grads):
        if a.is_floating_point():
            assert_close(a, b, rtol)
        else:
            assert torch.equal(a, b)


# Hypothesis with the ``backend`` fixture: the fixture only returns a name, so reusing it across
# drawn examples is safe.
DRAWN = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)
