"""What a usable dataset is: argument checks, series cleaning, label encoding, and the
preprocessing that turns a source's raw arrays into the model's tensors."""

from __future__ import annotations

import numpy as np
import torch

from vqfast.inputs import PAD_MODES, SeriesError, describe_indices, prepare_series

SPLITS = ("train", "test")


class DataError(SeriesError):
    """A dataset cannot be loaded or used as it is; the message says what is wrong and the fix."""


def check_how(how, where: str) -> None:
    if how not in PAD_MODES:
        raise ValueError(
            f"{where}: how={how!r} is not one of {PAD_MODES}: 'pad' (the authors' protocol) "
            "zero-pads every series to the longest, then resamples; 'resample' resamples each "
            "series from its own length."
        )


def check_length(length, where: str) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 2:
        raise ValueError(
            f"{where}: length must be an integer >= 2 (the model's len_input, e.g. 512), "
            f"got {length!r}"
        )
    return int(length)


def is_numeric(a: np.ndarray) -> bool:
    return a.dtype != np.bool_ and (np.issubdtype(a.dtype, np.integer)
                                    or np.issubdtype(a.dtype, np.floating))


def clean_series(X, where: str):
    """Check a split's series; return a numeric ``(n, C, T)`` array or a list of ``(C, Ti)``.

    Trailing NaN (how UEA files pad unequal lengths) is trimmed per series; NaN anywhere else,
    Inf, non-numeric data, mismatched channels and series under 2 points raise.
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(X, np.ndarray) and X.dtype != object:
        if not is_numeric(X):
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
        if not is_numeric(s):
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
        raise DataError(f"{where}: samples {describe_indices(bad_rank)} are not (T,) or (C, T) "
                        "arrays")
    if inf:
        raise DataError(f"{where}: samples {describe_indices(inf)} contain Inf; remove those "
                        "samples or replace the values first")
    if nan_inside:
        raise DataError(
            f"{where}: samples {describe_indices(nan_inside)} contain NaN inside the series "
            "(trailing NaN padding of unequal-length series is trimmed automatically, NaN "
            "elsewhere is not; in a multivariate sample all channels must end at the same "
            "point). Fill the missing values (e.g. interpolate) or drop those samples."
        )
    if short:
        raise DataError(f"{where}: samples {describe_indices(short)} have fewer than 2 points "
                        "(after trimming trailing NaN padding); a shape needs at least 2. Drop "
                        "them.")
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


def encode_labels(y_train, y_test, n_train: int, n_test: int | None, name: str):
    """Map labels of any type to int64 ids ``0..K-1`` (sorted unique values of both splits)."""
    ys = []
    for split, y, n in (("train", y_train, n_train), ("test", y_test, n_test)):
        if n is None or y is None:
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
                            f"{describe_indices(np.flatnonzero(np.isnan(y)))} are NaN; label or "
                            "drop them")
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


def preprocess(raw, name: str, length: int, how: str) -> dict:
    """``SeriesData`` fields from a source's raw ``(X_train, y_train, X_test, y_test)``."""
    X_train, y_train, X_test, y_test = raw
    xs = [clean_series(X_train, f"{name} (train)")]
    if X_test is not None:
        xs.append(clean_series(X_test, f"{name} (test)"))
    ns = [len(x) for x in xs]
    cs = [x.shape[1] if isinstance(x, np.ndarray) else x[0].shape[0] for x in xs]
    if len(set(cs)) != 1:
        raise DataError(f"{name}: the training series have {cs[0]} channels but the test series "
                        f"have {cs[1]}; both splits must have the same channels")
    y_tr, y_te, classes = encode_labels(y_train, y_test, ns[0],
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


def stratified_split(y: torch.Tensor, fraction: float, seed: int, name: str):
    """``(train rows, test rows)``: ``fraction`` of every class held out, at least one kept."""
    g = np.random.default_rng(seed)
    y_np = y.numpy()
    test = []
    for c in np.unique(y_np):
        idx = np.flatnonzero(y_np == c)
        g.shuffle(idx)
        k = min(int(round(len(idx) * fraction)), len(idx) - 1)
        test.append(idx[:k])
    test = np.sort(np.concatenate(test))
    if test.size == 0:
        raise DataError(f"{name}: test_fraction={fraction} of {len(y_np)} samples leaves the test "
                        "split empty (classes with one sample stay in training); use a larger "
                        "test_fraction")
    mask = np.ones(len(y_np), dtype=bool)
    mask[test] = False
    return torch.from_numpy(np.flatnonzero(mask)), torch.from_numpy(test)
