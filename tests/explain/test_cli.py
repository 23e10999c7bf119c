import json

import numpy as np
import pytest
import torch

from vqfast import VQShape
from vqfast.data import load_dataset
from vqfast.evaluation.probe import ProbeSettings
from vqfast.explain import explain_series, report_section
from vqfast.explain.__main__ import main
from vqfast.explain.run import one_per_class
from vqfast.explain.series import merge_spans
from vqfast.explain.shapes import decode_codes

TINY = dict(dim_embedding=16, patch_size=8, num_patch=8, len_input=64, num_enc_head=2,
            num_enc_layer=1, num_tokenizer_head=2, num_tokenizer_layer=1, num_dec_head=2,
            num_dec_layer=1, num_token=4, num_code=8, len_s=16)
QUICK = ProbeSettings(weight_decays=(0.0, 0.1), dropouts=(0.0,), epochs=10, folds=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = VQShape(**TINY).eval()
    folder = model.save_pretrained(tmp_path_factory.mktemp("m") / "model")
    return model, folder


@pytest.fixture(scope="module")
def motions():
    return load_dataset("BasicMotions", length=64)


def test_cli_end_to_end(tiny, tmp_path, capsys):
    _, folder = tiny
    out = tmp_path / "out"
    assert main(["--model", str(folder), "--dataset", "BasicMotions", "--samples", "39",
                 "--output-dir", str(out), "--draws", "2"]) == 0
    result = json.loads((out / "explain.json").read_text())
    assert {"distinct_shapes", "classes", "faithfulness", "samples"} <= set(result)
    assert set(result["faithfulness"]) >= {"attributed_aopc", "random_aopc", "ratio"}
    assert result["distinct_shapes"]["num_codes"] == 8
    assert [s["sample"] for s in result["samples"]] == [39]
    assert [c["name"] for c in result["classes"]] == ["badminton", "running", "standing",
                                                      "walking"]
    assert result["faithfulness"]["tokens_per_sample"] == 6 * 4  # channels x tokens
    for name in result["images"].values():
        assert (out / name).stat().st_size > 1000
    assert {"shapes", "classes", "class_histograms", "faithfulness", "sample_39"} <= \
        set(result["images"])
    assert "deletion test" in capsys.readouterr().out


def test_cli_errors_name_the_problem(tiny, tmp_path, capsys):
    _, folder = tiny
    assert main(["--model", str(tmp_path / "nope"), "--dataset", "BasicMotions",
                 "--output-dir", str(tmp_path)]) == 2
    assert "not a saved model" in capsys.readouterr().err
    assert main(["--model", str(folder), "--dataset", "BasicMotons",
                 "--output-dir", str(tmp_path)]) == 2
    assert "Did you mean" in capsys.readouterr().err
    assert main(["--model", str(folder), "--dataset", "BasicMotions", "--samples", "40",
                 "--output-dir", str(tmp_path)]) == 2
    assert "sample 40 is out of range: the test split has 40 samples" in capsys.readouterr().err
    assert not (tmp_path / "explain.json").exists()


def test_report_section(tiny, motions, tmp_path):
    model, _ = tiny
    section = report_section(model, motions, tmp_path, probe=QUICK, draws=2, samples=[1])
    assert section["num_codes"] == 8 and section["summary"].startswith("8 codes")
    assert [s["sample"] for s in section["samples"]] == [1]
    assert set(section["faithfulness"]) >= {"attributed_aopc", "random_aopc", "ratio"}
    assert all((tmp_path / n).is_file() for n in section["images"].values())
    assert all(n.startswith("explain_") for n in section["images"].values())


@torch.no_grad()
def test_explained_tokens_sit_in_the_series_scale(tiny, motions, probe_factory):
    model, _ = tiny
    probe = probe_factory(torch.randn(6 * 8, 4))
    x = motions.x_test[3]
    e = explain_series(model, probe, x, label=int(motions.y_test[3]), sample=3,
                       class_names=motions.classes)
    assert len(e.tokens) == 6 * 4
    shapes = decode_codes(model)
    mean = x.mean(-1)
    std = (x.var(-1) + 1e-5).sqrt()
    for tok in e.tokens[::5]:
        expect = (shapes[tok.code] * tok.sigma + tok.mu) * std[tok.channel] + mean[tok.channel]
        np.testing.assert_allclose(tok.shape, expect.numpy(), rtol=1e-4, atol=1e-4)
        assert 0 <= tok.t < tok.end <= 1
    assert sum(r["tokens"] for r in e.codes) == 24
    assert f"'{motions.classes[e.predicted]}' with probability {e.probability:.2f}" in e.text
    assert e.codes == sorted(e.codes, key=lambda r: -r["contribution"])
    with pytest.raises(ValueError, match="channels"):
        explain_series(model, probe, x[:2])
    with pytest.raises(ValueError, match=r"\(channels, 64\)"):
        explain_series(model, probe, x[:, :32])


def test_one_per_class_takes_the_first_of_each():
    assert one_per_class(torch.tensor([2, 0, 0, 1, 2])) == [1, 3, 0]


def test_merge_spans():
    assert merge_spans([(0.6, 0.7), (0.1, 0.3), (0.2, 0.4)]) == [[0.1, 0.4], [0.6, 0.7]]
