"""bench/accuracy.py: a tiny run end to end, resuming without redoing cells, the zero-padding of
unequal-length data for the baselines, and the ranking of the summary."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import accuracy  # noqa: E402


def test_tiny_run_then_resume(tmp_path, capsys):
    argv = ["--datasets", "ItalyPowerDemand", "--seeds", "1", "--steps", "2", "--probe-epochs",
            "3", "--methods", "vqfast-dataset/token", "vqfast-dataset/histogram", "minirocket",
            "--out", str(tmp_path / "acc.json"), "--work", str(tmp_path / "work")]
    accuracy.main(argv)
    first = json.loads((tmp_path / "acc.json").read_text())
    assert sorted(first["cells"]) == ["minirocket|ItalyPowerDemand|0",
                                      "vqfast-dataset/histogram|ItalyPowerDemand|0",
                                      "vqfast-dataset/token|ItalyPowerDemand|0"]
    assert all(0 <= c["accuracy"] <= 1 for c in first["cells"].values())
    assert list(first["pretraining"]) == ["dataset|ItalyPowerDemand|0"]
    assert "| minirocket | 1 |" in first["summary_markdown"]
    capsys.readouterr()
    accuracy.main(argv)
    assert "pre-training" not in capsys.readouterr().out.replace("pre-training (s)", "")
    assert json.loads((tmp_path / "acc.json").read_text())["cells"] == first["cells"]
    with pytest.raises(SystemExit, match="results of other settings"):
        accuracy.main([*argv, "--probe-epochs", "4"])


def test_two_workers_share_the_cells_and_merge(tmp_path):
    argv = ["--datasets", "ItalyPowerDemand", "Covid3Month_disc", "--seeds", "1", "--steps", "2",
            "--probe-epochs", "3", "--methods", "vqfast-dataset/token", "vqfast-universal/token",
            "minirocket", "--out", str(tmp_path / "acc.json"), "--work", str(tmp_path / "work"),
            "--jobs", "2"]
    accuracy.main(argv)
    results = json.loads((tmp_path / "acc.json").read_text())
    assert sorted(results["cells"]) == sorted(
        f"{m}|{d}|0" for m in ("vqfast-dataset/token", "vqfast-universal/token", "minirocket")
        for d in ("ItalyPowerDemand", "Covid3Month_disc"))
    assert sorted(results["pretraining"]) == ["dataset|Covid3Month_disc|0",
                                              "dataset|ItalyPowerDemand|0", "universal|all|0"]
    assert results["run"]["jobs"] == 2 and "summary_markdown" in results
    for w in (0, 1):  # each worker did its own share of the local phase
        part = json.loads((tmp_path / f"acc.worker{w}.json").read_text())
        assert any(k.startswith("dataset|") for k in part["pretraining"])


def test_padded_to_the_longest_of_both_splits():
    train = [np.ones((2, 3)), np.ones((2, 5))]
    test = [np.ones((2, 7))]
    a, b = accuracy.padded(train, test)
    assert a.shape == (2, 2, 7) and b.shape == (1, 2, 7)
    assert a[0, :, 3:].sum() == 0 and a[0, :, :3].sum() == 6


def test_summary_ranks_ties_and_only_common_datasets():
    cells = {"minirocket|A|0": 0.9, "catch22|A|0": 0.9, "vqfast-loo/token|A|0": 0.5,
             "minirocket|B|0": 1.0, "catch22|B|0": 0.8}
    results = {"cells": {k: {"accuracy": v, "seconds": 1.0} for k, v in cells.items()},
               "pretraining": {}}
    table = accuracy.summary(results)
    assert "Mean rank over the 1 datasets every method ran on" in table
    assert "| vqfast-loo/token | 1 | 0.500 | 3.00 |" in table
    assert "| minirocket | 2 | 0.950 | 1.50 |" in table
    assert "| catch22 | 2 | 0.850 | 1.50 |" in table
