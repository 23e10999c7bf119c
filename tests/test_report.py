import json
import math

import pytest
import torch
from evaluation.test_tokens import TINY

from vqfast import VQShape
from vqfast import report as report_lib
from vqfast.data.datasets import SeriesData
from vqfast.evaluation import plots
from vqfast.evaluation.probe import ProbeSettings

PROBE = ProbeSettings(seeds=1, epochs=2, folds=2, weight_decays=(0.0,), dropouts=(0.0,))


def toy(test: bool, channels: int = 2, n: int = 12) -> SeriesData:
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 3
    t = torch.linspace(0, 1, 64)
    x = torch.sin(6.3 * (y[:, None, None] + 1) * t) + 0.1 * torch.randn(n, channels, 64,
                                                                         generator=g)
    half = n // 2
    if not test:
        return SeriesData("Toy", x, y, None, None, ["a", "b", "c"])
    return SeriesData("Toy", x[:half], y[:half], x[half:], y[half:], ["a", "b", "c"])


def run_dict(steps: int) -> dict:
    return {"dataset": ["Toy"], "preset": "tiny", "text": None, "config": dict(TINY),
            "num_processes": 1, "device": "cpu", "seed": 0, "steps": steps,
            "series_per_step": 8, "train_seconds": 1.0, "command": "vqfast/train.py --x 1",
            "threads": 1, "resume_overrides": {"max_steps": "4"}}


def trained(data: SeriesData, steps: int = 3):
    torch.manual_seed(0)
    model = VQShape(**TINY)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    rows = data.x_train.reshape(-1, 64)
    history = []
    for step in range(1, steps + 1):
        _, losses = model(rows, mode="pretrain")
        loss = model.total_loss(losses)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({"loss": loss.item(), **{k: v.item() for k, v in losses.items()},
                        "step": step, "lr": 1e-3 * step})
    return model, history


@pytest.fixture(scope="module")
def with_test(tmp_path_factory):
    out = tmp_path_factory.mktemp("with_test")
    model, history = trained(toy(test=True))
    report_lib.finish(model, [toy(test=True)], history, out, run_dict(len(history)), started=0.0,
                      probe=PROBE)
    return out, history


def strict_load(path):
    def refuse(name):
        raise AssertionError(f"{path} holds {name}: not strict JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_report_holds_the_token_metrics(with_test):
    out, _ = with_test
    report = strict_load(out / "report.json")
    assert report["split"] == "test" and report["evaluated_on"] == "Toy"
    tokens = report["tokens"]
    assert -math.inf < tokens["shape_r2"] <= 1 and -math.inf < tokens["x_r2"] <= 1
    assert set(tokens["sigma"]) == set(tokens["l"]) == {"p10", "median", "p90"}
    assert tokens["series"] == 6 * 2 and tokens["tokens"] == 6 * 2 * TINY["num_token"]
    cb = report["codebook"]
    assert 1 <= cb["used"] <= TINY["num_code"] and 1 <= cb["perplexity"] <= cb["used"]
    assert 1 <= cb["distinct_shapes"] <= cb["used"]
    assert isinstance(report["warnings"], list)
    md = (out / "report.md").read_text()
    assert "| x R² | shape R² | sigma | l | codes used | perplexity | distinct shapes |" in md
    for w in report["warnings"]:
        assert w in md


def test_report_records_the_run(with_test):
    out, history = with_test
    report = strict_load(out / "report.json")
    assert len(report["history"]) == len(history)
    for written, logged in zip(report["history"], history):
        assert written == pytest.approx(logged)
    assert [h["lr"] for h in report["history"]] == pytest.approx([1e-3, 2e-3, 3e-3])
    assert report["command"] == "vqfast/train.py --x 1" and report["threads"] == 1
    assert report["resume_overrides"] == {"max_steps": "4"}
    assert "git_commit" in report
    assert report["data"]["Toy"] == {"n_train": 6, "n_test": 6, "channels": 2, "length": 64,
                                      "classes": 3}
    md = (out / "report.md").read_text()
    assert "vqfast/train.py --x 1" in md and "6 train and 6 test series" in md


def test_probe_and_codebook_are_not_duplicated(with_test):
    out, _ = with_test
    report = strict_load(out / "report.json")
    assert "probe" in report and "codebook" in report
    assert report["evaluation"] == {}, "the first dataset's evaluation is at the top level only"


def test_report_draws_its_figures(with_test):
    out, _ = with_test
    report = strict_load(out / "report.json")
    for name in ("loss_curves", "code_usage", "token_attributes", "codebook_shapes",
                 "reconstructions"):
        assert (out / report["images"][name]).stat().st_size > 1000
        assert f"]({report['images'][name]})" in (out / "report.md").read_text()


def test_no_test_split_says_why_there_is_no_probe(tmp_path):
    data = toy(test=False)
    model, history = trained(data, steps=1)
    report = report_lib.finish(model, [data], history, tmp_path, run_dict(1), started=0.0,
                               probe=PROBE, draw=False)
    assert "probe" not in report and "no test split" in report["probe_skipped"]
    assert report["split"] == "train" and report["data"]["Toy"]["n_test"] is None
    assert "No linear probe: Toy has no test split" in (tmp_path / "report.md").read_text()


def test_non_finite_values_become_null_with_a_note(tmp_path):
    report = {"dataset": ["Toy"], "preset": "tiny", "num_processes": 1, "device": "cpu",
              "steps": 1, "train_seconds": 1.0, "samples_per_second": 1.0, "wall_seconds": 1.0,
              "losses": {"loss": float("nan")}, "config": {}, "versions": {},
              "history": [{"loss": float("inf"), "x": torch.tensor(float("-inf"))}]}
    report_lib.write(tmp_path, report)
    written = strict_load(tmp_path / "report.json")
    assert written["losses"]["loss"] is None and written["history"][0] == {"loss": None,
                                                                         "x": None}
    assert len(written["non_finite"]) == 3
    assert "report.losses.loss was nan (written as null)" in written["non_finite"]
    assert "Non-finite values" in (tmp_path / "report.md").read_text()


def test_reconstructions_show_every_channel(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(plots, "save_png", lambda fig, path: drawn.setdefault("fig", fig))
    model = VQShape(**TINY).eval()
    plots.reconstructions(model, torch.randn(2, 3, 64), tmp_path / "r.png", labels=["a", "b"])
    titles = [ax.get_title() for ax in drawn["fig"].axes if ax.axison]
    assert titles == [f"{s}, channel {c}" for s in "ab" for c in range(3)]
    shown = [ax for ax in drawn["fig"].axes if ax.axison]
    assert all(ax.get_ylabel() == "value" for ax in shown[::3])
    assert all(ax.get_xlabel() for ax in shown[3:])
    assert drawn["fig"].legends, "the figure has a legend"


def test_report_explains_the_classes_when_probed(with_test):
    out, _ = with_test
    report = json.loads((out / "report.json").read_text())
    explained = report["explain"]
    assert set(explained["faithfulness"]) >= {"attributed_aopc", "random_aopc", "ratio"}
    assert explained["distinct_shapes"] >= 1 and set(explained["top_codes"]) == {"a", "b", "c"}
    assert len(explained["samples"]) == 3  # one explained series per class
    for key in ("explain_classes", "explain_faithfulness"):
        assert (out / report["images"][key]).is_file()
    md = (out / "report.md").read_text()
    assert "### Explanations" in md and "AOPC" in md
