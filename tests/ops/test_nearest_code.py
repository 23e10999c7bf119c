"""nearest_code on every backend against the float64 oracle: chosen codes are judged by their
distance (ties make index comparisons flaky), distances and their gradients against the
reference formula, opcheck (mixed dtypes included) and torch.compile."""

import importlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vqfast.ops as ops
from vqfast.ops.nearest_code import _nearest_code_op

from .conftest import (
    DRAWN,
    DTYPES,
    F64,
    HALF,
    Sample,
    assert_close,
    assert_nearest,
    check_compiled,
    chosen_distance_fp64,
    clear_winner,
    ids,
    on_device,
    opcheck,
    randn,
)

bf16 = torch.bfloat16


def sample_inputs() -> list[Sample]:
    """``(z, codebook)``: odd and size-1 shapes, leading dims, every dtype and mixed dtypes."""
    g = torch.Generator().manual_seed(0)

    def r(*shape, dtype=torch.float32):
        return randn(*shape, dtype=dtype, gen=g)

    return [
        Sample("1x1x1", (r(1, 1), r(1, 1))),
        Sample("one-token", (r(1, 5), r(37, 5))),
        Sample("one-code", (r(9, 3), r(1, 3))),
        Sample("odd", (r(70, 5), r(37, 5))),
        Sample("wide", (r(33, 64), r(37, 64))),
        Sample("batched", (r(3, 4, 6), r(11, 6)), compile=True),
        Sample("fp64", (r(20, 5, dtype=F64), r(13, 5, dtype=F64))),
        Sample("bf16", (r(20, 6, dtype=bf16), r(11, 6, dtype=bf16))),
        Sample("fp16-fp32", (r(20, 6, dtype=torch.float16), r(11, 6))),
        Sample("fp32-fp64", (r(20, 6), r(11, 6, dtype=F64)), compile=True),
        Sample("fp64-fp32", (r(20, 6, dtype=F64), r(11, 6))),
        Sample("bf16-fp64", (r(20, 6, dtype=bf16), r(11, 6, dtype=F64))),
    ]


SAMPLES = sample_inputs()


def call(z, codebook, backend, **kwargs):
    return on_device(ops.nearest_code, z, codebook, backend=backend, **kwargs)


@pytest.mark.parametrize("sample", SAMPLES, ids=ids(SAMPLES))
def test_matches_oracle(backend, sample):
    z, codebook = sample.args
    idx, dist = call(z, codebook, backend)
    assert idx.shape == dist.shape == z.shape[:-1]
    assert dist.dtype == (F64 if F64 in (z.dtype, codebook.dtype) else torch.float32)
    assert_nearest(z, codebook, idx, dist, backend)
    if backend == "triton":  # the kernel called directly gives the same
        from vqfast.kernels import nearest_code as kernel

        flat = z.reshape(-1, z.shape[-1])
        direct = on_device(kernel.nearest_code, flat, codebook)
        assert torch.equal(direct[0], idx.reshape(-1)) and torch.equal(direct[1], dist.reshape(-1))


GRAD_RTOL = {torch.float32: 1e-5, F64: 1e-12, bf16: 1e-2, torch.float16: 1e-3}


@pytest.mark.parametrize("sample", SAMPLES, ids=ids(SAMPLES))
def test_distance_gradients(backend, sample):
    """The gradients of the distances are those of ``|z - e_idx|^2`` at the chosen codes."""
    z, codebook = (v.detach().requires_grad_() for v in sample.args)
    idx, dist = call(z, codebook, backend)
    w = torch.randn(dist.shape, dtype=dist.dtype)
    grads = torch.autograd.grad((dist * w).sum(), (z, codebook))
    acc = dist.dtype
    z_, c_ = (v.detach().to(acc).requires_grad_() for v in (z, codebook))
    expected = ((z_ - c_[idx]) ** 2).sum(-1)
    expected_grads = torch.autograd.grad((expected * w).sum(), (z_, c_))
    for name, grad, ref, leaf in zip(("z", "codebook"), grads, expected_grads, (z, codebook)):
        assert grad.dtype == leaf.dtype, name
        assert_close(grad, ref.to(leaf.dtype), GRAD_RTOL[leaf.dtype], name)


def test_gradcheck_fp64(backend):
    z = torch.randn(12, 3, dtype=F64, requires_grad=True)
    codebook = torch.randn(5, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: call(a, b, backend)[1], (z, codebook))


@pytest.mark.parametrize("sample", SAMPLES, ids=ids(SAMPLES))
def test_opcheck(compiled_backend, sample):
    # opcheck cannot make an upstream gradient for the int64 output: no requires_grad.
    z, codebook = sample.args
    opcheck(_nearest_code_op, (z.reshape(-1, z.shape[-1]), codebook, compiled_backend), False)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.compile], ids=str)
