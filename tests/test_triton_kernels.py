"""The Triton kernels (``kernels/``) against the pure-torch references.

On CPU the kernels run under the Triton interpreter (``TRITON_INTERPRET=1``, set by conftest), so
sizes stay small. Each op is called both directly (``vqfast.kernels.<op>``) and through
``vqfast.ops`` with ``backend="triton"``. The compiled kernels compute distances directly in
float32 while the references expand them, so nearest codes are judged by their float64 distance;
half-precision inputs are judged against the references on the upcast inputs.

``VQFAST_TEST_DEVICE=cuda`` (with ``TRITON_INTERPRET=0``) runs the same tests with the compiled
kernels on a GPU: every kernel call goes through ``on_device``, which moves its tensor arguments to
that device and its outputs back (both moves are differentiable), so inputs, references and checks
stay on the CPU. ``bench/gpu_check.sh`` does this.
"""

import os

import pytest

pytest.importorskip("triton")

import torch  # noqa: E402
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from vqfast import ops  # noqa: E402
from vqfast.kernels import code_histogram as k_hist  # noqa: E402
from vqfast.kernels import nearest_code as k_near  # noqa: E402
from vqfast.kernels import subsequence as k_sub  # noqa: E402
from vqfast.kernels import vq_loss as k_vq  # noqa: E402
from vqfast.ops.quantize import _code_histogram_op, _nearest_code_op  # noqa: E402
from vqfast.ops.subsequence import _extract_subsequence_op  # noqa: E402
from vqfast.ops.vq_loss import _vq_loss_op  # noqa: E402

DEVICE = torch.device(os.environ.get("VQFAST_TEST_DEVICE", "cpu"))
if DEVICE.type == "cuda" and not torch.cuda.is_available():
    pytest.skip("VQFAST_TEST_DEVICE=cuda but torch sees no GPU", allow_module_level=True)

F64 = torch.float64
DTYPES = [torch.float32, F64, torch.bfloat16, torch.float16]
HALF = (torch.bfloat16, torch.float16)


def _atomic_order_rtol(dtype):
    """The gradient of x is a float32/64 scatter-add: atomics on a GPU land in no fixed order, so
    two runs may differ in the last bits (and half-precision results by one rounding)."""
    if DEVICE.type == "cpu":
        return 0.0
    return torch.finfo(dtype).eps if dtype in HALF else 1e-6


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


def _randn(*shape, dtype=torch.float32, scale=1.0, gen=None):
    return (torch.randn(*shape, generator=gen) * scale).to(dtype)


def _distances64(z, codebook):
    """Exact-enough ``(M, K)`` squared distances in float64, computed directly."""
    return ((z.double()[:, None, :] - codebook.double()[None, :, :]) ** 2).sum(-1)


def _dist_rtol(z, codebook):
    """Relative error bound of one compiled distance: (D + 2) roundings, with a margin."""
    if F64 in (z.dtype, codebook.dtype):
        return 1e-12
    return 4 * (z.shape[-1] + 2) * 2.0**-24


def _check_nearest(z, codebook, idx, dist):
    """``idx`` points at a code whose true distance is the true minimum (up to rounding) and
    ``dist`` is that distance."""
    M = z.shape[0]
    assert idx.dtype == torch.int64 and idx.shape == (M,)
    assert dist.dtype == k_near.accumulate_dtype(z, codebook) and dist.shape == (M,)
    if M == 0:
        return
    assert int(idx.min()) >= 0 and int(idx.max()) < codebook.shape[0]
    d = _distances64(z, codebook)
    chosen = d.gather(1, idx[:, None]).squeeze(1)
    best = d.min(1).values
    rtol = _dist_rtol(z, codebook)
    assert (chosen <= best * (1 + 2 * rtol) + 1e-30).all()
    torch.testing.assert_close(dist.double(), chosen, rtol=rtol, atol=1e-30)


