"""Tests of vqfast.text.sources: texts_for over every text source."""

import pytest
import torch

from vqfast.data import SeriesData
from vqfast.text import (
    DEFAULT_TEMPLATES,
    TextError,
    amplitude_scale,
    describe_batch,
    save_text_file,
    texts_for,
)


def make_data(n=6, c=2, length=32, classes=("down", "up"), test=True, name="toy") -> SeriesData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, length, generator=g)
    y = torch.arange(n) % len(classes)
    xt, yt = (x.flip(0).clone(), y.flip(0).clone()) if test else (None, None)
    return SeriesData(name, x, y, xt, yt, list(classes))


# --------------------------------------------------------------------------------------------
# texts_for
# --------------------------------------------------------------------------------------------


def test_texts_for_each_source(tmp_path):
    data = make_data()
    assert texts_for("label", data, "train") == [f"a time series of class {c}" for c in
                                                 ["down", "up"] * 3]
    assert texts_for("label", data, "test", template="going {label}")[0] == "going up"
    described = texts_for("describe", data, "test")
    assert len(described) == 6 and described[0].startswith("2 channels of 32 points")
    # the test split is described on the training split's amplitude scale
    scale = amplitude_scale(data.x_train)
    assert described == describe_batch(data.x_test, scale=scale)
    path = save_text_file(tmp_path / "t.json", list("abcdef"), list("uvwxyz"), dataset="toy")
    assert texts_for("file", data, "test", text_file=path) == list("uvwxyz")

    def fn(series, label):
        assert series.shape == (2, 32) and isinstance(label, str)
        return f"{label} with max {float(series.max()):.1f}"

    by_fn = texts_for("fn", data, "train", fn=fn)
    assert by_fn == texts_for(fn, data, "train")
    assert by_fn[1].startswith("up with max")


def test_texts_for_basicmotions_defaults(basicmotions):
    labels = texts_for("label", basicmotions, "test")
    assert set(labels) == set(DEFAULT_TEMPLATES["BasicMotions"].values())
    described = texts_for("describe", basicmotions, "train")
    assert len(described) == 40 and "acc x:" in described[0] and "gyro z:" in described[0]


def test_texts_for_errors(tmp_path):
    data = make_data()
    with pytest.raises(ValueError) as e:
        texts_for("caption", data, "train")
    assert all(s in str(e.value) for s in ("'label'", "'describe'", "'file'", "'fn'"))
    with pytest.raises(ValueError, match="split"):
        texts_for("label", data, "val")
    no_test = make_data(test=False)
    with pytest.raises(Exception, match="no test split"):
        texts_for("label", no_test, "test")
    unlabelled = make_data(classes=("unlabelled",))
    with pytest.raises(TextError, match="no labels"):
        texts_for("label", unlabelled, "train")
    assert len(texts_for("describe", unlabelled, "train")) == 6
    with pytest.raises(TypeError, match="SeriesData"):
        texts_for("label", {"x": 1}, "train")
    with pytest.raises(ValueError, match="text_file"):
        texts_for("file", data, "train")
    path = save_text_file(tmp_path / "t.json", ["a"], dataset="toy")
    with pytest.raises(TextError, match="has 1 'train' texts"):
        texts_for("file", data, "train", text_file=path)
    with pytest.raises(ValueError, match="needs fn="):
        texts_for("fn", data, "train")
    with pytest.raises(TextError, match=r"samples \[0, 2, 4\]"):
        texts_for(lambda s, label: "" if label == "down" else "up", data, "train")
