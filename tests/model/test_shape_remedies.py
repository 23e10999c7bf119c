"""vqfast's remedies for degenerate shape tokens (docs/shape-collapse.md): each is off by default,
where it leaves the authors' computation bit for bit, and each does what it says when on."""

import pytest
import torch

from vqfast import VQShape, VQShapeText
from vqfast.model import DEFAULTS, LOSS_WEIGHTS
from vqfast.model.vqshape import WINDOW_VAR_EPS, measure_windows
from vqfast.training.codebook import CodebookCare, kmeans
from vqfast.training.presets import TrainSettings, get_preset

TINY = dict(
    dim_embedding=32, patch_size=8, num_patch=64, num_enc_head=2, num_enc_layer=1,
    num_tokenizer_head=2, num_tokenizer_layer=1, num_dec_head=2, num_dec_layer=1, num_token=8,
    len_s=32, len_input=512, num_code=16, dim_code=8,
)


def series(B=6, T=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, generator=g).cumsum(-1) + 3 * torch.randn(B, 1, generator=g)


def build(**change):
    torch.manual_seed(0)
    return VQShape(**(TINY | change)).eval()


def test_every_remedy_is_off_by_default():
    assert DEFAULTS["max_shape_len"] is None and DEFAULTS["shape_source"] == "tokens"
    assert DEFAULTS["window_layout"] == "learned"
    assert LOSS_WEIGHTS["lambda_s_norm"] == 0.0
    assert TrainSettings().kmeans_init_step == 0 and TrainSettings().dead_code_every == 0
    for name in ("paper", "paper-256", "default-authors"):
        p = get_preset(name)
        assert p.model["shape_source"] == "tokens" and p.model["max_shape_len"] is None
        assert p.model["window_layout"] == "learned"
        assert p.loss_weights["lambda_s_norm"] == 0.0
        assert p.train.kmeans_init_step == 0 and p.train.dead_code_every == 0


def test_defaults_equal_the_options_set_off_explicitly():
    x = series()
    plain = build()
    off = build(max_shape_len=None, shape_source="tokens", window_layout="learned")
    assert not hasattr(plain, "window_encoder")
    assert list(plain.state_dict()) == list(off.state_dict())
    a, la = plain(x, mode="evaluate")
    b, lb = off(x, mode="evaluate")
    assert set(la) == {"ts_loss", "vq_loss", "shape_loss", "dist_loss"}
    for k in la:
        assert torch.equal(la[k], lb[k])
    assert torch.equal(a["s_pred"], b["s_pred"]) and torch.equal(a["x_pred"], b["x_pred"])


def test_max_shape_len_caps_every_window():
    x = series()
    capped = build(max_shape_len=0.1)
    out, _ = capped(x, mode="evaluate")
    assert out["l_pred"].max() <= 0.1 + 1e-6
    assert (out["t_pred"] + out["l_pred"]).max() <= 1 + 1 / 64 + 1e-6
    wide, _ = build()(x, mode="evaluate")
    assert torch.equal(out["t_pred"], wide["t_pred"])  # only l changes
    with pytest.raises(ValueError, match="max_shape_len"):
        build(max_shape_len=1.5)


def test_measure_windows_gives_offset_scale_and_zscored_shape():
    mean, std = torch.tensor([[2.0]]), torch.tensor([[4.0]])
    s = 2.0 + 4.0 * (0.5 + 3.0 * torch.linspace(-1, 1, 32)).reshape(1, 1, 32)
    shape, m, sd = measure_windows(s, mean, std)
    ramp = 3.0 * torch.linspace(-1, 1, 32)
    assert torch.allclose(m, torch.tensor(0.5)) and torch.allclose(sd, ramp.std(unbiased=False))
    expected = ramp / (ramp.var(unbiased=False) + WINDOW_VAR_EPS).sqrt()
    assert torch.allclose(shape.flatten(), expected, atol=1e-6)


