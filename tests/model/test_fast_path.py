"""``model.fast = True`` (vqfast.model.fast) against the plain layers it replaces and against the
authors' fixture; the optimizer and compile helpers of vqfast.training.optim."""

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_parity import check_against_fixture

from vqfast import VQShape
from vqfast.model import fast
from vqfast.model.modules import ShapeDecoder, transformer_encoder
from vqfast.training.optim import compile_model, make_optimizer

TINY = dict(dim_embedding=16, num_enc_head=2, num_enc_layer=1, num_tokenizer_head=2,
            num_tokenizer_layer=1, num_dec_head=2, num_dec_layer=1, num_token=8, len_s=16,
            num_code=16, len_input=128, num_patch=16)
LOSS_KEYS = ["ts_loss", "vq_loss", "shape_loss", "dist_loss"]


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def series(batch, length, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, generator=g).cumsum(-1) / length**0.5


def plain_and_fast(train: bool):
    """Two copies of one tiny model: plain layers, and fast."""
    torch.manual_seed(0)
    plain = VQShape(**TINY).train(train)
    quick = copy.deepcopy(plain)
    quick.fast = True
    return plain, quick


def step(model, x, seed):
    """Losses, outputs and parameter gradients of one seeded pre-training step."""
    model.zero_grad()
    torch.manual_seed(seed)
    out, losses = model(x, mode="pretrain")
    model.total_loss(losses).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return out, losses, grads


# ------------------------------------------------------------------ the layers


@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("length", [1, 2, 7])
def test_conv_matches_conv1d(kernel, length):
    conv = nn.Conv1d(6, 5, kernel, padding="same").double()
    x = torch.randn(3, length, 6, dtype=torch.double, requires_grad=True)
    ref = conv(x.transpose(1, 2)).transpose(1, 2)
    got = fast.conv1d_cl(x, conv)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    if kernel > 1:  # kernel 1 is F.linear
        assert torch.autograd.gradcheck(lambda x, w, b: fast._ConvCL.apply(x, w, b),
                                        (x, conv.weight, conv.bias))


def test_one_output_channel_conv_matches_conv1d():
    conv = nn.Conv1d(6, 1, 1).double()
    x = torch.randn(3, 7, 6, dtype=torch.double, requires_grad=True)
    ref = conv(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(fast.conv1d_cl(x, conv), ref, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, w, b: fast._LinearToOne.apply(x, w, b),
                                    (x, conv.weight[:, :, 0], conv.bias))


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("length", [1, 5])
def test_upsample_conv_matches_interpolate_then_conv(scale, length):
    conv = nn.Conv1d(4, 3, 3, padding="same").double()
    x = torch.randn(2, length, 4, dtype=torch.double, requires_grad=True)
    ref = conv(F.interpolate(x.transpose(1, 2), scale_factor=float(scale))).transpose(1, 2)
    got = fast.upsample_conv_cl(x, conv, scale)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, w, b: fast.upsample_conv_cl(
        x, type("C", (), {"weight": w, "bias": b})(), scale), (x, conv.weight, conv.bias))


@pytest.mark.parametrize("smooth", [1, 3])
def test_shape_decoder_forward_and_backward(smooth):
    decoder = ShapeDecoder(4, 32, out_kernel_size=smooth)
    z = torch.randn(3, 5, 4, requires_grad=True)
    ref = decoder(z)
    ref_grads = torch.autograd.grad((ref * torch.linspace(-1, 1, 32)).sum(),
                                    [z, *decoder.parameters()])
    decoder.fast = True
    got = decoder(z)
    grads = torch.autograd.grad((got * torch.linspace(-1, 1, 32)).sum(),
                                [z, *decoder.parameters()])
    assert rel(got, ref) < 1e-5
    names = ["z"] + [n for n, _ in decoder.named_parameters()]
    scale = max(r.norm().item() for r in ref_grads)
    for name, g, r in zip(names, grads, ref_grads):
        if name == "layers.9.bias":  # removed by the standardization: both are rounding noise
            assert (g - r).norm() < 1e-5 * scale
        else:
            assert rel(g, r) < 1e-5, name


def test_transformer_layers_draw_the_same_dropout_as_torch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stack = transformer_encoder(16, 2, 2).train()
    x = torch.randn(4, 6, 16)
    torch.manual_seed(3)
    ref = stack(x)
    after_ref = torch.rand(1)
    torch.manual_seed(3)
    got = fast.encoder(x, stack)
    assert torch.rand(1) == after_ref  # the same number of draws
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ the model


def test_fast_is_off_by_default_and_validated():
    model = VQShape(**TINY)
    assert model.fast is False and not model.shape_decoder.fast
    with pytest.raises(TypeError, match="fast must be True or False"):
        model.fast = "yes"
    model.fast = True
    assert all(part.fast for part in (model.encoder, model.tokenizer, model.decoder,
                                      model.shape_decoder))


