"""aeon / scikit-learn estimators over VQShape.

- :class:`VQShapeTransformer` (an aeon collection transformer): ``fit`` pre-trains a tokenizer on
  ``X`` with ``vqfast/train.py`` (in-process, the same code as the command line), or loads one
  given as ``model=``; ``transform`` returns per-sample features: the code histograms
  (``features="histogram"``, ``(n, C*K)``) or the flattened shape tokens (``"token"``,
  ``(n, C*N*(D+4))``).
- :class:`VQShapeClassifier` (an aeon classifier): those features and the authors' linear probe
  (:mod:`vqfast.evaluation.probe`), its grid point and epochs chosen by cross-validation on the
  training data alone.

Both take aeon collections: ``(n, C, T)`` / ``(n, T)`` arrays, or lists of ``(C, T_i)`` arrays
of unequal lengths. Preprocessing is vqfast's (:func:`vqfast.prepare_series`): with
``how="pad"`` (the authors' protocol) every series is zero-padded at the end to the longest
series seen in ``fit`` (a longer one keeps its own length) and resampled to the model's input
length; with ``"resample"`` each series is resampled from its own length. A sample's features
therefore never depend on the other samples it is transformed with.

Both clone, pickle, and save without pickle: ``save_pretrained(dir)`` writes the model
(safetensors + config.json), the probe (safetensors) and the estimator's parameters and fitted
state (JSON); ``from_pretrained(dir)`` restores them. Pre-training in ``fit`` needs the training
extras (``pip install "vqfast[train]"``); loading a model and transforming need only aeon and
scikit-learn.
"""

from vqfast.estimators._common import FEATURES, TINY_SETTINGS
from vqfast.estimators.classifier import VQShapeClassifier
from vqfast.estimators.transformer import VQShapeTransformer

__all__ = ["FEATURES", "TINY_SETTINGS", "VQShapeClassifier", "VQShapeTransformer"]
