"""Which datasets exist and how a source is named: aeon's shipped datasets (found without
importing aeon), name and path resolution, the :class:`SeriesData` container and
:func:`load_dataset`."""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from vqfast.data.cache import cache_entry, load_cached, save_cached
from vqfast.data.cleaning import (
    SPLITS,
    DataError,
    check_how,
    check_length,
    preprocess,
    stratified_split,
)
from vqfast.data.readers import FILE_KINDS, Source, pickles_allowed, read_source

_ACCEPTED = (
    "a dataset shipped with aeon (see vqfast.data.available_datasets()), a path to a UEA/UCR "
    ".ts file (a *_TRAIN.ts file takes its *_TEST.ts sibling as the test split), a .npz file "
    "with arrays X, y and optionally X_test, y_test (or X_train, y_train, X_test, y_test), or a "
    ".npy file holding X alone (unlabelled)"
)


@dataclass
class SeriesData:
    """One classification dataset, preprocessed for the model.

    Attributes:
        name: the dataset's name.
        x_train: float32 ``(n_train, C, length)``; every channel resampled to ``length``.
        y_train: int64 ``(n_train,)`` class ids ``0 .. num_classes - 1``.
        x_test: float32 ``(n_test, C, length)``, or ``None`` when the source has no test split.
        y_test: int64 ``(n_test,)``, or ``None``.
        classes: the original label of each class id (``classes[y]``), as text.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    classes: list[str]

    def __post_init__(self) -> None:
        where = f"SeriesData {self.name!r}"
        for split, x, y in (("train", self.x_train, self.y_train),
                            ("test", self.x_test, self.y_test)):
            if x is None and y is None and split == "test":
                continue
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise TypeError(f"{where}: x_{split} and y_{split} must both be tensors "
                                "(or, for the test split, both None)")
            if x.dim() != 3:
                raise DataError(f"{where}: x_{split} must be (n, C, length), got "
                                f"{tuple(x.shape)}")
            if y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise DataError(f"{where}: y_{split} must be ({x.shape[0]},) to match x_{split}, "
                                f"got {tuple(y.shape)}")
        if self.x_test is not None and self.x_test.shape[1:] != self.x_train.shape[1:]:
            raise DataError(f"{where}: x_test is (n, C, length) = {tuple(self.x_test.shape)} but "
                            f"x_train is {tuple(self.x_train.shape)}; C and length must match")

    @property
    def channels(self) -> int:
        """Number of channels ``C`` of every sample."""
        return int(self.x_train.shape[1])

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def length(self) -> int:
        """Length every series was resampled to."""
        return int(self.x_train.shape[2])

    def split(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``split`` ("train" or "test"); raises if the dataset has no such split."""
        if split not in SPLITS:
            raise ValueError(f"SeriesData {self.name!r}: split must be one of {SPLITS}, "
                             f"got {split!r}")
        if split == "test" and self.x_test is None:
            raise DataError(
                f"dataset {self.name!r} has no test split; load it with "
                "load_dataset(..., test_fraction=0.2) to hold out a stratified part of the "
                "training data, or use split='train'"
            )
        if split == "train":
            return self.x_train, self.y_train
        return self.x_test, self.y_test

    def univariate(self, split: str = "train") -> torch.Tensor:
        """The model's input for ``split``: ``(n * C, length)``, each channel its own series.

        Sample ``i``'s channels are rows ``i*C ... i*C + C - 1`` (the layout of
        :func:`vqfast.prepare_series`).
        """
        x, _ = self.split(split)
        return x.reshape(-1, x.shape[-1])

    def __repr__(self) -> str:
        test = "none" if self.x_test is None else str(tuple(self.x_test.shape))
        return (f"SeriesData(name={self.name!r}, train={tuple(self.x_train.shape)}, test={test}, "
                f"num_classes={self.num_classes})")


