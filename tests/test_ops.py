"""vqfast.ops: every compiled implementation against its pure-torch reference, gradients
(hypothesis-drawn fp64 gradcheck and C++-vs-reference in fp32), opcheck and torch.compile."""

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import vqfast.ops as ops
from vqfast.ops import _extension
from vqfast.ops.quantize import _code_histogram_op, _nearest_code_op
from vqfast.ops.subsequence import _extract_subsequence_op
from vqfast.ops.vq_loss import _vq_loss_op

CPP = "cpp"


def assert_close(actual, expected, rtol, name=""):
    """Elementwise, with an absolute floor at rtol times the largest reference value."""
    atol = rtol * max(expected.detach().abs().max().item(), 1e-30)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=name or None)


def test_compiled_ops_are_built_and_used_by_auto_on_cpu():
    # CI must exercise the compiled path, not a silent fallback.
    assert _extension.load_error() is None
    assert ops.backends("cpu") == {
        "extract_subsequence": CPP, "nearest_code": CPP, "code_histogram": CPP, "vq_loss": CPP,
    }


# --------------------------------------------------------------------------- subsequence


def random_tokens(B, N, dtype=torch.float32, generator=None):
    t = torch.rand(B, N, generator=generator, dtype=dtype) * (1 - 1 / 64)
    l = torch.rand(B, N, generator=generator, dtype=dtype) * (1 - t) + 1 / 64
    return t, l


@pytest.mark.parametrize("smooth", [1, 3, 9])
@pytest.mark.parametrize(
    "B,N,S,T", [(4, 8, 32, 512), (3, 5, 17, 100), (1, 1, 1, 2), (2, 7, 128, 9)]
)
def test_subsequence_cpp_matches_reference(B, N, S, T, smooth):
    x = torch.randn(B, T).cumsum(-1)
    t, l = random_tokens(B, N)
    ref = ops.extract_subsequence_ref(x, t, l, S, smooth)
    out = ops.extract_subsequence(x, t, l, S, smooth, backend=CPP)
    assert out.shape == (B, N, S)
    if smooth == 1:
        assert torch.equal(out, ref)
    else:  # conv1d's summation order depends on the shape; equal to rounding
        assert_close(out, ref, 1e-6)


@pytest.mark.parametrize("smooth", [1, 9])
def test_subsequence_cpp_gradients_match_reference_fp32(smooth):
    B, N, S, T = 16, 8, 64, 200
    x = torch.randn(B, T).cumsum(-1)
    t, l = random_tokens(B, N)
    t[0, 0], l[0, 0] = 0.7, 0.6  # end clamped at T-1
    g = torch.randn(B, N, S)
    grads = []
    for backend in ("reference", CPP):
        inputs = [v.clone().requires_grad_() for v in (x, t, l)]
        (ops.extract_subsequence(*inputs, S, smooth, backend=backend) * g).sum().backward()
        grads.append([v.grad for v in inputs])
    for name, a, b in zip("xtl", grads[1], grads[0]):
        assert_close(a, b, 1e-6, name)


def positions(t, l, S, T):
    r = torch.linspace(0, 1, S, dtype=t.dtype)
    start = t[..., None] * (T - 1)
    end = torch.clamp(t + l, max=1)[..., None] * (T - 1)
    return start + (end - start) * r


@st.composite
def subsequence_case(draw):
    B = draw(st.integers(1, 3))
    N = draw(st.integers(1, 4))
    T = draw(st.sampled_from([5, 16, 33]))
    S = draw(st.sampled_from([1, 4, 7]))
    smooth = draw(st.sampled_from([1, 3, 5]))
    seed = draw(st.integers(0, 2**31 - 1))
    return B, N, T, S, smooth, seed


@given(subsequence_case())
def test_subsequence_gradcheck_fp64(case):
    """fp64 gradcheck of the C++ op in x, t and l away from the kinks of linear interpolation
    (integer positions, the ends, and t + l = 1)."""
    B, N, T, S, smooth, seed = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, dtype=torch.float64, generator=gen)
    t, l = random_tokens(B, N, torch.float64, gen)
    pos = positions(t, l, S, T)
    frac = pos - pos.floor()
    assume(bool(((frac > 1e-3) & (frac < 1 - 1e-3)).all()))
    assume(bool(((pos > 1e-3) & (pos < T - 1 - 1e-3)).all()))
    assume(bool(((t + l - 1).abs() > 1e-3).all()))
    inputs = [v.requires_grad_() for v in (x, t, l)]
    assert torch.autograd.gradcheck(
        lambda *a: ops.extract_subsequence(*a, S, smooth, backend=CPP), inputs
    )


