"""``VQShapeTransformer``: VQShape features as an aeon collection transformer."""

from __future__ import annotations

from aeon.transformations.collection import BaseCollectionTransformer

from vqfast.estimators._common import _TAGS, TINY_SETTINGS
from vqfast.estimators.tokenizer import _store_params, _Tokenizer


class VQShapeTransformer(_Tokenizer, BaseCollectionTransformer):
    """VQShape features of a collection of time series (aeon collection transformer).

    Parameters
    ----------
    model : None, str or path, or VQShape, default=None
        None: ``fit`` pre-trains a tokenizer on ``X`` (``vqfast/train.py`` in-process with
        ``preset``, ``max_steps`` and ``settings``; needs ``vqfast[train]``). Otherwise the
        tokenizer to use, and ``fit`` only records the data's shape: a folder written by
        ``save_pretrained`` (a model's or an estimator's), the output folder of
        ``vqfast/train.py``, one of the authors' ``.ckpt`` files, or a ``VQShape`` (copied).
    features : {"histogram", "token"}, default="histogram"
        Code histograms ``(n, C*K)`` or flattened tokens ``[code, t, l, mu, sigma]``
        ``(n, C*N*(D+4))``.
    preset : str, default="default"
        Pre-training preset (``vqfast.presets``): ``default`` (small, CPU-friendly), ``paper``.
    max_steps : int or None, default=None
        Optimizer steps of pre-training (None: the preset's).
    settings : dict or None, default=None
        Overrides of preset settings, as ``train.py --set key=value`` (model keywords such as
        ``num_code``, optimisation settings such as ``lr``). ``batch_size`` is lowered to the
        number of univariate series when ``X`` has fewer.
    how : {"pad", "resample"}, default="pad"
        Unequal lengths: zero-pad to the longest series seen in fit, then resample (the
        authors' protocol), or resample each series from its own length.
    batch_size : int, default=256
        Series per forward pass when transforming.
    device : str, default="cpu"
        Where the tokenizer runs in ``transform`` (pre-training picks its device as train.py
        does).
    verbose : bool, default=False
        Show pre-training's and tokenizing's progress.
    random_state : int, RandomState or None, default=None
        Seed of pre-training (model initialisation, batches). An int makes ``fit`` repeatable.
        The global random states are left as they were.

    Attributes
    ----------
    model_ : VQShape
        The tokenizer, in eval mode.
    longest_ : int
        Longest series seen in fit (what ``how="pad"`` pads to).
    n_channels_ : int
        Channels seen in fit.
    pretraining_ : dict or None
        Pre-training's steps, time, losses and codebook usage (None when ``model`` was given).
    """

    _tags = {**_TAGS, "output_data_type": "Tabular"}

    def __init__(self, model=None, features="histogram", preset="default", max_steps=None,
                 settings=None, how="pad", batch_size=256, device="cpu", verbose=False,
                 random_state=None):
        _store_params(self, locals())
        super().__init__()

    def _fit(self, X, y=None):
        self._fit_tokenizer(X)
        return self

    def _transform(self, X, y=None):
        return self._features(X)

    @classmethod
    def _get_test_params(cls, parameter_set="default"):
        tiny = {"max_steps": 2, "settings": dict(TINY_SETTINGS), "batch_size": 16}
        return [tiny, {**tiny, "features": "token", "how": "resample"}]
