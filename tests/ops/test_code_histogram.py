"""code_histogram on every backend: equal to the reference (integer counts), opcheck, compile."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vqfast.ops as ops
from vqfast.ops.code_histogram import _code_histogram_op

from .conftest import DRAWN, Sample, check_compiled, ids, on_device, opcheck


def sample_inputs() -> list[Sample]:
    """``(indices, num_code)``: size-1, odd, long rows, many codes, empty rows, int32."""
    g = torch.Generator().manual_seed(0)

    def idx(B, N, K, dtype=torch.int64):
        return torch.randint(0, K, (B, N), generator=g, dtype=dtype), K

    return [
        Sample("1x1x1", idx(1, 1, 1)),
        Sample("odd", idx(3, 50, 37), compile=True),
        Sample("long", idx(2, 1000, 5)),
        Sample("many-codes", idx(4, 7, 300)),
        Sample("cpp-sizes", idx(33, 64, 512)),
        Sample("empty-rows", idx(2, 0, 3)),
        Sample("int32", idx(6, 8, 16, torch.int32), compile=True),
    ]


SAMPLES = sample_inputs()


@pytest.mark.parametrize("sample", SAMPLES, ids=ids(SAMPLES))
def test_equals_reference(backend, sample):
    indices, K = sample.args
    hist = on_device(ops.code_histogram, indices, K, backend=backend)
    assert hist.dtype == torch.int64
    assert torch.equal(hist, ops.code_histogram_ref(indices.long(), K))
    assert torch.equal(hist.sum(1), torch.full((indices.shape[0],), indices.shape[1]))
    if backend == "triton":
        from vqfast.kernels import code_histogram as kernel

        assert torch.equal(on_device(kernel.code_histogram, indices.long(), K), hist)


@pytest.mark.parametrize("sample", SAMPLES, ids=ids(SAMPLES))
def test_opcheck(compiled_backend, sample):
    indices, K = sample.args
    opcheck(_code_histogram_op, (indices.long(), K, compiled_backend), False)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.compile], ids=str)
def test_torch_compile_fullgraph(backend, sample):
    indices, K = sample.args
    check_compiled(lambda i: ops.code_histogram(i, K, backend=backend), (indices,), False)


def test_noncontiguous_int32(backend):
    indices = torch.randint(0, 9, (40, 3), dtype=torch.int32).t()
    assert not indices.is_contiguous()
    hist = on_device(ops.code_histogram, indices, 9, backend=backend)
    assert hist.dtype == torch.int64
    assert torch.equal(hist, ops.code_histogram_ref(indices.long(), 9))


@DRAWN
@given(B=st.sampled_from([1, 3]), N=st.sampled_from([1, 33, 200]), K=st.sampled_from([1, 7, 64]),
       seed=st.integers(0, 2**16))
def test_drawn_cases(backend, B, N, K, seed):
    gen = torch.Generator().manual_seed(seed)
    indices = torch.randint(0, K, (B, N), generator=gen)
    hist = on_device(ops.code_histogram, indices, K, backend=backend)
    assert torch.equal(hist, ops.code_histogram_ref(indices, K))


def test_rejects_out_of_range_indices():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ops.code_histogram(torch.tensor([[0, 4]]), 4)
    with pytest.raises(TypeError, match="integers"):
        ops.code_histogram(torch.zeros(2, 3), 4)


@pytest.mark.parametrize("num_code", [16.7, 16.0, True, "16", None])
def test_num_code_must_be_an_integer(backend, num_code):
    indices = torch.tensor([[0, 3, 3], [1, 0, 2]])
    with pytest.raises(TypeError, match="num_code must be an integer"):
        on_device(ops.code_histogram, indices, num_code, backend=backend)


def test_num_code_accepts_numpy_and_tensor_integers(backend):
    np = pytest.importorskip("numpy")
    indices = torch.tensor([[0, 3, 3], [1, 0, 2]])
    expected = ops.code_histogram_ref(indices, 4)
    for num_code in (4, np.int64(4), torch.tensor(4)):
        assert torch.equal(on_device(ops.code_histogram, indices, num_code, backend=backend),
                           expected)