def test_torch_compile_fullgraph(backend, sample):
    check_compiled(lambda z, cb: ops.nearest_code(z, cb, backend=backend), sample.args, True)


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes and the regression cases
# ---------------------------------------------------------------------------------------------

SHAPES = [(1, 1, 1), (1, 37, 5), (9, 1, 3), (70, 37, 5), (33, 37, 64), (130, 100, 3)]
# Larger than the Triton interpreter can run quickly.
LARGE_SHAPES = [(1000, 512, 8), (333, 37, 5), (64, 4096, 32), (50, 100, 64), (17, 3, 100)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("M,K,D", SHAPES)
def test_shapes_and_dtypes(backend, dtype, M, K, D):
    z, codebook = randn(M, D, dtype=dtype), randn(K, D, dtype=dtype)
    idx, dist = call(z, codebook, backend)
    assert_nearest(z, codebook, idx, dist, backend)
    if dtype not in HALF and clear_winner(z, codebook):
        assert torch.equal(idx, ops.nearest_code_ref(z.double(), codebook.double())[0])


@pytest.mark.parametrize("backend", ["cpp", "reference"], indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, F64, bf16], ids=str)
@pytest.mark.parametrize("M,K,D", LARGE_SHAPES)
def test_large_shapes(backend, dtype, M, K, D):
    z, codebook = randn(M, D, dtype=dtype), randn(K, D, dtype=dtype)
    idx, dist = call(z, codebook, backend)
    assert_nearest(z, codebook, idx, dist, backend)
    ref_idx, _ = ops.nearest_code(z, codebook, backend="reference")
    assert (idx == ref_idx).float().mean() > 0.99


def test_empty(backend):
    idx, dist = call(torch.zeros(0, 4), torch.randn(3, 4), backend)
    assert idx.shape == (0,) and dist.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.float16], ids=str)
def test_ties_go_to_the_lowest_index(backend, dtype):
    D = 5
    codebook = randn(150, D, scale=3.0)
    # Copies of code 10 in the same code tile (40) and in later tiles (100, 140).
    for k in (40, 100, 140):
        codebook[k] = codebook[10]
    z = codebook[10] + 0.01 * torch.randn(20, D)
    codebook, z = codebook.to(dtype), z.to(dtype)
    assert (call(z, codebook, backend)[0] == 10).all()
    # One code repeated K times: always index 0.
    same = codebook[:1].expand(37, D).contiguous()
    assert (call(z, same, backend)[0] == 0).all()
    # Every code three times, each z exactly one of them: the first copy.
    thrice = torch.cat([codebook[:16]] * 3)
    assert torch.equal(call(thrice, thrice, backend)[0], torch.arange(48) % 16)
    # z = 0 is exactly as far from v as from -v: the first of the equal codes wins.
    v = randn(1, D, dtype=dtype)
    codebook = torch.cat([2 * v, -v, v, -v, v])
    assert (call(torch.zeros(3, D, dtype=dtype), codebook, backend)[0] == 1).all()


@pytest.mark.parametrize("backend", ["cpp"], indirect=True)
def test_cpp_settles_float32_near_ties_exactly(backend):
    # Two codes whose distances to z differ by ~1e-8 relative: below float32 resolution.
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)
    z = torch.tensor([[0.5, 0.5 - 2e-9]], dtype=F64)
    z32, cb32 = z.float(), codebook.float()
    truth = ((z32.double()[:, None] - cb32.double()[None]) ** 2).sum(-1).argmin(1)
    assert torch.equal(call(z32, cb32, backend)[0], truth)


def test_near_ties_near_codes_and_large_offsets(backend):
    g = torch.Generator().manual_seed(0)
    n = 300 if backend == "triton" else 2000  # the interpreter is slow
    codebook = torch.randn(64, 8, generator=g)
    z = codebook[torch.randint(0, 64, (n,), generator=g)]
    z = (z + codebook[torch.randint(0, 64, (n,), generator=g)]) / 2  # midpoints: near-ties
    assert_nearest(z, codebook, *call(z, codebook, backend), backend)
    codebook = torch.randn(512, 8, generator=g) * 0.05
    z = codebook[torch.randint(0, 512, (n,), generator=g)] + torch.randn(n, 8, generator=g) * 1e-4
    assert_nearest(z, codebook, *call(z, codebook, backend), backend)
    codebook = torch.randn(512, 8, generator=g) + 100
    z = torch.randn(n, 8, generator=g) + 100
    assert_nearest(z, codebook, *call(z, codebook, backend), backend)


