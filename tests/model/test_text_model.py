"""vqfast.VQShapeText: exactly VQShape without text, text changes what it should, alignment, and
teacher -> student distillation with a frozen codebook."""

import pytest
import torch

from vqfast import VQShape, VQShapeText
from vqfast.text import TextEmbeddings
from vqfast.training.distill import student_from_teacher, trainable_parameters
from vqfast.training.objectives import DistillObjective, TextBank, TextObjective

TINY = dict(
    dim_embedding=32, patch_size=8, num_patch=64, num_enc_head=2, num_enc_layer=1,
    num_tokenizer_head=2, num_tokenizer_layer=1, num_dec_head=2, num_dec_layer=1, num_token=8,
    len_s=32, len_input=512, s_smooth_factor=1, num_code=16, dim_code=8,
    lambda_commit=0.25, lambda_entropy=0.1,
)


def token_embeddings(batch, length=5, dim=384, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, length, dim, generator=g)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[::2, -2:] = True  # some rows padded
    return TextEmbeddings(tokens, mask, tokens.mean(1))


def test_without_text_it_is_exactly_vqshape(ckpt_path, io):
    plain = VQShape.from_official_checkpoint(ckpt_path)
    text = VQShapeText.from_official_checkpoint(ckpt_path)
    x = io["x"]
    a, b = plain(x, mode="tokenize"), text(x, mode="tokenize")
    for key in a[0]:
        assert torch.equal(a[0][key], b[0][key])
    for key, value in a[1].items():
        if value is not None:
            assert torch.equal(value, b[1][key]), key
    (_, la), (_, lb) = plain(x, mode="evaluate"), text(x, mode="evaluate")
    plain.total_loss(la).backward()
    text.total_loss(lb).backward()
    for key in la:
        assert torch.equal(la[key], lb[key])
    text_params = dict(text.named_parameters())
    for name, p in plain.named_parameters():
        assert torch.equal(p.grad, text_params[name].grad), name
    assert all(p.grad is None for n, p in text.named_parameters() if n.startswith("text_"))


def test_from_vqshape_and_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    plain = VQShape(**TINY)
    model = VQShapeText.from_vqshape(plain, fusion="z_mu_sigma")
    assert model.config["fusion"] == "z_mu_sigma"
    model.save_pretrained(tmp_path)
    loaded = VQShape.from_pretrained(tmp_path)  # the saved class comes back
    assert type(loaded) is VQShapeText and loaded.fusion == "z_mu_sigma"
    x = torch.randn(3, 512).cumsum(-1)
    emb = token_embeddings(3)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x, mode="tokenize", text=emb)[0]["token"],
                           loaded(x, mode="tokenize", text=emb)[0]["token"])


