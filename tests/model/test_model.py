"""vqfast.VQShape: modes and return structures, other configurations, validation, persistence."""

import inspect
import json

import numpy as np
import pytest
import torch

import vqfast
from vqfast import VQShape
from vqfast.inputs import SeriesError
from vqfast.model import VQShapeConfig

TINY = dict(
    dim_embedding=32, patch_size=8, num_patch=64, num_enc_head=2, num_enc_layer=1,
    num_tokenizer_head=2, num_tokenizer_layer=1, num_dec_head=2, num_dec_layer=1, num_token=8,
    len_s=32, len_input=512, s_smooth_factor=1, num_code=16, dim_code=8,
    lambda_commit=0.25, lambda_entropy=0.1, entropy_gamma=1.0,
)
# Another configuration: other sizes, smoothing above 1, other loss weights.
OTHER = dict(
    dim_embedding=48, patch_size=16, num_patch=32, num_enc_head=3, num_enc_layer=2,
    num_tokenizer_head=4, num_tokenizer_layer=1, num_dec_head=2, num_dec_layer=1, num_token=16,
    len_s=48, len_input=256, s_smooth_factor=5, num_code=40, dim_code=6,
    lambda_commit=1.0, lambda_entropy=0.5, entropy_gamma=0.7, mask_ratio=0.4,
)
OUTPUT_KEYS = {"x_true", "x_pred", "s_true", "s_pred", "code", "code_idx", "t_pred", "l_pred",
               "mu_pred", "sigma_pred"}
LOSS_KEYS = {"ts_loss", "vq_loss", "shape_loss", "dist_loss"}


def series(B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, generator=g).cumsum(-1) + 3 * torch.randn(B, 1, generator=g)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return VQShape(**TINY).eval()


def test_modes_return_the_authors_structures(model):
    x = series(5, 512)
    (outputs, losses) = model(x, mode="evaluate")
    assert set(outputs) == OUTPUT_KEYS and set(losses) == LOSS_KEYS
    assert all(v.shape == (1,) for v in losses.values())
    assert outputs["x_pred"].shape == (5, 512)
    assert outputs["s_pred"].shape == outputs["s_true"].shape == (5, 8, 32)
    assert outputs["code"].shape == (5, 8, 8) and outputs["code_idx"].dtype == torch.int64
    for key in ("t_pred", "l_pred", "mu_pred", "sigma_pred"):
        assert outputs[key].shape == (5, 8, 1)
    assert bool((outputs["t_pred"] >= 0).all() and (outputs["t_pred"] + outputs["l_pred"] <= 1 +
                                                         1 / 64).all())

    rep, outputs = model(x, mode="tokenize")
    assert set(rep) == {"token", "histogram"}
    assert rep["token"].shape == (5, 8, 12) and rep["histogram"].shape == (5, 16)
    assert outputs["s_true"] is None
    assert torch.equal(rep["histogram"].sum(1), torch.full((5,), 8))

    model.train()
    outputs, losses = model(x, mode="pretrain")
    assert set(losses) == LOSS_KEYS and outputs["x_pred"].shape == (5, 512)


def test_pretrain_drops_patches_and_is_seeded(model):
    model.train()
    x = series(3, 512)
    torch.manual_seed(1)
    a = model(x, mode="pretrain")[1]
    torch.manual_seed(1)
    b = model(x, mode="pretrain")[1]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_forecast_and_imputation(model):
    x = series(4, 512)
    out = model(x, mode="forecast", num_input_patch=48)
    assert out["x_pred"].shape == (4, 512)
    losses = model(x, mode="forecast", num_input_patch=48, finetune=True)
    assert set(losses) == LOSS_KEYS
    with pytest.raises(ValueError, match="num_input_patch"):
        model(x, mode="forecast", num_input_patch=0)

    mask = torch.zeros(4, 512)
    mask[:, 100:164] = 1
    x_missing = x.clone()
    x_missing[mask.bool()] = float("nan")  # missing values may hold anything
    x_pred, out = model(x_missing, mode="imputation", mask=mask)
    assert x_pred.shape == (4, 512) and torch.isfinite(x_pred).all()
    # a sample's imputation does not depend on the rest of its batch
    x_pred_alone, _ = model(x_missing[:1], mode="imputation", mask=mask[:1])
    torch.testing.assert_close(x_pred_alone, x_pred[:1], rtol=1e-5, atol=1e-5)
    x_pred, losses = model(x, mode="imputation", mask=mask, finetune=True)
    assert set(losses) == LOSS_KEYS
    with pytest.raises(ValueError, match="mask"):
        model(x, mode="imputation")


def test_unknown_mode(model):
    with pytest.raises(ValueError, match="unknown mode 'fit'"):
        model(series(2, 512), mode="fit")


