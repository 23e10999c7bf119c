"""How good a pre-trained tokenizer is: linear probes and codebook usage (``probe``), pictures
(``plots``) and the run's report (``report``)."""

from vqfast.evaluation.probe import (
    ProbeSettings,
    codebook_usage,
    extract_features,
    linear_probe,
    probe_model,
)

__all__ = ["ProbeSettings", "codebook_usage", "extract_features", "linear_probe", "probe_model"]
