"""What a VQShape model's codes mean and why a series got its class: distinct shapes of the
codebook (``shapes``), class attribution from the histogram probe (``attribution``), one
prediction explained (``series``), a deletion test of those explanations (``faithfulness``),
their figures (``figures``), everything at once (``run``: ``explain``, ``report_section``) and
``python -m vqfast.explain``."""

from vqfast.explain.attribution import (
    ClassAttribution,
    CodeContribution,
    class_attribution,
    contributions,
    token_effects,
)
from vqfast.explain.faithfulness import Faithfulness, faithfulness
from vqfast.explain.run import explain, report_section
from vqfast.explain.series import SeriesExplanation, explain_series
from vqfast.explain.shapes import (
    DEFAULT_THRESHOLD,
    DistinctShapes,
    ShapeGroup,
    decode_codes,
    describe_shape,
    distinct_codes,
)

__all__ = ["DEFAULT_THRESHOLD", "ClassAttribution", "CodeContribution", "DistinctShapes",
           "Faithfulness", "SeriesExplanation", "ShapeGroup", "class_attribution",
           "contributions", "decode_codes", "describe_shape", "distinct_codes", "explain",
           "explain_series", "faithfulness", "report_section", "token_effects"]