@given(subsequence_case())
def test_subsequence_cpp_matches_reference_on_drawn_cases(case):
    B, N, T, S, smooth, seed = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, generator=gen)
    t, l = random_tokens(B, N, generator=gen)
    assert_close(ops.extract_subsequence(x, t, l, S, smooth, backend=CPP),
                 ops.extract_subsequence_ref(x, t, l, S, smooth), 1e-6)


def test_subsequence_gradient_conventions():
    """Right-hand slope at integer positions; no t/l gradient at the clamp or past t + l = 1."""
    x = torch.tensor([[0.0, 1.0, 3.0, 6.0, 10.0]], dtype=torch.float64)
    t = torch.tensor([[0.25]], dtype=torch.float64, requires_grad=True)  # position 1.0 exactly
    l = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    ops.extract_subsequence(x, t, l, 1, backend=CPP).sum().backward()
    assert t.grad.item() == pytest.approx((3.0 - 1.0) * 4)  # slope x[2]-x[1], times T-1
    t = torch.tensor([[0.0]], dtype=torch.float64, requires_grad=True)  # at the left end
    l = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    ops.extract_subsequence(x, t, l, 1, backend=CPP).sum().backward()
    assert t.grad.item() == 0.0
    t = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)  # end clamped
    l = torch.tensor([[0.6]], dtype=torch.float64, requires_grad=True)
    ops.extract_subsequence(x, t, l, 3, backend=CPP).sum().backward()
    assert l.grad.item() == 0.0 and t.grad.item() != 0.0


def test_subsequence_accepts_token_attributes_with_trailing_dim():
    x = torch.randn(2, 30)
    t, l = random_tokens(2, 3)
    a = ops.extract_subsequence(x, t[..., None], l[..., None], 8)
    assert torch.equal(a, ops.extract_subsequence(x, t, l, 8))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(smooth=2), "odd"),
        (dict(length=0), "length"),
    ],
)
def test_subsequence_rejects_bad_arguments(kwargs, match):
    x = torch.randn(2, 30)
    t, l = random_tokens(2, 3)
    args = dict(length=8, smooth=1) | kwargs
    with pytest.raises(ValueError, match=match):
        ops.extract_subsequence(x, t, l, **args)


def test_subsequence_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        ops.extract_subsequence(torch.randn(30), torch.rand(1, 2), torch.rand(1, 2), 8)
    with pytest.raises(ValueError, match="B = 2"):
        ops.extract_subsequence(torch.randn(2, 30), torch.rand(3, 2), torch.rand(3, 2), 8)
    with pytest.raises(ValueError, match="at least 2"):
        ops.extract_subsequence(torch.randn(2, 1), torch.rand(2, 2), torch.rand(2, 2), 8)


# --------------------------------------------------------------------------- nearest code


def true_distances(z, codebook):
    return ((z.double()[:, None, :] - codebook.double()[None]) ** 2).sum(-1)


def assert_at_true_minimum(z, codebook, idx, dist):
    """The chosen code is the true nearest code of the given (rounded) inputs: the C++ search
    settles every near-tie in float64, so only float64 rounding is allowed for."""
    d64 = true_distances(z.reshape(-1, z.shape[-1]), codebook)
    chosen = d64.gather(1, idx.reshape(-1, 1)).squeeze(1)
    best = d64.min(1).values
    tol = 1e-12 * (1 + best + (z.reshape(-1, z.shape[-1]).double() ** 2).sum(-1))
    assert bool((chosen - best <= tol).all())
    assert_close(dist.double().reshape(-1), chosen, 1e-5)


