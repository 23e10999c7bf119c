"""Datasets for training and evaluating VQShape: loading, preprocessing, caching and sharding.

``load_dataset`` reads one classification dataset (a dataset shipped with aeon, a UEA/UCR ``.ts``
file, or a ``.npz`` / ``.npy`` file), resamples every channel to the model's input length with
:func:`vqfast.prepare_series` and returns a :class:`SeriesData`. ``pretraining_series`` pools
datasets into the univariate ``(M, length)`` series the model is pretrained on, and
:class:`ShardedSeries` serves data too large for memory from a directory of ``.npy`` shards.

aeon (``pip install "vqfast[train]"``) is needed only for shipped datasets and ``.ts`` files; it is
imported when one is loaded, never at import time, and nothing here ever downloads.
"""

from __future__ import annotations

import bisect
import difflib
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vqfast.fileio import atomic_write, read_cache
from vqfast.inputs import PAD_MODES, SeriesError, describe_indices, prepare_series

__all__ = [
    "CACHE_VERSION",
    "DataError",
    "SeriesData",
    "ShardedSeries",
    "available_datasets",
    "load_dataset",
    "pretraining_series",
]

#: Bumped whenever the preprocessing or the cache file layout changes; old cache files are ignored.
CACHE_VERSION = 1

_FILE_KINDS = (".ts", ".npz", ".npy")
_ACCEPTED = (
    "a dataset shipped with aeon (see vqfast.data.available_datasets()), a path to a UEA/UCR "
    ".ts file (a *_TRAIN.ts file takes its *_TEST.ts sibling as the test split), a .npz file "
    "with arrays X, y and optionally X_test, y_test (or X_train, y_train, X_test, y_test), or a "
    ".npy file holding X alone (unlabelled)"
)
_SPLITS = ("train", "test")


class DataError(SeriesError):
    """A dataset cannot be loaded or used as it is; the message says what is wrong and the fix."""


def _check_how(how, where: str) -> None:
    if how not in PAD_MODES:
        raise ValueError(
            f"{where}: how={how!r} is not one of {PAD_MODES}: 'pad' (the authors' protocol) "
            "zero-pads every series to the longest, then resamples; 'resample' resamples each "
            "series from its own length."
        )


def _check_length(length, where: str) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 2:
        raise ValueError(
            f"{where}: length must be an integer >= 2 (the model's len_input, e.g. 512), "
            f"got {length!r}"
        )
    return int(length)


# --------------------------------------------------------------------------------------------
# The dataset container
# --------------------------------------------------------------------------------------------


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
        if split not in _SPLITS:
            raise ValueError(f"SeriesData {self.name!r}: split must be one of {_SPLITS}, "
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


# --------------------------------------------------------------------------------------------
# Datasets shipped with aeon
# --------------------------------------------------------------------------------------------


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


def _import_aeon(what: str):
    try:
        import aeon.datasets as aeon_datasets
    except ImportError as e:
        raise ImportError(f"{what} needs aeon: pip install 'vqfast[train]' (or pip install aeon)"
                          ) from e
    return aeon_datasets


# --------------------------------------------------------------------------------------------
# Reading sources (raw arrays, before preprocessing)
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    kind: str  # "aeon", "ts", "npz", "npy"
    name: str
    path: Path | None = None  # the file (for aeon: the dataset's name only)
    test_path: Path | None = None  # .ts: the *_TEST.ts sibling when there is one

    def identity(self) -> str:
        """What the cache key depends on: the name, or every file read with its size and mtime."""
        if self.kind == "aeon":
            try:
                version = importlib.metadata.version("aeon")
            except importlib.metadata.PackageNotFoundError:
                version = "?"
            return f"aeon:{self.name}:{version}"
        parts = [self.kind]
        for p in (self.path, self.test_path):
            if p is not None:
                st = p.stat()
                parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
        return "|".join(parts)


def _resolve(source) -> _Source:
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
        or path.suffix.lower() in _FILE_KINDS
        or os.sep in text
        or (os.altsep is not None and os.altsep in text)
    )
    if not looks_like_path:
        for name in _shipped():
            if name.lower() == text.lower():
                return _Source("aeon", name)
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
    if suffix not in _FILE_KINDS:
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
        return _Source("ts", name, path, test)
    return _Source(kind, path.stem, path)


