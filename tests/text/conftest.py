"""Fixtures shared by the tests of vqfast.text."""

import importlib.util
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def basicmotions():
    if importlib.util.find_spec("aeon") is None:
        pytest.skip("BasicMotions ships with aeon")
    from vqfast.data import load_dataset

    return load_dataset("BasicMotions")
