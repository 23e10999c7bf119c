"""The cv probe's choice of grid point and epochs: equally accurate choices are told apart by
order (the default: the earliest epoch) or by validation loss."""

import pytest
import torch

from vqfast.evaluation.probe import ProbeSettings, linear_probe, select_by_cv, train_grid

SMALL = dict(seeds=2, epochs=30, folds=4, weight_decays=(0.0, 1.0), dropouts=(0.0, 0.5))


def separable(n=40, features=64, seed=0):
    """Two well-separated classes: every classifier is right on all after its first step."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, features, generator=g) * 0.3 + 3.0 * (2 * y - 1).unsqueeze(1)
    return x, y


def test_train_grid_reports_the_evaluation_loss_per_point_and_epoch():
    x, y = separable()
    acc, loss, (W, b) = train_grid(x, y, 2, [0.0, 1.0], [0.0], 20, ProbeSettings(), 0, x, y)
    assert acc.shape == loss.shape == (1, 2, 20)
    logits = x @ W[0] + b[0]
    expected = torch.nn.functional.cross_entropy(logits[:, 2:], y)  # second point, last epoch
    assert loss[0, 1, -1] == pytest.approx(float(expected), rel=1e-5)
    assert loss[0, 0, -1] < loss[0, 0, 0]  # training lowers it


def test_ties_in_accuracy_go_to_the_lowest_validation_loss():
    x, y = separable()
    first = select_by_cv(x, y, 2, ProbeSettings(**SMALL))
    by_loss = select_by_cv(x, y, 2, ProbeSettings(**SMALL, tie_break="loss"))
    # Every point reaches full accuracy within a few epochs: the first rule stops there, the
    # loss rule trains on, unregularized, to the epoch of lowest validation loss.
    assert first[1] <= 2
    assert by_loss[1] > first[1]
    assert by_loss[0] % len(SMALL["weight_decays"]) == 0  # weight decay 0 fits tightest


def test_the_selection_is_named_in_the_result():
    x, y = separable()
    first = linear_probe(x[:24], y[:24], x[24:], y[24:], "token", ProbeSettings(**SMALL))
    assert "earliest epoch" in first.selection
    by_loss = linear_probe(x[:24], y[:24], x[24:], y[24:], "token",
                           ProbeSettings(**SMALL, tie_break="loss"))
    assert "ties broken by validation loss" in by_loss.selection


def test_an_unknown_tie_break_is_refused():
    with pytest.raises(ValueError, match="tie_break must be one of"):
        ProbeSettings(tie_break="last")
