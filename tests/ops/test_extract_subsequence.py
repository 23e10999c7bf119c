"""extract_subsequence on every backend against the authors' grid_sample + conv1d path (values
and the gradients of x, t and l), its gradient conventions, fp64 gradcheck, opcheck and
torch.compile."""

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import vqfast.ops as ops
from vqfast.ops.extract_subsequence import _extract_subsequence_op

from .conftest import (
    DEVICE,
    DRAWN,
    DTYPES,
    F64,
    HALF,
    Sample,
    assert_close,
    check_compiled,
    ids,
    on_device,
    opcheck,
    randn,
)

RTOL = {torch.float32: 1e-5, F64: 1e-12, torch.bfloat16: 2e-2, torch.float16: 4e-3}
# Start and length of the first tokens (legal: t in [0, 1], l > 0): at the start (position 0),
# the whole series (positions 0 and T-1), an end clamped at 1 (t + l > 1), a start at 1 (every
# position at T-1), the shortest window the model makes (l_min = 1/64), a length above 1.
SPECIAL_TOKENS = [(0.0, 0.5), (0.0, 1.0), (0.7, 0.6), (1.0, 0.3), (0.4, 1 / 64), (0.2, 1.5)]


def tokens(B, N, dtype=torch.float32, gen=None, special=True):
    t = torch.rand(B, N, generator=gen)
    l = torch.rand(B, N, generator=gen) * 0.8 + 1e-3
    for i, (ti, li) in enumerate(SPECIAL_TOKENS[: B * N] if special else []):
        t.view(-1)[i], l.view(-1)[i] = ti, li
    return t.to(dtype), l.to(dtype)


def inside_tokens(B, N, dtype=torch.float32, generator=None):
    """Tokens inside the series: ``0 <= t`` and ``t + l <= 1``."""
    t = torch.rand(B, N, generator=generator, dtype=dtype) * (1 - 1 / 64)
    l = torch.rand(B, N, generator=generator, dtype=dtype) * (1 - t) + 1 / 64
    return t, l


def sample_inputs() -> list[Sample]:
    """``(x, t, l, length, smooth)``: size-1 and odd shapes, the special tokens, every dtype,
    mixed dtypes (promoted by the entry point)."""
    g = torch.Generator().manual_seed(0)

    def case(B, N, T, length, smooth, dtype=torch.float32, token_dtype=None):
        x = randn(B, T, dtype=dtype, gen=g)
        return (x, *tokens(B, N, token_dtype or dtype, g), length, smooth)

    return [
        Sample("T2-length1", case(1, 1, 2, 1, 5)),
        Sample("odd", case(2, 3, 10, 7, 3), compile=True),
        Sample("no-smoothing", case(2, 3, 10, 7, 1)),
        Sample("special", case(3, 4, 50, 33, 5)),
        Sample("long-samples", case(2, 5, 17, 40, 1)),
        Sample("long-series", case(1, 6, 300, 5, 3)),
        Sample("fp64", case(2, 3, 20, 9, 3, F64)),
        Sample("bf16", case(2, 3, 20, 9, 3, torch.bfloat16)),
        Sample("fp32-fp64", case(2, 3, 20, 9, 3, torch.float32, F64), compile=True),
        Sample("bf16-fp32", case(2, 3, 20, 9, 3, torch.bfloat16, torch.float32)),
    ]


SAMPLES = sample_inputs()


def check(x, t, l, length, smooth, backend, gen=None):
    """Values and gradients against the reference (half inputs: the reference in float32)."""
    dtype = torch.promote_types(torch.promote_types(x.dtype, t.dtype), l.dtype)
    ref_dtype = torch.float32 if dtype in HALF else dtype
    if backend == "reference" and dtype in HALF:
        pytest.skip("the authors' path mixes half inputs with float32 positions (grid_sample "
                    "raises); the compiled ops compute half inputs in float32")
    leaves = [v.detach().requires_grad_() for v in (x, t, l)]
    out = on_device(ops.extract_subsequence, *leaves, length, smooth, backend=backend)
    assert out.dtype == dtype and out.shape == (*t.shape[:2], length)
    g = torch.randn(out.shape, generator=gen).to(dtype)
    grads = torch.autograd.grad(out, leaves, g)
    ref_leaves = [v.detach().to(ref_dtype).requires_grad_() for v in (x, t, l)]
    ref = ops.extract_subsequence_ref(*ref_leaves, length, smooth)
    ref_grads = torch.autograd.grad(ref, ref_leaves, g.to(ref_dtype))
    rtol = RTOL[dtype]
    assert_close(out, ref, rtol)
    for name, grad, ref_grad, leaf in zip("xtl", grads, ref_grads, leaves):
        assert grad.dtype == leaf.dtype, name
        assert_close(grad, ref_grad, max(rtol, RTOL[leaf.dtype]) * 10, name)
    if backend == "triton":  # the kernels called directly give the same
        from vqfast.kernels import extract_subsequence as kernel

        plain = [v.detach().to(dtype).contiguous() for v in (x, t, l)]
        assert torch.equal(on_device(kernel.forward, *plain, length, smooth), out.detach())
        for grad, direct in zip(grads, on_device(kernel.backward, g, *plain, length, smooth)):
            assert_close(direct.to(grad.dtype), grad, atomic_order_rtol(dtype))
    return out, grads, ref_grads


