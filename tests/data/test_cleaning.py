"""Cleaning: bad series and labels, NaN handling, split mismatches, the stratified split."""


import numpy as np
import pytest
import torch

from vqfast.data import DataError, load_dataset


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
        load_dataset(tmp_path / "ch.npz", allow_pickle=True)
    np.savez(tmp_path / "one.npz", X=np.zeros((3, 5)), y=[0, 1, 2])
    with pytest.raises(DataError, match="leaves the test split empty"):
        load_dataset(tmp_path / "one.npz", test_fraction=0.1)
