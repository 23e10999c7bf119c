"""The text-guidance study runner: a smoke run of the whole grid (every model, the shift
benchmark, the convergence curve) with tiny steps writes what the full study writes, its tables
equal its JSON, and a rerun reuses every finished run."""

import json

import pytest

from vqfast.experiments import text_guidance

TINY = ["--steps", "2", "--seeds", "1", "--datasets", "BasicMotions", "--probe-seeds", "1",
        "--num-token", "8", "--shift", "--convergence", "1", "2", "--convergence-seeds", "1",
        "--set", "dim_embedding=16", "--set", "num_enc_layer=1", "--set", "num_tokenizer_layer=1",
        "--set", "num_dec_layer=1"]


@pytest.fixture(scope="module")
def study(tmp_path_factory, monkeypatch_module):
    out = tmp_path_factory.mktemp("study")
    return out, text_guidance.main(TINY + ["--output-dir", str(out)])


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield mp


def test_smoke_study_writes_every_file_and_row(study):
    out, results = study
    for name in ("results.json", "results.md", "results-BasicMotions.png",
                 "results-BasicMotions-subjects.png", "convergence.png"):
        assert (out / name).is_file(), name
    rows = {(r["dataset"], r["row"]) for r in results["summary"]}
    for dataset in ("BasicMotions", "BasicMotions-subjects"):
        for _, _, label in text_guidance.ROWS:
            assert (dataset, label) in rows
    # The shift benchmark reads its own subject notes; the others the core grid's describe text.
    settings = {r["setting"] for r in results["runs"] if r["dataset"] == "BasicMotions-subjects"}
    assert settings == {None, "file/z/tokens"}
    assert {r["steps"] for r in results["convergence"]} == {1, 2}
    compared = {(c["row"], c["feature"]) for c in results["comparisons"]}
    assert ("contrastive, without text", "histogram") in compared
    assert set(results["run_seconds"]) == {"grid", "shift", "convergence"}


def test_tables_equal_the_json(study):
    out, results = study
    md = (out / "results.md").read_text()
    assert md == text_guidance.markdown(json.loads((out / "results.json").read_text()))
    for r in results["summary"]:
        assert f"{r['histogram'][0]:.3f} [{r['histogram'][1]:.3f}, {r['histogram'][2]:.3f}]" in md


def test_rerun_reuses_every_run(study, capsys):
    out, results = study
    again = text_guidance.main(TINY + ["--output-dir", str(out)])
    printed = capsys.readouterr().out
    reused = {line.split("] ", 1)[1] for line in printed.splitlines()
              if line.endswith("done (reused)")}
    assert len(reused) == len({r["folder"] + r["dataset"] + str(r["seed"])
                               for r in results["runs"]})
    assert " done\n" not in printed  # nothing retrained
    assert again["summary"] == results["summary"]


def test_an_interrupted_run_continues_from_its_checkpoint(study, capsys):
    """A run killed after training but before its report (the probes) is resumed, not refused."""
    out, results = study
    (out / "BasicMotions" / "plain" / "seed0" / "report.json").unlink()
    again = text_guidance.main(TINY + ["--output-dir", str(out)])
    assert "resumed from" in capsys.readouterr().out
    assert again["summary"] == results["summary"]


def test_two_workers_share_the_units(tmp_path, monkeypatch_module):
    argv = ["--steps", "1", "--seeds", "2", "--datasets", "BasicMotions", "--probe-seeds", "1",
            "--num-token", "8", "--models", "plain", "contrastive", "--set", "dim_embedding=16",
            "--set", "num_enc_layer=1", "--output-dir", str(tmp_path), "--jobs", "2"]
    results = text_guidance.main(argv)
    assert {(r["row"], r["seed"]) for r in results["runs"]} == {
        (row, seed) for row in ("VQShape", "contrastive, without text") for seed in (0, 1)}
    reports = [json.loads(p.read_text()) for p in tmp_path.rglob("report.json")]
    assert len(reports) == 4 and all(r["threads"] == 1 for r in reports)


def test_bad_options_are_refused(capsys):
    with pytest.raises(SystemExit):
        text_guidance.parse_args(["--models", "distill"])
    assert "add teacher" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        text_guidance.parse_args(["--notes", "BasicMotions"])
    assert "DATASET=PATH" in capsys.readouterr().err


def test_readme_tables_equal_the_committed_results():
    """README's study tables are exactly what the committed results JSON renders to."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    results = json.loads((root / "bench/results/text-guidance-cpu.json").read_text())
    readme = (root / "README.md").read_text()
    start, end = "<!-- text-guidance results: begin -->", "<!-- text-guidance results: end -->"
    assert readme.count(start) == 1 and readme.count(end) == 1
    block = readme.split(start)[1].split(end)[0]
    assert block.strip() == text_guidance.markdown(results).strip()
    for image in ("results-BasicMotions.png", "convergence.png"):
        assert (root / "docs/text-guidance" / image).is_file()