def atomic_order_rtol(dtype):
    """The gradient of x is a float32/64 scatter-add: atomics on a GPU land in no fixed order, so
    two runs may differ in the last bits (and half-precision results by one rounding)."""
    if DEVICE.type == "cpu":
        return 0.0
    return torch.finfo(dtype).eps if dtype in HALF else 1e-6


@pytest.mark.parametrize("sample", SAMPLES, ids=ids(SAMPLES))
def test_matches_reference(backend, sample):
    check(*sample.args, backend)


@pytest.mark.parametrize("sample", SAMPLES, ids=ids(SAMPLES))
def test_opcheck(compiled_backend, sample):
    x, t, l, length, smooth = sample.args
    dtype = torch.promote_types(x.dtype, t.dtype)
    opcheck(_extract_subsequence_op,
            (x.to(dtype), t.to(dtype), l.to(dtype), length, smooth, compiled_backend), True)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.compile], ids=str)
def test_torch_compile_fullgraph(backend, sample):
    x, t, l, length, smooth = sample.args
    check_compiled(lambda *a: ops.extract_subsequence(*a, length, smooth, backend=backend),
                   (x, t, l), True)


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes and the regression cases
# ---------------------------------------------------------------------------------------------

CASES = [(2, 3, 10, 7, 1), (2, 3, 10, 7, 3), (1, 1, 2, 1, 5), (3, 4, 50, 33, 5),
         (2, 5, 17, 40, 1), (1, 6, 300, 5, 3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,N,T,length,smooth", CASES)
def test_shapes_and_dtypes(backend, dtype, B, N, T, length, smooth):
    check(randn(B, T, dtype=dtype), *tokens(B, N, dtype), length, smooth, backend)


@pytest.mark.parametrize("backend", ["cpp"], indirect=True)
@pytest.mark.parametrize("smooth", [1, 3, 9])
@pytest.mark.parametrize("B,N,S,T",
                         [(4, 8, 32, 512), (3, 5, 17, 100), (1, 1, 1, 2), (2, 7, 128, 9)])
def test_cpp_is_bit_identical_to_reference(backend, B, N, S, T, smooth):
    x = torch.randn(B, T).cumsum(-1)
    t, l = inside_tokens(B, N)
    ref = ops.extract_subsequence_ref(x, t, l, S, smooth)
    out = ops.extract_subsequence(x, t, l, S, smooth, backend=backend)
    assert out.shape == (B, N, S)
    if smooth == 1:
        assert torch.equal(out, ref)
    else:  # conv1d's summation order depends on the shape; equal to rounding
        assert_close(out, ref, 1e-6)


@pytest.mark.parametrize("backend", ["cpp"], indirect=True)
@pytest.mark.parametrize("smooth", [1, 9])
def test_cpp_gradients_match_reference_fp32(backend, smooth):
    B, N, S, T = 16, 8, 64, 200
    x = torch.randn(B, T).cumsum(-1)
    t, l = inside_tokens(B, N)
    t[0, 0], l[0, 0] = 0.7, 0.6  # end clamped at T-1
    g = torch.randn(B, N, S)
    grads = []
    for name in ("reference", backend):
        inputs = [v.clone().requires_grad_() for v in (x, t, l)]
        (ops.extract_subsequence(*inputs, S, smooth, backend=name) * g).sum().backward()
        grads.append([v.grad for v in inputs])
    for name, a, b in zip("xtl", grads[1], grads[0]):
        assert_close(a, b, 1e-6, name)


def positions(t, l, S, T):
    r = torch.linspace(0, 1, S, dtype=t.dtype)
    start = t[..., None] * (T - 1)
    end = torch.clamp(t + l, max=1)[..., None] * (T - 1)
    return start + (end - start) * r


@st.composite
def drawn_case(draw):
    B = draw(st.integers(1, 3))
    N = draw(st.integers(1, 5))
    T = draw(st.sampled_from([2, 5, 9, 16, 33, 40]))
    S = draw(st.sampled_from([1, 4, 7, 32]))
    smooth = draw(st.sampled_from([1, 3, 5]))
    seed = draw(st.integers(0, 2**31 - 1))
    return B, N, T, S, smooth, seed


@pytest.mark.parametrize("backend", ["cpp", "reference"], indirect=True)  # interpreter: slow
@DRAWN
@given(case=drawn_case())
def test_gradcheck_fp64(backend, case):
    """fp64 gradcheck in x, t and l away from the kinks of linear interpolation (integer
    positions, the ends, and t + l = 1)."""
    B, N, T, S, smooth, seed = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, dtype=F64, generator=gen)
    t, l = inside_tokens(B, N, F64, gen)
    pos = positions(t, l, S, T)
    frac = pos - pos.floor()
    assume(bool(((frac > 1e-3) & (frac < 1 - 1e-3)).all()))
    assume(bool(((pos > 1e-3) & (pos < T - 1 - 1e-3)).all()))
    assume(bool(((t + l - 1).abs() > 1e-3).all()))
    inputs = [v.requires_grad_() for v in (x, t, l)]
    assert torch.autograd.gradcheck(
        lambda *a: on_device(ops.extract_subsequence, *a, S, smooth, backend=backend), inputs
    )


@DRAWN
@given(case=drawn_case(), dtype=st.sampled_from([torch.float32, F64]))
def test_drawn_cases(backend, case, dtype):
    B, N, T, S, smooth, seed = case
    gen = torch.Generator().manual_seed(seed)
    x = randn(B, T, dtype=dtype, gen=gen)
    check(x, *tokens(B, N, dtype, gen), S, smooth, backend, gen=gen)


def test_gradient_conventions(backend):
    """Right-hand slope at integer positions; positions 0 and T-1 pass no gradient to t and l,
    nor does a clamped end."""
    x = torch.tensor([[0.0, 1.0, 3.0, 6.0, 10.0]], dtype=F64)

    def grads(t, l, length):
        t = torch.tensor([t], dtype=F64, requires_grad=True)
        l = torch.tensor([l], dtype=F64, requires_grad=True)
        out = on_device(ops.extract_subsequence, x, t, l, length, backend=backend)
        return torch.autograd.grad(out.sum(), (t, l))

    gt, _ = grads([0.25], [0.5], 1)  # position 1.0 exactly
    assert gt.item() == pytest.approx((3.0 - 1.0) * 4)  # slope x[2] - x[1], times T-1
    gt, _ = grads([0.0], [0.5], 1)  # at the left end
    assert gt.item() == 0.0
    gt, gl = grads([0.7], [0.6], 3)  # end clamped
    assert gl.item() == 0.0 and gt.item() != 0.0
    x = torch.randn(1, 9, dtype=F64)
    t = torch.tensor([[0.0, 1.0, 0.5]], dtype=F64)
    l = torch.tensor([[1.0, 0.5, 0.7]], dtype=F64)
    _, (_, gt, gl), (_, gt_ref, gl_ref) = check(x, t, l, 9, 1, backend)
    torch.testing.assert_close(gt, gt_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gl, gl_ref, rtol=1e-12, atol=1e-12)
    assert gt[0, 1] == 0 and gl[0, 1] == 0  # every position at T-1
    assert gl[0, 2] == 0  # end clamped


def test_noncontiguous_and_trailing_token_dim(backend):
    x = torch.randn(12, 3).t()  # (3, 12), not contiguous
    t = torch.rand(3, 4, 1) * 0.6
    l = (torch.rand(4, 3) * 0.5).t()
    out = on_device(ops.extract_subsequence, x, t, l, 8, 3, backend=backend)
    assert_close(out, ops.extract_subsequence_ref(x, t.squeeze(-1), l, 8, 3), 1e-5)
    plain = on_device(ops.extract_subsequence, x.contiguous(), t.squeeze(-1), l.contiguous(), 8,
                      3, backend=backend)
    assert torch.equal(out, plain)


@pytest.mark.parametrize("kwargs,match", [(dict(smooth=2), "odd"), (dict(length=0), "length")])
def test_rejects_bad_arguments(kwargs, match):
    x = torch.randn(2, 30)
    t, l = inside_tokens(2, 3)
    with pytest.raises(ValueError, match=match):
        ops.extract_subsequence(x, t, l, **(dict(length=8, smooth=1) | kwargs))


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        ops.extract_subsequence(torch.randn(30), torch.rand(1, 2), torch.rand(1, 2), 8)
    with pytest.raises(ValueError, match="B = 2"):
        ops.extract_subsequence(torch.randn(2, 30), torch.rand(3, 2), torch.rand(3, 2), 8)
    with pytest.raises(ValueError, match="at least 2"):
        ops.extract_subsequence(torch.randn(2, 1), torch.rand(2, 2), torch.rand(2, 2), 8)


NAN, INF = float("nan"), float("inf")


def with_token(v, value, where=(1, 2)):
    v = v.clone()
    v[where] = value
    return v


@pytest.mark.parametrize("name", ["t", "l"])
@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "inf"])
def test_non_finite_tokens_are_named(backend, name, value):
    x = torch.randn(2, 30)
    t, l = inside_tokens(2, 3)
    args = {"t": t, "l": l}
    args[name] = with_token(args[name], value)
    kind = ops.NonFiniteInputError if (name == "l" or value != value) else ValueError
    match = (rf"{name} holds NaN or Inf at tokens \(sample, token\) \[\(1, 2\)\]"
             if kind is ops.NonFiniteInputError else r"t .* must lie in \[0, 1\]")
    with pytest.raises(kind, match=match):
        on_device(ops.extract_subsequence, x, args["t"], args["l"], 8, backend=backend)


