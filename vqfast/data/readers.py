"""Reading a source's raw arrays, before cleaning: aeon's shipped datasets, ``.ts``, ``.npz`` and
``.npy`` files. aeon is imported only when a shipped dataset or a ``.ts`` file is read.

Nothing is unpickled unless the caller opts in: object arrays (unequal-length series) in
``.npz``/``.npy`` files are stored pickled, and unpickling runs code from the file. Read them inside
``with pickles_allowed():`` (``train.py --allow-pickle``), for files you trust only."""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vqfast.data.cleaning import SPLITS, DataError

FILE_KINDS = (".ts", ".npz", ".npy")

_ALLOW_PICKLE = contextvars.ContextVar("vqfast_allow_pickle", default=False)


@contextlib.contextmanager
def pickles_allowed(allow: bool = True):
    """Within this block, ``.npz``/``.npy`` object arrays are unpickled (they run code from the
    file: only for files you trust)."""
    token = _ALLOW_PICKLE.set(bool(allow))
    try:
        yield
    finally:
        _ALLOW_PICKLE.reset(token)


def _pickle_refused(path: Path) -> DataError:
    """What numpy's "pickled data" error means: object arrays in a numpy file, or a file that is
    not a numpy file at all (numpy then tries it as a pickle)."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] != b"PK" and head != b"\x93NUMPY":
        kind, hint = (("npz", "numpy.savez(path, X=..., y=...)") if path.suffix.lower() == ".npz"
                      else ("npy", "numpy.save(path, X)"))
        return DataError(f"could not read {str(path)!r} as a .{kind} file (it is not one: no "
                         f"numpy header); write it with {hint}")
    return DataError(
        f"{str(path)!r} holds object arrays, which numpy stores pickled; unpickling runs code "
        "from the file, so it is refused by default. If you trust the file, pass --allow-pickle "
        "(train.py) or load_dataset(..., allow_pickle=True); otherwise "
        "save equal-length series as one float array (n, T) or (n, C, T), or pad them with "
        "trailing NaN")


@dataclass
class Source:
    """What ``load_dataset`` reads: a dataset shipped with aeon (by name) or a file."""

    kind: str  # "aeon", "ts", "npz", "npy"
    name: str
    path: Path | None = None  # the file; None for a shipped dataset
    test_path: Path | None = None  # .ts: the *_TEST.ts sibling when there is one


def import_aeon(what: str):
    try:
        import aeon.datasets as aeon_datasets
    except ImportError as e:
        raise ImportError(f"{what} needs aeon: pip install 'vqfast[train]' (or pip install aeon)"
                          ) from e
    return aeon_datasets


def read_source(src: Source):
    """Raw ``(X_train, y_train, X_test, y_test)`` of a source; ``y_*`` may be ``None``."""
    if src.kind == "aeon":
        aeon_datasets = import_aeon(f"loading the shipped dataset {src.name!r}")
        out = []
        for split in SPLITS:
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


def _read_ts(path: Path):
    aeon_datasets = import_aeon(f"reading the .ts file {str(path)!r}")
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
    try:
        with np.load(path, allow_pickle=_ALLOW_PICKLE.get()) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        if isinstance(e, ValueError) and "allow_pickle" in str(e):
            raise _pickle_refused(path) from None
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
        return np.load(path, allow_pickle=_ALLOW_PICKLE.get())
    except Exception as e:
        if isinstance(e, ValueError) and "allow_pickle" in str(e):
            raise _pickle_refused(path) from None
        raise DataError(f"could not read {str(path)!r} as a .npy file ({type(e).__name__}: {e}); "
                        "write it with numpy.save(path, X)") from e

