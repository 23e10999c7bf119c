"""dropout: the C++ op draws exactly F.dropout's mask from the same generator, leaves the generator
where F.dropout leaves it, and has F.dropout's values and gradient, bit for bit."""

import importlib

import pytest
import torch
import torch.nn.functional as F

import vqfast.ops as ops
from vqfast.ops import _backend

dropout_module = importlib.import_module("vqfast.ops.dropout")  # the name `dropout` is the function

CPP = _backend.resolve("dropout", "auto", torch.device("cpu")) == "cpp"
needs_cpp = pytest.mark.skipif(not CPP, reason="the C++ ops did not build here")
needs_same_stream = pytest.mark.skipif(
    not (CPP and dropout_module.available_here()),
    reason="this torch draws bernoulli_ through MKL here (an Intel CPU): auto uses F.dropout")


def _both(x, p, seed=7):
    """(F.dropout's result, its generator state, vqfast's result, its state), same seed."""
    torch.manual_seed(seed)
    want = F.dropout(x, p, True)
    want_state = torch.get_rng_state()
    torch.manual_seed(seed)
    got = ops.dropout(x, p, True)
    return want, want_state, got, torch.get_rng_state()


CASES = {
    "contiguous": lambda: torch.randn(64, 4, 33, 33),
    "transposed": lambda: torch.randn(33, 64, 64).transpose(0, 1),  # the attention output's
    "one": lambda: torch.randn(1),
    "odd": lambda: torch.randn(7, 313),  # a block boundary mid-pair of the stream
    "large": lambda: torch.randn(3, 100_003),
    "float64": lambda: torch.randn(50, 41, dtype=torch.float64),
    "empty": lambda: torch.randn(0, 5),
}


@needs_same_stream
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1e-9])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_mask_state_and_gradient_as_f_dropout(case, p):
    x = CASES[case]().requires_grad_(True)
    want, want_state, got, got_state = _both(x, p)
    assert torch.equal(got, want)
    assert got.stride() == want.stride()
    assert torch.equal(got_state, want_state)
    grad = torch.randn_like(want)
    assert torch.equal(torch.autograd.grad(got, x, grad)[0], torch.autograd.grad(want, x, grad)[0])


@needs_same_stream
def test_the_stream_continues_where_f_dropout_would_leave_it():
    """Two calls in a row, an odd number of words drawn in between (a uniform scalar draws one
    word): the second call's mask is still F.dropout's."""
    def draws(fn):
        torch.manual_seed(3)
        a = fn(torch.ones(1001), 0.2, True)
        b = torch.rand(3, dtype=torch.float32)
        c = fn(torch.ones(6, 77), 0.3, True)
        return a, b, c, torch.rand(2)

    for want, got in zip(draws(F.dropout), draws(ops.dropout)):
        assert torch.equal(want, got)


@needs_same_stream
def test_nan_and_inf_propagate_as_in_f_dropout():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1.0] * 50)
    want, _, got, _ = _both(x, 0.5)
    assert torch.equal(want.isnan(), got.isnan())
    assert torch.equal(torch.nan_to_num(want), torch.nan_to_num(got))


def test_identity_outside_training_and_for_p_zero():
    x = torch.randn(5, 3)
    assert ops.dropout(x, 0.4, training=False) is x
    assert ops.dropout(x, 0.0) is x


def test_p_one_zeroes_everything():
    assert torch.equal(ops.dropout(torch.randn(4, 4), 1.0), torch.zeros(4, 4))


def test_falls_back_to_f_dropout_for_half_and_gapped_tensors():
    x = torch.randn(8, 6)
    for inp in (x.half(), x[:, ::2]):
        torch.manual_seed(1)
        want = F.dropout(inp, 0.3, True)
        torch.manual_seed(1)
        assert torch.equal(ops.dropout(inp, 0.3), want)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), True, "0.1"])
def test_refuses_a_p_that_is_not_a_probability(p):
    with pytest.raises(ValueError, match="p must be a probability"):
        ops.dropout(torch.randn(3), p)


def test_refuses_integer_tensors():
    with pytest.raises(TypeError, match="floating-point"):
        ops.dropout(torch.arange(4), 0.1)


@needs_cpp
def test_cpp_on_a_torch_with_another_stream_says_so(monkeypatch):
    monkeypatch.setattr(dropout_module, "available_here", lambda: False)
    with pytest.raises(_backend.BackendUnavailableError, match="MKL"):
        ops.dropout(torch.randn(3), 0.1, backend="cpp")
    assert ops.backends("cpu")["dropout"] == "reference"
    torch.manual_seed(0)
    want = F.dropout(torch.ones(9), 0.5, True)
    torch.manual_seed(0)
    assert torch.equal(ops.dropout(torch.ones(9), 0.5), want)  # auto: F.dropout
