"""What the estimators share that is not an estimator: constants, input checks, finding a model,
quieting and isolating pre-training, and replacing a saved folder whole."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from vqfast.inputs import SeriesError, describe_indices
from vqfast.model import VQShape

FEATURES = ("histogram", "token")
SAVED_NAME = "estimator.json"
MODEL_DIR = "model"
PROBE_NAME = "probe.safetensors"
_TAGS = {
    "capability:multivariate": True,
    "capability:unequal_length": True,
    "X_inner_type": ["np-list", "numpy3D"],
    "algorithm_type": "deeplearning",
}
# A tiny model and a few steps: what aeon's estimator checks and the tests fit.
TINY_SETTINGS = {
    "dim_embedding": 16, "num_enc_head": 2, "num_enc_layer": 1, "num_tokenizer_head": 2,
    "num_tokenizer_layer": 1, "num_dec_head": 2, "num_dec_layer": 1, "num_token": 4,
    "len_s": 16, "num_code": 8, "len_input": 32, "num_patch": 8, "patch_size": 4,
    "batch_size": 8, "log_every": 1,
}


def _check_collection(X, where: str) -> None:
    """Clearer errors than aeon's for what VQShape cannot take: empty, wrong rank, NaN/Inf."""
    if isinstance(X, np.ndarray):
        if X.ndim not in (2, 3):
            raise SeriesError(f"{where}: X must be (n_cases, n_channels, n_timepoints) or "
                              f"(n_cases, n_timepoints), got an array of shape {X.shape}")
        if X.shape[0] == 0 or X.shape[-1] == 0:
            raise SeriesError(f"{where}: X holds no series (shape {X.shape})")
        series = [X]
    elif isinstance(X, list):
        if not X:
            raise SeriesError(f"{where}: X is an empty list; pass at least one series")
        series = X
    else:
        return  # aeon says which collection types it takes
    bad = []
    for i, s in enumerate(series):
        s = np.asarray(s)
        if s.dtype.kind not in "biuf":
            raise SeriesError(f"{where}: series must be numeric, got dtype {s.dtype}")
        finite = np.isfinite(s)
        if not finite.all():
            bad += (np.nonzero(~finite.reshape(len(s), -1).all(1))[0].tolist()
                    if isinstance(X, np.ndarray) else [i])
    if bad:
        raise SeriesError(f"{where}: samples {describe_indices(bad)} contain NaN or Inf; fill or "
                          "drop them first (for unequal-length data stored NaN-padded, pass a list "
                          "of trimmed (n_channels, n_timepoints_i) arrays)")


def _load_model(spec, where: str) -> VQShape:
    if isinstance(spec, VQShape):
        return copy.deepcopy(spec)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"{where}: model must be None, a path or a VQShape, got "
                        f"{type(spec).__name__}")
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".ckpt":
        return VQShape.from_official_checkpoint(path)
    for folder in (path, path / MODEL_DIR):
        if (folder / "config.json").is_file():
            return VQShape.from_pretrained(folder)
    raise FileNotFoundError(
        f"{where}: model={os.fspath(spec)!r} is not a folder written by save_pretrained "
        "(config.json + model.safetensors), a saved estimator or vqfast/train.py output folder "
        "(with model/), or one of the authors' .ckpt files")


@contextlib.contextmanager
def _quiet(log: io.StringIO, verbose: bool):
    """Pre-training's progress and messages go to ``log`` unless ``verbose``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
        if verbose:
            yield
            return
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield


@contextlib.contextmanager
def _rng_preserved():
    """The global generators as they were before (train.py seeds them, a new model draws from
    them): a user's own random sequence goes on as if fit had not run."""
    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _replace_folder(directory: Path, write, where: str) -> Path:
    """Write a folder beside ``directory`` with ``write(folder)``, then rename it into place."""
    if directory.exists():
        if not directory.is_dir():
            raise FileExistsError(f"{where}.save_pretrained: {str(directory)!r} is a file; "
                                  "pass a folder path")
        if any(directory.iterdir()) and not (directory / SAVED_NAME).is_file():
            raise FileExistsError(f"{where}.save_pretrained: {str(directory)!r} holds files "
                                  "that save_pretrained did not write; choose a new or empty "
                                  "folder")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    old = None
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, old)
        os.replace(tmp, directory)
    except BaseException:
        if old is not None and not directory.exists():
            os.replace(old, directory)  # the earlier save goes back where it was
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return directory
