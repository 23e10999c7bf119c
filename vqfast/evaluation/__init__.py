"""How good a pre-trained tokenizer is: linear probes and codebook usage (``probe``), token
metrics (``tokens``) and pictures (``plots``). The run's report, which also explains the model
(:mod:`vqfast.explain`), is :mod:`vqfast.report`."""

from vqfast.evaluation.probe import (
    ProbeSettings,
    codebook_usage,
    extract_features,
    linear_probe,
    probe_model,
)

__all__ = ["ProbeSettings", "codebook_usage", "extract_features", "linear_probe", "probe_model"]