def _aeon_data_dir() -> Path | None:
    """aeon's folder of bundled datasets, found without importing aeon (which is slow)."""
    try:
        spec = importlib.util.find_spec("aeon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        d = Path(root) / "datasets" / "data"
        if d.is_dir():
            return d
    return None


def _is_classification_ts(path: Path) -> bool:
    """Whether the header of a ``.ts`` file declares class labels."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                low = line.strip().lower()
                if low.startswith("@classlabel"):
                    return low.split()[1:2] == ["true"]
                if low.startswith("@data"):
                    return False
    except OSError:
        return False
    return False


@lru_cache(maxsize=1)
def _shipped() -> tuple[str, ...]:
    root = _aeon_data_dir()
    if root is None:
        return ()
    names = []
    for d in sorted(root.iterdir(), key=lambda p: p.name.lower()):
        train, test = d / f"{d.name}_TRAIN.ts", d / f"{d.name}_TEST.ts"
        if train.is_file() and test.is_file() and _is_classification_ts(train):
            names.append(d.name)
    return tuple(names)


def available_datasets() -> list[str]:
    """Names of the classification datasets shipped with aeon, loadable offline by name.

    Found by listing aeon's bundled data folder (no network, no aeon import); empty when aeon is
    not installed. Regression and forecasting data shipped with aeon are left out.
    """
    return list(_shipped())


# Shipped with aeon but left out of "all": aeon's own unit-test fixture (42 short series cut
# from Chinatown), not a benchmark dataset. It still loads by name.
NOT_IN_ALL = {"UnitTest": "aeon's unit-test fixture (42 series cut from Chinatown)"}


def expand_datasets(names, exclude=()) -> list[str]:
    """``names`` with ``"all"`` replaced by every classification dataset shipped with aeon.

    ``"all"`` (case-insensitive) expands to :func:`available_datasets` minus :data:`NOT_IN_ALL`;
    other entries (dataset names, paths) are kept as given, in order, without duplicates.
    ``exclude`` removes datasets from the result by name (case-insensitive; a path's file stem
    also matches). Raises :class:`DataError` for an ``exclude`` entry that names nothing in the
    result (with close matches), and when nothing is left.
    """
    where = "expand_datasets"
    if isinstance(names, (str, os.PathLike)) or isinstance(exclude, (str, os.PathLike)):
        raise TypeError(f"{where}: names and exclude are lists of names, e.g. ['all'] or "
                        "['BasicMotions'], not a single string")
    out: list[str] = []
    for name in names:
        if not isinstance(name, (str, os.PathLike)):
            raise TypeError(f"{where}: names must be dataset names or paths, got "
                            f"{type(name).__name__}")
        if os.fspath(name).strip().lower() == "all":
            found = [n for n in available_datasets() if n not in NOT_IN_ALL]
            if not found:
                raise DataError(f"{where}: 'all' found no shipped datasets: aeon is not "
                                "installed (pip install 'vqfast[train]')")
            expanded = found
        else:
            expanded = [os.fspath(name)]
        out += [n for n in expanded if n.lower() not in {o.lower() for o in out}]

    keys = [Path(n).stem.lower() for n in out]
    dropped = set()
    for name in exclude:
        text = os.fspath(name).strip()
        matches = {i for i, n in enumerate(out)
                   if text.lower() in (n.lower(), Path(n).stem.lower())}
        if not matches:
            close = difflib.get_close_matches(Path(text).stem.lower(), keys, n=3)
            hint = f" Did you mean {[out[keys.index(c)] for c in close]}?" if close else ""
            raise DataError(f"{where}: cannot exclude {text!r}: it is not one of the datasets "
                            f"{out}.{hint}")
        dropped |= matches
    kept = [n for i, n in enumerate(out) if i not in dropped]
    if not kept:
        raise DataError(f"{where}: excluding {[os.fspath(e) for e in exclude]} leaves none of "
                        f"the datasets {out}")
    return kept


def _unknown_name(source: str) -> DataError:
    names = available_datasets()
    close = difflib.get_close_matches(source.lower(), [n.lower() for n in names], n=3)
    close = [n for n in names if n.lower() in close]
    hint = f" Did you mean {close}?" if close else ""
    if names:
        shipped = f"Datasets shipped offline with aeon: {names}."
    else:
        shipped = ("No shipped datasets were found: aeon is not installed "
                   "(pip install 'vqfast[train]').")
    return DataError(
        f"unknown dataset {source!r}.{hint} {shipped} Other accepted sources: {_ACCEPTED}. "
        "Datasets that are not shipped are never downloaded: download the UEA/UCR archive "
        "yourself and pass the path of its *_TRAIN.ts file."
    )


def resolve_source(source) -> Source:
    """Decide what ``source`` is: a shipped dataset's name or a file, and check it exists."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_dataset: source must be a dataset name or a path, got "
                        f"{type(source).__name__}. Accepted: {_ACCEPTED}.")
    text = os.fspath(source)
    if not text.strip():
        raise DataError(f"load_dataset: source is empty. Accepted: {_ACCEPTED}.")
    path = Path(text).expanduser()
    looks_like_path = (
        isinstance(source, os.PathLike)
        or path.suffix.lower() in FILE_KINDS
        or os.sep in text
        or (os.altsep is not None and os.altsep in text)
    )
    if not looks_like_path:
        for name in _shipped():
            if name.lower() == text.lower():
                return Source("aeon", name)
        if not path.exists():
            raise _unknown_name(text)
    if not path.exists():
        raise FileNotFoundError(f"load_dataset: file {str(path)!r} does not exist (resolved to "
                                f"{str(path.absolute())!r}). Accepted sources: {_ACCEPTED}.")
    if path.is_dir():
        raise DataError(
            f"load_dataset: {str(path)!r} is a directory; pass one file (for a UEA/UCR dataset "
            "its *_TRAIN.ts file). For a directory of .npy shards too large for memory, use "
            "vqfast.data.ShardedSeries."
        )
    path = path.resolve()
    suffix = path.suffix.lower()
    if suffix not in FILE_KINDS:
        raise DataError(f"load_dataset: unsupported file type {path.suffix!r} ({str(path)!r}). "
                        f"Accepted sources: {_ACCEPTED}.")
    if not os.access(path, os.R_OK):
        raise DataError(f"load_dataset: cannot read {str(path)!r} (permission denied); fix its "
                        "permissions or copy it somewhere readable")
    kind = suffix[1:]
    if kind == "ts":
        stem = path.stem
        test = None
        m = re.fullmatch(r"(.*)_(train)", stem, flags=re.IGNORECASE)
        if m:
            base, tag = m.group(1), m.group(2)
            test_tag = "TEST" if tag.isupper() else "test" if tag.islower() else "Test"
            for cand in (path.with_name(f"{base}_{test_tag}{path.suffix}"),
                         path.with_name(f"{base}_TEST{path.suffix}")):
                if cand.is_file():
                    test = cand
                    break
            name = base
        else:
            name = stem
        return Source("ts", name, path, test)
    return Source(kind, path.stem, path)


