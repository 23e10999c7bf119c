"""vq_loss on every backend against the authors' formula in float64 (loss and both gradients),
fp64 gradcheck of the entropy term, the commitment terms' stop-gradient formula, opcheck (mixed
dtypes included) and torch.compile."""

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import vqfast.ops as ops
from vqfast.ops.vq_loss import _vq_loss_op

from .conftest import (
    DRAWN,
    DTYPES,
    F64,
    Sample,
    assert_close,
    check_compiled,
    clear_winner,
    ids,
    on_device,
    opcheck,
    randn,
)

bf16 = torch.bfloat16
# Tolerances against the float64 reference, relative to the largest magnitude.
RTOL = {torch.float32: 2e-4, F64: 1e-9, bf16: 2e-2, torch.float16: 4e-3}
KW = dict(commit_weight=0.25, entropy_weight=0.7, entropy_gamma=1.3, temperature=0.3)
WEIGHTS = dict(commit_weight=0.25, entropy_weight=0.1, entropy_gamma=1.0, temperature=0.01)


def sample_inputs() -> list[Sample]:
    """``(z, codebook)`` with keyword weights: odd and size-1 shapes, leading dims, every dtype,
    mixed dtypes, with and without the entropy term. Each drawn so that every token has a clear
    nearest code (so that no two implementations can disagree on it)."""
    g = torch.Generator().manual_seed(0)

    def pair(M, K, D, z_dtype=torch.float32, c_dtype=None):
        lead = M if isinstance(M, tuple) else (M,)
        while True:
            z = randn(*lead, D, dtype=z_dtype, gen=g)
            codebook = randn(K, D, dtype=c_dtype or z_dtype, gen=g)
            if clear_winner(z, codebook):
                return z, codebook

    no_entropy = KW | dict(entropy_weight=0.0)
    return [
        Sample("1x1x1", pair(1, 1, 1), KW),
        Sample("one-token", pair(1, 37, 5), KW),
        Sample("one-code", pair(50, 1, 3), KW),
        Sample("odd", pair(70, 37, 5), KW),
        Sample("odd-no-entropy", pair(70, 37, 5), no_entropy),
        Sample("wide", pair(33, 37, 64), KW),
        Sample("many-codes", pair(20, 130, 3), KW),
        Sample("batched", pair((2, 15), 11, 6), KW),
        Sample("fp64", pair(20, 13, 5, F64), KW),
        Sample("bf16", pair(10, 7, 4, bf16), KW),
        Sample("bf16-fp32", pair(10, 7, 4, bf16, torch.float32), KW),
        Sample("fp32-fp64", pair(20, 11, 6, torch.float32, F64), KW, compile=True),
        Sample("fp64-fp32", pair(20, 11, 6, F64, torch.float32), KW),
    ]


SAMPLES = sample_inputs()


def reference(z, codebook, **kw):
    """The authors' loss and its gradients in float64."""
    z64 = z.detach().double().requires_grad_()
    c64 = codebook.detach().double().requires_grad_()
    loss = ops.vq_loss_ref(z64, c64, **kw)
    return (loss, *torch.autograd.grad(loss, (z64, c64)))


def loss_and_grads(z, codebook, backend, scale=1.0, **kw):
    z = z.detach().clone().requires_grad_()
    codebook = codebook.detach().clone().requires_grad_()
    loss = on_device(ops.vq_loss, z, codebook, backend=backend, **kw)
    return (loss, *torch.autograd.grad(loss * scale, (z, codebook)))


def check_vq(z, codebook, backend, scale=1.0, **kw):
    loss, gz, gc = loss_and_grads(z, codebook, backend, scale, **kw)
    assert loss.dim() == 0
    assert loss.dtype == (F64 if F64 in (z.dtype, codebook.dtype) else torch.float32)
    assert gz.dtype == z.dtype and gc.dtype == codebook.dtype
    assert gz.shape == z.shape and gc.shape == codebook.shape
    loss_ref, gz_ref, gc_ref = reference(z, codebook, **kw)
    rtol = max(RTOL[z.dtype], RTOL[codebook.dtype])
    torch.testing.assert_close(loss.double(), loss_ref, rtol=rtol, atol=rtol * 1e-3)
    assert_close(gz, scale * gz_ref, rtol, "grad z")
    assert_close(gc, scale * gc_ref, rtol, "grad codebook")
    return loss, gz, gc


