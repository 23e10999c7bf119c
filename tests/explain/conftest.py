import pytest
import torch

from vqfast.evaluation.probe import FittedProbe


def make_probe(weight, divisor=None, kind="histogram") -> FittedProbe:
    """A probe with the given weights ``(F, classes)``, zero bias and shift."""
    weight = torch.as_tensor(weight, dtype=torch.float32)
    F_ = weight.shape[0]
    divisor = torch.ones(F_) if divisor is None else torch.as_tensor(divisor, dtype=torch.float32)
    return FittedProbe(kind, weight, torch.zeros(weight.shape[1]), torch.zeros(F_), divisor,
                       0.0, 0.0, 1, "given")


@pytest.fixture
def probe_factory():
    return make_probe