def test_window_source_measures_mu_and_sigma_on_the_window():
    x = series()
    model = build(shape_source="window")
    out, losses = model(x, mode="evaluate")
    mean = x.mean(-1, keepdim=True)
    std = (x.var(-1, keepdim=True) + 1e-5).sqrt()
    _, m, sd = measure_windows(out["s_true"], mean, std)
    assert torch.allclose(out["mu_pred"], m, atol=1e-5)
    assert torch.allclose(out["sigma_pred"], sd, atol=1e-5)
    # the heads the window replaces take no part in training
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.split(".")[1] in ("z_head", "mu_head", "sigma_head") for n in frozen)
    model.train()
    _, losses = model(x, mode="pretrain")
    model.total_loss(losses).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.window_encoder.layers[0].weight.grad.abs().sum() > 0


def test_window_source_keeps_the_authors_initial_weights_for_their_modules():
    plain, window = build(), build(shape_source="window")
    for name, value in plain.state_dict().items():
        assert torch.equal(value, window.state_dict()[name]), name


def test_window_model_saves_and_loads(tmp_path):
    model = build(shape_source="window", max_shape_len=0.2)
    model.save_pretrained(tmp_path / "m")
    loaded = VQShape.from_pretrained(tmp_path / "m")
    x = series(3)
    a, b = model(x, mode="tokenize")[0], loaded(x, mode="tokenize")[0]
    assert torch.equal(a["token"], b["token"])
    assert not loaded.attr_decoder.mu_head.layers[0].weight.requires_grad


GRID = dict(shape_source="window", max_shape_len=0.2, window_layout="grid")


def test_grid_layout_places_evenly_spaced_windows_from_start_to_end():
    x = series()
    model = build(**GRID)
    out, _ = model(x, mode="evaluate")
    t, l = out["t_pred"], out["l_pred"]
    assert t.shape == l.shape == (x.shape[0], TINY["num_token"], 1)
    assert torch.allclose(l, torch.tensor(0.2))
    assert t[:, 0].abs().max() < 1e-7 and torch.allclose(t[:, -1] + l[:, -1], torch.tensor(1.0))
    gaps = t[:, 1:] - t[:, :-1]
    assert torch.allclose(gaps, torch.tensor(0.8 / (TINY["num_token"] - 1)))
    assert torch.equal(t[0], t[-1])  # the same windows for every series


def test_grid_windows_of_one_token_are_centred():
    from vqfast.model.functional import grid_windows

    t, l = grid_windows(2, 1, 0.25, torch.zeros(1, dtype=torch.float64))
    assert t.dtype == torch.float64 and t.shape == (2, 1, 1)
    assert torch.allclose(t, torch.tensor(0.375, dtype=torch.float64))
    assert torch.allclose(l, torch.tensor(0.25, dtype=torch.float64))


def test_grid_layout_trains_without_the_token_embeddings():
    model = build(**GRID).train()
    _, losses = model(series(), mode="pretrain")
    model.total_loss(losses).backward()
    for name, p in model.named_parameters():
        unused = name.split(".")[0] in ("encoder", "tokenizer", "attr_decoder")
        assert p.requires_grad is not unused, name
        if p.requires_grad:
            assert p.grad is not None, name
    assert model.window_encoder.layers[0].weight.grad.abs().sum() > 0


def test_grid_layout_needs_measured_windows_of_a_stated_length():
    with pytest.raises(ValueError, match="window_layout='grid'.*shape_source='window'"):
        build(window_layout="grid", max_shape_len=0.2)
    with pytest.raises(ValueError, match="max_shape_len"):
        build(window_layout="grid", shape_source="window")
    with pytest.raises(ValueError, match="window_layout must be one of"):
        build(window_layout="random")


def test_grid_model_saves_and_loads(tmp_path):
    model = build(**GRID)
    model.save_pretrained(tmp_path / "m")
    loaded = VQShape.from_pretrained(tmp_path / "m")
    assert loaded.config["window_layout"] == "grid"
    x = series(3)
    a, b = model(x, mode="tokenize")[0], loaded(x, mode="tokenize")[0]
    assert torch.equal(a["token"], b["token"])


def test_text_model_refuses_the_window_source():
    with pytest.raises(ValueError, match="shape_source='tokens'"):
        VQShapeText(**TINY, shape_source="window")


