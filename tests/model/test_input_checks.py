"""What the models refuse before computing: series whose normalization would overflow, values
beyond float32, and text embeddings that are non-finite or do not fit the batch."""

import numpy as np
import pytest
import torch

from vqfast import SeriesError, VQShape, VQShapeText, prepare_series
from vqfast.inputs import normalization_limit
from vqfast.text import TextEmbeddings

TINY = dict(dim_embedding=16, patch_size=8, num_patch=8, num_enc_head=2, num_enc_layer=1,
            num_tokenizer_head=2, num_tokenizer_layer=1, num_dec_head=2, num_dec_layer=1,
            num_token=8, len_s=16, len_input=64, num_code=8, dim_code=4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VQShape(**TINY).eval()


def series(batch=3, dtype=torch.float32):
    return torch.randn(batch, 64, generator=torch.Generator().manual_seed(0)).to(dtype)


@pytest.mark.parametrize("mode", ["tokenize", "evaluate"])
@pytest.mark.parametrize("scale,dtype", [(1e20, torch.float32), (1e300, torch.float64)],
                         ids=["fp32-1e20", "fp64-1e300"])
def test_series_too_large_to_normalize_are_named(model, mode, scale, dtype):
    x = series(dtype=dtype)
    x[1] *= scale
    with pytest.raises(SeriesError, match=r"series \[1\] have values too large for float32 "
                                          r"normalization \(max \|x\| = .*e\+(20|300)") as e:
        model(x, mode=mode)
    assert "rescale them" in str(e.value) and "NaN" not in str(e.value)


def squares(row):
    """The sum a variance accumulates, in float32."""
    return ((row - row.mean()) ** 2).sum()


def test_the_limit_is_where_the_normalization_overflows(model):
    limit = normalization_limit(64, torch.float32)
    x = series(2)
    x[0] = torch.where(torch.arange(64) % 2 == 0, 0.9 * limit, -0.9 * limit)
    outputs, losses = model(x, mode="evaluate")  # just inside: every output finite
    assert torch.isfinite(outputs["x_pred"]).all() and torch.isfinite(outputs["s_true"]).all()
    assert torch.isfinite(squares(x[0]))
    x[0] *= 1.2  # just outside: a variance accumulated in float32 (as on a GPU) overflows
    assert not torch.isfinite(squares(x[0]))
    with pytest.raises(SeriesError, match="too large for float32"):
        model(x, mode="evaluate")


def test_a_float64_model_takes_what_float32_cannot(model):
    x = series(2, torch.float64)
    x[0] *= 1e25
    double = VQShape(**TINY).double().eval()
    double.load_state_dict(model.state_dict())
    _, losses = double(x, mode="evaluate")
    assert all(torch.isfinite(v).all() for v in losses.values())
    with pytest.raises(SeriesError, match="float32 normalization") as e:
        model(x, mode="evaluate")
    assert "model.double()" in str(e.value)
    x[0] *= 1e280
    with pytest.raises(SeriesError, match="too large for float64 normalization") as e:
        double(x, mode="evaluate")
    assert "model.double()" not in str(e.value)


@pytest.mark.parametrize("data,match", [
    (np.full((2, 1, 30), 1e300), r"samples \[0, 1\] hold values too large for float32"),
    ([np.ones(20), np.full(10, -1e50)], r"series 1 holds values too large for float32"),
])
def test_prepare_series_names_values_beyond_float32(data, match):
    with pytest.raises(SeriesError, match=match) as e:
        prepare_series(data)
    assert "NaN" not in str(e.value)
    with pytest.raises(SeriesError, match="NaN or Inf"):  # a real NaN still says so
        prepare_series(np.full((2, 1, 30), np.nan))


# ---- VQShapeText: text embeddings are checked like series ------------------------------------

TEXT = TINY | dict(text_dim=6)


def embeddings(batch=3, length=4, dim=6):
    tokens = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[0, -1] = True
    return TextEmbeddings(tokens, mask, tokens.mean(1))


@pytest.fixture(scope="module")
def text_model():
    torch.manual_seed(0)
    return VQShapeText(**TEXT).eval()


@pytest.mark.parametrize("where", ["tokens", "padding", "sentence"])
def test_non_finite_text_embeddings_name_the_rows(text_model, where):
    tokens, mask, sentence = embeddings()
    tokens, sentence = tokens.clone(), sentence.clone()
    if where == "tokens":
        tokens[2, 1, 3] = float("nan")
    elif where == "padding":
        tokens[2, -1] = float("inf")
        mask[2, -1] = True
    else:
        sentence[2, 0] = float("nan")
    text = TextEmbeddings(tokens, mask, sentence)
    with pytest.raises(ValueError, match=r"text embeddings of rows \[2\] hold NaN or Inf"):
        text_model(series(), mode="tokenize", text=text)
    plain = sentence if where == "sentence" else tokens  # (B, d) or (B, L, d) tensors too
    with pytest.raises(ValueError, match=r"rows \[2\] hold NaN or Inf"):
        text_model(series(), mode="tokenize", text=plain)


def test_finite_text_embeddings_give_finite_codes(text_model):
    rep, out = text_model(series(), mode="tokenize", text=embeddings())
    assert torch.isfinite(rep["token"]).all() and out["code_idx"].shape == (3, 8)


@pytest.mark.parametrize("text,error,match", [
    (embeddings(batch=2), ValueError, "2 rows for 3 series"),
    (embeddings(dim=5), ValueError, "text_dim=6"),
    (TextEmbeddings(embeddings().tokens, embeddings().mask.int(), embeddings().sentence),
     ValueError, "bool tensor of shape"),
    (TextEmbeddings(embeddings().tokens, embeddings().mask, embeddings().sentence[:, :5]),
     ValueError, "text_dim=6"),
    (torch.ones(3, 4, 6, dtype=torch.int64), TypeError, "floating-point"),
    (TextEmbeddings(embeddings().tokens, torch.ones(3, 4, dtype=torch.bool),
                    embeddings().sentence), ValueError, r"rows \[0, 1, 2\] have no token"),
])
def test_text_embeddings_that_do_not_fit_are_refused(text_model, text, error, match):
    with pytest.raises(error, match=match):
        text_model(series(), mode="tokenize", text=text)
