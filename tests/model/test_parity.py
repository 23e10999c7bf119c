"""vqfast.VQShape against the authors' implementation: their checkpoint, their outputs, their
gradients (tests/fixtures, made with their code; see tests/fixtures/README.md)."""

import pickle
import sys
import types

import pytest
import torch

from vqfast import VQShape
from vqfast.model.checkpoint import official_config

OUTPUT_KEYS = ["code", "t_pred", "l_pred", "mu_pred", "sigma_pred", "x_pred", "s_pred"]
LOSS_KEYS = ["ts_loss", "vq_loss", "shape_loss", "dist_loss"]
BACKENDS = ["auto", "reference"]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def authors_keywords(hparams: dict) -> dict:
    """The constructor call of the authors' Lightning module, written out by hand."""
    return dict(
        len_input=hparams["normalize_length"], dim_embedding=hparams["dim_embedding"],
        patch_size=hparams["patch_size"], num_patch=hparams["num_patch"],
        num_token=hparams["num_token"], num_enc_head=hparams["num_transformer_enc_heads"],
        num_enc_layer=hparams["num_transformer_enc_layers"],
        num_tokenizer_head=hparams["num_tokenizer_heads"],
        num_tokenizer_layer=hparams["num_tokenizer_layers"],
        num_dec_head=hparams["num_transformer_dec_heads"],
        num_dec_layer=hparams["num_transformer_dec_layers"], len_s=hparams["len_s"],
        s_smooth_factor=hparams["s_smooth_factor"], num_code=hparams["num_code"],
        dim_code=hparams["dim_code"], codebook_type=hparams["codebook_type"],
        lambda_commit=hparams["lambda_vq_commit"], lambda_entropy=hparams["lambda_vq_entropy"],
        entropy_gamma=hparams["entropy_gamma"], mask_ratio=hparams["mask_ratio"],
    )


def check_against_fixture(model: VQShape, io: dict) -> None:
    x = io["x"]
    with torch.no_grad():
        rep, out = model(x, mode="tokenize")
    assert torch.equal(out["code_idx"], io["code_idx"])
    assert torch.equal(rep["histogram"], io["histogram"])
    assert rep["histogram"].dtype == torch.int64
    assert rel_err(rep["token"], io["token"]) <= 1e-5
    for key in OUTPUT_KEYS:
        assert rel_err(out[key], io[key]) <= 1e-5, key

    model.zero_grad()
    out, losses = model(x, mode="evaluate")
    assert rel_err(out["s_true"], io["s_true"]) <= 1e-5
    for key in LOSS_KEYS:
        assert losses[key].shape == (1,)
        assert rel_err(losses[key], io[key]) <= 1e-5, key
    total = model.total_loss(losses)
    assert rel_err(total, io["total_loss"]) <= 1e-5
    total.backward()

    grads = {n: p.grad for n, p in model.named_parameters()}
    assert set(grads) == {k[len("grad/"):] for k in io if k.startswith("grad/")}
    scale = max(io[f"grad/{n}"].norm().item() for n in grads)
    for name, grad in grads.items():
        ref = io[f"grad/{name}"]
        if ref.norm().item() > 1e-6 * scale:
            assert rel_err(grad, ref) <= 1e-5, name
        else:
            # Mathematically zero (the bias of the shape decoder's last conv is removed by the
            # standardization that follows): both values are float32 rounding noise of the machine
            # that computed them, so only their size can be compared.
            assert (grad - ref).norm().item() <= 1e-6 * scale, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_official_checkpoint_reproduces_outputs_losses_and_gradients(ckpt_path, io, backend):
    model = VQShape.from_official_checkpoint(ckpt_path)
    model.backend = backend
    assert not model.training
    check_against_fixture(model, io)


def test_authors_keywords_and_strict_state_dict(ckpt_path, io):
    ckpt = torch.load(ckpt_path, weights_only=True)
    model = VQShape(**authors_keywords(ckpt["hyper_parameters"])).eval()
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state, strict=True)
    model.loss_weights.update(lambda_dist=ckpt["hyper_parameters"]["lambda_dist"])
    check_against_fixture(model, io)


def test_parameter_names_match_the_authors(ckpt_path):
    ckpt = torch.load(ckpt_path, weights_only=True)
    model = VQShape(**authors_keywords(ckpt["hyper_parameters"]))
    expected = {k.removeprefix("model.") for k in ckpt["state_dict"]}
    assert set(model.state_dict()) == expected


def test_older_checkpoint_without_tokenizer_entries(ckpt_path, io, tmp_path):
    ckpt = torch.load(ckpt_path, weights_only=True)
    for key in ("num_tokenizer_heads", "num_tokenizer_layers"):
        del ckpt["hyper_parameters"][key]
    path = tmp_path / "legacy.ckpt"
    torch.save(ckpt, path)
    check_against_fixture(VQShape.from_official_checkpoint(path), io)


def test_checkpoint_with_lightning_attribute_dict_loads_without_lightning(ckpt_path, io, tmp_path):
    # Lightning stores hyper_parameters as its AttributeDict; build one under the same module path,
    # save, then remove the module so the loader must cope without Lightning installed.
    module_name = "lightning.fabric.utilities.data"
    parts = module_name.split(".")
    created = []
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
            created.append(name)
    attribute_dict = type("AttributeDict", (dict,), {"__module__": module_name})
    sys.modules[module_name].AttributeDict = attribute_dict
    try:
        ckpt = torch.load(ckpt_path, weights_only=True)
        ckpt["hyper_parameters"] = attribute_dict(ckpt["hyper_parameters"])
        path = tmp_path / "lightning.ckpt"
        torch.save(ckpt, path)
    finally:
        for name in created:
            del sys.modules[name]
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    check_against_fixture(VQShape.from_official_checkpoint(path), io)


def test_official_config_maps_the_training_script_arguments(ckpt_path):
    hparams = torch.load(ckpt_path, weights_only=True)["hyper_parameters"]
    config, weights = official_config(hparams)
    assert config["len_input"] == 512 and config["num_enc_head"] == 2
    assert config["lambda_commit"] == 0.25 and config["lambda_entropy"] == 0.1
    assert weights == {"lambda_x": 1.0, "lambda_z": 1.0, "lambda_s": 1.0, "lambda_dist": 0.8}
    assert config == authors_keywords(hparams)  # the names derived from VQShapeConfig


def test_unreadable_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        VQShape.from_official_checkpoint(tmp_path / "missing.ckpt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        VQShape.from_official_checkpoint(tmp_path / "other.ckpt")