def test_normalized_shape_loss_only_when_weighted():
    x = series()
    model = build()
    _, losses = model(x, mode="evaluate")
    assert "shape_norm_loss" not in losses
    model.loss_weights["lambda_s_norm"] = 2.0
    out, losses = model(x, mode="evaluate")
    mean = x.mean(-1, keepdim=True)
    std = (x.var(-1, keepdim=True) + 1e-5).sqrt()
    target = measure_windows(out["s_true"], mean, std)[0]
    shape = model.shape_decoder(out["code"])
    expected = (shape - target).pow(2).mean()
    assert torch.allclose(losses["shape_norm_loss"], expected.reshape(1), rtol=1e-5)
    authors = build().total_loss(losses)  # lambda_s_norm 0: the authors' four terms
    assert torch.allclose(model.total_loss(losses), authors + 2.0 * expected)


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centers])
    found = kmeans(x, 3, generator=torch.Generator().manual_seed(1))
    assert torch.cdist(found, centers).min(0).values.max() < 0.2
    assert kmeans(x[:2], 3).shape == (3, 2)  # fewer rows than centroids
    with pytest.raises(ValueError, match="non-empty"):
        kmeans(torch.zeros(0, 2), 3)


def test_codebook_care_initializes_then_restarts_dead_codes():
    codebook = torch.nn.Embedding(8, 2)
    codebook.weight.data.uniform_(-1 / 8, 1 / 8)
    opt = torch.optim.AdamW(codebook.parameters())
    codebook.weight.sum().backward()
    opt.step()
    care = CodebookCare(kmeans_init_step=2, dead_code_every=2, seed=0)
    g = torch.Generator().manual_seed(0)
    for step in (1, 2):
        z = 5 * torch.randn(1, 64, 2, generator=g)
        care.observe(z, torch.zeros(1, 64, dtype=torch.long), 8)
        care.after_step(step, codebook, opt)
    assert codebook.weight.abs().max() > 1  # moved onto the latents' scale
    assert torch.equal(opt.state[codebook.weight]["exp_avg"], torch.zeros(8, 2))
    before = codebook.weight.detach().clone()
    care.observe(5 * torch.randn(1, 64, 2, generator=g), torch.zeros(1, 64, dtype=torch.long), 8)
    care.after_step(3, codebook, opt)  # not a restart step
    care.observe(5 * torch.randn(1, 64, 2, generator=g), torch.zeros(1, 64, dtype=torch.long), 8)
    care.after_step(4, codebook, opt)
    changed = (codebook.weight != before).any(1)
    assert not changed[0] and changed[1:].all()  # code 0 was used, the 7 others were dead
    assert care.events[-1] == {"step": 4, "restarted": 7}
    resumed = CodebookCare(2, 2)
    resumed.load(care.state())
    assert len(resumed.buffer) == len(care.buffer) and resumed.events == care.events
    with pytest.raises(ValueError, match="dead_code_every"):
        CodebookCare(0, -1)


def test_window_source_refuses_modes_where_part_of_the_series_is_unknown():
    model = build(shape_source="window")
    x = series(2)
    with pytest.raises(ValueError, match="part of the series is unknown"):
        model(x, mode="forecast", num_input_patch=32)
    with pytest.raises(ValueError, match="shape_source='tokens'"):
        model(x, mode="imputation", mask=torch.zeros_like(x))


def test_codebook_care_leaves_a_frozen_codebook_alone():
    codebook = torch.nn.Embedding(8, 2).requires_grad_(False)
    before = codebook.weight.clone()
    care = CodebookCare(kmeans_init_step=1, dead_code_every=1)
    care.observe(5 * torch.randn(1, 64, 2), torch.zeros(1, 64, dtype=torch.long), 8)
    care.after_step(1, codebook)
    care.after_step(2, codebook)
    assert torch.equal(codebook.weight, before)


def test_a_text_run_of_the_default_preset_uses_the_token_heads_and_learned_windows(capsys):
    from vqfast.training.plans import TextPlan

    preset = get_preset("default")
    assert preset.model["window_layout"] == "grid"
    model, _ = TextPlan(source="label").build_model(preset)
    assert isinstance(model, VQShapeText)
    assert model.config["shape_source"] == "tokens" and model.config["window_layout"] == "learned"
    said = capsys.readouterr().out
    assert "shape_source='window', window_layout='grid'" in said and "replaced" in said
