"""Fixtures shared by the tests of vqfast.data."""

import pytest

from vqfast.data import load_dataset


@pytest.fixture(scope="session")
def basic_motions():
    return load_dataset("BasicMotions")
