"""Experiments that use vqfast end to end (each runnable with python -m)."""