def _read_ts(path: Path):
    aeon_datasets = _import_aeon(f"reading the .ts file {str(path)!r}")
    try:
        X, y = aeon_datasets.load_from_ts_file(str(path))
    except Exception as e:
        raise DataError(
            f"could not read {str(path)!r} as a UEA/UCR .ts file ({type(e).__name__}: {e}). "
            "Check that it has the @-header lines, an @data line, and one series per line with "
            "comma-separated values, channels separated by ':' and the label last."
        ) from e
    if len(X) == 0:
        raise DataError(f"{str(path)!r} holds no series: is it a UEA/UCR .ts file (header lines, "
                        "then @data, then one series per line)?")
    y = None if y is None or len(y) == 0 else y
    return X, y


def _read_npz(path: Path):
    def load(allow_pickle):
        with np.load(path, allow_pickle=allow_pickle) as z:
            return {k: z[k] for k in z.files}

    try:
        try:
            arrays = load(False)
        except ValueError as e:
            if "allow_pickle" not in str(e):
                raise
            # Object arrays (unequal-length series) are stored pickled.
            arrays = load(True)
    except Exception as e:
        raise DataError(f"could not read {str(path)!r} as a .npz file ({type(e).__name__}: {e}); "
                        "write it with numpy.savez(path, X=..., y=...)") from e
    keys = set(arrays)
    if "X" in keys and "X_train" in keys:
        raise DataError(f"{str(path)!r} has both X and X_train; keep one (X or X_train, with y or "
                        "y_train) so the training split is unambiguous")
    xk, yk = ("X", "y") if "X" in keys else ("X_train", "y_train")
    if xk not in keys:
        raise DataError(f"{str(path)!r} has arrays {sorted(keys)} but no X (or X_train). Save the "
                        "series as X (and the labels as y, the test split as X_test, y_test).")
    if yk not in keys and "y" in keys:
        yk = "y"
    if "X_test" in keys and "y_test" not in keys and yk in keys:
        raise DataError(f"{str(path)!r} has X_test but no y_test; add the test labels as y_test")
    if "y_test" in keys and "X_test" not in keys:
        raise DataError(f"{str(path)!r} has y_test but no X_test; add the test series as X_test")
    return arrays[xk], arrays.get(yk), arrays.get("X_test"), arrays.get("y_test")


def _read_npy(path: Path):
    try:
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as e:
            if "allow_pickle" not in str(e):
                raise
            return np.load(path, allow_pickle=True)
    except Exception as e:
        raise DataError(f"could not read {str(path)!r} as a .npy file ({type(e).__name__}: {e}); "
                        "write it with numpy.save(path, X)") from e


def _read_source(src: _Source):
    """Raw ``(X_train, y_train, X_test, y_test)`` of a source; ``y_*`` may be ``None``."""
    if src.kind == "aeon":
        aeon_datasets = _import_aeon(f"loading the shipped dataset {src.name!r}")
        out = []
        for split in _SPLITS:
            X, y = aeon_datasets.load_classification(
                src.name, split=split, load_equal_length=False, load_no_missing=False
            )
            out += [X, y]
        return tuple(out)
    if src.kind == "ts":
        X, y = _read_ts(src.path)
        if src.test_path is not None:
            X_test, y_test = _read_ts(src.test_path)
            if (y is None) != (y_test is None):
                raise DataError(f"{str(src.path)!r} and {str(src.test_path)!r} disagree on "
                                "whether series have labels; label both or neither")
        else:
            X_test = y_test = None
        return X, y, X_test, y_test
    if src.kind == "npz":
        return _read_npz(src.path)
    return _read_npy(src.path), None, None, None


# --------------------------------------------------------------------------------------------
# Cleaning and preprocessing
# --------------------------------------------------------------------------------------------


def _is_numeric(a: np.ndarray) -> bool:
    return a.dtype != np.bool_ and (np.issubdtype(a.dtype, np.integer)
                                    or np.issubdtype(a.dtype, np.floating))


