"""Reading a source's raw arrays, before cleaning: aeon's shipped datasets, ``.ts``, ``.npz`` and
``.npy`` files. aeon is imported only when a shipped dataset or a ``.ts`` file is read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vqfast.data.cleaning import SPLITS, DataError

FILE_KINDS = (".ts", ".npz", ".npy")


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

