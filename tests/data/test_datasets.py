"""Loading by name: aeon's shipped datasets, name resolution, test splits, arguments."""


import numpy as np
import pytest
import torch

from vqfast.data import DataError, available_datasets, load_dataset
from vqfast.inputs import SeriesError, prepare_series


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


def test_test_fraction_ignored_when_source_has_a_test_split(basic_motions):
    d = load_dataset("BasicMotions", test_fraction=0.5)
    assert d.x_train.shape[0] == 40 and d.x_test.shape[0] == 40


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


def test_bad_arguments(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"how='nearest' is not one of \('pad', 'resample'\)"):
        load_dataset(tmp_path / "p.npy", how="nearest")
    with pytest.raises(ValueError, match="length must be an integer >= 2"):
        load_dataset(tmp_path / "p.npy", length=1)
    with pytest.raises(ValueError, match="test_fraction must be a number between 0 and 1"):
        load_dataset(tmp_path / "p.npy", test_fraction=1.5)
