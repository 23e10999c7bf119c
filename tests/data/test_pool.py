"""The pre-training pool and SeriesData's splits."""


import pytest
import torch

from vqfast.data import DataError, SeriesData, pretraining_series


def make_data(name, n, c, length=16, test=True, classes=2, seed=0) -> SeriesData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, length, generator=g)
    y = torch.arange(n) % classes
    return SeriesData(name, x, y, x.clone() if test else None, y.clone() if test else None,
                      [str(i) for i in range(classes)])


def test_pretraining_series_pools_every_channel():
    a, b = make_data("a", 5, 2), make_data("b", 3, 1)
    pool = pretraining_series([a, b])
    assert pool.shape == (13, 16)
    torch.testing.assert_close(pool[:10], a.univariate())
    torch.testing.assert_close(pool[10:], b.univariate())
    assert pretraining_series([a], split="test").shape == (10, 16)


def test_pretraining_series_balance_upsamples_to_largest():
    big, small = make_data("big", 10, 2), make_data("small", 3, 1, seed=1)
    pool = pretraining_series([big, small], balance=True, seed=0)
    assert pool.shape == (40, 16)
    torch.testing.assert_close(pool[:20], big.univariate())
    part = pool[20:]
    torch.testing.assert_close(part[:3], small.univariate())  # every original, once
    originals = {tuple(r.tolist()) for r in small.univariate()}
    assert all(tuple(r.tolist()) in originals for r in part)
    again = pretraining_series([big, small], balance=True, seed=0)
    assert torch.equal(pool, again)
    other = pretraining_series([big, small], balance=True, seed=1)
    assert not torch.equal(pool, other)


def test_split_and_pool_errors():
    a = make_data("a", 4, 1, test=False)
    with pytest.raises(DataError, match="'a' has no test split.*test_fraction"):
        a.univariate("test")
    with pytest.raises(DataError, match="has no test split"):
        pretraining_series([a], split="test")
    with pytest.raises(DataError, match="no datasets given"):
        pretraining_series([])
    with pytest.raises(DataError, match=r"different lengths \{'a': 16, 'b': 8\}.*same length="):
        pretraining_series([a, make_data("b", 2, 1, length=8)])
    with pytest.raises(TypeError, match="not a SeriesData"):
        pretraining_series([torch.zeros(3, 16)])
    with pytest.raises(DataError, match=r"y_train must be \(4,\)"):
        SeriesData("x", torch.zeros(4, 1, 8), torch.zeros(3, dtype=torch.int64), None, None, ["0"])
