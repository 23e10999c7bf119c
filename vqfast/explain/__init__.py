"""What a VQShape model's codes mean and why a series got its class: distinct shapes of the
codebook (``shapes``), class attribution from the histogram probe (``attribution``), one
prediction explained (``series``), a deletion test of those explanations (``faithfulness``),
their figures (``figures``) and ``python -m vqfast.explain``."""

from vqfast.explain.shapes import (
    DEFAULT_THRESHOLD,
    DistinctShapes,
    ShapeGroup,
    decode_codes,
    distinct_codes,
)

__all__ = ["DEFAULT_THRESHOLD", "DistinctShapes", "ShapeGroup", "decode_codes", "distinct_codes"]