def load_dataset(
    source,
    length: int = 512,
    how: str = "pad",
    cache_dir=None,
    test_fraction: float | None = None,
    seed: int = 0,
    allow_pickle: bool = False,
) -> SeriesData:
    """Load one classification dataset and resample every channel to ``length``.

    Args:
        source: one of

            - the name of a dataset shipped with aeon (case-insensitive; see
              :func:`available_datasets`), e.g. ``"BasicMotions"``;
            - a path to a UEA/UCR ``.ts`` file; if it is ``<name>_TRAIN.ts`` its sibling
              ``<name>_TEST.ts`` (when present) is the test split, otherwise there is none;
            - a path to a ``.npz`` with arrays ``X``, ``y`` and optionally ``X_test``, ``y_test``
              (or ``X_train``, ``y_train``, ``X_test``, ``y_test``); without ``y`` the data is
              unlabelled;
            - a path to a ``.npy`` holding ``X`` alone: unlabelled, every label 0, class
              ``"unlabelled"``.

            ``X`` may be ``(n, T)``, ``(n, C, T)`` or an object array / list of unequal-length
            ``(T_i,)`` or ``(C, T_i)`` series. Object arrays in ``.npz``/``.npy`` are stored
            pickled, and unpickling runs code from the file: they are refused (a ``DataError``)
            unless ``allow_pickle=True`` — only for files you trust.
        length: the length every series is resampled to (the model's ``len_input``).
        how: ``"pad"`` (the authors' protocol: zero-pad every series at the end to the longest
            in the dataset, train and test together, then resample) or ``"resample"`` (each
            series from its own length). See :func:`vqfast.prepare_series`.
        cache_dir: when given, the preprocessed tensors are saved there (atomically) and later
            calls with the same source, ``length`` and ``how`` load them instead of re-reading
            the source. The key is the dataset's name (for files: the absolute path, size and
            modification time) plus ``length``, ``how`` and :data:`CACHE_VERSION`.
        test_fraction: when the source has no test split, hold out this fraction (0 < f < 1) of
            every class as the test split (stratified, reproducible with ``seed``). Ignored when
            the source has a test split.
        seed: the seed of that split.
        allow_pickle: unpickle object arrays in ``.npz``/``.npy`` files (``--allow-pickle``).

    Labels of any type are mapped to ids ``0..K-1`` in sorted order of the unique training
    labels (numeric text labels in numeric order); ``classes`` keeps the originals. A test label
    never seen in training is an error. Trailing NaN (how UEA files pad unequal lengths) is
    trimmed from every series before resampling; NaN anywhere else, or Inf, is an error naming
    the samples.

    Raises:
        DataError: unknown name (the message lists what is available), unreadable file, bad
            values, label/series count mismatch, empty dataset, series under 2 points.
        FileNotFoundError: a path that does not exist.
        ValueError: bad ``length``, ``how`` or ``test_fraction``.
    """
    where = "load_dataset"
    check_how(how, where)
    length = check_length(length, where)
    if test_fraction is not None and not (isinstance(test_fraction, (int, float))
                                          and 0 < test_fraction < 1):
        raise ValueError(f"{where}: test_fraction must be a number between 0 and 1 (e.g. 0.2), "
                         f"or None for no split; got {test_fraction!r}")
    src = resolve_source(source)
    path = key = prep = None
    if cache_dir is not None:
        path, key = cache_entry(cache_dir, src, length, how)
        prep = load_cached(path, key)
    if prep is None:
        with pickles_allowed() if allow_pickle else contextlib.nullcontext():
            raw = read_source(src)
        prep = preprocess(raw, src.name, length, how)
        if path is not None:
            save_cached(path, key, src.name, prep)
    data = SeriesData(name=src.name, **prep)
    if test_fraction is not None and data.x_test is None:
        tr, te = stratified_split(data.y_train, float(test_fraction), seed, src.name)
        data = SeriesData(src.name, data.x_train[tr], data.y_train[tr], data.x_train[te],
                          data.y_train[te], data.classes)
    return data
