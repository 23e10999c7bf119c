"""The dataset cache: hits skip the source, keys change with it, corrupt entries are rebuilt."""

import os

import numpy as np
import pytest
import torch

from vqfast.data import datasets, load_dataset


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

    monkeypatch.setattr(datasets, "read_source", fail)
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
    monkeypatch.setattr(datasets, "read_source",
                        lambda *a: pytest.fail("the source was read again"))
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
