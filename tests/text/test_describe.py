"""Tests of vqfast.text.describe: the rule-based describer."""

import numpy as np
import pytest
import torch

from vqfast.text import TextError, amplitude_scale, describe_batch, describe_series


def test_describe_flat_versus_oscillating():
    t = np.arange(200)
    wave = np.sin(2 * np.pi * t / 20)
    flat = np.random.default_rng(0).normal(scale=0.01, size=200)
    d_wave, d_flat = describe_series(wave), describe_series(flat)
    assert d_wave != d_flat
    assert "period ~20 points (10 cycles)" in d_wave and "10 peaks" in d_wave
    assert "no clear period" in d_flat and "very low amplitude" in d_flat
    rising = describe_series(torch.linspace(0, 5, 100))
    assert "rising" in rising and "falling" in describe_series(-torch.linspace(0, 5, 100))
    assert describe_series(wave) == d_wave  # deterministic


def test_describe_constant_short_and_channels():
    constant = describe_series(np.full((1, 50), 0.5))
    assert constant == "1 channel of 50 points. series: constant at 0.5."
    two = describe_series(np.array([0.0, 1.0]))
    assert "2 points" in two and "rising" in two and "no clear period" in two
    x = np.stack([np.sin(np.arange(64) / 3.0), np.arange(64) / 10.0, np.zeros(64)])
    d = describe_series(x, channel_names=["acc", "temp", "dead"])
    assert all(f"{n}:" in d for n in ("acc", "temp", "dead"))
    assert "dead: constant at 0" in d
    d = describe_series(x)
    assert all(f"channel {i}:" in d for i in (1, 2, 3))
    many = describe_series(np.random.default_rng(1).normal(size=(20, 64)))
    assert many.startswith("20 channels of 64 points:") and "channel 1:" not in many
    assert len(many) < 300
    with pytest.raises(TextError, match="at least 2"):
        describe_series(np.zeros(1))
    with pytest.raises(TextError, match="NaN"):
        describe_series(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(TextError, match="3 names"):
        describe_series(x, channel_names=["a"])


def test_describe_batch_scale_and_shared_facts():
    t = np.arange(100)
    x = np.stack([np.stack([a * np.sin(2 * np.pi * t / 10)] * 2) for a in (0.1, 1.0, 10.0)])
    out = describe_batch(x)
    assert len(out) == 3 and all(s.startswith("2 channels of 100 points, all flat") for s in out)
    assert "very low amplitude" in out[0] and "moderate amplitude" in out[1]
    assert "very high amplitude" in out[2]
    assert "all period ~10 points (10 cycles)" in out[0]
    assert describe_batch(x, scale=None)[2].count("very high") == 2
    np.testing.assert_allclose(amplitude_scale(x), [np.sqrt(0.5)] * 2)
    assert describe_batch(torch.from_numpy(x[:, 0]).float()) == describe_batch(x[:, :1])
    with pytest.raises(TextError, match="positive"):
        describe_batch(x, scale=[1.0, -1.0])
