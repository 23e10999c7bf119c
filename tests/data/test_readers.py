"""Reading files: .ts (with its _TEST sibling), .npz and .npy, and their errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from vqfast.data import DataError, load_dataset
from vqfast.inputs import prepare_series


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
    with pytest.raises(DataError, match="allow-pickle"):
        load_dataset(tmp_path / "ragged.npz", length=16)
    for how in ("pad", "resample"):
        d = load_dataset(tmp_path / "ragged.npz", length=16, how=how, allow_pickle=True)
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