def test_noncontiguous_and_batched(backend):
    z = torch.randn(3, 8, 40).transpose(1, 2)  # (3, 40, 8), not contiguous
    codebook = torch.randn(8, 37).t()  # (37, 8), not contiguous
    assert not z.is_contiguous() and not codebook.is_contiguous()
    idx, dist = call(z, codebook, backend)
    assert idx.shape == (3, 40) and dist.shape == (3, 40)
    idx2, dist2 = call(z.reshape(-1, 8).contiguous(), codebook.contiguous(), backend)
    assert torch.equal(idx.reshape(-1), idx2) and torch.equal(dist.reshape(-1), dist2)
    assert_nearest(z, codebook, idx, dist, backend)


@DRAWN
@given(M=st.integers(1, 130), K=st.integers(1, 130), D=st.sampled_from([1, 3, 5, 8, 16, 64]),
       scale=st.sampled_from([1e-3, 1.0, 30.0]),
       dtype=st.sampled_from([torch.float32, F64, bf16]), seed=st.integers(0, 2**31 - 1))
def test_drawn_cases(backend, M, K, D, scale, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    z = randn(M, D, dtype=dtype, scale=scale, gen=gen)
    codebook = randn(K, D, dtype=dtype, scale=scale, gen=gen)
    assert_nearest(z, codebook, *call(z, codebook, backend), backend)


def test_oracle_is_chunked_and_exact():
    z, codebook = torch.randn(50, 4), torch.randn(9, 4)
    module = importlib.import_module("vqfast.ops.nearest_code")  # the attribute is the function
    best = module.nearest_distance_fp64(z, codebook)
    d = ((z.double()[:, None] - codebook.double()[None]) ** 2).sum(-1)
    torch.testing.assert_close(best, d.min(1).values, rtol=1e-14, atol=0)
    old, module._ORACLE_BLOCK = module._ORACLE_BLOCK, 20  # two tokens per chunk
    try:
        assert torch.equal(module.nearest_distance_fp64(z, codebook), best)
    finally:
        module._ORACLE_BLOCK = old
    assert torch.equal(best, chosen_distance_fp64(z, codebook, d.argmin(1)))


def test_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="D = 4"):
        ops.nearest_code(torch.randn(3, 5), torch.randn(7, 4))
    with pytest.raises(ValueError, match="K >= 1"):
        ops.nearest_code(torch.randn(3, 4), torch.randn(0, 4))
    with pytest.raises(TypeError, match="floating point"):
        ops.nearest_code(torch.ones(3, 4, dtype=torch.int64), torch.randn(7, 4))



# Values no backend can answer meaningfully: one error, the same on every backend.
NAN, INF = float("nan"), float("inf")


def with_values(v, rows, value):
    v = v.clone()
    v[rows] = value
    return v


@pytest.mark.parametrize("value", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
def test_non_finite_z_names_the_rows(backend, value):
    z, codebook = randn(9, 4), randn(6, 4)
    bad = with_values(z, [2, 7], value)
    with pytest.raises(ops.NonFiniteInputError, match=r"z holds NaN or Inf at rows \[2, 7\]"):
        call(bad, codebook, backend)
    batched = with_values(z.reshape(3, 3, 4), (1, 2), value)  # one element is enough
    batched[0, 0, 1] = value
    with pytest.raises(ops.NonFiniteInputError, match=r"positions .*\[\(0, 0\), \(1, 2\)\]"):
        call(batched, codebook, backend)


@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "inf"])
def test_non_finite_codebook_names_the_codes(backend, value):
    z, codebook = randn(9, 4), randn(6, 4)
    bad = codebook.clone()
    bad[3, 1] = value
    with pytest.raises(ops.NonFiniteInputError, match=r"codebook holds NaN or Inf in codes \[3\]"):
        call(z, bad, backend)


def test_overflowing_distances_are_an_error(backend):
    z, codebook = randn(5, 3) * 1e30, randn(4, 3)  # finite, but |z|^2 overflows float32
    with pytest.raises(ops.NonFiniteInputError, match="overflow float32"):
        call(z, codebook, backend)
    idx, dist = call(z.double(), codebook, backend)  # float64 holds them
    assert torch.isfinite(dist).all()
    assert_nearest(z.double(), codebook, idx, dist, backend)


def test_check_finite_false_skips_the_check(backend):
    z, codebook = randn(9, 4), randn(6, 4)
    idx, dist = call(with_values(z, [2], NAN), codebook, backend, check_finite=False)
    assert idx.shape == (9,) and not torch.isfinite(dist[2])
    assert torch.equal(idx[:2], call(z, codebook, backend)[0][:2])


def test_zero_width_vectors_are_a_clear_error(backend):
    with pytest.raises(ValueError, match="D = 0 components"):
        call(torch.zeros(5, 0), torch.zeros(4, 0), backend)
    with pytest.raises(ValueError, match="D = 0 components"):
        call(torch.zeros(0, 0), torch.zeros(4, 0), backend)