def _clear_winner(z, codebook, margin=1e-3):
    """Every token's nearest code beats the runner-up by a relative ``margin`` (so compiled and
    reference implementations cannot disagree on it)."""
    if codebook.shape[0] < 2:
        return True
    two = _distances64(z, codebook).topk(2, dim=1, largest=False).values
    return bool((two[:, 1] - two[:, 0] > margin * (two[:, 1] + 1e-12)).all())


def _assert_close_scaled(actual, expected, rtol):
    """Close up to ``rtol`` relative to the largest magnitude of ``expected``."""
    actual, expected = actual.detach().double(), expected.detach().double()
    atol = rtol * float(expected.abs().max()) + 1e-30
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# nearest_code
# ---------------------------------------------------------------------------------------------

NEAREST_SHAPES = [(1, 1, 1), (1, 37, 5), (9, 1, 3), (70, 37, 5), (33, 37, 64), (130, 100, 3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("M,K,D", NEAREST_SHAPES)
def test_nearest_code_matches_reference(dtype, M, K, D):
    z = _randn(M, D, dtype=dtype)
    codebook = _randn(K, D, dtype=dtype)
    idx, dist = on_device(k_near.nearest_code, z, codebook)
    _check_nearest(z, codebook, idx, dist)
    idx_op, dist_op = on_device(ops.nearest_code, z, codebook, backend="triton")
    assert torch.equal(idx_op, idx) and torch.equal(dist_op, dist)
    if dtype not in HALF and _clear_winner(z, codebook):
        ref_idx, _ = ops.nearest_code_ref(z.double(), codebook.double())
        assert torch.equal(idx, ref_idx)


@pytest.mark.parametrize(
    "z_dtype,c_dtype", [(torch.float16, torch.float32), (torch.float32, F64), (torch.bfloat16, F64)]
)
def test_nearest_code_mixed_dtypes(z_dtype, c_dtype):
    z = _randn(20, 6, dtype=z_dtype)
    codebook = _randn(11, 6, dtype=c_dtype)
    idx, dist = on_device(k_near.nearest_code, z, codebook)
    _check_nearest(z, codebook, idx, dist)


def test_nearest_code_empty():
    idx, dist = on_device(k_near.nearest_code, torch.zeros(0, 4), torch.randn(3, 4))
    assert idx.shape == (0,) and dist.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.float16], ids=str)
def test_nearest_code_ties_pick_lowest_index(dtype):
    D = 5
    codebook = _randn(150, D, scale=3.0)
    # Copies of code 10 in the same code tile (40) and in later tiles (100, 140).
    for k in (40, 100, 140):
        codebook[k] = codebook[10]
    z = codebook[10] + 0.01 * torch.randn(20, D)
    codebook, z = codebook.to(dtype), z.to(dtype)
    idx, _ = on_device(ops.nearest_code, z, codebook, backend="triton")
    assert (idx == 10).all()
    # One code repeated K times: always index 0.
    same = codebook[:1].expand(37, D).contiguous()
    idx, _ = on_device(k_near.nearest_code, z, same)
    assert (idx == 0).all()
    # z = 0 is exactly as far from v as from -v: the first of the equal codes wins.
    v = _randn(1, D, dtype=dtype)
    codebook = torch.cat([2 * v, -v, v, -v, v])
    idx, _ = on_device(k_near.nearest_code, torch.zeros(3, D, dtype=dtype), codebook)
    assert (idx == 1).all()


def test_nearest_code_noncontiguous_and_batched():
    z = torch.randn(3, 8, 40).transpose(1, 2)  # (3, 40, 8), not contiguous
    codebook = torch.randn(8, 37).t()  # (37, 8), not contiguous
    assert not z.is_contiguous() and not codebook.is_contiguous()
    idx, dist = on_device(ops.nearest_code, z, codebook, backend="triton")
    assert idx.shape == (3, 40) and dist.shape == (3, 40)
    flat = z.reshape(-1, 8).contiguous()
    idx2, dist2 = on_device(k_near.nearest_code, flat, codebook.contiguous())
    assert torch.equal(idx.reshape(-1), idx2) and torch.equal(dist.reshape(-1), dist2)
    _check_nearest(flat, codebook, idx2, dist2)


