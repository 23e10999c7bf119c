"""Tests of vqfast.text.notes: per-sample text files and the shipped example.

The shipped ``vqfast/examples/basicmotions_notes.json`` is made by :func:`make_basicmotions_notes`
below (regenerate it with ``python tests/text/test_notes.py --write-notes``);
``test_example_notes_match_generator`` checks that the file is what the generator writes.
"""

import importlib.util
import json
import sys

import numpy as np
import pytest

from vqfast.text import TextError, example_text_file, load_text_file, save_text_file, texts_for
from vqfast.text.notes import EXAMPLES_DIR

HAVE_AEON = importlib.util.find_spec("aeon") is not None
needs_aeon = pytest.mark.skipif(not HAVE_AEON, reason="BasicMotions ships with aeon")


# --------------------------------------------------------------------------------------------
# The generator of vqfast/examples/basicmotions_notes.json
# --------------------------------------------------------------------------------------------

ACTIVITY = {"standing": "standing still", "running": "running", "walking": "walking",
            "badminton": "playing badminton"}
NOTES_DESCRIPTION = (
    "Per-sample notes for BasicMotions (aeon's copy, samples in file order), one per sample: "
    "the activity label plus facts computed from that sample at its recorded 10 Hz / 100 points: "
    "accelerometer (dims 1-3) and gyroscope (dims 4-6) energy (mean per-axis std, low/moderate/"
    "high by the training split's terciles), the accelerometer axis that moves most, and the "
    "dominant rhythm of that axis (FFT peak of the detrended series, "
    "called steady when the peak and its neighbours hold 30% of the power). The label leaks into "
    "these notes: an upper bound for text guidance, not a deployable input. Made by "
    "make_basicmotions_notes in tests/text/test_notes.py "
    "(python tests/text/test_notes.py --write-notes)."
)


def _energy_word(v: float, cuts) -> str:
    return "low" if v < cuts[0] else ("moderate" if v < cuts[1] else "high")


def _rhythm(magnitude: np.ndarray, hz: float = 10.0) -> str:
    t = magnitude.shape[0]
    idx = np.arange(t, dtype=np.float64)
    slope, intercept = np.polyfit(idx, magnitude, 1)
    power = np.abs(np.fft.rfft(magnitude - (slope * idx + intercept)))[1:] ** 2
    k = int(np.argmax(power)) + 1
    share = power[max(k - 2, 0):k + 1].sum() / max(power.sum(), 1e-300)
    if k < 2 or share < 0.3:
        return "no steady rhythm"
    return f"a steady rhythm near {k * hz / t:.1f} Hz"


def make_basicmotions_notes() -> dict:
    """The content of vqfast/examples/basicmotions_notes.json, made from the data itself."""
    from vqfast.data import load_dataset

    data = load_dataset("BasicMotions", length=100, how="resample")
    x = {"train": data.x_train.double().numpy(), "test": data.x_test.double().numpy()}
    y = {"train": data.y_train.tolist(), "test": data.y_test.tolist()}
    acc_energy = {s: x[s][:, :3].std(axis=2).mean(axis=1) for s in x}
    gyro_energy = {s: x[s][:, 3:].std(axis=2).mean(axis=1) for s in x}
    acc_cuts = np.quantile(acc_energy["train"], [1 / 3, 2 / 3])
    gyro_cuts = np.quantile(gyro_energy["train"], [1 / 3, 2 / 3])
    notes = {}
    for s in ("train", "test"):
        out = []
        for i, label in enumerate(y[s]):
            sample = x[s][i]
            axis = "xyz"[int(np.argmax(sample[:3].std(axis=1)))]
            out.append(
                f"Recorded while the participant was {ACTIVITY[data.classes[label]]}; "
                f"accelerometer energy {_energy_word(acc_energy[s][i], acc_cuts)}, gyroscope "
                f"energy {_energy_word(gyro_energy[s][i], gyro_cuts)}, most movement along "
                f"{axis}, {_rhythm(sample[int(np.argmax(sample[:3].std(axis=1)))])}."
            )
        notes[s] = out
    return notes


def write_basicmotions_notes(path=None):
    notes = make_basicmotions_notes()
    path = path or EXAMPLES_DIR / "basicmotions_notes.json"
    return save_text_file(path, notes["train"], notes["test"], dataset="BasicMotions",
                          description=NOTES_DESCRIPTION)


# --------------------------------------------------------------------------------------------
# Text files
# --------------------------------------------------------------------------------------------


def test_text_file_round_trip_and_errors(tmp_path):
    path = save_text_file(tmp_path / "notes.json", ["a", "b"], ["c"], dataset="toy")
    assert load_text_file(path, "train", expected_count=2) == ["a", "b"]
    assert load_text_file(path, "test", dataset="TOY") == ["c"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": ["a",]}')
    with pytest.raises(TextError, match="not valid JSON"):
        load_text_file(bad)
    cases = [
        ('["a"]', "holds a JSON list"),
        ('{"train": ["a"]}', "no 'test' texts"),
        ('{"test": "a"}', "must be a list"),
        ('{"test": ["a", 3, null]}', "entries [1, 2] are not strings"),
        ('{"test": ["a", " "]}', "entries [1] are empty"),
        ('{"test": []}', "empty list"),
    ]
    for content, message in cases:
        bad.write_text(content)
        with pytest.raises(TextError) as e:
            load_text_file(bad, "test")
        assert message in str(e.value), (content, str(e.value))
    with pytest.raises(TextError, match="has 2 'train' texts but"):
        load_text_file(path, "train", expected_count=3)
    with pytest.raises(TextError, match="for dataset 'toy', not 'other'"):
        load_text_file(path, "train", dataset="other")
    with pytest.raises(ValueError, match="split"):
        load_text_file(path, "valid")


@needs_aeon
def test_example_notes_load_for_basicmotions(basicmotions):
    path = example_text_file()
    train = texts_for("file", basicmotions, "train", text_file=path)
    test = texts_for("file", basicmotions, "test", text_file=path)
    assert len(train) == 40 and len(test) == 40
    assert len(set(train)) > 4  # per-sample facts, not one text per class
    for texts, y in ((train, basicmotions.y_train), (test, basicmotions.y_test)):
        for t, c in zip(texts, y.tolist()):
            assert ACTIVITY[basicmotions.classes[c]] in t
    assert json.loads(path.read_text())["dataset"] == "BasicMotions"


@needs_aeon
def test_example_notes_match_generator():
    shipped = json.loads(example_text_file().read_text())
    notes = make_basicmotions_notes()
    assert shipped["train"] == notes["train"] and shipped["test"] == notes["test"]
    assert shipped["description"] == NOTES_DESCRIPTION


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-notes"]:
        print(write_basicmotions_notes())
    else:
        print("usage: python tests/text/test_notes.py --write-notes")