@pytest.mark.parametrize("sample", SAMPLES, ids=ids(SAMPLES))
def test_matches_reference(backend, sample):
    z, codebook = sample.args
    check_vq(z, codebook, backend, scale=1.7, **sample.kwargs)


@pytest.mark.parametrize("sample", SAMPLES, ids=ids(SAMPLES))
def test_opcheck(compiled_backend, sample):
    z, codebook = sample.args
    kw = sample.kwargs
    args = (z.reshape(-1, z.shape[-1]), codebook, kw["commit_weight"], kw["entropy_weight"],
            kw["entropy_gamma"], kw["temperature"], compiled_backend)
    opcheck(_vq_loss_op, args, True)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.compile], ids=str)
def test_torch_compile_fullgraph(backend, sample):
    check_compiled(lambda z, cb: ops.vq_loss(z, cb, backend=backend, **sample.kwargs),
                   sample.args, True)


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes and the regression cases
# ---------------------------------------------------------------------------------------------

SHAPES = [(1, 1, 1), (1, 37, 5), (50, 1, 3), (70, 37, 5), (33, 37, 64), (20, 130, 3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("M,K,D", SHAPES)
@pytest.mark.parametrize("entropy_weight", [0.0, 0.7])
def test_shapes_and_dtypes(backend, dtype, M, K, D, entropy_weight):
    z, codebook = randn(M, D, dtype=dtype), randn(K, D, dtype=dtype)
    assert clear_winner(z, codebook)
    check_vq(z, codebook, backend, scale=1.7, **(KW | dict(entropy_weight=entropy_weight)))


@pytest.mark.parametrize("backend", ["cpp"], indirect=True)
@pytest.mark.parametrize("M,K,D", [(1, 1, 1), (4097, 512, 8), (300, 37, 5), (64, 100, 32)])
@pytest.mark.parametrize("entropy_weight", [0.0, 0.1, 1.0])
def test_cpp_matches_reference_at_scale(backend, M, K, D, entropy_weight):
    """Sizes the Triton interpreter cannot run quickly, at the authors' temperature."""
    z, codebook = torch.randn(M, D) * 0.1, torch.randn(K, D) * 0.1
    kwargs = WEIGHTS | dict(entropy_weight=entropy_weight)
    ours = loss_and_grads(z, codebook, backend, **kwargs)
    ref = loss_and_grads(z, codebook, "reference", **kwargs)
    for name, a, b in zip(("loss", "grad z", "grad codebook"), ours, ref):
        assert_close(a, b, 1e-4, name)


def test_fp64_matches_reference(backend):
    n = 100 if backend == "triton" else 500
    z = torch.randn(n, 8, dtype=F64) * 0.1
    codebook = torch.randn(64, 8, dtype=F64) * 0.1
    rtol = 1e-9 if backend == "triton" else 1e-12
    for a, b in zip(loss_and_grads(z, codebook, backend, **WEIGHTS), reference(z, codebook,
                                                                              **WEIGHTS)):
        assert_close(a, b, rtol)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
def test_default_temperature(backend, dtype):
    # tau = 0.01 (the authors' default): peaked softmax, most p below the 1e-5 clamp.
    z = randn(40, 4, dtype=dtype, scale=0.2)
    codebook = randn(9, 4, dtype=dtype, scale=0.2)
    check_vq(z, codebook, backend, commit_weight=1.0, entropy_weight=0.1, entropy_gamma=1.0)


def test_peaked_softmax_wide_codes(backend):
    # tau = 0.01 with D = 32 at unit scale: logits of several thousand, where the entropy
    # gradient cancels almost exactly for the nearest code. A logit rounded differently in the
    # backward than in the forward (e.g. by fp contraction on a GPU) shows up here at ~1e-1.
    z, codebook = randn(64, 32), randn(300, 32)
    loss, *grads = loss_and_grads(z, codebook, backend, **WEIGHTS)
    loss_ref, *grads_ref = reference(z, codebook, **WEIGHTS)
    torch.testing.assert_close(loss.double(), loss_ref, rtol=1e-5, atol=0)
    for grad, grad_ref in zip(grads, grads_ref):
        assert float((grad.double() - grad_ref).norm() / grad_ref.norm()) < 1e-3


def entropy_part(z, codebook, backend, **kw):
    """The entropy term alone: both calls pick the same codes, so their commitment terms (and
    the stop-gradients gradcheck cannot see) cancel."""
    def loss(**extra):
        return on_device(ops.vq_loss, z, codebook, backend=backend,
                         **(kw | dict(commit_weight=0.0) | extra))

    return loss() - loss(entropy_weight=0.0)


@pytest.mark.parametrize("temperature", [2.0, 0.05])
def test_entropy_gradcheck_fp64(backend, temperature):
    """gradcheck cannot take the whole loss (its stop-gradients make the gradient differ from the
    value's derivative by design); the entropy term is checked on its own, the commitment terms
    by their formula below."""
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(6, 3, dtype=F64, generator=gen, requires_grad=True)
    codebook = torch.randn(5, 3, dtype=F64, generator=gen, requires_grad=True)
    kw = dict(entropy_weight=0.8, entropy_gamma=1.3, temperature=temperature)
    assert torch.autograd.gradcheck(lambda a, b: entropy_part(a, b, backend, **kw), (z, codebook))


@pytest.mark.parametrize("backend", ["cpp", "reference"], indirect=True)  # interpreter: slow
@DRAWN
@given(M=st.integers(1, 40), K=st.integers(1, 20), D=st.sampled_from([1, 2, 8]),
       temperature=st.sampled_from([0.05, 0.3, 1.0]), gamma=st.sampled_from([0.0, 0.5, 1.0]),
       seed=st.integers(0, 2**31 - 1))
def test_entropy_gradcheck_fp64_drawn(backend, M, K, D, temperature, gamma, seed):
    gen = torch.Generator().manual_seed(seed)
    z = (torch.randn(M, D, dtype=F64, generator=gen) * 0.3).requires_grad_()
    codebook = (torch.randn(K, D, dtype=F64, generator=gen) * 0.3).requires_grad_()
    kw = dict(entropy_weight=0.7, entropy_gamma=gamma, temperature=temperature)
    assert torch.autograd.gradcheck(lambda a, b: entropy_part(a, b, backend, **kw), (z, codebook))


@DRAWN
@given(M=st.integers(1, 50), K=st.integers(1, 30), D=st.sampled_from([1, 4, 8]),
       commit=st.sampled_from([0.0, 0.25, 1.0]), seed=st.integers(0, 2**31 - 1))
def test_commitment_gradients_are_the_stop_gradient_formula(backend, M, K, D, commit, seed):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(M, D, dtype=F64, generator=gen)
    codebook = torch.randn(K, D, dtype=F64, generator=gen)
    loss, gz, gc = loss_and_grads(z, codebook, backend, commit_weight=commit, entropy_weight=0.0)
    idx, _ = ops.nearest_code(z, codebook, backend="reference")
    q = codebook[idx]
    n = M * D
    assert loss.item() == pytest.approx((1 + commit) * ((q - z) ** 2).sum().item() / n)
    assert_close(gz, 2 * (z - q) / n, 1e-12)
    expected = torch.zeros_like(codebook).index_add_(0, idx, commit * 2 * (q - z) / n)
    assert_close(gc, expected, 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
def test_commitment_gradients_skip_duplicate_codes(backend, dtype):
    M, K, D, commit, scale = 40, 100, 5, 0.25, 1.7
    codebook = randn(K, D, dtype=dtype, scale=3.0)
    # Copies of code 3 in its code tile and in the next: they must get no gradient.
    codebook[20] = codebook[80] = codebook[3]
    z = codebook[torch.randint(0, 8, (M,))] + 0.1 * torch.randn(M, D).to(dtype)
    loss, gz, gc = loss_and_grads(z, codebook, backend, scale, commit_weight=commit)
    idx = ops.nearest_code(z, codebook, backend="reference")[0]
    assert (idx == 3).any() and not ((idx == 20) | (idx == 80)).any()
    err = codebook[idx] - z
    rtol = 1e-12 if dtype == F64 else 1e-5
    torch.testing.assert_close(loss, (1 + commit) * (err**2).mean(), rtol=rtol, atol=0)
    torch.testing.assert_close(gz, -scale * 2 * err / (M * D), rtol=rtol, atol=1e-30)
    expected = torch.zeros_like(codebook).index_add_(0, idx, scale * commit * 2 * err / (M * D))
    assert_close(gc, expected, rtol)
    assert not gc[20].any() and not gc[80].any()


def test_noncontiguous_batched_and_deterministic(backend):
    z = torch.randn(2, 6, 30).transpose(1, 2)  # (2, 30, 6)
    codebook = torch.randn(6, 37).t()  # (37, 6)
    kw = dict(commit_weight=0.25, entropy_weight=0.5, temperature=0.3)
    runs = [loss_and_grads(z, codebook, backend, **kw) for _ in range(2)]
    assert runs[1][1].shape == z.shape and runs[1][2].shape == codebook.shape
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    flat = z.reshape(-1, 6).contiguous()
    loss_flat = on_device(ops.vq_loss, flat, codebook.contiguous(), backend=backend, **kw)
    assert torch.equal(runs[0][0], loss_flat)


@DRAWN
@given(M=st.sampled_from([1, 9, 40, 200]), K=st.sampled_from([1, 5, 37, 64]),
       D=st.sampled_from([1, 3, 4, 16]), entropy_weight=st.sampled_from([0.0, 0.5]),
       temperature=st.sampled_from([0.05, 1.0]), dtype=st.sampled_from([torch.float32, F64]),
       seed=st.integers(0, 2**16))
def test_drawn_cases(backend, M, K, D, entropy_weight, temperature, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    z = randn(M, D, dtype=dtype, gen=gen)
    codebook = randn(K, D, dtype=dtype, gen=gen)
    assume(clear_winner(z, codebook))
    check_vq(z, codebook, backend, commit_weight=0.25, entropy_weight=entropy_weight,
             entropy_gamma=1.3, temperature=temperature)


# ---------------------------------------------------------------------------------------------
# The Triton kernels themselves
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["triton"], indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
def test_triton_kernels_direct(backend, dtype):
    from vqfast.kernels import vq_loss as k_vq
    from vqfast.ops._common import accumulate_dtype

    from .conftest import assert_nearest

    M, K, D, tau = 45, 70, 6, 0.3
    z, codebook = randn(M, D, dtype=dtype), randn(K, D, dtype=dtype)
    weights = (0.25, 0.5, 1.3, tau)
    saved = on_device(k_vq.forward, z, codebook, *weights)
    loss, idx, row_max, log_norm, mean_p = saved
    acc = accumulate_dtype(z, codebook)
    assert row_max.dtype == log_norm.dtype == mean_p.dtype == loss.dtype == acc
    assert row_max.shape == log_norm.shape == (M,) and mean_p.shape == (K,)
    assert_nearest(z, codebook, idx, -row_max * tau, "triton")
    a = -((z.double()[:, None] - codebook.double()[None]) ** 2).sum(-1) / tau
    rtol = 1e-9 if dtype == F64 else 1e-4
    assert_close(log_norm, torch.logsumexp(a - a.max(1, keepdim=True).values, 1), rtol)
    assert_close(mean_p, torch.softmax(a, 1).mean(0), rtol)
    grad = torch.tensor(1.7, dtype=acc)
    gz, gc = on_device(k_vq.backward, grad, z, codebook, *saved[1:], *weights)
    kw = dict(zip(("commit_weight", "entropy_weight", "entropy_gamma", "temperature"), weights))
    loss_ref, gz_ref, gc_ref = reference(z, codebook, **kw)
    torch.testing.assert_close(loss.double(), loss_ref, rtol=rtol, atol=0)
    assert_close(gz, 1.7 * gz_ref, rtol)
    assert_close(gc, 1.7 * gc_ref, rtol)
    # Without the entropy term its saved tensors are zeros.
    _, idx0, row_max0, log_norm0, mean_p0 = on_device(k_vq.forward, z, codebook, 0.25, 0.0, 1.3,
                                                      tau)
    assert torch.equal(idx0, idx)
    assert not row_max0.any() and not log_norm0.any() and not mean_p0.any()


@pytest.mark.parametrize("backend", ["triton"], indirect=True)
def test_triton_programs_loop_over_token_blocks(backend, monkeypatch):
    # Few programs for the code-tile x token-group kernels: each one loops over several blocks.
    from vqfast.kernels import vq_loss as k_vq

    z, codebook = randn(100, 4), randn(70, 4)
    kw = dict(commit_weight=0.25, entropy_weight=0.5, entropy_gamma=1.3, temperature=0.3)
    wide = check_vq(z, codebook, backend, **kw)
    monkeypatch.setattr(k_vq, "TARGET_PROGRAMS", 2)
    narrow = check_vq(z, codebook, backend, **kw)
    for a, b in zip(wide, narrow):
        assert_close(a, b, 1e-5)


def test_rejects_bad_arguments():
    z, codebook = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match="temperature"):
        ops.vq_loss(z, codebook, temperature=0.0)
    with pytest.raises(ValueError, match="empty"):
        ops.vq_loss(torch.randn(0, 3), codebook)
    for name in ("commit_weight", "entropy_weight", "entropy_gamma"):
        with pytest.raises(ValueError, match=f"{name} must be finite"):
            ops.vq_loss(z, codebook, **{name: float("nan")})
    with pytest.raises(TypeError, match="commit_weight must be a number"):
        ops.vq_loss(z, codebook, commit_weight="0.25")
    with pytest.raises(ValueError, match="D = 0 components"):
        ops.vq_loss(torch.zeros(4, 0), torch.zeros(5, 0))


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("entropy_weight", [0.0, 0.7])
def test_non_finite_inputs_name_the_rows_and_codes(backend, value, entropy_weight):
    z, codebook = randn(2, 5, 4), randn(6, 4)
    kw = KW | dict(entropy_weight=entropy_weight)
    bad_z = z.clone()
    bad_z[1, 3, 0] = value
    with pytest.raises(ops.NonFiniteInputError, match=r"z holds NaN or Inf at .*\[\(1, 3\)\]"):
        on_device(ops.vq_loss, bad_z, codebook, backend=backend, **kw)
    bad_codes = codebook.clone()
    bad_codes[[0, 4], 2] = value
    with pytest.raises(ops.NonFiniteInputError, match=r"codebook holds NaN or Inf in codes \[0, 4"):
        on_device(ops.vq_loss, z, bad_codes, backend=backend, **kw)


def test_overflowing_loss_is_an_error(backend):
    z, codebook = randn(6, 3) * 1e30, randn(4, 3)
    with pytest.raises(ops.NonFiniteInputError, match="overflow float32"):
        on_device(ops.vq_loss, z, codebook, backend=backend, **KW)
    loss = on_device(ops.vq_loss, z.double(), codebook, backend=backend, **KW)
    assert torch.isfinite(loss)
    z[0, 0] = float("nan")
    assert not torch.isfinite(
        on_device(ops.vq_loss, z.double(), codebook, backend=backend, check_finite=False, **KW))
