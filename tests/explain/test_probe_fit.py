import pytest
import torch

from vqfast.evaluation.probe import ProbeSettings, fit_probe, linear_probe, scale


def data(seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(60) % 3
    x = torch.rand(60, 10, generator=gen) * 3
    x[torch.arange(60), y] += 4  # feature c is high in class c
    return x[:36], y[:36], x[36:], y[36:]


@pytest.mark.parametrize("kind", ["histogram", "token"])
def test_fit_probe_is_the_probe_linear_probe_measures(kind):
    x, y, xt, yt = data()
    settings = ProbeSettings(seeds=1, epochs=12, weight_decays=(0.0, 1.0), dropouts=(0.0, 0.5),
                             folds=3)
    fitted = fit_probe(x, y, kind, settings)
    measured = linear_probe(x, y, xt, yt, kind, settings)
    assert (fitted.weight_decay, fitted.dropout, fitted.epochs) == \
        (measured.weight_decay, measured.dropout, measured.epochs)
    accuracy = (fitted.logits(xt).argmax(-1) == yt).float().mean().item()
    assert accuracy == pytest.approx(measured.per_seed[0])
    _, scaled = scale(x, xt, kind)
    assert torch.allclose(fitted.logits(xt), scaled @ fitted.weight + fitted.bias, atol=1e-6)
    assert torch.allclose(fitted.probabilities(xt).sum(-1), torch.ones(len(xt)))
    assert "cross-validation" in fitted.selection and fitted.num_classes == 3


def test_fit_probe_errors():
    x, y, _, _ = data()
    with pytest.raises(ValueError, match="kind"):
        fit_probe(x, y, "tokens")
    with pytest.raises(ValueError, match=r"\(n, F\)"):
        fit_probe(x, y[:5])
    with pytest.raises(ValueError, match="labels must lie"):
        fit_probe(x, y, num_classes=2)
    fitted = fit_probe(x, y, settings=ProbeSettings(weight_decays=(0.0,), dropouts=(0.0,),
                                                    epochs=3))
    with pytest.raises(ValueError, match=r"features must be \(n, 10\)"):
        fitted.logits(x[:, :4])
