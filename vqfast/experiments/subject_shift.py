"""A controlled subject shift: the same activities done by two populations of "subjects".

From a shipped dataset (by default BasicMotions, accelerometer and gyroscope of four activities),
every sample is given a subject drawn from one of two populations and its raw series, before any
preprocessing, is changed as that subject would move:

- ``adult``: amplitude factor ~ U(``adult_amplitude``), speed factor ~ U(``adult_speed``) (about
  the recorded subject);
- ``child``: amplitude factor ~ U(``child_amplitude``) (smaller movements), speed factor
  ~ U(``child_speed``) (faster).

Amplitude scales each channel's deviation from its own mean (``m + a (x - m)``); sensor noise of
``noise`` times the channel's median standard deviation over the dataset is then added to every
sample, adults included, so that smaller movements are also closer to the noise floor (instance
normalization would otherwise undo a pure rescaling). Speed ``v`` resamples the series at
``v * t`` with linear interpolation, read back and forth (reflection at the ends) so that a faster
subject shows more of the movement in the same recording window with no jump. The training split
draws the child population with probability ``train_child_fraction`` (rare), the test split with
``test_child_fraction`` (dominant): the shift the text-guidance idea was built for.

Each sample's text states its subject and how it moves, never its activity: "a child, moving with
about half the usual amplitude and 1.4 times as fast". ``make_subject_shift`` writes
``<name>.npz`` (``X_train, y_train, X_test, y_test``: any vqfast command reads it) and
``<name>_notes.json`` (``--text file --text-file``) plus ``<name>_subjects.json`` (every sample's
population and factors).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vqfast.fileio import atomic_write_json


@dataclass(frozen=True)
class SubjectShift:
    """The parameters of the shift (see the module's description)."""

    dataset: str = "BasicMotions"
    adult_amplitude: tuple[float, float] = (0.9, 1.1)
    adult_speed: tuple[float, float] = (0.9, 1.1)
    child_amplitude: tuple[float, float] = (0.35, 0.65)
    child_speed: tuple[float, float] = (1.3, 1.7)
    noise: float = 0.1
    train_child_fraction: float = 0.1
    test_child_fraction: float = 0.9
    seed: int = 0

    def __post_init__(self):
        for name in ("adult_amplitude", "adult_speed", "child_amplitude", "child_speed"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"SubjectShift: {name} must be a range 0 < low <= high, got "
                                 f"{(lo, hi)}")
        for name in ("train_child_fraction", "test_child_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"SubjectShift: {name} must be in [0, 1], got "
                                 f"{getattr(self, name)}")
        if self.noise < 0:
            raise ValueError(f"SubjectShift: noise must be >= 0, got {self.noise}")

    @property
    def name(self) -> str:
        return f"{self.dataset}-subjects"


def change_speed(x: np.ndarray, speed: float) -> np.ndarray:
    """``x (C, T)`` read at ``speed * t`` (linear interpolation), reflected at the ends."""
    length = x.shape[-1]
    pos = np.arange(length) * speed
    period = 2 * (length - 1)
    pos = np.mod(pos, period)
    pos = np.where(pos > length - 1, period - pos, pos)
    return np.stack([np.interp(pos, np.arange(length), channel) for channel in x])


def subject_text(population: str, amplitude: float, speed: float) -> str:
    """What the subject's text says: who, how large and how fast, never the activity."""
    who = "a child" if population == "child" else "an adult"
    size = ("about the usual amplitude" if 0.85 <= amplitude <= 1.15
            else f"about {amplitude:.1f} times the usual amplitude")
    tempo = "at the usual tempo" if 0.85 <= speed <= 1.15 else f"{speed:.1f} times as fast"
    return f"{who}, moving with {size} and {tempo}"


def _split(x, rng, child_fraction, shift: SubjectShift, noise_std):
    out, subjects, texts = [], [], []
    for sample in x:
        population = "child" if rng.random() < child_fraction else "adult"
        amp_range, speed_range = ((shift.child_amplitude, shift.child_speed)
                                  if population == "child"
                                  else (shift.adult_amplitude, shift.adult_speed))
        amplitude, speed = rng.uniform(*amp_range), rng.uniform(*speed_range)
        s = change_speed(np.asarray(sample, dtype=np.float64), speed)
        mean = s.mean(axis=-1, keepdims=True)
        s = mean + amplitude * (s - mean) + rng.normal(size=s.shape) * noise_std[:, None]
        out.append(s.astype(np.float32))
        subjects.append({"population": population, "amplitude": round(float(amplitude), 4),
                         "speed": round(float(speed), 4)})
        texts.append(subject_text(population, amplitude, speed))
    return np.stack(out), subjects, texts


def make_subject_shift(out_dir, shift: SubjectShift | None = None) -> dict:
    """Write the shifted dataset, its notes and its subjects under ``out_dir``; returns
    ``{"data": npz path, "notes": notes path, "subjects": path, "shift": parameters}``."""
    from vqfast.data.readers import Source, read_source
    from vqfast.text import save_text_file

    shift = shift or SubjectShift()
    X_train, y_train, X_test, y_test = read_source(Source("aeon", shift.dataset))
    if not isinstance(X_train, np.ndarray) or X_test is None or y_test is None:
        raise ValueError(f"make_subject_shift: {shift.dataset!r} must be an equal-length "
                         "dataset with a test split")
    rng = np.random.default_rng(shift.seed)
    noise_std = shift.noise * np.median(X_train.std(axis=-1), axis=0)
    train, train_subjects, train_texts = _split(X_train, rng, shift.train_child_fraction, shift,
                                                noise_std)
    test, test_subjects, test_texts = _split(X_test, rng, shift.test_child_fraction, shift,
                                             noise_std)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_path = out_dir / f"{shift.name}.npz"
    tmp = out_dir / f".{shift.name}.{os.getpid()}.tmp.npz"  # workers may write it side by side
    np.savez(tmp, X_train=train, y_train=np.asarray(y_train).astype(str), X_test=test,
             y_test=np.asarray(y_test).astype(str))
    tmp.replace(data_path)
    notes = save_text_file(out_dir / f"{shift.name}_notes.json", train_texts, test_texts,
                           dataset=shift.name,
                           description="subject of each sample (population, amplitude, tempo); "
                                       "made by vqfast.experiments.subject_shift")
    subjects = atomic_write_json(out_dir / f"{shift.name}_subjects.json",
                                 {"shift": asdict(shift), "train": train_subjects,
                                  "test": test_subjects})
    return {"data": data_path, "notes": notes, "subjects": subjects, "shift": asdict(shift)}


def population_counts(subjects_path) -> dict:
    """``{split: {population: count}}`` of a ``*_subjects.json``."""
    import json

    obj = json.loads(Path(subjects_path).read_text())
    return {split: {p: sum(s["population"] == p for s in obj[split]) for p in ("adult", "child")}
            for split in ("train", "test")}


__all__ = ["SubjectShift", "change_speed", "make_subject_shift", "population_counts",
           "subject_text"]
