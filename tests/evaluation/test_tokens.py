import math

import pytest
import torch

from vqfast import VQShape
from vqfast.evaluation.tokens import degenerate_warnings, token_metrics, token_metrics_on

TINY = dict(
    dim_embedding=16, patch_size=8, num_patch=8, num_enc_head=2, num_enc_layer=1,
    num_tokenizer_head=2, num_tokenizer_layer=1, num_dec_head=2, num_dec_layer=1, num_token=4,
    len_s=16, len_input=64, num_code=8, dim_code=4,
)


def outputs(B=3, N=4, S=16, T=32, seed=0, **override):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, generator=g)
    s = torch.randn(B, N, S, generator=g) + torch.randn(B, N, 1, generator=g)
    out = {
        "x_true": x, "x_pred": x.clone(), "s_true": s, "s_pred": s.clone(),
        "code_idx": torch.zeros(B, N, dtype=torch.long),
        "t_pred": torch.rand(B, N, 1, generator=g), "l_pred": torch.rand(B, N, 1, generator=g),
        "mu_pred": torch.zeros(B, N, 1), "sigma_pred": torch.rand(B, N, 1, generator=g),
    }
    return out | override


def test_perfect_prediction_gives_r2_one():
    m = token_metrics(outputs(), num_code=8)
    assert m["x_r2"] == pytest.approx(1.0)
    assert m["shape_r2"] == pytest.approx(1.0)


def test_row_mean_prediction_gives_r2_zero():
    o = outputs()
    o["s_pred"] = o["s_true"].mean(-1, keepdim=True).expand_as(o["s_true"])
    o["x_pred"] = o["x_true"].mean(-1, keepdim=True).expand_as(o["x_true"])
    m = token_metrics(o, num_code=8)
    assert m["shape_r2"] == pytest.approx(0.0, abs=1e-12)
    assert m["x_r2"] == pytest.approx(0.0, abs=1e-12)


def test_flat_prediction_off_the_mean_is_negative():
    o = outputs()
    o["s_pred"] = o["s_true"].mean(-1, keepdim=True).expand_as(o["s_true"]) + 0.5
    o["x_pred"] = torch.zeros_like(o["x_true"]) + o["x_true"].mean() + 1.0
    m = token_metrics(o, num_code=8)
    assert m["shape_r2"] < 0
    assert m["x_r2"] < 0


def test_shape_r2_matches_the_formula_over_all_tokens():
    o = outputs(seed=3)
    o["s_pred"] = o["s_true"] + 0.3 * torch.randn(o["s_true"].shape)
    s, p = o["s_true"].double(), o["s_pred"].double()
    expected = 1 - ((p - s) ** 2).mean() / ((s - s.mean(-1, keepdim=True)) ** 2).mean()
    assert token_metrics(o, num_code=8)["shape_r2"] == pytest.approx(float(expected))


def test_usage_and_perplexity_of_a_known_histogram():
    # codes 0, 1 twice each, code 2 four times: p = (1/4, 1/4, 1/2) of 8 codes.
    idx = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 2]])
    m = token_metrics(outputs(B=2, code_idx=idx), num_code=8)
    entropy = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert m["codes_used"] == 3 and m["num_code"] == 8 and m["tokens"] == 8
    assert m["perplexity"] == pytest.approx(math.exp(entropy))


def test_quantiles_of_sigma_and_l():
    sigma = torch.arange(1, 102, dtype=torch.float).reshape(1, 101, 1)
    o = outputs(B=1, N=101, sigma_pred=sigma, l_pred=sigma / 1000,
                code_idx=torch.zeros(1, 101, dtype=torch.long))
    m = token_metrics(o, num_code=8)
    assert m["sigma"] == {"p10": pytest.approx(11.0), "median": pytest.approx(51.0),
                          "p90": pytest.approx(91.0)}
    assert m["l"]["median"] == pytest.approx(0.051)


def test_no_s_true_gives_no_shape_r2():
    m = token_metrics(outputs(s_true=None), num_code=8)
    assert m["shape_r2"] is None and m["x_r2"] == pytest.approx(1.0)


@pytest.mark.parametrize("bad, message", [
    (dict(x_pred=None), "lack"),
    (dict(x_pred=torch.zeros(3, 31)), "differ in shape"),
    (dict(code_idx=torch.full((3, 4), 9)), "outside"),
])
def test_bad_outputs_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        token_metrics(outputs(**bad), num_code=8)


def test_bad_num_code_is_named():
    with pytest.raises(ValueError, match="num_code"):
        token_metrics(outputs(), num_code=0)


def test_on_a_model_aggregates_exactly_over_batches():
    torch.manual_seed(0)
    model = VQShape(**TINY).train()
    x = torch.randn(10, 2, 64)
    whole = token_metrics_on(model, x, batch_size=64)
    batched = token_metrics_on(model, x, batch_size=3)
    assert model.training, "token_metrics_on must restore the training mode"
    assert whole["series"] == batched["series"] == 20
    for key in ("x_r2", "shape_r2", "perplexity"):
        assert batched[key] == pytest.approx(whole[key], rel=1e-5)
    assert batched["codes_used"] == whole["codes_used"]
    assert batched["sigma"] == pytest.approx(whole["sigma"], rel=1e-5)
    # The same as token_metrics on one evaluate pass over every series.
    model.eval()
    with torch.no_grad():
        out, _ = model(x.reshape(20, 64), mode="evaluate")
    direct = token_metrics(out, model.num_code)
    assert whole["shape_r2"] == pytest.approx(direct["shape_r2"], rel=1e-5)


def test_on_a_model_rejects_bad_input():
    model = VQShape(**TINY)
    with pytest.raises(ValueError, match="non-empty"):
        token_metrics_on(model, torch.zeros(4))
    with pytest.raises(ValueError, match="batch_size"):
        token_metrics_on(model, torch.zeros(2, 64), batch_size=0)


HEALTHY = {"shape_r2": 0.6, "sigma": {"median": 0.8}, "codes_used": 40}


def test_healthy_tokens_give_no_warning():
    assert degenerate_warnings(HEALTHY, distinct_shapes=20) == []
    assert degenerate_warnings(HEALTHY) == []


@pytest.mark.parametrize("change, distinct, words", [
    (dict(shape_r2=-0.11), 20, "shape R² is -0.110"),
    (dict(shape_r2=0.0), 20, "shape R² is 0.000"),
    (dict(sigma={"median": 0.0024}), 20, "median sigma is 0.0024"),
    ({}, 3, "only 3 distinct shapes among the 40 codes used"),
])
def test_degenerate_tokens_are_named(change, distinct, words):
    found = degenerate_warnings(HEALTHY | change, distinct_shapes=distinct)
    assert len(found) == 1 and words in found[0]


def test_the_issue_run_gets_all_three_warnings():
    issue = {"shape_r2": -0.11, "sigma": {"median": 0.0024}, "codes_used": 58}
    assert len(degenerate_warnings(issue, distinct_shapes=3)) == 3


def test_a_small_measured_sigma_is_named_as_flat_windows():
    (found,) = degenerate_warnings(HEALTHY | {"sigma": {"median": 0.01}}, sigma_measured=True)
    assert "near-flat stretches" in found and "flat lines" not in found
