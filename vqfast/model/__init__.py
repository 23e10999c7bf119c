"""The VQShape model: its settings (``config``), building blocks (``modules``), the math that is
not an op (``functional``), the model (``vqshape``), its text-guided extension (``text_model``),
and reading and writing checkpoints (``checkpoint``)."""

from vqfast.model.config import DEFAULTS, LOSS_WEIGHTS, MIN_SHAPE_LEN, VQShapeConfig
from vqfast.model.text_model import FUSIONS, TEXT_KEYS, VQShapeText
from vqfast.model.vqshape import MODES, VQShape, total_loss

__all__ = ["DEFAULTS", "FUSIONS", "LOSS_WEIGHTS", "MIN_SHAPE_LEN", "MODES", "TEXT_KEYS", "VQShape",
           "VQShapeConfig", "VQShapeText", "total_loss"]
