"""``VQShapeClassifier``: VQShape features and the authors' linear probe as an aeon classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from aeon.classification import BaseClassifier

from vqfast.estimators._common import _TAGS, PROBE_NAME, TINY_SETTINGS
from vqfast.estimators.tokenizer import _store_params, _Tokenizer
from vqfast.evaluation.probe import (
    DROPOUTS,
    WEIGHT_DECAYS,
    ProbeSettings,
    linear_probe,
    train_grid,
)


class VQShapeClassifier(_Tokenizer, BaseClassifier):
    """VQShape features and the authors' linear probe (aeon classifier).

    The tokenizer is fitted as by :class:`VQShapeTransformer` (same parameters). The probe is
    the authors' classifier (input dropout, one linear layer, Adam, lr 0.005, batch 64) on
    standard-scaled tokens or min-max-scaled histograms; its weight decay, dropout and number
    of epochs are chosen by ``probe_folds``-fold stratified cross-validation on the training
    data (:func:`vqfast.evaluation.probe.linear_probe`, protocol ``"cv"``), then it is trained
    on all of it.

    Parameters
    ----------
    model, features, preset, max_steps, settings, how, batch_size, device, verbose :
        As :class:`VQShapeTransformer`.
    probe_epochs : int, default=100
        Most epochs the probe trains (cross-validation picks how many).
    probe_folds : int, default=5
        Cross-validation folds (fewer when a class has fewer training samples).
    weight_decays, dropouts : tuple of float
        The probe's grid (the authors').
    random_state : int, RandomState or None, default=None
        Seed of pre-training and of the probe.

    Attributes
    ----------
    classes_, n_classes_ : the labels seen in fit (aeon).
    model_, longest_, n_channels_, pretraining_ : as :class:`VQShapeTransformer`.
    probe_ : dict of tensors
        ``weight (F, n_classes)``, ``bias``, and the scaler's ``offset`` and ``divisor``.
    probe_selection_ : dict
        The chosen weight decay, dropout and epochs, and how they were chosen.
    """

    _tags = dict(_TAGS)

    def __init__(self, model=None, features="histogram", preset="default", max_steps=None,
                 settings=None, how="pad", probe_epochs=100, probe_folds=5,
                 weight_decays=WEIGHT_DECAYS, dropouts=DROPOUTS, batch_size=256, device="cpu",
                 verbose=False, random_state=None):
        _store_params(self, locals())
        super().__init__()

    _FITTED = (*_Tokenizer._FITTED, "probe_selection_")

    def _fit(self, X, y):
        seed = self._fit_tokenizer(X)
        try:
            settings = ProbeSettings(protocol="cv", seeds=1, epochs=self.probe_epochs,
                                     folds=self.probe_folds, seed=seed,
                                     weight_decays=tuple(float(w) for w in self.weight_decays),
                                     dropouts=tuple(float(p) for p in self.dropouts))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"VQShapeClassifier: bad probe settings: {exc}") from None
        feats = torch.from_numpy(self._features(X))
        labels = torch.tensor([self._class_dictionary[v] for v in y], dtype=torch.long)
        offset, divisor = _fit_scaler(feats, self.features)
        if int(torch.bincount(labels).max()) < 2:
            # Every class has one sample: there is nothing to cross-validate on.
            wd, drop, epochs = settings.weight_decays[0], settings.dropouts[0], settings.epochs
            how = "not cross-validated (one training sample per class): the grid's first point"
        else:
            chosen = linear_probe(feats, labels, feats, labels, self.features, settings)
            wd, drop, epochs, how = (chosen.weight_decay, chosen.dropout, chosen.epochs,
                                     chosen.selection)
        _, _, (weight, bias) = train_grid((feats - offset) / divisor, labels, self.n_classes_,
                                          [wd], [drop], epochs, settings, seed)
        self.probe_ = {"weight": weight[0], "bias": bias[0, 0], "offset": offset,
                       "divisor": divisor}
        self.probe_selection_ = {"weight_decay": wd, "dropout": drop, "epochs": epochs,
                                 "selection": how}
        return self

    def _predict_proba(self, X) -> np.ndarray:
        p = self.probe_
        x = (torch.from_numpy(self._features(X)) - p["offset"]) / p["divisor"]
        logits = (x @ p["weight"] + p["bias"]).double()
        return torch.softmax(logits, dim=1).numpy()

    def _predict(self, X) -> np.ndarray:
        return self.classes_[self._predict_proba(X).argmax(axis=1)]

    def _fitted_state(self) -> dict:
        return {**super()._fitted_state(), "classes_": self.classes_.tolist(),
                "classes_dtype": str(self.classes_.dtype)}

    def _write_extra(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.probe_.items()}, str(folder / PROBE_NAME))

    def _read_extra(self, folder: Path) -> None:
        from safetensors.torch import load_file

        self.probe_ = load_file(str(folder / PROBE_NAME))
        self.classes_ = np.array(self.classes_, dtype=self.__dict__.pop("classes_dtype"))
        self.n_classes_ = len(self.classes_)
        self._class_dictionary = {c: i for i, c in enumerate(self.classes_)}

    @classmethod
    def _get_test_params(cls, parameter_set="default"):
        tiny = {"max_steps": 2, "settings": dict(TINY_SETTINGS), "batch_size": 16,
                "probe_epochs": 3, "probe_folds": 2, "weight_decays": (0.0, 1.0),
                "dropouts": (0.0,)}
        return [tiny, {**tiny, "features": "token", "how": "resample"}]


def _fit_scaler(train: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(offset, divisor)`` such that ``(x - offset) / divisor`` is
    :func:`vqfast.evaluation.probe.scale` fitted on ``train`` (tests check they agree)."""
    if kind == "token":
        std = train.std(0, unbiased=False)
        return train.mean(0), torch.where(std > 0, std, torch.ones_like(std))
    lo, hi = train.min(0).values, train.max(0).values
    return lo, torch.where(hi > lo, hi - lo, torch.ones_like(hi))
