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
def offsets():
    """Two classes told apart by their level alone (a sine around 0 or around 5), labels text."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4 * np.pi, 60)
    y = np.array(["low", "high"] * 12)
    X = np.sin(t)[None, None, :] + rng.normal(0, 0.1, (24, 1, 60))
    X[y == "high"] += 5.0
    return X[:16], y[:16], X[16:], y[16:]
