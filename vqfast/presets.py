"""``vqfast.presets``: the named pre-training settings, kept here for existing imports; they live
in :mod:`vqfast.training.presets`."""

from vqfast.training.presets import PRESETS, Preset, TrainSettings, apply_overrides, get_preset

__all__ = ["PRESETS", "Preset", "TrainSettings", "apply_overrides", "get_preset"]