def _clean_series(X, where: str):
    """Check a split's series; return a numeric ``(n, C, T)`` array or a list of ``(C, Ti)``.

    Trailing NaN (how UEA files pad unequal lengths) is trimmed per series; NaN anywhere else,
    Inf, non-numeric data, mismatched channels and series under 2 points raise.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(X, np.ndarray) and X.dtype != object:
        if not _is_numeric(X):
            raise DataError(f"{where}: series must be numbers, got dtype {X.dtype}")
        if X.ndim == 1:
            raise DataError(f"{where}: got a 1-D array {X.shape}; a dataset is (n, T) or "
                            "(n, C, T) (one series: X[None])")
        if X.ndim == 2:
            X = X[:, None, :]
        if X.ndim != 3:
            raise DataError(f"{where}: expected (n, T) or (n, C, T) series, got shape {X.shape}")
        if X.shape[0] == 0:
            raise DataError(f"{where}: the dataset is empty (shape {X.shape})")
        if X.shape[1] == 0:
            raise DataError(f"{where}: the series have no channels (shape {X.shape})")
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            items = list(X)  # per-series handling below (trims NaN padding, names bad samples)
        else:
            if X.shape[2] < 2:
                raise DataError(f"{where}: series have {X.shape[2]} point(s); a shape needs at "
                                "least 2")
            return X
    elif isinstance(X, (list, tuple, np.ndarray)):
        items = list(X)
    else:
        raise DataError(f"{where}: expected an array or a list of series, got {type(X).__name__}")
    if not items:
        raise DataError(f"{where}: the dataset is empty (no series)")
    out, bad_type, bad_rank, inf, nan_inside, short = [], [], [], [], [], []
    for i, s in enumerate(items):
        try:
            s = np.asarray(s)
        except Exception:
            bad_type.append(i)
            continue
        if s.dtype == object:
            try:
                s = s.astype(np.float64)
            except (TypeError, ValueError):
                bad_type.append(i)
                continue
        if not _is_numeric(s):
            bad_type.append(i)
            continue
        if s.ndim == 1:
            s = s[None, :]
        if s.ndim != 2:
            bad_rank.append(i)
            continue
        if s.dtype.kind == "f":
            if np.isinf(s).any():
                inf.append(i)
                continue
            nan = np.isnan(s)
            if nan.any():
                kept = np.flatnonzero(~nan.all(axis=0))
                s = s[:, : (kept[-1] + 1 if kept.size else 0)]
                if np.isnan(s).any():
                    nan_inside.append(i)
                    continue
        if s.shape[1] < 2:
            short.append(i)
            continue
        out.append(s)
    if bad_type:
        raise DataError(f"{where}: samples {describe_indices(bad_type)} are not numeric series")
    if bad_rank:
        raise DataError(f"{where}: samples {describe_indices(bad_rank)} are not (T,) or (C, T) arrays")
    if inf:
        raise DataError(f"{where}: samples {describe_indices(inf)} contain Inf; remove those samples or "
                        "replace the values first")
    if nan_inside:
        raise DataError(
            f"{where}: samples {describe_indices(nan_inside)} contain NaN inside the series (trailing NaN "
            "padding of unequal-length series is trimmed automatically, NaN elsewhere is not; "
            "in a multivariate sample all channels must end at the same point). Fill the missing "
            "values (e.g. interpolate) or drop those samples."
        )
    if short:
        raise DataError(f"{where}: samples {describe_indices(short)} have fewer than 2 points (after "
                        "trimming trailing NaN padding); a shape needs at least 2. Drop them.")
    channels = np.array([s.shape[0] for s in out])
    if (channels != channels[0]).any():
        odd = np.flatnonzero(channels != channels[0])
        raise DataError(f"{where}: every sample must have the same number of channels; sample 0 "
                        f"has {channels[0]}, samples {describe_indices(odd)} have "
                        f"{sorted(set(channels[odd].tolist()))}")
    return out


def _label_text(v) -> str:
    v = v.item() if isinstance(v, np.generic) else v
    return str(v)


def _encode_labels(y_train, y_test, n_train: int, n_test: int | None, name: str):
    """Map labels of any type to int64 ids ``0..K-1`` (sorted unique values of both splits)."""
    ys = []
    for split, y, n in (("train", y_train, n_train), ("test", y_test, n_test)):
        if n is None:
            ys.append(None)
            continue
        if y is None:
            ys.append(None)
            continue
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if y.ndim == 2 and 1 in y.shape:
            y = y.reshape(-1)
        if y.ndim != 1:
            raise DataError(f"{name} ({split}): labels must be 1-D (one per sample), got shape "
                            f"{y.shape}")
        if len(y) != n:
            raise DataError(f"{name} ({split}): {n} series but {len(y)} labels; give exactly one "
                            "label per series")
        if y.dtype == object:
            y = np.array([_label_text(v) for v in y])
        if y.dtype.kind == "f" and np.isnan(y).any():
            raise DataError(f"{name} ({split}): labels of samples "
                            f"{describe_indices(np.flatnonzero(np.isnan(y)))} are NaN; label or drop them")
        ys.append(y)
    y_tr, y_te = ys
    if y_tr is None:
        if y_te is not None:
            raise DataError(f"{name}: the test split has labels but the training split has none")
        ids_te = None if n_test is None else torch.zeros(n_test, dtype=torch.int64)
        return torch.zeros(n_train, dtype=torch.int64), ids_te, ["unlabelled"]
    if n_test is not None and y_te is None:
        raise DataError(f"{name}: the training split has labels but the test split has none")
    uniq = np.unique(y_tr)
    if uniq.dtype.kind in "US":
        try:  # numeric text labels ('1', '2', '10') in numeric order
            uniq = np.array(sorted(uniq, key=float))
        except ValueError:
            pass
    if y_te is not None:
        known = set(uniq.tolist())
        unseen = [v for v in np.unique(y_te).tolist() if v not in known]
        if unseen:
            raise DataError(
                f"{name}: test labels {[_label_text(v) for v in unseen][:10]} never occur in the "
                f"training split (training classes: {[_label_text(v) for v in uniq][:20]}); a "
                "classifier cannot learn them. Remove those test samples or relabel them."
            )
    lookup = {v: i for i, v in enumerate(uniq.tolist())}
    ids_tr = torch.tensor([lookup[v] for v in y_tr.tolist()], dtype=torch.int64)
    ids_te = None if y_te is None else torch.tensor([lookup[v] for v in y_te.tolist()],
                                                    dtype=torch.int64)
    return ids_tr, ids_te, [_label_text(v) for v in uniq]


def _preprocess(raw, name: str, length: int, how: str) -> dict:
    X_train, y_train, X_test, y_test = raw
    xs = [_clean_series(X_train, f"{name} (train)")]
    if X_test is not None:
        xs.append(_clean_series(X_test, f"{name} (test)"))
    ns = [len(x) for x in xs]
    cs = [x.shape[1] if isinstance(x, np.ndarray) else x[0].shape[0] for x in xs]
    if len(set(cs)) != 1:
        raise DataError(f"{name}: the training series have {cs[0]} channels but the test series "
                        f"have {cs[1]}; both splits must have the same channels")
    y_tr, y_te, classes = _encode_labels(y_train, y_test, ns[0],
                                         ns[1] if len(ns) > 1 else None, name)
    # Both splits in one call, so "pad" pads them to the same (the dataset's) longest length.
    if all(isinstance(x, np.ndarray) for x in xs) and len({x.shape[2] for x in xs}) == 1:
        data = np.concatenate(xs) if len(xs) > 1 else xs[0]
    else:
        data = [s for x in xs for s in x]
    out = prepare_series(data, length=length, how=how).view(sum(ns), cs[0], length)
    x_tr = out[: ns[0]].clone()
    x_te = out[ns[0]:].clone() if len(ns) > 1 else None
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, "classes": classes}


def _stratified_split(y: torch.Tensor, fraction: float, seed: int, name: str):
    g = np.random.default_rng(seed)
    y_np = y.numpy()
    test = []
    for c in np.unique(y_np):
        idx = np.flatnonzero(y_np == c)
        g.shuffle(idx)
        k = min(int(round(len(idx) * fraction)), len(idx) - 1)
        test.append(idx[:k])
    test = np.sort(np.concatenate(test)) if test else np.array([], dtype=np.int64)
    if test.size == 0:
        raise DataError(f"{name}: test_fraction={fraction} of {len(y_np)} samples leaves the test "
                        "split empty (classes with one sample stay in training); use a larger "
                        "test_fraction")
    mask = np.ones(len(y_np), dtype=bool)
    mask[test] = False
    return torch.from_numpy(np.flatnonzero(mask)), torch.from_numpy(test)


# --------------------------------------------------------------------------------------------
# load_dataset
# --------------------------------------------------------------------------------------------


def _cache_path(cache_dir, src: _Source, length: int, how: str) -> tuple[Path, str]:
    key = f"vqfast-data-v{CACHE_VERSION}|{src.identity()}|length={length}|how={how}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", src.name)[:60] or "data"
    return Path(cache_dir).expanduser() / f"{slug}-{length}-{how}-{digest}.pt", key


def _load_cache(path: Path, key: str) -> dict | None:
    return read_cache(path, {"key": key, "version": CACHE_VERSION}, "data cache", stacklevel=4)


def load_dataset(
    source,
    length: int = 512,
    how: str = "pad",
    cache_dir=None,
    test_fraction: float | None = None,
    seed: int = 0,
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
            pickled, and unpickling runs code from the file: only load files you trust.
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
    _check_how(how, where)
    length = _check_length(length, where)
    if test_fraction is not None and not (isinstance(test_fraction, (int, float))
                                          and 0 < test_fraction < 1):
        raise ValueError(f"{where}: test_fraction must be a number between 0 and 1 (e.g. 0.2), "
                         f"or None for no split; got {test_fraction!r}")
    src = _resolve(source)
    cached = path = key = None
    if cache_dir is not None:
        path, key = _cache_path(cache_dir, src, length, how)
        cached = _load_cache(path, key)
    if cached is None:
        prep = _preprocess(_read_source(src), src.name, length, how)
        if path is not None:
            obj = {"version": CACHE_VERSION, "key": key, "name": src.name, **prep}
            try:
                atomic_write(path, lambda p: torch.save(obj, p))
            except OSError as e:
                warnings.warn(f"could not write the data cache {str(path)!r} ({e}); continuing "
                              "without it", stacklevel=2)
    else:
        prep = {k: cached[k] for k in ("x_train", "y_train", "x_test", "y_test", "classes")}
    data = SeriesData(name=src.name, **prep)
    if test_fraction is not None and data.x_test is None:
        tr, te = _stratified_split(data.y_train, float(test_fraction), seed, src.name)
        data = SeriesData(src.name, data.x_train[tr], data.y_train[tr], data.x_train[te],
                          data.y_train[te], data.classes)
    return data


# --------------------------------------------------------------------------------------------
# Pretraining pool
# --------------------------------------------------------------------------------------------


def pretraining_series(
    datasets: list[SeriesData], split: str = "train", balance: bool = False, seed: int = 0,
    return_source: bool = False,
):
    """The univariate ``(M, length)`` pretraining pool of several datasets.

    Every channel of every sample of every dataset's ``split`` is one row. With
    ``balance=True`` (the authors' balancing) every dataset is up-sampled to the size of the
    largest, counted in univariate series: its series are all kept once, then the missing
    number is drawn from them with replacement (seeded by ``seed``). Rows come dataset by
    dataset, originals first; shuffle them when batching. With ``return_source=True`` also
    returns ``(M, 3)`` int64 rows ``(dataset index, sample index, channel)``.
    """
    where = "pretraining_series"
    if isinstance(datasets, SeriesData):
        datasets = [datasets]
    datasets = list(datasets)
    if not datasets:
        raise DataError(f"{where}: no datasets given; pass a list of SeriesData from load_dataset")
    for i, d in enumerate(datasets):
        if not isinstance(d, SeriesData):
            raise TypeError(f"{where}: datasets[{i}] is a {type(d).__name__}, not a SeriesData "
                            "(load it with vqfast.data.load_dataset)")
    if split not in _SPLITS:
        raise ValueError(f"{where}: split must be one of {_SPLITS}, got {split!r}")
    lengths = {d.name: d.length for d in datasets}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{where}: the datasets have different lengths {lengths}; load them all "
                        "with the same length=")
    pools = [d.univariate(split) for d in datasets]
    # Where every row comes from: (dataset, sample, channel); rows are sample-major.
    sources = []
    for i, d in enumerate(datasets):
        n = len(pools[i]) // d.channels
        sample = torch.arange(n).repeat_interleave(d.channels)
        channel = torch.arange(d.channels).repeat(n)
        sources.append(torch.stack([torch.full_like(sample, i), sample, channel], dim=1))
    if balance:
        target = max(len(p) for p in pools)
        g = torch.Generator().manual_seed(int(seed))
        for i, p in enumerate(pools):
            extra = target - len(p)
            if extra > 0:
                pick = torch.randint(len(p), (extra,), generator=g)
                pools[i] = torch.cat([p, p[pick]])
                sources[i] = torch.cat([sources[i], sources[i][pick]])
    if return_source:
        return torch.cat(pools), torch.cat(sources)
    return torch.cat(pools)


# --------------------------------------------------------------------------------------------
# Sharded data on disk
# --------------------------------------------------------------------------------------------


class ShardedSeries(torch.utils.data.Dataset):
    """Univariate series from a directory of ``.npy`` shards, for data that does not fit in memory.

    Every ``*.npy`` file in ``directory`` (sorted by name) is a shard: a numeric array
    ``(n_i, T_i)`` or ``(n_i, C, T_i)``, memory-mapped (``np.load(mmap_mode="r")``), so only the
    series accessed are read. All shards must have the same ``C``; ``T_i`` may differ. Item ``k``
    is one channel of one sample, resampled to ``length`` on access: a float32 tensor
    ``(length,)``; series are numbered shard by shard, sample by sample, channel by channel.
    ``how`` as in :func:`vqfast.prepare_series`; with ``"pad"`` every series is zero-padded to
    the longest ``T_i`` of all shards first. A series holding NaN or Inf raises when accessed.
    Works with ``DataLoader`` workers (shards are re-opened in each worker, not pickled).
    """

    def __init__(self, directory, length: int = 512, how: str = "resample"):
        where = "ShardedSeries"
        _check_how(how, where)
        self.length = _check_length(length, where)
        self.how = how
        self.directory = Path(directory).expanduser()
        if not self.directory.exists():
            raise FileNotFoundError(f"{where}: directory {str(self.directory)!r} does not exist")
        if not self.directory.is_dir():
            raise NotADirectoryError(f"{where}: {str(self.directory)!r} is not a directory; give "
                                     "the folder holding the .npy shards (for a single file use "
                                     "load_dataset)")
        self.paths = sorted(p for p in self.directory.glob("*.npy") if p.is_file())
        if not self.paths:
            raise DataError(f"{where}: no .npy shards in {str(self.directory)!r}; save each shard "
                            "with numpy.save(dir / 'shard_000.npy', x) where x is (n, T) or "
                            "(n, C, T)")
        channels, counts, lengths = {}, [], []
        for p in self.paths:
            a = self._open(p)
            if not _is_numeric(a):
                raise DataError(f"{where}: shard {p.name!r} holds {a.dtype} data; shards must be "
                                "numeric (float) arrays")
            if a.ndim not in (2, 3):
                raise DataError(f"{where}: shard {p.name!r} has shape {a.shape}; shards must be "
                                "(n, T) or (n, C, T)")
            c = 1 if a.ndim == 2 else a.shape[1]
            if c == 0:
                raise DataError(f"{where}: shard {p.name!r} has no channels (shape {a.shape})")
            if a.shape[-1] < 2:
                raise DataError(f"{where}: shard {p.name!r} has series of {a.shape[-1]} point(s) "
                                f"(shape {a.shape}); a shape needs at least 2")
            channels[p.name] = c
            counts.append(a.shape[0] * c)
            lengths.append(a.shape[-1])
        if len(set(channels.values())) != 1:
            raise DataError(f"{where}: shards must all have the same number of channels, got "
                            f"{channels}")
        self.channels = next(iter(channels.values()))
        self.shard_lengths = lengths
        self.max_points = max(lengths)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()
        if self.offsets[-1] == 0:
            raise DataError(f"{where}: the shards in {str(self.directory)!r} hold no series")
        self._arrays: dict[int, np.ndarray] = {}

    @staticmethod
    def _open(path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:
            raise DataError(f"ShardedSeries: cannot read shard {str(path)!r} "
                            f"({type(e).__name__}: {e}); shards must be numeric arrays saved "
                            "with numpy.save") from e

    def _shard(self, i: int) -> np.ndarray:
        a = self._arrays.get(i)
        if a is None:
            a = self._arrays[i] = self._open(self.paths[i])
        return a

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def __len__(self) -> int:
        """Total number of univariate series (samples times channels, over all shards)."""
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[Path, int, int]:
        """``(shard path, row, channel)`` of item ``index``."""
        s, row, ch = self._locate(index)
        return self.paths[s], row, ch

    def _locate(self, index: int) -> tuple[int, int, int]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"ShardedSeries: index {index} out of range for {n} series")
        s = bisect.bisect_right(self.offsets, index) - 1
        local = index - self.offsets[s]
        return s, local // self.channels, local % self.channels

    def __getitem__(self, index: int) -> torch.Tensor:
        shard, row, ch = self._locate(int(index))
        path, a = self.paths[shard], self._shard(shard)
        s = np.asarray(a[row] if a.ndim == 2 else a[row, ch], dtype=np.float32)
        if not np.isfinite(s).all():
            raise DataError(f"ShardedSeries: shard {path.name!r} row {row}"
                            f"{f' channel {ch}' if a.ndim == 3 else ''} contains NaN or Inf; "
                            "clean that shard (fill or drop the series) before training")
        x = torch.from_numpy(s.copy())[None]
        if self.how == "pad" and x.shape[1] < self.max_points:
            x = F.pad(x, (0, self.max_points - x.shape[1]))
        return prepare_series(x, length=self.length, how="resample")[0]
