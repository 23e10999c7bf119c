"""The subject-shift benchmark: populations, the changes to the raw series, subject text."""

import json

import numpy as np
import pytest

from vqfast.data import load_dataset
from vqfast.experiments.subject_shift import (
    SubjectShift,
    change_speed,
    make_subject_shift,
    population_counts,
    subject_text,
)


def test_change_speed_reads_faster_and_reflects_at_the_ends():
    x = np.arange(10.0)[None]
    assert np.allclose(change_speed(x, 1.0), x)
    assert np.allclose(change_speed(x, 2.0), [[0, 2, 4, 6, 8, 8, 6, 4, 2, 0]])
    assert np.allclose(change_speed(x, 0.5)[0, :3], [0, 0.5, 1.0])


def test_subject_text_states_the_subject_not_the_activity():
    assert subject_text("child", 0.5, 1.5) == ("a child, moving with about 0.5 times the usual "
                                               "amplitude and 1.5 times as fast")
    assert subject_text("adult", 1.0, 1.0).startswith("an adult, moving with about the usual")


def test_make_subject_shift_writes_a_shifted_dataset_with_notes(tmp_path):
    made = make_subject_shift(tmp_path, SubjectShift(seed=3))
    counts = population_counts(made["subjects"])
    # Children rare in training, dominant in the test split.
    assert counts["train"]["child"] < counts["train"]["adult"]
    assert counts["test"]["child"] > counts["test"]["adult"]
    subjects = json.loads(made["subjects"].read_text())
    for s in subjects["train"] + subjects["test"]:
        lo, hi = (0.35, 0.65) if s["population"] == "child" else (0.9, 1.1)
        assert lo <= s["amplitude"] <= hi
    notes = json.loads(made["notes"].read_text())
    labels = ("standing", "running", "walking", "badminton")
    assert not any(word in t for t in notes["train"] + notes["test"] for word in labels)
    data = load_dataset(made["data"], length=128)
    assert data.name == "BasicMotions-subjects" and len(notes["test"]) == len(data.x_test)
    # A child's movement is smaller than an adult's of the same activity (same seed rerun gives
    # the same file).
    z = np.load(made["data"])
    amp = z["X_test"].std(axis=-1).mean(axis=-1)
    child = np.array([s["population"] == "child" for s in subjects["test"]])
    moving = z["y_test"] != "standing"
    assert amp[child & moving].mean() < amp[~child & moving].mean()
    again = make_subject_shift(tmp_path / "again", SubjectShift(seed=3))
    assert np.array_equal(np.load(again["data"])["X_train"], z["X_train"])


def test_bad_shift_parameters_are_refused():
    with pytest.raises(ValueError, match="child_amplitude"):
        SubjectShift(child_amplitude=(0.7, 0.3))
    with pytest.raises(ValueError, match="train_child_fraction"):
        SubjectShift(train_child_fraction=1.5)