def test_nearest_code_distance_gradient():
    z = torch.randn(12, 4, dtype=F64, requires_grad=True)
    codebook = torch.randn(7, 4, dtype=F64, requires_grad=True)
    _, dist = on_device(ops.nearest_code, z, codebook, backend="triton")
    _, dist_ref = on_device(ops.nearest_code, z, codebook, backend="reference")
    weights = torch.randn(12, dtype=F64)
    grads = torch.autograd.grad((dist * weights).sum(), (z, codebook))
    grads_ref = torch.autograd.grad((dist_ref * weights).sum(), (z, codebook))
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref)


@settings(deadline=None)
@given(
    M=st.sampled_from([1, 17, 64, 130]),
    K=st.sampled_from([1, 3, 37, 129]),
    D=st.sampled_from([1, 5, 16, 64]),
    dtype=st.sampled_from([torch.float32, F64, torch.bfloat16]),
    seed=st.integers(0, 2**16),
)
def test_nearest_code_hypothesis(M, K, D, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    z = _randn(M, D, dtype=dtype, gen=gen)
    codebook = _randn(K, D, dtype=dtype, gen=gen)
    idx, dist = on_device(ops.nearest_code, z, codebook, backend="triton")
    _check_nearest(z, codebook, idx, dist)


# ---------------------------------------------------------------------------------------------
# code_histogram
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("B,N,K", [(1, 1, 1), (3, 50, 37), (2, 1000, 5), (4, 7, 300), (2, 0, 3)])
def test_code_histogram_matches_reference(B, N, K):
    indices = torch.randint(0, K, (B, N))
    expected = ops.code_histogram_ref(indices, K)
    assert torch.equal(on_device(k_hist.code_histogram, indices, K), expected)
    assert torch.equal(on_device(ops.code_histogram, indices, K, backend="triton"), expected)


def test_code_histogram_noncontiguous_int32():
    indices = torch.randint(0, 9, (40, 3), dtype=torch.int32).t()
    assert not indices.is_contiguous()
    hist = on_device(ops.code_histogram, indices, 9, backend="triton")
    assert hist.dtype == torch.int64
    assert torch.equal(hist, ops.code_histogram_ref(indices.long(), 9))


@settings(deadline=None)
@given(
    B=st.sampled_from([1, 3]),
    N=st.sampled_from([1, 33, 200]),
    K=st.sampled_from([1, 7, 64]),
    seed=st.integers(0, 2**16),
)
def test_code_histogram_hypothesis(B, N, K, seed):
    gen = torch.Generator().manual_seed(seed)
    indices = torch.randint(0, K, (B, N), generator=gen)
    hist = on_device(ops.code_histogram, indices, K, backend="triton")
    assert torch.equal(hist, ops.code_histogram_ref(indices, K))


# ---------------------------------------------------------------------------------------------
# vq_loss
# ---------------------------------------------------------------------------------------------

# Tolerances against the float64 reference, relative to the largest magnitude.
VQ_RTOL = {torch.float32: 2e-4, F64: 1e-9, torch.bfloat16: 2e-2, torch.float16: 4e-3}
VQ_SHAPES = [(1, 1, 1), (1, 37, 5), (50, 1, 3), (70, 37, 5), (33, 37, 64), (20, 130, 3)]


def _vq_reference(z, codebook, **kw):
    z64 = z.detach().double().requires_grad_()
    c64 = codebook.detach().double().requires_grad_()
    loss = ops.vq_loss_ref(z64, c64, **kw)
    return (loss, *torch.autograd.grad(loss, (z64, c64)))


def _check_vq(z, codebook, scale=1.0, **kw):
    z = z.detach().requires_grad_()
    codebook = codebook.detach().requires_grad_()
    loss = on_device(ops.vq_loss, z, codebook, backend="triton", **kw)
    assert loss.dim() == 0 and loss.dtype == k_near.accumulate_dtype(z, codebook)
    gz, gc = torch.autograd.grad(loss * scale, (z, codebook))
    assert gz.dtype == z.dtype and gc.dtype == codebook.dtype
    loss_ref, gz_ref, gc_ref = _vq_reference(z, codebook, **kw)
    rtol = VQ_RTOL[z.dtype]
    torch.testing.assert_close(loss.double(), loss_ref, rtol=rtol, atol=rtol * 1e-3)
    _assert_close_scaled(gz, scale * gz_ref, rtol)
    _assert_close_scaled(gc, scale * gc_ref, rtol)
    return loss, gz, gc


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("M,K,D", VQ_SHAPES)
@pytest.mark.parametrize("entropy_weight", [0.0, 0.7])
def test_vq_loss_matches_reference(dtype, M, K, D, entropy_weight):
    z = _randn(M, D, dtype=dtype)
    codebook = _randn(K, D, dtype=dtype)
    assert _clear_winner(z, codebook)
    kw = dict(commit_weight=0.25, entropy_weight=entropy_weight, entropy_gamma=1.3,
              temperature=0.3)
    _check_vq(z, codebook, scale=1.7, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
def test_vq_loss_default_temperature(dtype):
    # tau = 0.01 (the authors' default): peaked softmax, most p below the 1e-5 clamp.
    z = _randn(40, 4, dtype=dtype, scale=0.2)
    codebook = _randn(9, 4, dtype=dtype, scale=0.2)
    _check_vq(z, codebook, commit_weight=1.0, entropy_weight=0.1, entropy_gamma=1.0)


def test_vq_loss_peaked_softmax_wide_codes():
    # tau = 0.01 with D = 32 at unit scale: logits of several thousand, where the entropy
    # gradient cancels almost exactly for the nearest code. A logit rounded differently in the
    # backward than in the forward (e.g. by fp contraction on a GPU) shows up here at ~1e-1.
    z = _randn(64, 32)
    codebook = _randn(300, 32)
    kw = dict(commit_weight=0.25, entropy_weight=0.1, entropy_gamma=1.0, temperature=0.01)
    z_ = z.clone().requires_grad_()
    c_ = codebook.clone().requires_grad_()
    loss = on_device(ops.vq_loss, z_, c_, backend="triton", **kw)
    grads = torch.autograd.grad(loss, (z_, c_))
    loss_ref, *grads_ref = _vq_reference(z, codebook, **kw)
    torch.testing.assert_close(loss.double(), loss_ref, rtol=1e-5, atol=0)
    for grad, grad_ref in zip(grads, grads_ref):
        assert float((grad.double() - grad_ref).norm() / grad_ref.norm()) < 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
def test_vq_loss_kernels_direct(dtype):
    M, K, D, tau = 45, 70, 6, 0.3
    z = _randn(M, D, dtype=dtype)
    codebook = _randn(K, D, dtype=dtype)
    weights = (0.25, 0.5, 1.3, tau)
    saved = on_device(k_vq.forward, z, codebook, *weights)
    loss, idx, row_max, log_norm, mean_p = saved
    acc = k_near.accumulate_dtype(z, codebook)
    assert idx.dtype == torch.int64 and idx.shape == (M,)
    assert row_max.dtype == log_norm.dtype == mean_p.dtype == loss.dtype == acc
    assert row_max.shape == log_norm.shape == (M,) and mean_p.shape == (K,)
    d = _distances64(z, codebook)
    _check_nearest(z, codebook, idx, -row_max * tau)
    a = -d / tau
    rtol = 1e-9 if dtype == F64 else 1e-4
    _assert_close_scaled(log_norm, torch.logsumexp(a - a.max(1, keepdim=True).values, 1), rtol)
    _assert_close_scaled(mean_p, torch.softmax(a, 1).mean(0), rtol)
    grad = torch.tensor(1.7, dtype=acc)
    gz, gc = on_device(k_vq.backward, grad, z, codebook, *saved[1:], *weights)
    kw = dict(zip(("commit_weight", "entropy_weight", "entropy_gamma", "temperature"), weights))
    loss_ref, gz_ref, gc_ref = _vq_reference(z, codebook, **kw)
    torch.testing.assert_close(loss.double(), loss_ref, rtol=rtol, atol=0)
    _assert_close_scaled(gz, 1.7 * gz_ref, rtol)
    _assert_close_scaled(gc, 1.7 * gc_ref, rtol)
    # Without the entropy term its saved tensors are zeros.
    no_entropy = on_device(k_vq.forward, z, codebook, 0.25, 0.0, 1.3, tau)
    _, idx0, row_max0, log_norm0, mean_p0 = no_entropy
    assert torch.equal(idx0, idx)
    assert not row_max0.any() and not log_norm0.any() and not mean_p0.any()


def _entropy_term(z, codebook, **kw):
    """The entropy term alone: both calls pick the same codes, so their commitment terms (and
    the stop-gradients gradcheck cannot see) cancel."""
    def loss(**extra):
        return on_device(ops.vq_loss, z, codebook, commit_weight=0.0, backend="triton",
                         **{**kw, **extra})

    return loss() - loss(entropy_weight=0.0)


@pytest.mark.parametrize("temperature", [2.0, 0.05])
def test_vq_loss_entropy_gradcheck(temperature):
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(6, 3, dtype=F64, generator=gen, requires_grad=True)
    codebook = torch.randn(5, 3, dtype=F64, generator=gen, requires_grad=True)
    kw = dict(entropy_weight=0.8, entropy_gamma=1.3, temperature=temperature)
    assert torch.autograd.gradcheck(lambda z, c: _entropy_term(z, c, **kw), (z, codebook))


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
def test_vq_loss_commitment_gradients(dtype):
    M, K, D, commit, scale = 40, 100, 5, 0.25, 1.7
    codebook = _randn(K, D, dtype=dtype, scale=3.0)
    # Copies of code 3 in its code tile and in the next: they must get no gradient.
    codebook[20] = codebook[80] = codebook[3]
    z = (codebook[torch.randint(0, 8, (M,))] + 0.1 * torch.randn(M, D).to(dtype)).requires_grad_()
    codebook.requires_grad_()
    loss = on_device(ops.vq_loss, z, codebook, commit_weight=commit, backend="triton")
    gz, gc = torch.autograd.grad(loss * scale, (z, codebook))
    z, codebook = z.detach(), codebook.detach()
    idx = on_device(k_near.nearest_code, z, codebook)[0]
    assert (idx == 3).any() and not ((idx == 20) | (idx == 80)).any()
    q = codebook[idx]
    err = q - z
    rtol = 1e-12 if dtype == F64 else 1e-5
    torch.testing.assert_close(loss, (1 + commit) * (err**2).mean(), rtol=rtol, atol=0)
    torch.testing.assert_close(gz, -scale * 2 * err / (M * D), rtol=rtol, atol=1e-30)
    expected = torch.zeros_like(codebook).index_add_(0, idx, scale * commit * 2 * err / (M * D))
    torch.testing.assert_close(gc, expected, rtol=rtol, atol=rtol * float(expected.abs().max()))
    assert not gc[20].any() and not gc[80].any()


def test_vq_loss_noncontiguous_batched_and_deterministic():
    z = torch.randn(2, 6, 30).transpose(1, 2).requires_grad_()  # (2, 30, 6)
    codebook = torch.randn(6, 37).t().requires_grad_()  # (37, 6)
    kw = dict(commit_weight=0.25, entropy_weight=0.5, temperature=0.3)
    runs = []
    for _ in range(2):
        loss = on_device(ops.vq_loss, z, codebook, backend="triton", **kw)
        runs.append((loss, *torch.autograd.grad(loss, (z, codebook))))
    assert runs[1][1].shape == z.shape and runs[1][2].shape == codebook.shape
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    flat = z.detach().reshape(-1, 6).contiguous()
    loss_flat = on_device(ops.vq_loss, flat, codebook.detach().contiguous(), backend="triton", **kw)
    assert torch.equal(runs[0][0], loss_flat)


def test_vq_loss_programs_loop_over_token_blocks(monkeypatch):
    # Few programs for the code-tile x token-group kernels: each one loops over several blocks.
    z = _randn(100, 4)
    codebook = _randn(70, 4)
    kw = dict(commit_weight=0.25, entropy_weight=0.5, entropy_gamma=1.3, temperature=0.3)
    wide = _check_vq(z, codebook, **kw)
    monkeypatch.setattr(k_vq, "TARGET_PROGRAMS", 2)
    narrow = _check_vq(z, codebook, **kw)
    for a, b in zip(wide, narrow):
        _assert_close_scaled(a, b, 1e-5)


@settings(deadline=None)
@given(
    M=st.sampled_from([1, 9, 40]),
    K=st.sampled_from([1, 5, 37]),
    D=st.sampled_from([1, 4, 16]),
    entropy_weight=st.sampled_from([0.0, 0.5]),
    temperature=st.sampled_from([0.05, 1.0]),
    dtype=st.sampled_from([torch.float32, F64]),
    seed=st.integers(0, 2**16),
)
def test_vq_loss_hypothesis(M, K, D, entropy_weight, temperature, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    z = _randn(M, D, dtype=dtype, gen=gen)
    codebook = _randn(K, D, dtype=dtype, gen=gen)
    assume(_clear_winner(z, codebook))
    kw = dict(commit_weight=0.25, entropy_weight=entropy_weight, entropy_gamma=1.3,
              temperature=temperature)
    _check_vq(z, codebook, **kw)


# ---------------------------------------------------------------------------------------------
# extract_subsequence
# ---------------------------------------------------------------------------------------------

SUB_RTOL = {torch.float32: 1e-5, F64: 1e-12, torch.bfloat16: 2e-2, torch.float16: 4e-3}
# Start and length of the first tokens: at the start (position 0), the whole series (positions
# 0 and T-1), an end clamped at 1 (t + l > 1), a start before 0, a start at 1, a zero length.
SPECIAL_TOKENS = [(0.0, 0.5), (0.0, 1.0), (0.7, 0.6), (-0.2, 0.5), (1.0, 0.3), (0.4, 0.0)]


def _tokens(B, N, dtype, gen=None):
    t = torch.rand(B, N, generator=gen) * 1.1 - 0.05
    l = torch.rand(B, N, generator=gen) * 0.8
    for i, (ti, li) in enumerate(SPECIAL_TOKENS[: B * N]):
        t.view(-1)[i], l.view(-1)[i] = ti, li
    return t.to(dtype), l.to(dtype)


def _check_subsequence(x, t, l, length, smooth, gen=None):
    dtype = x.dtype
    ref_dtype = torch.float32 if dtype in HALF else dtype
    leaves = [v.detach().requires_grad_() for v in (x, t, l)]
    out = on_device(ops.extract_subsequence, *leaves, length, smooth, backend="triton")
    assert out.dtype == dtype and out.shape == (*t.shape, length)
    g = torch.randn(out.shape, generator=gen).to(dtype)
    grads = torch.autograd.grad(out, leaves, g)
    ref_leaves = [v.detach().to(ref_dtype).requires_grad_() for v in (x, t, l)]
    ref = ops.extract_subsequence_ref(*ref_leaves, length, smooth)
    ref_grads = torch.autograd.grad(ref, ref_leaves, g.to(ref_dtype))
    rtol = SUB_RTOL[dtype]
    _assert_close_scaled(out, ref, rtol)
    for name, grad, ref_grad in zip("xtl", grads, ref_grads):
        assert grad.dtype == dtype, name
        _assert_close_scaled(grad, ref_grad, rtol * 10)
    # The kernels called directly give the same.
    plain = [v.detach().contiguous() for v in (x, t, l)]
    assert torch.equal(on_device(k_sub.forward, *plain, length, smooth), out.detach())
    for grad, direct in zip(grads, on_device(k_sub.backward, g, *plain, length, smooth)):
        _assert_close_scaled(direct, grad, _atomic_order_rtol(dtype))
    return out, grads, ref_grads


SUB_CASES = [(2, 3, 10, 7, 1), (2, 3, 10, 7, 3), (1, 1, 2, 1, 5), (3, 4, 50, 33, 5),
             (2, 5, 17, 40, 1), (1, 6, 300, 5, 3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,N,T,length,smooth", SUB_CASES)
def test_extract_subsequence_matches_reference(dtype, B, N, T, length, smooth):
    x = _randn(B, T, dtype=dtype)
    t, l = _tokens(B, N, dtype)
    _check_subsequence(x, t, l, length, smooth)


def test_extract_subsequence_gradient_conventions():
    # Positions 0 and T-1 pass no gradient to t and l, nor does a clamped end.
    T, length = 9, 9
    x = torch.randn(1, T, dtype=F64)
    t = torch.tensor([[0.0, 1.0, 0.5, -0.5]], dtype=F64)
    l = torch.tensor([[1.0, 0.5, 0.7, 0.2]], dtype=F64)
    _, (_, gt, gl), (_, gt_ref, gl_ref) = _check_subsequence(x, t, l, length, 1)
    torch.testing.assert_close(gt, gt_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gl, gl_ref, rtol=1e-12, atol=1e-12)
    assert gt[0, 1] == 0 and gl[0, 1] == 0  # every position at T-1
    assert gl[0, 2] == 0  # end clamped
    assert gt[0, 3] == 0 and gl[0, 3] == 0  # every position at or before 0


def test_extract_subsequence_noncontiguous_3d_tokens():
    x = torch.randn(12, 3).t()  # (3, 12), not contiguous
    t = torch.rand(3, 4, 1) * 0.6
    l = (torch.rand(4, 3) * 0.5).t()
    out = on_device(ops.extract_subsequence, x, t, l, 8, 3, backend="triton")
    ref = ops.extract_subsequence_ref(x, t.squeeze(-1), l, 8, 3)
    _assert_close_scaled(out, ref, 1e-5)


@settings(deadline=None)
@given(
    B=st.sampled_from([1, 2]),
    N=st.sampled_from([1, 5]),
    T=st.sampled_from([2, 9, 40]),
    length=st.sampled_from([1, 7, 32]),
    smooth=st.sampled_from([1, 3, 5]),
    dtype=st.sampled_from([torch.float32, F64]),
    seed=st.integers(0, 2**16),
)
def test_extract_subsequence_hypothesis(B, N, T, length, smooth, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    x = _randn(B, T, dtype=dtype, gen=gen)
    t, l = _tokens(B, N, dtype, gen=gen)
    _check_subsequence(x, t, l, length, smooth, gen=gen)


# ---------------------------------------------------------------------------------------------
# Registration: the kernels' outputs agree with the ops' fake implementations and autograd
# ---------------------------------------------------------------------------------------------


def _opcheck_cases():
    z, codebook = torch.randn(10, 4), torch.randn(7, 4)
    x = torch.randn(2, 12)
    t, l = torch.rand(2, 3) * 0.5, torch.rand(2, 3) * 0.5
    bf16 = torch.bfloat16
    # opcheck cannot make an upstream gradient for nearest_code's int64 output: no requires_grad.
    return {
        "nearest_code": (_nearest_code_op, (z, codebook, "triton"), False),
        "nearest_code_bf16": (_nearest_code_op, (z.to(bf16), codebook.to(bf16), "triton"), False),
        "code_histogram": (_code_histogram_op, (torch.randint(0, 5, (3, 8)), 5, "triton"), False),
        "vq_loss": (_vq_loss_op, (z, codebook, 0.25, 0.5, 1.0, 0.3, "triton"), True),
        "vq_loss_bf16": (_vq_loss_op, (z.to(bf16), codebook, 0.25, 0.5, 1.0, 0.3, "triton"), True),
        "extract_subsequence": (_extract_subsequence_op, (x, t, l, 6, 3, "triton"), True),
    }


@pytest.mark.parametrize("case", list(_opcheck_cases()))
def test_opcheck_triton(case):
    op, args, grad = _opcheck_cases()[case]
    args = _move(args, DEVICE)
    if grad:
        args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point()
                     else a for a in args)
    torch.library.opcheck(op, args)
