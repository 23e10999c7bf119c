"""ShardedSeries: memory-mapped .npy shards."""

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vqfast.data import DataError, ShardedSeries
from vqfast.inputs import prepare_series


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(7)
    a = rng.normal(size=(3, 2, 50)).astype(np.float32)
    b = rng.normal(size=(2, 2, 80))
    np.save(tmp_path / "shard_0.npy", a)
    np.save(tmp_path / "shard_1.npy", b)
    return tmp_path, a, b


def test_sharded_series(shards):
    d, a, b = shards
    ds = ShardedSeries(d, length=32)
    assert len(ds) == 10 and ds.channels == 2
    item = ds[7]  # shard_1, sample 0, channel 1
    assert item.shape == (32,) and item.dtype == torch.float32
    torch.testing.assert_close(item, prepare_series(b[:1], 32, "resample")[1])
    torch.testing.assert_close(ds[3], prepare_series(a[1:2], 32, "resample")[1])
    torch.testing.assert_close(ds[-1], ds[9])
    assert ds.locate(7) == (d / "shard_1.npy", 0, 1)
    with pytest.raises(IndexError, match="out of range"):
        ds[10]
    pad = ShardedSeries(d, length=32, how="pad")
    expect = prepare_series(F.pad(torch.from_numpy(a[0, 1]), (0, 30))[None], 32, "resample")[0]
    torch.testing.assert_close(pad[1], expect)
    torch.testing.assert_close(pad[7], ds[7])  # already the longest
    clone = pickle.loads(pickle.dumps(ds))  # as DataLoader workers get it
    assert clone._arrays == {} and torch.equal(clone[7], ds[7])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=10)))
    assert batch.shape == (10, 32)


def test_sharded_series_univariate_shards(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(12.0).reshape(3, 4))
    np.save(tmp_path / "b.npy", np.arange(10.0).reshape(2, 5))
    ds = ShardedSeries(tmp_path, length=4)
    assert len(ds) == 5
    torch.testing.assert_close(ds[1], torch.tensor([4.0, 5, 6, 7]))


def test_sharded_series_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ShardedSeries(tmp_path / "nope")
    with pytest.raises(DataError, match=r"no \.npy shards"):
        ShardedSeries(tmp_path)
    with pytest.raises(ValueError, match="how='zoom' is not one of"):
        ShardedSeries(tmp_path, how="zoom")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read shard .*bad.npy"):
        ShardedSeries(tmp_path)
    (tmp_path / "bad.npy").unlink()
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataError, match="'s.npy' holds <U1 data; shards must be numeric"):
        ShardedSeries(tmp_path)
    np.save(tmp_path / "s.npy", np.zeros(5))
    with pytest.raises(DataError, match=r"shape \(5,\); shards must be \(n, T\) or \(n, C, T\)"):
        ShardedSeries(tmp_path)
    np.save(tmp_path / "s.npy", np.zeros((2, 1)))
    with pytest.raises(DataError, match="at least 2"):
        ShardedSeries(tmp_path)
    np.save(tmp_path / "s.npy", np.zeros((2, 3, 10)))
    np.save(tmp_path / "t.npy", np.zeros((2, 2, 10)))
    with pytest.raises(DataError, match="same number of channels.*'s.npy': 3.*'t.npy': 2"):
        ShardedSeries(tmp_path)
    x = np.zeros((4, 2, 10))
    x[2, 1, 5] = np.nan
    np.save(tmp_path / "t.npy", x)
    (tmp_path / "s.npy").unlink()
    ds = ShardedSeries(tmp_path, length=8)
    ds[4]
    with pytest.raises(DataError, match="shard 't.npy' row 2 channel 1 contains NaN"):
        ds[5]
