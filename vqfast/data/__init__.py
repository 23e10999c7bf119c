"""Datasets for training and evaluating VQShape (the modules of this package say what each holds)."""

from vqfast.data.datasets import *  # noqa: F403
from vqfast.data.datasets import __all__  # noqa: F401
