"""A short CPU pre-training run in which vqfast's remedies for degenerate shape tokens (the
default preset's) give more distinct decoded shapes and a higher shape R² than the authors'
computation on the same seed and data, and a resumed run with codebook care ends as an
uninterrupted one."""

import json

from tests.training.conftest import TINY, launch, same_weights, weights

STEPS = ["--max-steps", "60", "--log-every", "20"]
CARE = ["--set", "kmeans_init_step=20", "--set", "dead_code_every=20"]
AUTHORS = ["--preset", "default-authors"]


def run(tmp_path, cache_dir, name, extra):
    out = tmp_path / name
    result = launch(TINY + STEPS + extra + ["--output-dir", str(out), "--cache-dir",
                                            str(cache_dir)], tmp_path / f"{name}.log")
    assert result.code == 0, result.output
    return out, json.loads((out / "report.json").read_text())


def test_remedies_raise_distinct_shapes_over_the_authors_computation(tmp_path, cache_dir):
    _, authors = run(tmp_path, cache_dir, "authors", AUTHORS)
    _, remedied = run(tmp_path, cache_dir, "remedied", CARE)
    assert authors["config"]["model"]["shape_source"] == "tokens"
    assert remedied["config"]["model"]["shape_source"] == "window"
    a, r = authors["codebook"], remedied["codebook"]
    assert r["distinct_shapes"] >= max(4, 2 * a["distinct_shapes"]), (a, r)
    assert remedied["tokens"]["shape_r2"] > authors["tokens"]["shape_r2"] + 0.2
    assert remedied["tokens"]["sigma"]["median"] > 0.05
    logged = remedied["history"][-1]["tokens"]
    assert {"shape_r2", "sigma", "l", "codes_used", "perplexity"} <= set(logged)


def test_a_resumed_run_with_codebook_care_ends_as_an_uninterrupted_one(tmp_path, cache_dir):
    whole, _ = run(tmp_path, cache_dir, "whole", CARE + ["--checkpoint-every", "30"])
    part = tmp_path / "part"
    args = TINY + STEPS + CARE + ["--checkpoint-every", "30", "--output-dir", str(part),
                                  "--cache-dir", str(cache_dir)]
    first = launch(args + ["--crash-after-step", "30"], tmp_path / "part1.log")
    assert first.code == 3, first.output
    second = launch(args + ["--resume"], tmp_path / "part2.log")
    assert second.code == 0, second.output
    assert same_weights(weights(whole / "model"), weights(part / "model"))
