"""The tokenizer both estimators fit: parameter checks, pre-training through vqfast/train.py,
preprocessing, features, and saving and loading without pickle."""

from __future__ import annotations

import importlib.util
import io
import json
import numbers
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.utils import check_random_state

from vqfast.environment import package_version
from vqfast.estimators._common import (
    FEATURES,
    MODEL_DIR,
    SAVED_NAME,
    _check_collection,
    _load_model,
    _quiet,
    _replace_folder,
    _rng_preserved,
)
from vqfast.evaluation.probe import extract_features
from vqfast.fileio import atomic_write_json
from vqfast.inputs import PAD_MODES, prepare_series
from vqfast.model import VQShape


def _store_params(estimator, params: dict) -> None:
    """``__init__``'s arguments as attributes of the same names, unchanged (scikit-learn's rule)."""
    for name, value in params.items():
        if name != "self" and not name.startswith("__"):
            setattr(estimator, name, value)


class _Tokenizer:
    """What both estimators share: input checks, the tokenizer's fit, features, save/load."""

    def _preprocess_collection(self, X, store_metadata=True):
        _check_collection(X, type(self).__name__)
        return super()._preprocess_collection(X, store_metadata=store_metadata)

    def _check_params(self) -> None:
        where = type(self).__name__
        if self.features not in FEATURES:
            raise ValueError(f"{where}: features must be one of {FEATURES}, got "
                             f"{self.features!r}")
        if self.how not in PAD_MODES:
            raise ValueError(f"{where}: how must be one of {PAD_MODES}, got {self.how!r}")
        for name in ("max_steps", "batch_size"):
            value = getattr(self, name)
            if value is None and name == "max_steps":
                continue
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
        if self.settings is not None and not (
                isinstance(self.settings, dict) and all(isinstance(k, str) for k in self.settings)):
            raise ValueError(f"{where}: settings must be a dict of preset settings, e.g. "
                             f"{{'num_code': 128}}, or None; got {self.settings!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"{where}: device={self.device!r} is not a torch device ('cpu', "
                             "'cuda', 'cuda:1', ...)") from exc

    def _seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _fit_tokenizer(self, X) -> int:
        """Set ``model_``, ``longest_``, ``n_channels_``, ``pretraining_``; return the seed."""
        self._check_params()
        seed = self._seed()
        lengths = [X.shape[-1]] if isinstance(X, np.ndarray) else [s.shape[-1] for s in X]
        self.longest_ = int(max(lengths))
        self.n_channels_ = int(X.shape[1] if isinstance(X, np.ndarray) else X[0].shape[0])
        with _rng_preserved():  # building a model draws its initial weights
            if self.model is not None:
                model, self.pretraining_ = _load_model(self.model, type(self).__name__), None
            else:
                model, self.pretraining_ = self._pretrain(X, seed)
        self.model_ = model.to(self.device).eval()
        return seed

    def _pretrain(self, X, seed: int):
        where = type(self).__name__
        if importlib.util.find_spec("accelerate") is None:
            raise ImportError(f"{where}: pre-training in fit needs the training extras (pip "
                              "install 'vqfast[train]'); or pass model= a saved model folder")
        from vqfast import train
        from vqfast.training import presets

        try:
            preset = presets.apply_overrides(presets.get_preset(self.preset),
                                             dict(self.settings or {}))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        x = self._prepare(X, preset.model["len_input"])
        with tempfile.TemporaryDirectory(prefix="vqfast-fit-") as tmp:
            tmp = Path(tmp)
            np.savez(tmp / "X.npz", X=x.numpy())
            argv = ["--dataset", str(tmp / "X.npz"), "--output-dir", str(tmp / "run"),
                    "--preset", self.preset, "--seed", str(seed), "--how", "pad",
                    "--no-probe", "--no-plots", "--no-baseline", "--cache-dir", str(tmp / "cache"),
                    "--threads", str(torch.get_num_threads())]
            for key, value in (self.settings or {}).items():
                argv += ["--set", f"{key}={value}"]
            if self.max_steps is not None:
                argv += ["--max-steps", str(self.max_steps)]
            # A pool smaller than one batch cannot be batched; no checkpoints (nothing resumes).
            argv += ["--batch-size", str(min(preset.train.batch_size, x.shape[0] * x.shape[1])),
                     "--checkpoint-every", str(10**9)]
            log = io.StringIO()
            try:
                with _quiet(log, self.verbose):
                    report = train.main(argv)
            except SystemExit as exc:
                said = exc.code if isinstance(exc.code, str) else log.getvalue().strip()[-2000:]
                raise ValueError(f"{where}: pre-training failed: {said}") from None
            model = VQShape.from_pretrained(tmp / "run" / MODEL_DIR)
        keep = ("preset", "config", "seed", "steps", "train_seconds", "codebook", "losses")
        return model, {k: report[k] for k in keep if k in report}

    def _prepare(self, X, length: int) -> torch.Tensor:
        """``X`` as the model's input ``(n, C, length)``, each sample on its own."""
        if self.how == "pad":
            if isinstance(X, np.ndarray):
                X = np.pad(X, ((0, 0), (0, 0), (0, max(0, self.longest_ - X.shape[-1]))))
            else:
                X = [np.pad(s, ((0, 0), (0, max(0, self.longest_ - s.shape[-1])))) for s in X]
        return prepare_series(X, length=length, how="resample").view(len(X), -1, length)

    def _features(self, X) -> np.ndarray:
        x = self._prepare(X, self.model_.len_input)
        tokens, hists = extract_features(self.model_, x, self.batch_size, progress=self.verbose)
        return (tokens if self.features == "token" else hists).numpy()

    # ------------------------------------------------------------------ saving and loading

    _FITTED = ("longest_", "n_channels_", "pretraining_")

    def _fitted_state(self) -> dict:
        return {name: getattr(self, name) for name in self._FITTED}

    def save_pretrained(self, directory) -> Path:
        """Write the fitted estimator to ``directory``, without pickle.

        ``model/`` (the tokenizer: ``model.safetensors`` + ``config.json``), the probe's
        ``probe.safetensors`` (classifier) and ``estimator.json`` (parameters and fitted state).
        The folder is written beside its target and renamed into place: an earlier save there
        is replaced whole, never half-overwritten. A folder holding anything else is refused.
        """
        self._check_is_fitted()
        params = {}
        for name, value in self.get_params(deep=False).items():
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif name == "model" and value is not None and not isinstance(value, str):
                value = None  # an in-memory model: its weights are saved in model/
            elif name == "random_state" and not isinstance(value, (numbers.Integral, type(None))):
                value = None
            params[name] = value
        meta = {k: v.item() if isinstance(v, np.generic) else v for k, v in self.metadata_.items()}
        saved = {"estimator": type(self).__name__, "vqfast_version": package_version("vqfast"),
                 "params": params, "fitted": self._fitted_state(), "metadata": meta}

        def write(folder: Path) -> None:
            self.model_.save_pretrained(folder / MODEL_DIR)
            self._write_extra(folder)
            atomic_write_json(folder / SAVED_NAME, saved)

        return _replace_folder(Path(directory), write, type(self).__name__)

    def _write_extra(self, folder: Path) -> None:
        """Files beyond the model and estimator.json (the classifier's probe)."""

    def _read_extra(self, folder: Path) -> None:
        """Read what ``_write_extra`` wrote."""

    @classmethod
    def from_pretrained(cls, directory, device: str = "cpu"):
        """Load what ``save_pretrained`` wrote; the estimator is fitted, on ``device``."""
        directory = Path(directory)
        path = directory / SAVED_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{cls.__name__}.from_pretrained: {str(directory)!r} holds no "
                                    f"{SAVED_NAME}; pass a folder written by save_pretrained")
        saved = json.loads(path.read_text())
        if saved.get("estimator") != cls.__name__:
            raise ValueError(f"{cls.__name__}.from_pretrained: {str(directory)!r} holds a saved "
                             f"{saved.get('estimator')}; load it with that class")
        defaults = cls().get_params(deep=False)
        params = {k: tuple(v) if isinstance(defaults.get(k), tuple) else v
                  for k, v in saved["params"].items() if k in defaults}
        params["device"] = device
        est = cls(**params)
        for name, value in saved["fitted"].items():
            setattr(est, name, value)
        est.metadata_ = saved["metadata"]
        with _rng_preserved():
            est.model_ = VQShape.from_pretrained(directory / MODEL_DIR).to(device).eval()
        est._read_extra(directory)
        est.is_fitted = True
        return est