def test_non_finite_series_are_named(backend):
    x = torch.randn(3, 30)
    x[2, 5] = NAN
    t, l = inside_tokens(3, 2)
    with pytest.raises(ops.NonFiniteInputError, match=r"x holds NaN or Inf in series \[2\]"):
        on_device(ops.extract_subsequence, x, t, l, 8, backend=backend)


@pytest.mark.parametrize("t_value,l_value,match", [
    (-0.2, 0.5, r"t .* must lie in \[0, 1\]; tokens \(sample, token\) \[\(1, 2\)\] have t in "
                r"\[-0.2, -0.2\]"),
    (1.0 + 1e-6, 0.5, r"must lie in \[0, 1\]"),
    (0.3, 0.0, r"l .* must be > 0; tokens \(sample, token\) \[\(1, 2\)\] have l down to 0"),
    (0.3, -0.1, r"l .* must be > 0"),
])
def test_tokens_outside_the_legal_range_are_named(backend, t_value, l_value, match):
    x = torch.randn(2, 30)
    t, l = inside_tokens(2, 3)
    t, l = with_token(t, t_value), with_token(l, l_value)
    with pytest.raises(ValueError, match=match):
        on_device(ops.extract_subsequence, x, t, l, 8, backend=backend)


def test_legal_range_ends_agree_with_the_reference(backend):
    """The edges of the legal range: t = 0, t = 1, t + l > 1, l above 1, the shortest window."""
    x = torch.randn(1, 9, dtype=F64)
    t = torch.tensor([[0.0, 1.0, 0.7, 0.0, 0.5]], dtype=F64)
    l = torch.tensor([[0.3, 0.3, 0.6, 1 + 1 / 64, 1 / 64]], dtype=F64)
    out = on_device(ops.extract_subsequence, x, t, l, 5, backend=backend)
    torch.testing.assert_close(out, ops.extract_subsequence_ref(x, t, l, 5), rtol=1e-12,
                               atol=1e-12)
    assert torch.equal(out[0, 1], x[0, -1].expand(5))  # t = 1: every sample at the last point


@pytest.mark.parametrize("kwargs", [dict(length=8.7), dict(smooth=3.0), dict(length=True)])
def test_rejects_non_integer_sizes(kwargs):
    x = torch.randn(2, 30)
    t, l = inside_tokens(2, 3)
    with pytest.raises(TypeError, match="must be an integer"):
        ops.extract_subsequence(x, t, l, **(dict(length=8, smooth=1) | kwargs))