@pytest.mark.parametrize("M,K,D", [(1, 1, 1), (1000, 512, 8), (333, 37, 5), (64, 4096, 32),
                                   (50, 100, 64), (17, 3, 100)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_nearest_code_cpp_finds_the_true_minimum(M, K, D, dtype):
    z, codebook = torch.randn(M, D).to(dtype), torch.randn(K, D).to(dtype)
    idx, dist = ops.nearest_code(z, codebook, backend=CPP)
    assert idx.dtype == torch.int64 and idx.shape == (M,)
    assert dist.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_at_true_minimum(z, codebook, idx, dist)
    ref_idx, _ = ops.nearest_code(z, codebook, backend="reference")
    assert (idx == ref_idx).float().mean() > 0.99


def test_nearest_code_ties_go_to_the_lowest_index():
    codebook = torch.randn(16, 8)
    codebook = torch.cat([codebook, codebook, codebook])  # every code three times
    idx, _ = ops.nearest_code(codebook, codebook, backend=CPP)
    assert torch.equal(idx, torch.arange(48) % 16)
    z = torch.zeros(5, 2)
    idx, _ = ops.nearest_code(z, torch.tensor([[1.0, 0], [0, 1.0], [-1.0, 0]]), backend=CPP)
    assert torch.equal(idx, torch.zeros(5, dtype=torch.int64))


def test_nearest_code_settles_float32_near_ties_exactly():
    # Two codes whose distances to z differ by ~1e-8 relative: below float32 resolution.
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    z = torch.tensor([[0.5, 0.5 - 2e-9]], dtype=torch.float64)
    z32, cb32 = z.float(), codebook.float()
    truth = true_distances(z32, cb32).argmin(1)
    idx, _ = ops.nearest_code(z32, cb32, backend=CPP)
    assert torch.equal(idx, truth)
    g = torch.Generator().manual_seed(0)
    codebook = torch.randn(64, 8, generator=g)
    z = codebook[torch.randint(0, 64, (2000,), generator=g)]
    z = (z + codebook[torch.randint(0, 64, (2000,), generator=g)]) / 2  # midpoints: near-ties
    assert_at_true_minimum(z, codebook, *ops.nearest_code(z, codebook, backend=CPP))


def test_nearest_code_near_codes_and_large_offsets():
    codebook = torch.randn(512, 8) * 0.05
    z = codebook[torch.randint(0, 512, (5000,))] + torch.randn(5000, 8) * 1e-4
    assert_at_true_minimum(z, codebook, *ops.nearest_code(z, codebook, backend=CPP))
    codebook = torch.randn(512, 8) + 100
    z = torch.randn(3000, 8) + 100
    assert_at_true_minimum(z, codebook, *ops.nearest_code(z, codebook, backend=CPP))


def test_nearest_code_keeps_leading_dims_and_non_contiguous_input():
    z = torch.randn(8, 6, 4)[:, ::2]  # (8, 3, 4), non-contiguous
    codebook = torch.randn(10, 4)
    idx, dist = ops.nearest_code(z, codebook, backend=CPP)
    assert idx.shape == (8, 3) and dist.shape == (8, 3)
    ref_idx, ref_dist = ops.nearest_code(z.contiguous(), codebook, backend="reference")
    assert torch.equal(idx, ref_idx)
    assert_close(dist, ref_dist, 1e-5)


@given(M=st.integers(1, 70), K=st.integers(1, 40), D=st.sampled_from([1, 3, 8, 16]),
       scale=st.sampled_from([1e-3, 1.0, 30.0]), seed=st.integers(0, 2**31 - 1))
def test_nearest_code_drawn_cases(M, K, D, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(M, D, generator=gen) * scale
    codebook = torch.randn(K, D, generator=gen) * scale
    assert_at_true_minimum(z, codebook, *ops.nearest_code(z, codebook, backend=CPP))


def test_nearest_code_distance_gradients_gradcheck():
    z = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
    codebook = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: ops.nearest_code(a, b, backend=CPP)[1], (z, codebook)
    )


def test_nearest_code_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="D = 4"):
        ops.nearest_code(torch.randn(3, 5), torch.randn(7, 4))
    with pytest.raises(ValueError, match="K >= 1"):
        ops.nearest_code(torch.randn(3, 4), torch.randn(0, 4))
    with pytest.raises(TypeError, match="floating point"):
        ops.nearest_code(torch.ones(3, 4, dtype=torch.int64), torch.randn(7, 4))


# --------------------------------------------------------------------------- code histogram


@pytest.mark.parametrize("B,N,K", [(1, 1, 1), (6, 8, 16), (33, 64, 512), (4, 100, 7)])
def test_code_histogram_cpp_equals_reference(B, N, K):
    idx = torch.randint(0, K, (B, N))
    hist = ops.code_histogram(idx, K, backend=CPP)
    assert hist.dtype == torch.int64
    assert torch.equal(hist, ops.code_histogram_ref(idx, K))
    assert torch.equal(hist.sum(1), torch.full((B,), N))


def test_code_histogram_rejects_out_of_range_indices():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ops.code_histogram(torch.tensor([[0, 4]]), 4)
    with pytest.raises(TypeError, match="integers"):
        ops.code_histogram(torch.zeros(2, 3), 4)


# --------------------------------------------------------------------------- VQ loss

WEIGHTS = dict(commit_weight=0.25, entropy_weight=0.1, entropy_gamma=1.0, temperature=0.01)


def loss_and_grads(z, codebook, backend, **kwargs):
    z = z.clone().requires_grad_()
    codebook = codebook.clone().requires_grad_()
    loss = ops.vq_loss(z, codebook, backend=backend, **kwargs)
    loss.backward()
    return loss.detach(), z.grad, codebook.grad


@pytest.mark.parametrize("M,K,D", [(1, 1, 1), (4097, 512, 8), (300, 37, 5), (64, 100, 32)])
@pytest.mark.parametrize("entropy_weight", [0.0, 0.1, 1.0])
def test_vq_loss_cpp_matches_reference(M, K, D, entropy_weight):
    z, codebook = torch.randn(M, D) * 0.1, torch.randn(K, D) * 0.1
    kwargs = WEIGHTS | dict(entropy_weight=entropy_weight)
    ours = loss_and_grads(z, codebook, CPP, **kwargs)
    ref = loss_and_grads(z, codebook, "reference", **kwargs)
    for name, a, b in zip(("loss", "grad z", "grad codebook"), ours, ref):
        assert_close(a, b, 1e-4, name)


def test_vq_loss_cpp_matches_reference_fp64_exactly():
    z = torch.randn(500, 8, dtype=torch.float64) * 0.1
    codebook = torch.randn(64, 8, dtype=torch.float64) * 0.1
    for a, b in zip(loss_and_grads(z, codebook, CPP, **WEIGHTS),
                    loss_and_grads(z, codebook, "reference", **WEIGHTS)):
        assert_close(a, b, 1e-12)


def entropy_part(z, codebook, backend, **kwargs):
    """The entropy term alone (the commitment terms cancel, values and gradients)."""
    no_commit = kwargs | dict(commit_weight=0.0)
    return (ops.vq_loss(z, codebook, backend=backend, **no_commit)
            - ops.vq_loss(z, codebook, backend=backend, **(no_commit | dict(entropy_weight=0.0))))


@given(M=st.integers(1, 40), K=st.integers(1, 20), D=st.sampled_from([1, 2, 8]),
       temperature=st.sampled_from([0.05, 0.3, 1.0]), gamma=st.sampled_from([0.0, 0.5, 1.0]),
       seed=st.integers(0, 2**31 - 1))
def test_vq_loss_entropy_gradcheck_fp64(M, K, D, temperature, gamma, seed):
    """gradcheck cannot take the whole loss (its stop-gradients make the gradient differ from the
    value's derivative by design); the entropy term is checked on its own, the commitment terms
    analytically below."""
    gen = torch.Generator().manual_seed(seed)
    z = (torch.randn(M, D, dtype=torch.float64, generator=gen) * 0.3).requires_grad_()
    codebook = (torch.randn(K, D, dtype=torch.float64, generator=gen) * 0.3).requires_grad_()
    kwargs = dict(entropy_weight=0.7, entropy_gamma=gamma, temperature=temperature)
    assert torch.autograd.gradcheck(lambda a, b: entropy_part(a, b, CPP, **kwargs), (z, codebook))


@given(M=st.integers(1, 50), K=st.integers(1, 30), D=st.sampled_from([1, 4, 8]),
       commit=st.sampled_from([0.0, 0.25, 1.0]), seed=st.integers(0, 2**31 - 1))
def test_vq_loss_commitment_gradients_are_the_stop_gradient_formula(M, K, D, commit, seed):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(M, D, dtype=torch.float64, generator=gen)
    codebook = torch.randn(K, D, dtype=torch.float64, generator=gen)
    loss, gz, gc = loss_and_grads(z, codebook, CPP, commit_weight=commit, entropy_weight=0.0)
    idx, _ = ops.nearest_code(z, codebook, backend="reference")
    q = codebook[idx]
    n = M * D
    assert loss.item() == pytest.approx((1 + commit) * ((q - z) ** 2).sum().item() / n)
    assert_close(gz, 2 * (z - q) / n, 1e-12)
    expected = torch.zeros_like(codebook).index_add_(0, idx, commit * 2 * (q - z) / n)
    assert_close(gc, expected, 1e-12)


@given(M=st.integers(1, 200), K=st.sampled_from([1, 7, 64]), D=st.sampled_from([3, 8]),
       seed=st.integers(0, 2**31 - 1))
def test_vq_loss_cpp_vs_reference_fp32_drawn(M, K, D, seed):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(M, D, generator=gen) * 0.1
    codebook = torch.randn(K, D, generator=gen) * 0.1
    for name, a, b in zip(("loss", "grad z", "grad codebook"),
                          loss_and_grads(z, codebook, CPP, **WEIGHTS),
                          loss_and_grads(z, codebook, "reference", **WEIGHTS)):
        assert_close(a, b, 1e-4, name)


def test_vq_loss_rejects_bad_arguments():
    z, codebook = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match="temperature"):
        ops.vq_loss(z, codebook, temperature=0.0)
    with pytest.raises(ValueError, match="empty"):
        ops.vq_loss(torch.randn(0, 3), codebook)


