"""vqfast: fast, faithful VQShape (interpretable shape tokens for time series) in PyTorch."""

__version__ = "0.1.0"

from vqfast.inputs import SeriesError, prepare_series  # noqa: E402
from vqfast.model import DEFAULTS, VQShape, VQShapeText, total_loss  # noqa: E402

__all__ = ["DEFAULTS", "SeriesError", "VQShape", "VQShapeText", "__version__", "prepare_series",
           "total_loss"]
