"""Datasets for training and evaluating VQShape: loading, preprocessing, caching and sharding.

``load_dataset`` reads one classification dataset (a dataset shipped with aeon, a UEA/UCR ``.ts``
file, or a ``.npz`` / ``.npy`` file), resamples every channel to the model's input length with
:func:`vqfast.prepare_series` and returns a :class:`SeriesData`. ``pretraining_series`` pools
datasets into the univariate ``(M, length)`` series the model is pretrained on, and
:class:`ShardedSeries` serves data too large for memory from a directory of ``.npy`` shards.

aeon (``pip install "vqfast[train]"``) is needed only for shipped datasets and ``.ts`` files; it is
imported when one is loaded, never at import time, and nothing here ever downloads.

Modules, each importing only those before it: ``cleaning`` (DataError, checks, preprocessing),
``readers`` (raw arrays of each source kind), ``cache``, ``datasets`` (discovery, SeriesData,
load_dataset), ``pool`` (pretraining_series), ``shards`` (ShardedSeries).
"""

from vqfast.data.cache import CACHE_VERSION
from vqfast.data.cleaning import DataError
from vqfast.data.datasets import (
    NOT_IN_ALL,
    SeriesData,
    available_datasets,
    expand_datasets,
    load_dataset,
)
from vqfast.data.pool import pretraining_series
from vqfast.data.shards import ShardedSeries

__all__ = [
    "CACHE_VERSION",
    "NOT_IN_ALL",
    "DataError",
    "SeriesData",
    "ShardedSeries",
    "available_datasets",
    "expand_datasets",
    "load_dataset",
    "pretraining_series",
]