def test_same_parameters_and_state_dict_keys():
    torch.manual_seed(0)
    plain = VQShape(**TINY)
    torch.manual_seed(0)
    quick = VQShape(**TINY)
    quick.fast = True
    assert list(plain.state_dict()) == list(quick.state_dict())
    for a, b in zip(plain.state_dict().values(), quick.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_fixture_loads_into_the_fast_model(ckpt_path, io, backend):
    model = VQShape.from_official_checkpoint(ckpt_path)
    model.backend = backend
    model.fast = True
    check_against_fixture(model, io)


def test_training_step_equals_the_plain_layers():
    plain, quick = plain_and_fast(train=True)
    x = series(6, TINY["len_input"])
    out_a, loss_a, grad_a = step(plain, x, seed=5)
    out_b, loss_b, grad_b = step(quick, x, seed=5)
    assert torch.equal(out_a["code_idx"], out_b["code_idx"])
    for key in LOSS_KEYS:
        assert rel(loss_b[key], loss_a[key]) < 1e-5, key
    # float32 sums over every sample in another order: a bias gradient that sums terms of both
    # signs keeps fewer correct digits than the terms themselves. The last convolution's bias is
    # removed by the standardization: its gradient is zero, both values are rounding noise.
    scale = max(g.norm().item() for g in grad_a.values())
    for name, g in grad_a.items():
        noise = 1e-5 * scale if name == "shape_decoder.layers.9.bias" else 1e-6 * scale
        assert (grad_b[name] - g).norm().item() <= max(1e-4 * g.norm().item(), noise), name


def test_training_step_under_bf16_autocast_follows_the_plain_layers():
    """The fast layers' custom backward passes run their products as the forward did (autograd
    leaves autocast for a Function's backward): gradients in the parameters' dtype, losses as
    the plain layers' to bf16 rounding."""
    plain, quick = plain_and_fast(train=True)
    x = series(6, TINY["len_input"])

    def bf16_step(model):  # backward outside autocast, as a training loop calls it
        torch.manual_seed(5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, losses = model(x, mode="pretrain")
            total = model.total_loss(losses)
        total.backward()
        return losses, {n: p.grad.clone() for n, p in model.named_parameters()}

    loss_a, grad_a = bf16_step(plain)
    loss_b, grad_b = bf16_step(quick)
    for key in LOSS_KEYS:
        assert rel(loss_b[key], loss_a[key]) < 5e-2, key
    for name, g in grad_b.items():
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), name
    total = sum(g.norm() ** 2 for g in grad_a.values()) ** 0.5
    diff = sum((grad_b[n] - g).norm() ** 2 for n, g in grad_a.items()) ** 0.5
    assert diff / total < 0.1


def test_padding_falls_back_to_the_plain_layers():
    plain, quick = plain_and_fast(train=False)
    x = series(3, TINY["len_input"])
    mask = torch.zeros_like(x)
    mask[0, :20] = 1
    with torch.no_grad():
        a, _ = plain(x, mode="imputation", mask=mask)
        b, _ = quick(x, mode="imputation", mask=mask)
    assert rel(b, a) < 1e-5


# ------------------------------------------------------------------ optimizer and compile


@pytest.mark.parametrize("implementation", ["fused", "foreach"])
def test_optimizer_equals_the_for_loop_adamw(implementation):
    # The same gradients into both (a model's own gradients would differ by rounding, and Adam
    # turns a zero gradient's rounding noise into full steps).
    torch.manual_seed(0)
    start = [p.detach() for p in VQShape(**TINY).parameters()]
    params_a = [p.clone().requires_grad_() for p in start]
    params_b = [p.detach().clone().requires_grad_() for p in params_a]
    opt_a = torch.optim.AdamW(params_a, lr=1e-2, weight_decay=0.01, foreach=False)
    opt_b = make_optimizer(params_b, lr=1e-2, weight_decay=0.01, implementation=implementation)
    assert opt_b.defaults["fused" if implementation == "fused" else "foreach"]
    for _ in range(5):
        for a, b in zip(params_a, params_b):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        opt_a.step()
        opt_b.step()
    for a, b, s in zip(params_a, params_b, start):
        assert rel(b, a) < 1e-6
        assert rel(a, s) > 1e-4  # they moved


def test_make_optimizer_reads_settings_and_refuses_bad_input():
    from vqfast.training.presets import get_preset

    settings = get_preset("default").train
    opt = make_optimizer(nn.Linear(2, 2).parameters(), settings)
    assert opt.defaults["lr"] == settings.lr and opt.defaults["weight_decay"] == 0.01
    with pytest.raises(ValueError, match="learning rate must be > 0"):
        make_optimizer(nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="no parameters"):
        make_optimizer([], lr=1e-3)
    with pytest.raises(ValueError, match="implementation"):
        make_optimizer(nn.Linear(2, 2).parameters(), lr=1e-3, implementation="apex")


def test_compile_model_traces_once_per_shape():
    import torch._dynamo

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = VQShape(**TINY).train()
    model.fast = True
    compiled = compile_model(model, backend="eager")
    x = series(4, TINY["len_input"])
    compiles = []
    for i in range(3):
        torch.manual_seed(i)
        _, losses = compiled(x, mode="pretrain")
        model.total_loss(losses).backward()
        compiles.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert compiles[0] > 0 and compiles[1:] == compiles[:1] * 2  # compiled on the first step only
    assert compiled.warmup_seconds is not None and compiled.warmup_seconds > 0
    with pytest.raises(TypeError, match="has no 'encoder'"):
        compile_model(nn.Linear(2, 2))
