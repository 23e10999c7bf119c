import pytest
import torch

from vqfast.explain import class_attribution, contributions, token_effects


def test_effects_are_centred_weights_over_the_scale(probe_factory):
    # 2 channels x 3 codes, 2 classes
    W = torch.tensor([[1.0, -1.0], [0.0, 2.0], [3.0, 3.0], [4.0, 0.0], [0.0, 0.0], [-2.0, 2.0]])
    probe = probe_factory(W, divisor=[1, 2, 1, 2, 1, 4])
    e = token_effects(probe, 3)
    assert e.shape == (2, 2, 3)
    # class 0, channel 0: (1 - 0) / 1, (0 - 1) / 2, (3 - 3) / 1
    assert e[0, 0].tolist() == [1.0, -0.5, 0.0]
    # class 1, channel 1: (0 - 2) / 2, 0, (2 - 0) / 4
    assert e[1, 1].tolist() == [-1.0, 0.0, 0.5]
    assert torch.allclose(e.sum(0), torch.zeros(2, 3))  # centred over classes


def test_contribution_changes_the_logit_margin_by_exactly_that(probe_factory):
    torch.manual_seed(1)
    probe = probe_factory(torch.randn(8, 3), divisor=torch.rand(8) + 0.5)
    h = torch.randint(0, 4, (5, 8)).float()
    c = contributions(probe, h, 4)  # (5, classes, 2, 4)
    centred = probe.logits(h) - probe.logits(h).mean(1, keepdim=True)
    base = probe.logits(torch.zeros(1, 8))
    base = base - base.mean(1, keepdim=True)
    assert torch.allclose(c.sum((2, 3)), centred - base, atol=1e-5)


def test_class_attribution_ranks_the_known_codes(probe_factory):
    # 1 channel, 4 codes; class 0 favours code 1, class 1 favours codes 3 then 2
    W = torch.tensor([[0.0, 0.0], [2.0, -2.0], [-0.5, 0.5], [-1.0, 1.0]])
    probe = probe_factory(W)
    h = torch.tensor([[1.0, 3, 0, 0], [0, 2, 1, 0], [0, 0, 2, 3], [1, 0, 4, 2]])
    y = torch.tensor([0, 0, 1, 1])
    a = class_attribution(probe, h, y, 4, ["a", "b"], top=3)
    assert [c.code for c in a[0].top] == [1]           # only code 1 pushes toward "a"
    assert a[0].top[0].contribution == pytest.approx(2.0 * 2.5)
    assert [c.code for c in a[1].top] == [3, 2]
    assert a[1].top[0].mean_count == pytest.approx(2.5)
    assert a[1].mean_histogram.tolist() == [[0.5, 0.0, 3.0, 2.5]]
    assert a[1].as_dict()["name"] == "b" and a[1].samples == 2


def test_wrong_inputs_are_named(probe_factory):
    probe = probe_factory(torch.ones(6, 2))
    with pytest.raises(ValueError, match="not a multiple"):
        token_effects(probe, 4)
    with pytest.raises(ValueError, match="histogram probe"):
        token_effects(probe_factory(torch.ones(6, 2), kind="token"), 3)
    with pytest.raises(ValueError, match=r"histograms must be \(n, 6\)"):
        contributions(probe, torch.ones(2, 5), 3)
    with pytest.raises(ValueError, match="labels"):
        class_attribution(probe, torch.ones(2, 6), torch.tensor([0]), 3)
