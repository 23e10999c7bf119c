"""Per-sample notes in JSON text files ``{"train": [...], "test": [...]}`` and the shipped
examples (``vqfast/examples``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from vqfast.fileio import atomic_write_json
from vqfast.inputs import describe_indices
from vqfast.text.errors import TextError, check_texts

_SPLITS = ("train", "test")
#: The folder of the text files shipped with vqfast (see :func:`example_text_file`).
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
FILE_FORMAT = ('a JSON object {"train": [one str per training sample, in order], "test": [...], '
               '"dataset": "<name>" (optional)}; vqfast.text.save_text_file writes one')


def check_split(split, where: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"{where}: split must be one of {_SPLITS}, got {split!r}")
    return split


def load_text_file(path, split: str = "train", expected_count: int | None = None,
                   dataset: str | None = None) -> list[str]:
    """The texts of ``split`` from a JSON text file.

    The file holds ``{"train": [str, ...], "test": [str, ...]}``, each list aligned with the
    dataset's samples in order, optionally ``"dataset": name`` (other keys are ignored).
    ``expected_count``: the number of samples of the split (checked). ``dataset``: when given
    and the file names a dataset, the two must match (case-insensitively).
    """
    where = "load_text_file"
    check_split(split, where)
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{where}: text file {str(path)!r} {what}; give {FILE_FORMAT}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TextError(f"{where}: {str(path)!r} is not valid JSON (line {e.lineno}, column "
                        f"{e.colno}: {e.msg}); it must be {FILE_FORMAT}") from e
    except UnicodeDecodeError as e:
        raise TextError(f"{where}: {str(path)!r} is not UTF-8 text; save it as UTF-8 JSON") from e
    if not isinstance(obj, dict):
        raise TextError(f"{where}: {str(path)!r} holds a JSON {type(obj).__name__}; it must be "
                        f"{FILE_FORMAT}")
    named = obj.get("dataset")
    if dataset is not None and named is not None and str(named).casefold() != str(
            dataset).casefold():
        raise TextError(f"{where}: {str(path)!r} is for dataset {named!r}, not {dataset!r}; "
                        "give the text file of this dataset")
    if split not in obj:
        present = [k for k in obj if k in _SPLITS] or list(obj)
        raise TextError(f"{where}: {str(path)!r} has no {split!r} texts (its keys: {present}); "
                        f"add a {split!r} list with one text per sample")
    texts = obj[split]
    if not isinstance(texts, list):
        raise TextError(f"{where}: {str(path)!r}: {split!r} must be a list of str, got a JSON "
                        f"{type(texts).__name__}")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TextError(f"{where}: {str(path)!r}: {split!r} entries {describe_indices(bad)} are "
                        "not strings; every entry must be the text of one sample")
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise TextError(f"{where}: {str(path)!r}: {split!r} entries {describe_indices(blank)} are "
                        "empty; give every sample some text")
    if not texts:
        raise TextError(f"{where}: {str(path)!r}: {split!r} is an empty list; give one text per "
                        "sample")
    if expected_count is not None and len(texts) != expected_count:
        raise TextError(f"{where}: {str(path)!r} has {len(texts)} {split!r} texts but the "
                        f"dataset's {split} split has {expected_count} samples; give exactly one "
                        "text per sample, in the dataset's order")
    return texts


def save_text_file(path, train: Sequence[str], test: Sequence[str] | None = None,
                   dataset: str | None = None, description: str | None = None) -> Path:
    """Write a text file for :func:`load_text_file` (atomically): ``train`` and ``test`` texts
    (one per sample, in order), the ``dataset`` name and a free ``description`` (both
    optional)."""
    obj: dict = {}
    if dataset is not None:
        obj["dataset"] = str(dataset)
    if description is not None:
        obj["description"] = str(description)
    obj["train"] = check_texts(train, "save_text_file (train)")
    if test is not None:
        obj["test"] = check_texts(test, "save_text_file (test)")
    return atomic_write_json(Path(path).expanduser(), obj)


def example_text_file(name: str = "basicmotions_notes.json") -> Path:
    """The path of a text file shipped in ``vqfast/examples`` (default: per-sample notes for
    BasicMotions, 40 train and 40 test texts, made from each sample's activity label and
    per-sample facts of its accelerometer and gyroscope; the label leaks into these texts)."""
    path = EXAMPLES_DIR / name
    if not path.is_file():
        shipped = sorted(p.name for p in EXAMPLES_DIR.glob("*.json"))
        raise FileNotFoundError(f"example_text_file: no {name!r} in {str(EXAMPLES_DIR)!r} "
                                f"(shipped: {shipped})")
    return path
