import pytest
import torch

from vqfast.evaluation.probe import ProbeSettings, fit_probe
from vqfast.explain.faithfulness import (
    attributed_order,
    deletion_curve,
    faithfulness,
    token_features,
)


def planted(n=40, K=8, seed=0):
    """Histograms of 16 tokens over K codes; class 1 samples carry 4 tokens of code 5, which
    class 0 never has. The rest is noise alike in both classes."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    h = torch.zeros(n, K)
    for i in range(n):
        noise = 12 if y[i] else 16
        codes = torch.randint(0, K - 1, (noise,), generator=gen)
        codes[codes == 5] = 7
        h[i] += torch.bincount(codes, minlength=K).float()
        if y[i]:
            h[i, 5] += 4
    return h, y


def test_token_features_and_curve():
    h = torch.tensor([2.0, 0, 1])
    assert token_features(h).tolist() == [0, 0, 2]
    assert attributed_order(torch.tensor([0.1, 5.0, 0.3]), h).tolist() == [2, 0, 0]


def test_deletion_curve_matches_probabilities(probe_factory):
    probe = probe_factory(torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
    curve = deletion_curve(probe, torch.tensor([2.0, 1.0]), torch.tensor([0, 0]), 0)
    # logits (x, -x) for x = 2, 1, 0 tokens of feature 0: p = sigmoid(2x)
    assert curve.tolist() == pytest.approx([torch.sigmoid(torch.tensor(2.0 * k)).item()
                                            for k in (2, 1, 0)])


def test_planted_code_ranks_first_and_beats_random():
    h, y = planted()
    probe = fit_probe(h, y, "histogram", ProbeSettings(weight_decays=(0.0,), dropouts=(0.0,),
                                                        epochs=60))
    assert (probe.logits(h).argmax(-1) == y).float().mean() == 1.0
    effects = (probe.weight - probe.weight.mean(1, keepdim=True)) / probe.divisor[:, None]
    class1 = h[y == 1][0]
    assert attributed_order(effects[:, 1], class1)[:4].tolist() == [5, 5, 5, 5]
    result = faithfulness(probe, h[y == 1], 8, fraction=0.25, draws=8)
    assert result.steps == 4 and result.tokens_per_sample == 16 and result.samples == 20
    assert result.attributed_aopc > 2 * result.random_aopc > 0
    assert result.ratio == pytest.approx(result.attributed_aopc / result.random_aopc)
    assert result.attributed_curve[0] == pytest.approx(result.random_curve[0])


def test_bad_arguments(probe_factory):
    probe = probe_factory(torch.ones(4, 2))
    with pytest.raises(ValueError, match="fraction"):
        faithfulness(probe, torch.ones(2, 4), 4, fraction=0)
    with pytest.raises(ValueError, match="draws"):
        faithfulness(probe, torch.ones(2, 4), 4, draws=0)
    with pytest.raises(ValueError, match="negative"):
        token_features(torch.tensor([-1.0, 2.0]))
