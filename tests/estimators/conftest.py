"""Data shared by the estimator tests: a few BasicMotions series and an easy synthetic task."""

import numpy as np
import pytest

from vqfast.estimators import TINY_SETTINGS

TINY = {"max_steps": 2, "settings": dict(TINY_SETTINGS), "batch_size": 16}


@pytest.fixture(scope="session")
def basic_motions():
    """Every third BasicMotions training series (14 of 40, all 4 classes), and 8 test series."""
    from aeon.datasets import load_basic_motions

    X, y = load_basic_motions(split="train")
    Xt, yt = load_basic_motions(split="test")
    return X[::3], y[::3], Xt[::5], yt[::5]


@pytest.fixture(scope="session")
def frequencies():
    """Two classes told apart by frequency (one or six periods of a noisy sine), labels text."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 60)
    y = np.array(["slow", "fast"] * 16)
    freq = np.where(y == "fast", 6.0, 1.0)
    X = (np.sin(2 * np.pi * freq[:, None] * t) + rng.normal(0, 0.1, (32, 60)))[:, None, :]
    return X[:16], y[:16], X[16:], y[16:]
