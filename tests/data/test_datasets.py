"""Tests of vqfast.data: loading, preprocessing, caching, pooling and sharded datasets."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vqfast.data import datasets as vd
from vqfast.data import (
    DataError,
    SeriesData,
    ShardedSeries,
    available_datasets,
    load_dataset,
    pretraining_series,
)
from vqfast.inputs import SeriesError, prepare_series

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _ts_line(sample, label=None) -> str:
    chans = [",".join("NaN" if np.isnan(v) else repr(float(v)) for v in ch) for ch in sample]
    return ":".join(chans) + ("" if label is None else f":{label}")


def write_ts(path: Path, samples, labels=None, equal=True) -> Path:
    """A UEA/UCR .ts file written by hand; ``samples`` is a list of (C, T) arrays."""
    c = samples[0].shape[0]
    head = [
        "# a toy dataset for tests",
        f"@problemName {path.stem}",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if c == 1 else 'false'}",
        f"@dimensions {c}",
        f"@equalLength {'true' if equal else 'false'}",
    ]
    if equal:
        head.append(f"@seriesLength {samples[0].shape[1]}")
    if labels is None:
        head.append("@classLabel false")
    else:
        head.append("@classLabel true " + " ".join(sorted({str(v) for v in labels})))
    head.append("@data")
    lines = [_ts_line(s, None if labels is None else labels[i]) for i, s in enumerate(samples)]
    path.write_text("\n".join(head + lines) + "\n")
    return path


def make_data(name, n, c, length=16, test=True, classes=2, seed=0) -> SeriesData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, length, generator=g)
    y = torch.arange(n) % classes
    return SeriesData(name, x, y, x.clone() if test else None, y.clone() if test else None,
                      [str(i) for i in range(classes)])


@pytest.fixture(scope="module")
def basic_motions():
    return load_dataset("BasicMotions")


# --------------------------------------------------------------------------------------------
# shipped datasets
# --------------------------------------------------------------------------------------------


def test_available_datasets_lists_shipped_classification_data():
    names = available_datasets()
    for name in ("BasicMotions", "JapaneseVowels", "ArrowHead", "GunPoint", "ItalyPowerDemand"):
        assert name in names
    assert "Covid3Month" not in names  # a regression dataset


def test_basic_motions(basic_motions):
    d = basic_motions
    assert d.name == "BasicMotions"
    assert d.x_train.shape == (40, 6, 512) and d.x_test.shape == (40, 6, 512)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.num_classes == 4 and d.channels == 6 and d.length == 512
    assert sorted(d.classes) == d.classes and len(d.classes) == 4
    assert set(d.y_train.tolist()) == set(range(4)) and set(d.y_test.tolist()) == set(range(4))
    u = d.univariate()
    assert u.shape == (240, 512)
    torch.testing.assert_close(u[6 * 3 + 2], d.x_train[3, 2])
    assert d.univariate("test").shape == (240, 512)
    assert "BasicMotions" in repr(d) and "(40, 6, 512)" in repr(d)


def test_name_is_case_insensitive():
    d = load_dataset("itALYpowerDEMAND", length=32)
    assert d.name == "ItalyPowerDemand" and d.x_train.shape[1:] == (1, 32)


def test_japanese_vowels_unequal_lengths_both_modes():
    from aeon.datasets import load_classification

    pad = load_dataset("JapaneseVowels", length=64, how="pad")
    res = load_dataset("JapaneseVowels", length=64, how="resample")
    for d in (pad, res):
        assert d.x_train.shape == (270, 12, 64) and d.x_test.shape == (370, 12, 64)
        assert d.num_classes == 9 and d.classes == [str(i) for i in range(1, 10)]
        assert torch.isfinite(d.x_train).all()
    assert not torch.allclose(pad.x_train, res.x_train)
    # exactly prepare_series on the raw series, train and test padded together
    raw = []
    for split in ("train", "test"):
        X, _ = load_classification("JapaneseVowels", split=split, load_equal_length=False)
        raw += list(X)
    for how, d in (("pad", pad), ("resample", res)):
        expect = prepare_series(raw, 64, how).view(-1, 12, 64)
        torch.testing.assert_close(torch.cat([d.x_train, d.x_test]), expect)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def test_npz_roundtrip_with_test_split(tmp_path):
    x = np.random.default_rng(0).normal(size=(12, 3, 40))
    y = np.array(["cat", "dog", "emu"] * 4)
    xt, yt = x[:5] * 2, np.array(["dog", "cat", "dog", "emu", "cat"])
    np.savez(tmp_path / "toy.npz", X=x, y=y, X_test=xt, y_test=yt)
    d = load_dataset(tmp_path / "toy.npz", length=40)
    assert d.name == "toy" and d.classes == ["cat", "dog", "emu"]
    torch.testing.assert_close(d.x_train, torch.from_numpy(x).float())
    torch.testing.assert_close(d.x_test, torch.from_numpy(xt).float())
    assert d.y_train.tolist() == [0, 1, 2] * 4 and d.y_test.tolist() == [1, 0, 1, 2, 0]
    # the X_train/... spelling, float labels, (n, T) data
    np.savez(tmp_path / "alt.npz", X_train=x[:, 0], y_train=np.arange(12) % 2 * 1.5)
    d = load_dataset(str(tmp_path / "alt.npz"), length=20)
    assert d.x_train.shape == (12, 1, 20) and d.x_test is None
    assert d.classes == ["0.0", "1.5"] and d.y_train.tolist() == [0, 1] * 6


def test_npz_object_array_of_unequal_series(tmp_path):
    rng = np.random.default_rng(1)
    series = [rng.normal(size=(2, t)) for t in (5, 9, 7)]
    X = np.empty(3, dtype=object)
    X[:] = series
    np.savez(tmp_path / "ragged.npz", X=X, y=np.array([2, 0, 2]))
    for how in ("pad", "resample"):
        d = load_dataset(tmp_path / "ragged.npz", length=16, how=how)
        torch.testing.assert_close(d.x_train, prepare_series(series, 16, how).view(3, 2, 16))
    assert d.classes == ["0", "2"] and d.y_train.tolist() == [1, 0, 1]


def test_npy_is_unlabelled(tmp_path):
    x = np.random.default_rng(2).normal(size=(7, 30)).astype(np.float32)
    np.save(tmp_path / "pool.npy", x)
    d = load_dataset(tmp_path / "pool.npy", length=30)
    assert d.classes == ["unlabelled"] and d.num_classes == 1
    assert d.y_train.tolist() == [0] * 7 and d.x_test is None
    torch.testing.assert_close(d.x_train[:, 0], torch.from_numpy(x))


def test_ts_roundtrip_with_sibling_test_file(tmp_path):
    rng = np.random.default_rng(3)
    train = [rng.normal(size=(2, 20)) for _ in range(6)]
    test = [rng.normal(size=(2, 20)) for _ in range(4)]
    write_ts(tmp_path / "Toy_TRAIN.ts", train, ["10", "9", "10", "9", "2", "2"])
    write_ts(tmp_path / "Toy_TEST.ts", test, ["9", "2", "10", "10"])
    d = load_dataset(tmp_path / "Toy_TRAIN.ts", length=20)
    assert d.name == "Toy"
    assert d.classes == ["2", "9", "10"]  # numeric text labels in numeric order
    assert d.y_train.tolist() == [2, 1, 2, 1, 0, 0] and d.y_test.tolist() == [1, 0, 2, 2]
    torch.testing.assert_close(d.x_train, torch.from_numpy(np.stack(train)).float())
    torch.testing.assert_close(d.x_test, torch.from_numpy(np.stack(test)).float())
    # a file without the _TRAIN suffix has no test split
    write_ts(tmp_path / "single.ts", train, list("abcabc"))
    assert load_dataset(tmp_path / "single.ts", length=20).x_test is None


def test_ts_unequal_and_nan_padded(tmp_path):
    rng = np.random.default_rng(4)
    series = [rng.normal(size=(1, t)) for t in (8, 12, 5)]
    write_ts(tmp_path / "ragged.ts", series, [0, 1, 0], equal=False)
    d = load_dataset(tmp_path / "ragged.ts", length=24)
    torch.testing.assert_close(d.x_train, prepare_series(series, 24, "pad").view(3, 1, 24))
    # the same series NaN-padded to equal length: trailing NaN is trimmed, same result
    padded = [np.pad(s, ((0, 0), (0, 12 - s.shape[1])), constant_values=np.nan) for s in series]
    write_ts(tmp_path / "nanpad.ts", padded, [0, 1, 0])
    d2 = load_dataset(tmp_path / "nanpad.ts", length=24)
    torch.testing.assert_close(d2.x_train, d.x_train)
    d3 = load_dataset(tmp_path / "nanpad.ts", length=24, how="resample")
    torch.testing.assert_close(d3.x_train, prepare_series(series, 24, "resample").view(3, 1, 24))


def test_ts_unlabelled(tmp_path):
    write_ts(tmp_path / "u.ts", [np.arange(6.0)[None], np.arange(6.0)[None] * 2])
    d = load_dataset(tmp_path / "u.ts", length=6)
    assert d.classes == ["unlabelled"] and d.x_train.shape == (2, 1, 6)


def test_test_fraction_makes_stratified_seeded_split(tmp_path):
    x = np.random.default_rng(5).normal(size=(40, 10))
    y = np.array([0] * 30 + [1] * 10)
    np.savez(tmp_path / "s.npz", X=x, y=y)
    d = load_dataset(tmp_path / "s.npz", length=10, test_fraction=0.2, seed=3)
    assert len(d.y_train) == 32 and len(d.y_test) == 8
    assert d.y_test.tolist().count(1) == 2 and d.y_test.tolist().count(0) == 6
    rows = {tuple(r.tolist()) for r in torch.cat([d.x_train, d.x_test])[:, 0]}
    assert len(rows) == 40  # a partition: nothing lost or duplicated
    again = load_dataset(tmp_path / "s.npz", length=10, test_fraction=0.2, seed=3)
    torch.testing.assert_close(again.x_test, d.x_test)
    other = load_dataset(tmp_path / "s.npz", length=10, test_fraction=0.2, seed=4)
    assert not torch.equal(other.x_test, d.x_test)


def test_test_fraction_ignored_when_source_has_a_test_split(basic_motions):
    d = load_dataset("BasicMotions", test_fraction=0.5)
    assert d.x_train.shape[0] == 40 and d.x_test.shape[0] == 40


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------


def test_cache_hit_does_not_reread_source(tmp_path, monkeypatch):
    x = np.random.default_rng(6).normal(size=(5, 2, 33))
    np.savez(tmp_path / "c.npz", X=x, y=np.array([1, 0, 1, 0, 1]))
    cache = tmp_path / "cache"
    first = load_dataset(tmp_path / "c.npz", length=64, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"
    assert not [f for f in cache.iterdir() if "tmp" in f.name]

    def fail(*args, **kwargs):
        raise AssertionError("the source was read again")

    monkeypatch.setattr(vd, "_read_source", fail)
    second = load_dataset(tmp_path / "c.npz", length=64, cache_dir=cache)
    for k in ("x_train", "y_train"):
        assert torch.equal(getattr(first, k), getattr(second, k))
    assert second.x_test is None and second.classes == first.classes == ["0", "1"]
    # another length or mode is another cache entry
    with pytest.raises(AssertionError, match="read again"):
        load_dataset(tmp_path / "c.npz", length=64, how="resample", cache_dir=cache)
    with pytest.raises(AssertionError, match="read again"):
        load_dataset(tmp_path / "c.npz", length=32, cache_dir=cache)
    # a changed source file is a new entry
    np.savez(tmp_path / "c.npz", X=x * 3, y=np.array([1, 0, 1, 0, 1]))
    os.utime(tmp_path / "c.npz", ns=(1, 1))
    with pytest.raises(AssertionError, match="read again"):
        load_dataset(tmp_path / "c.npz", length=64, cache_dir=cache)


def test_cache_of_shipped_dataset(tmp_path, monkeypatch, basic_motions):
    first = load_dataset("BasicMotions", cache_dir=tmp_path)
    monkeypatch.setattr(vd, "_read_source", lambda *a: pytest.fail("the source was read again"))
    second = load_dataset("basicmotions", cache_dir=tmp_path)
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.x_test,
                                                                       second.x_test)
    assert torch.equal(first.y_test, second.y_test) and first.classes == second.classes
    assert torch.equal(second.x_train, basic_motions.x_train)


def test_corrupt_cache_is_rebuilt(tmp_path):
    np.save(tmp_path / "p.npy", np.arange(20.0).reshape(2, 10))
    load_dataset(tmp_path / "p.npy", length=10, cache_dir=tmp_path / "cache")
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="rebuilt"):
        d = load_dataset(tmp_path / "p.npy", length=10, cache_dir=tmp_path / "cache")
    assert d.x_train.shape == (2, 1, 10)
    torch.load(entry, weights_only=True)  # written again, whole


# --------------------------------------------------------------------------------------------
# pretraining pool
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# sharded series
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_unknown_name_lists_what_is_available():
    with pytest.raises(DataError) as e:
        load_dataset("NoSuchDataset")
    msg = str(e.value)
    assert "unknown dataset 'NoSuchDataset'" in msg
    assert "BasicMotions" in msg and "JapaneseVowels" in msg
    assert ".ts" in msg and ".npz" in msg and ".npy" in msg
    with pytest.raises(DataError, match=r"Did you mean \['BasicMotions'\]"):
        load_dataset("BasicMotion")
    assert isinstance(e.value, SeriesError) and isinstance(e.value, ValueError)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz' does not exist"):
        load_dataset(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "sub" / "Thing"))
    with pytest.raises(DataError, match="is a directory.*ShardedSeries"):
        load_dataset(tmp_path)
    (tmp_path / "x.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match=r"unsupported file type '\.csv'"):
        load_dataset(tmp_path / "x.csv")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"could not read .*bad.npz.* as a \.npz file"):
        load_dataset(tmp_path / "bad.npz")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"could not read .*bad.npy.* as a \.npy file"):
        load_dataset(tmp_path / "bad.npy")
    (tmp_path / "bad.ts").write_text("@problemName x\n@classLabel true a\n@data\n1,2,x:a\n")
    with pytest.raises(DataError, match=r"could not read .*bad.ts.* as a UEA/UCR \.ts file"):
        load_dataset(tmp_path / "bad.ts")
    (tmp_path / "empty.ts").write_text("not a ts file\n")
    with pytest.raises(DataError, match="holds no series"):
        load_dataset(tmp_path / "empty.ts")
    np.savez(tmp_path / "nox.npz", series=np.zeros((2, 5)))
    with pytest.raises(DataError, match=r"arrays \['series'\] but no X"):
        load_dataset(tmp_path / "nox.npz")
    np.savez(tmp_path / "noyt.npz", X=np.zeros((2, 5)), y=[0, 1], X_test=np.zeros((2, 5)))
    with pytest.raises(DataError, match="X_test but no y_test"):
        load_dataset(tmp_path / "noyt.npz")
    with pytest.raises(TypeError, match="dataset name or a path"):
        load_dataset(3)


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.zeros((3, 10)), [0, 1], "3 series but 2 labels"),
        (np.zeros((0, 10)), [], "empty"),
        (np.zeros((3, 1)), [0, 1, 0], "at least 2"),
        (np.zeros(10), None, "1-D array"),
        (np.zeros((2, 2, 2, 2)), None, "expected"),
        (np.array([["a", "b"], ["c", "d"]]), None, "must be numbers"),
        (np.array([[1.0, np.inf, 2.0], [1.0, 2.0, 3.0]]), [0, 1], r"samples \[0\] contain Inf"),
        (np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 3.0], [np.nan, 1, 2]]), [0, 1, 0],
         r"samples \[0, 2\] contain NaN inside"),
        (np.array([[1.0, np.nan, np.nan], [1.0, 2.0, 3.0]]), [0, 1], r"samples \[0\] have fewer "
         "than 2 points"),
        (np.zeros((2, 5)), [0.0, np.nan], r"labels of samples \[1\] are NaN"),
    ],
)
def test_bad_series_and_labels(tmp_path, X, y, match):
    path = tmp_path / "bad.npz"
    if y is None:
        np.savez(path, X=X)
    else:
        np.savez(path, X=X, y=np.asarray(y))
    with pytest.raises(DataError, match=match) as e:
        load_dataset(path, length=8)
    assert "bad (train)" in str(e.value) or "bad.npz" in str(e.value) or "bad:" in str(e.value)


def test_nan_inside_names_dataset_and_split(tmp_path):
    X = np.ones((4, 2, 6))
    X[3, 1, 2] = np.nan
    np.savez(tmp_path / "holes.npz", X=np.ones((2, 2, 6)), y=[0, 1], X_test=X, y_test=[0] * 4)
    with pytest.raises(DataError, match=r"holes \(test\): samples \[3\] contain NaN inside"):
        load_dataset(tmp_path / "holes.npz")
    # one channel shorter than the others is NaN inside the sample
    X = np.ones((2, 2, 6))
    X[1, 0, 4:] = np.nan
    np.savez(tmp_path / "ragged.npz", X=X, y=[0, 1])
    with pytest.raises(DataError, match=r"samples \[1\] contain NaN inside.*same point"):
        load_dataset(tmp_path / "ragged.npz")


def test_label_and_split_mismatches(tmp_path):
    np.savez(tmp_path / "u.npz", X=np.zeros((3, 5)), y=["a", "b", "a"], X_test=np.zeros((2, 5)),
             y_test=["a", "c"])
    with pytest.raises(DataError, match=r"test labels \['c'\] never occur in the training"):
        load_dataset(tmp_path / "u.npz")
    np.savez(tmp_path / "c.npz", X=np.zeros((3, 2, 5)), y=[0, 1, 0],
             X_test=np.zeros((2, 3, 5)), y_test=[0, 1])
    with pytest.raises(DataError, match="training series have 2 channels but the test series "
                                        "have 3"):
        load_dataset(tmp_path / "c.npz")
    series = np.empty(2, dtype=object)
    series[:] = [np.zeros((2, 5)), np.zeros((3, 6))]
    np.savez(tmp_path / "ch.npz", X=series, y=[0, 1])
    with pytest.raises(DataError, match=r"same number of channels; sample 0 has 2, samples \[1\]"):
        load_dataset(tmp_path / "ch.npz")
    np.savez(tmp_path / "one.npz", X=np.zeros((3, 5)), y=[0, 1, 2])
    with pytest.raises(DataError, match="leaves the test split empty"):
        load_dataset(tmp_path / "one.npz", test_fraction=0.1)


def test_bad_arguments(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"how='nearest' is not one of \('pad', 'resample'\)"):
        load_dataset(tmp_path / "p.npy", how="nearest")
    with pytest.raises(ValueError, match="length must be an integer >= 2"):
        load_dataset(tmp_path / "p.npy", length=1)
    with pytest.raises(ValueError, match="test_fraction must be a number between 0 and 1"):
        load_dataset(tmp_path / "p.npy", test_fraction=1.5)


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
