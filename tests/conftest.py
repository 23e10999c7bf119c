"""Test setup shared by every test module.

The Triton interpreter must be switched on before any ``@triton.jit`` decorator runs, so it is set
here, before vqfast (and its kernels) are imported. Hypothesis runs a fixed, derandomized profile in
CI (``HYPOTHESIS_PROFILE=ci``) and a quicker one by default.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="module")
def io() -> dict:
    """Inputs, outputs, losses and gradients of the authors' code on their checkpoint."""
    return torch.load(FIXTURES / "official-vqshape-tiny-io.pt", weights_only=True)


@pytest.fixture(scope="session")
def ckpt_path() -> Path:
    """The authors' Lightning checkpoint behind ``io``."""
    return FIXTURES / "official-vqshape-tiny.ckpt"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