@pytest.mark.parametrize("config", [TINY, OTHER], ids=["tiny", "other"])
def test_compiled_ops_give_the_reference_numbers(config):
    """The model with vqfast's compiled ops equals the pure-torch reference path (which is the
    authors' formulation), outputs and every gradient, for configurations beyond the fixture's."""
    torch.manual_seed(0)
    base = VQShape(**config).eval()
    x = series(6, config["len_input"])
    results = {}
    for backend in ("reference", "auto"):
        model = VQShape(**config).eval()
        model.load_state_dict(base.state_dict())
        model.backend = backend
        outputs, losses = model(x, mode="evaluate")
        model.total_loss(losses).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results[backend] = (outputs, losses, grads)
    ref, ours = results["reference"], results["auto"]
    assert torch.equal(ours[0]["code_idx"], ref[0]["code_idx"])
    for key in ("x_pred", "s_pred", "s_true", "code"):
        torch.testing.assert_close(ours[0][key], ref[0][key], rtol=1e-5, atol=1e-6)
    for key in LOSS_KEYS:
        torch.testing.assert_close(ours[1][key], ref[1][key], rtol=1e-5, atol=1e-7)
    scale = max(g.norm().item() for g in ref[2].values())
    for name, grad in ref[2].items():
        assert (ours[2][name] - grad).norm().item() <= 1e-5 * max(grad.norm().item(), scale * 1e-3)


def test_constant_and_extreme_series_give_finite_outputs(model):
    x = torch.stack([torch.zeros(512), torch.full((512,), 7.0), torch.linspace(-1e4, 1e4, 512)])
    outputs, losses = model(x, mode="evaluate")
    for key in ("x_pred", "s_pred", "s_true", "code"):
        assert torch.isfinite(outputs[key]).all(), key
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_numpy_input_and_float64_input_are_accepted(model):
    x = series(3, 512)
    a = model(x, mode="tokenize")[0]["histogram"]
    b = model(x.numpy(), mode="tokenize")[0]["histogram"]
    c = model(x.double(), mode="tokenize")[0]["histogram"]
    assert torch.equal(a, b) and torch.equal(a, c)


def test_bf16_autocast_runs(model):
    x = series(4, 512)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, losses = model(x, mode="pretrain")
        loss = model.total_loss(losses)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "x,error,match",
    [
        (torch.randn(2, 3, 512), SeriesError, r"prepare_series"),
        (torch.randn(2, 100), SeriesError, r"length 512.*prepare_series"),
        (torch.randn(0, 512), SeriesError, "empty"),
        (torch.ones(2, 512, dtype=torch.int64), TypeError, "floating point"),
        (torch.ones(2, 512, dtype=torch.bool), TypeError, "floating point"),
        ([1.0, 2.0], TypeError, "torch.Tensor or numpy"),
    ],
)
def test_invalid_input_gets_a_clear_error(model, x, error, match):
    with pytest.raises(error, match=match):
        model(x, mode="tokenize")


def test_nan_and_inf_are_reported_with_sample_indices(model):
    x = series(6, 512)
    x[1, 10] = float("nan")
    x[4, 0] = float("inf")
    with pytest.raises(SeriesError, match=r"samples \[1, 4\]"):
        model(x, mode="evaluate")


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(dim_embedding=256, num_enc_head=6), "not divisible by num_enc_head=6"),
        (dict(len_s=40), "multiple of 16"),
        (dict(num_token=7), "divisible by num_token"),
        (dict(s_smooth_factor=4), "odd"),
        (dict(codebook_type="vqtorch"), "not supported"),
        (dict(mask_ratio=1.0), "mask_ratio"),
        (dict(num_patch=48), "more than num_patch"),
    ],
)
def test_invalid_configuration_gets_a_clear_error(change, match):
    with pytest.raises(ValueError, match=match):
        VQShape(**(TINY | change))


def test_default_configuration_is_the_authors_pretraining_script():
    assert vqfast.DEFAULTS["dim_embedding"] == 512 and vqfast.DEFAULTS["num_code"] == 512
    model = VQShape()
    assert model.config == vqfast.DEFAULTS
    assert sum(p.numel() for p in model.parameters()) > 1e7


def test_the_config_dataclass_is_the_one_source_of_the_keywords():
    parameters = inspect.signature(VQShape).parameters
    assert [k for k in parameters if k != "backend"] == list(vqfast.DEFAULTS)
    assert all(parameters[k].default == v for k, v in vqfast.DEFAULTS.items())
    assert VQShape(**TINY).config == VQShapeConfig(**TINY).as_dict()
    positional = VQShape(*VQShapeConfig(**TINY).as_dict().values())
    assert positional.config == VQShape(**TINY).config


def test_save_pretrained_round_trip(model, tmp_path):
    model.loss_weights["lambda_dist"] = 0.5
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["model_type"] == "VQShape" and meta["config"] == model.config
    loaded = VQShape.from_pretrained(tmp_path / "m")
    assert not loaded.training and loaded.loss_weights["lambda_dist"] == 0.5
    x = series(3, 512)
    a, b = model(x, mode="tokenize")[0], loaded(x, mode="tokenize")[0]
    assert torch.equal(a["token"], b["token"]) and torch.equal(a["histogram"], b["histogram"])
    assert not list((tmp_path / "m").glob(".*tmp*"))  # no temporary files left behind


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        VQShape.from_pretrained(tmp_path)


def test_backend_setting_is_validated(model):
    with pytest.raises(ValueError, match="backend"):
        model.backend = "cuda"


def test_numpy_prepare_and_tokenize_end_to_end(model):
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((3, n)).cumsum(-1) for n in (40, 77, 120)]
    x = vqfast.prepare_series(data, length=512)
    rep, _ = model(x, mode="tokenize")
    assert rep["histogram"].view(3, 3, 16).shape == (3, 3, 16)