# --------------------------------------------------------------------------- registration


def op_cases():
    x = torch.randn(3, 40)
    t, l = random_tokens(3, 4)
    z, codebook = torch.randn(20, 8), torch.randn(9, 8)
    idx = torch.randint(0, 9, (4, 5))
    return [
        (_extract_subsequence_op, (x, t, l, 16, 3, CPP)),
        (_nearest_code_op, (z, codebook, CPP)),
        (_code_histogram_op, (idx, 9, CPP)),
        (_vq_loss_op, (z, codebook, 0.25, 0.1, 1.0, 0.01, CPP)),
        (torch.ops.vqfast_C.extract_subsequence.default, (x, t, l, 16, 3)),
        (torch.ops.vqfast_C.nearest_code.default, (z, codebook)),
        (torch.ops.vqfast_C.code_histogram.default, (idx, 9)),
        (torch.ops.vqfast_C.vq_loss_forward.default, (z, codebook, 0.25, 0.1, 1.0, 0.01)),
    ]


# Autograd is exercised where the op has a gradient formula (opcheck's AOT test cannot make an
# upstream gradient for nearest_code's int64 output, so that one runs without requires_grad).
DIFFERENTIABLE = {_extract_subsequence_op, _vq_loss_op}


@pytest.mark.parametrize("case", range(8))
def test_opcheck(case):
    op, args = op_cases()[case]
    if op in DIFFERENTIABLE:
        args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point()
                     else a for a in args)
    torch.library.opcheck(op, args)


def test_torch_compile_fullgraph_through_every_op():
    x = torch.randn(3, 50)
    t, l = random_tokens(3, 4)
    z, codebook = torch.randn(10, 8), torch.randn(7, 8)

    def f(x, t, l, z, codebook):
        s = ops.extract_subsequence(x, t, l, 16, 3, backend=CPP)
        idx, dist = ops.nearest_code(z, codebook, backend=CPP)
        hist = ops.code_histogram(idx.view(2, 5), 7, backend=CPP)
        loss = ops.vq_loss(z, codebook, backend=CPP, **WEIGHTS)
        return s.sum() + dist.sum() + hist.sum() + loss

    compiled = torch.compile(f, fullgraph=True)
    inputs = [v.clone().requires_grad_() for v in (x, t, l, z, codebook)]
    out = compiled(*inputs)
    out.backward()
    eager_inputs = [v.clone().requires_grad_() for v in (x, t, l, z, codebook)]
    expected = f(*eager_inputs)
    expected.backward()
    assert math.isclose(out.item(), expected.item(), rel_tol=1e-6)
    for a, b in zip(inputs, eager_inputs):
        assert_close(a.grad, b.grad, 1e-6)