@pytest.mark.parametrize("fusion", ["z", "z_mu_sigma"])
def test_text_changes_only_the_fused_heads_and_every_new_parameter_learns(fusion):
    torch.manual_seed(0)
    model = VQShapeText(**TINY, fusion=fusion).eval()
    x = torch.randn(4, 512).cumsum(-1)
    emb = token_embeddings(4)
    with torch.no_grad():
        _, without = model(x, mode="tokenize", return_latents=True)
        _, with_text = model(x, mode="tokenize", text=emb, return_latents=True)
    assert not torch.equal(without["z_e"], with_text["z_e"])
    for key in ("t_pred", "l_pred"):
        assert torch.equal(without[key], with_text[key]), key
    changed = not torch.equal(without["mu_pred"], with_text["mu_pred"])
    assert changed == (fusion == "z_mu_sigma")

    model.train()
    outputs, losses = model(x, mode="pretrain", text=emb)
    model.total_loss(losses).backward()
    for name, p in model.named_parameters():
        if name.startswith("text_"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_token_keys_let_tokens_attend_to_words_while_a_sentence_key_cannot():
    torch.manual_seed(0)
    x = torch.randn(2, 512).cumsum(-1)
    a, b = token_embeddings(2, seed=1), token_embeddings(2, seed=2)
    same_sentence = TextEmbeddings(b.tokens, b.mask, a.sentence)
    for keys, should_differ in (("tokens", True), ("sentence", False)):
        model = VQShapeText(**TINY, text_keys=keys).eval()
        with torch.no_grad():
            za = model(x, mode="tokenize", text=a, return_latents=True)[1]["z_e"]
            zb = model(x, mode="tokenize", text=same_sentence, return_latents=True)[1]["z_e"]
        assert (not torch.equal(za, zb)) == should_differ, keys


def test_strings_are_encoded_with_the_offline_sentence_encoder():
    torch.manual_seed(0)
    model = VQShapeText(**TINY).eval()
    x = torch.randn(2, 512).cumsum(-1)
    texts = ["a person running", "a person standing still"]
    with torch.no_grad():
        a = model(x, mode="tokenize", text=texts, return_latents=True)[1]["z_e"]
        b = model(x, mode="tokenize", text=model.text_encoder().encode(texts),
                  return_latents=True)[1]["z_e"]
    assert torch.allclose(a, b)


def test_alignment_two_passes_and_loss():
    torch.manual_seed(0)
    model = VQShapeText(**TINY, align_weight=2.0).train()
    x = torch.randn(4, 512).cumsum(-1)
    outputs, losses = model(x, mode="pretrain", text=token_embeddings(4), align=True)
    assert set(losses) == {"ts_loss", "vq_loss", "shape_loss", "dist_loss", "align_loss"}
    assert losses["align_loss"].item() > 0
    total = model.total_loss(losses)
    assert total.item() == pytest.approx(
        VQShape.total_loss(model, losses).item() + 2.0 * losses["align_loss"].item(), rel=1e-6)
    total.backward()
    with pytest.raises(ValueError, match="needs text"):
        model(x, mode="pretrain", align=True)


@pytest.mark.parametrize(
    "text,error,match",
    [
        (["only one"], ValueError, "1 entries for 2 series"),
        (["fine", ""], ValueError, "empty"),
        (torch.randn(2, 100), ValueError, "text_dim=384"),
        (torch.randn(3, 384), ValueError, "3 rows for 2 series"),
        (42, TypeError, "list of strings"),
        (TextEmbeddings(torch.randn(2, 3, 384), torch.ones(2, 3, dtype=torch.bool),
                        torch.randn(2, 384)), ValueError, "no token"),
    ],
)
def test_bad_text_gets_a_clear_error(text, error, match):
    model = VQShapeText(**TINY).eval()
    with pytest.raises(error, match=match):
        model(torch.randn(2, 512), mode="tokenize", text=text)


def test_plain_vqshape_refuses_text():
    with pytest.raises(TypeError, match="VQShapeText"):
        VQShape(**TINY)(torch.randn(2, 512), mode="tokenize", text=["a"] * 2)


class FakeEncoder:
    """Deterministic per-text embeddings (no sentence model needed)."""

    dim = 384

    def encode(self, texts):
        rows = [torch.randn(4, 384, generator=torch.Generator().manual_seed(hash(t) % 2**31))
                for t in texts]
        tokens = torch.stack(rows)
        return TextEmbeddings(tokens, torch.zeros(len(texts), 4, dtype=torch.bool),
                              tokens.mean(1))


def test_text_bank_encodes_each_distinct_text_once():
    texts = ["a", "b", "a", "c", "b", "a"]
    bank = TextBank(texts, FakeEncoder())
    assert bank.texts == ["a", "b", "c"]
    rows = torch.tensor([0, 2, 5])
    emb = bank.for_rows(rows)
    assert torch.equal(emb.tokens[0], emb.tokens[1]) and torch.equal(emb.tokens[0], emb.tokens[2])


def test_distilled_student_keeps_the_teachers_codebook_and_ignores_text():
    torch.manual_seed(0)
    teacher = VQShapeText(**TINY)
    texts = ["a person running", "a person walking"] * 4
    bank = TextBank(texts, FakeEncoder())
    teacher_opt = torch.optim.AdamW(teacher.parameters(), lr=1e-2)
    x = torch.randn(8, 512).cumsum(-1)
    rows = torch.arange(8)
    for _ in range(3):  # a few teacher steps so its codebook is its own
        loss, _ = TextObjective(bank)(teacher, x, rows)
        teacher_opt.zero_grad()
        loss.backward()
        teacher_opt.step()
    teacher.requires_grad_(False)
    codebook = teacher.codebook.embedding.weight.detach().clone()

    student = student_from_teacher(teacher)
    assert not student.codebook.embedding.weight.requires_grad
    opt = torch.optim.AdamW(trainable_parameters(student), lr=1e-2, weight_decay=0.1)
    objective = DistillObjective(teacher, bank, weight=1.0)
    for _ in range(3):
        loss, losses = objective(student, x, rows)
        assert "distill_loss" in losses
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(student.codebook.embedding.weight, codebook)
    assert type(student) is VQShape
    student.eval()
    with torch.no_grad():
        a = student(x, mode="tokenize")[0]
        b = student(x, mode="tokenize")[0]
    assert torch.equal(a["token"], b["token"])
    with pytest.raises(TypeError):
        student(x, mode="tokenize", text=texts)


def test_contrastive_loss_on_constructed_cases():
    from vqfast.model.functional import contrastive_loss

    eye = torch.eye(3, dtype=torch.bool)
    v = torch.eye(3)
    # Matching pairs far apart from the rest: loss -> 0; every pair alike: log B each way.
    assert contrastive_loss(v, v, eye, 0.01).item() == pytest.approx(0.0, abs=1e-6)
    same = torch.ones(3, 4)
    assert contrastive_loss(same[:, :3], same[:, :3], eye, 0.1).item() == pytest.approx(
        torch.log(torch.tensor(3.0)).item(), rel=1e-6)
    # Rows with the same text are positives of each other: two rows matching one text lose
    # nothing for choosing either copy.
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pos = (text[:, None] == text[None]).all(-1)
    series = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert contrastive_loss(series, text, pos, 0.01).item() == pytest.approx(0.0, abs=1e-6)
    # Each series' own text orthogonal to it while another text matches: a large loss.
    assert contrastive_loss(v, v.roll(1, dims=0), eye, 0.01).item() > 10


def test_contrastive_mode_trains_text_free_tokens():
    torch.manual_seed(0)
    model = VQShapeText(**TINY, contrastive_weight=0.5).train()
    x = torch.randn(4, 512).cumsum(-1)
    emb = token_embeddings(4)
    outputs, losses = model(x, mode="pretrain", text=emb, contrastive=True)
    assert set(losses) == {"ts_loss", "vq_loss", "shape_loss", "dist_loss", "contrastive_loss"}
    total = model.total_loss(losses)
    assert total.item() == pytest.approx(
        VQShape.total_loss(model, losses).item() + 0.5 * losses["contrastive_loss"].item(),
        rel=1e-6)
    total.backward()
    # The pooled-token head and the text projection learn; the cross-attention is never used.
    assert model.text_contrast_head.weight.grad.abs().sum() > 0
    assert model.text_project.weight.grad.abs().sum() > 0
    assert all(not p.requires_grad for m in (model.text_attention, model.text_norm)
               for p in m.parameters())
    # Tokens are text-free: the same as the plain VQShape of the same weights, and text at
    # prediction time is refused.
    model.eval()
    plain = VQShape(**TINY)
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith("text_")})
    plain.eval()
    a, _ = model(x, mode="tokenize")
    b, _ = plain(x, mode="tokenize")
    assert torch.equal(a["token"], b["token"])
    with pytest.raises(ValueError, match="only in pre-training"):
        model(x, mode="tokenize", text=emb)
    with pytest.raises(ValueError, match="needs text"):
        model(x, mode="pretrain", contrastive=True)
    with pytest.raises(ValueError, match="contrastive_weight > 0"):
        VQShapeText(**TINY)(x, mode="pretrain", text=emb, contrastive=True)
    with pytest.raises(ValueError, match="contrastive_weight must be"):
        VQShapeText(**TINY, contrastive_weight=-1.0)
