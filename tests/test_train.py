"""accelerate launch vqfast/train.py: a tiny run end to end, kill-and-resume, two real CPU
processes, and the probe command reproducing the report."""

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vqfast import VQShape, train
from vqfast.inputs import PAD_MODES
from vqfast.training import ShardedBatches, lr_factor
from vqfast.training.plans import PlainPlan, TextPlan

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "vqfast" / "train.py")
TINY = [
    "--dim-embedding", "16", "--num-enc-head", "2", "--num-enc-layer", "1",
    "--num-tokenizer-head", "2", "--num-tokenizer-layer", "1", "--num-dec-head", "2",
    "--num-dec-layer", "1", "--num-token", "8", "--len-s", "16", "--num-code", "16",
    "--batch-size", "16", "--log-every", "1", "--checkpoint-every", "2",
]


def run(args, env_extra=None, launcher=None, check=True, timeout=900):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    env.pop("TRITON_INTERPRET", None)
    cmd = (launcher or [sys.executable]) + [TRAIN] + args
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("run")
    run(TINY + ["--max-steps", "8", "--output-dir", str(out), "--probe-seeds", "2",
                "--cache-dir", str(cache_dir)])
    return out


def test_tiny_run_writes_model_report_and_plots(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    for key in ("dataset", "preset", "config", "num_processes", "steps", "wall_seconds",
                "samples_per_second", "losses", "codebook", "probe", "versions"):
        assert key in report, key
    assert report["dataset"] == ["BasicMotions"] and report["num_processes"] == 1
    assert report["steps"] == 8 and report["config"]["model"]["num_code"] == 16
    assert set(report["losses"]) == {"loss", "ts_loss", "vq_loss", "shape_loss", "dist_loss"}
    assert 1 <= report["codebook"]["used"] <= 16 and report["codebook"]["perplexity"] >= 1
    probe = report["probe"]
    assert probe["protocol"] == "cv" and "cross-validation" in probe["selection"]
    for kind in ("token", "histogram"):
        assert 0 <= probe[kind]["accuracy"] <= 1 and probe[kind]["std"] >= 0
        assert 0 <= probe["untrained"][kind]["accuracy"] <= 1
    for name in ("report.md", "loss_curves.png", "code_usage.png", "codebook_shapes.png",
                 "reconstructions.png"):
        assert (tiny_run / name).stat().st_size > 0, name
    assert "![" in (tiny_run / "report.md").read_text()
    model = VQShape.from_pretrained(tiny_run / "model")
    assert model.config["num_code"] == 16 and not model.training


def test_probe_command_reproduces_the_report(tiny_run, tmp_path):
    report = json.loads((tiny_run / "report.json").read_text())
    out = tmp_path / "probe.json"
    subprocess.run(
        [sys.executable, "-m", "vqfast.probe", "--model", str(tiny_run / "model"), "--dataset",
         "BasicMotions", "--seeds", "2", "--json", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=600,
    )
    again = json.loads(out.read_text())
    for kind in ("token", "histogram"):
        assert again[kind]["accuracy"] == pytest.approx(report["probe"][kind]["accuracy"])
        assert again[kind]["per_seed"] == pytest.approx(report["probe"][kind]["per_seed"])


def test_existing_run_needs_resume(tmp_path, cache_dir):
    common = TINY + ["--max-steps", "3", "--no-probe", "--cache-dir", str(cache_dir),
                     "--output-dir", str(tmp_path), "--checkpoint-every", "1"]
    run(common + ["--crash-after-step", "2"], check=False)
    proc = run(common, check=False)
    assert proc.returncode != 0 and "--resume" in proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_real_cpu_processes(tmp_path, cache_dir):
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--main_process_port",
                str(free_port())]
    run(TINY + ["--max-steps", "4", "--output-dir", str(tmp_path), "--probe-seeds", "1",
                "--cache-dir", str(cache_dir)],
        env_extra={"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}, launcher=launcher)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_processes"] == 2
    assert report["series_per_step"] == 2 * 16
    assert VQShape.from_pretrained(tmp_path / "model").config["num_code"] == 16


def test_bad_options_fail_clearly(tmp_path):
    """One line, no traceback, exit code 2, nothing created."""
    out = tmp_path / "out"
    proc = run(["--set", "no_such_thing=1", "--output-dir", str(out)], check=False)
    assert proc.returncode == 2 and "unknown setting 'no_such_thing'" in proc.stderr
    proc = run(["--dataset", "NoSuchDataset", "--output-dir", str(out)], check=False)
    assert proc.returncode == 2 and "BasicMotions" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("vqfast: error: ")
    assert not out.exists()


def test_help_shows_real_defaults_and_every_option_has_help():
    parser = train.build_parser()
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    steps = next(a for a in parser._actions if a.dest == "max_steps")
    assert "preset's value; default preset: 1600, paper: 100000" in steps.help
    for action in parser._actions:
        assert action.help, action.option_strings


def test_schedule_warms_up_then_anneals():
    f = [lr_factor(s, 10, 110, 1e-4, 0.1) for s in range(111)]
    assert f[0] == pytest.approx(1e-4) and f[10] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:11]))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[110] == pytest.approx(0.1)


def test_batches_shard_processes_and_resume_exactly():
    a = ShardedBatches(100, 8, rank=0, world=2, seed=3)
    b = ShardedBatches(100, 8, rank=1, world=2, seed=3)
    first = [next(it) for it in (a.batches(),) for _ in range(6)]
    other = [next(it) for it in (b.batches(),) for _ in range(6)]
    epoch0 = torch.cat(first[:6])
    assert len(set(epoch0.tolist()) & set(torch.cat(other[:6]).tolist())) == 0
    resumed = a.batches(start=4)
    assert torch.equal(next(resumed), first[4])
    with pytest.raises(ValueError, match="--batch-size"):
        ShardedBatches(10, 8, 0, 2, 0)


def test_text_teacher_then_distilled_student(tmp_path, cache_dir):
    """--text label trains a VQShapeText teacher; --text-mode distill trains a text-free student
    whose codebook stays bit-identical to the teacher's."""
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    common = TINY + ["--max-steps", "4", "--probe-seeds", "1", "--cache-dir", str(cache_dir),
                     "--text", "label"]
    run(common + ["--output-dir", str(teacher_dir)], env_extra={"HF_HUB_OFFLINE": "1"})
    report = json.loads((teacher_dir / "report.json").read_text())
    assert report["model_type"] == "VQShapeText" and "probe_with_text" in report
    run(common + ["--output-dir", str(student_dir), "--text-mode", "distill", "--teacher",
                  str(teacher_dir / "model")], env_extra={"HF_HUB_OFFLINE": "1"})
    report = json.loads((student_dir / "report.json").read_text())
    assert report["model_type"] == "VQShape" and "distill_loss" in report["losses"]
    teacher = VQShape.from_pretrained(teacher_dir / "model")
    student = VQShape.from_pretrained(student_dir / "model")
    assert torch.equal(student.codebook.embedding.weight, teacher.codebook.embedding.weight)


def test_contrastive_model_trains_and_predicts_without_text(tmp_path, cache_dir):
    """--text-mode contrastive: a VQShapeText whose tokens never read text, trained with the
    contrastive loss; its report has no with-text probe."""
    out = tmp_path / "contrastive"
    run(TINY + ["--max-steps", "4", "--probe-seeds", "1", "--cache-dir", str(cache_dir),
                "--text", "describe", "--text-mode", "contrastive", "--output-dir", str(out)],
        env_extra={"HF_HUB_OFFLINE": "1"})
    report = json.loads((out / "report.json").read_text())
    assert report["model_type"] == "VQShapeText" and "contrastive_loss" in report["losses"]
    assert "probe" in report and "probe_with_text" not in report
    assert report["text"]["mode"] == "contrastive"
    model = VQShape.from_pretrained(out / "model")
    assert model.config["contrastive_weight"] == 1.0
    proc = run(TINY + ["--text", "label", "--text-mode", "contrastive", "--contrastive-weight",
                       "0", "--output-dir", str(tmp_path / "zero")], check=False)
    assert proc.returncode != 0 and "--contrastive-weight > 0" in proc.stderr


def test_text_options_are_checked(tmp_path):
    proc = run(["--text-mode", "align", "--output-dir", str(tmp_path)], check=False)
    assert proc.returncode != 0 and "needs text" in proc.stderr
    proc = run(["--text", "label", "--text-mode", "distill", "--output-dir", str(tmp_path)],
               check=False)
    assert proc.returncode != 0 and "--teacher" in proc.stderr
    # A shard folder beside a labelled dataset: its series have no text.
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "shard_000.npy", np.random.default_rng(0).normal(size=(4, 64)))
    proc = run(TINY + ["--text", "label", "--dataset", "BasicMotions", "--dataset", str(shards),
                       "--output-dir", str(tmp_path / "run")], check=False)
    assert proc.returncode != 0 and "no per-sample text" in proc.stderr


def test_how_reaches_shard_folders(tmp_path):
    """--how applies to folders of .npy shards too, not only to labelled datasets."""
    shards = tmp_path / "shards"
    shards.mkdir()
    rng = np.random.default_rng(0)
    np.save(shards / "shard_000.npy", rng.normal(size=(2, 40)))
    np.save(shards / "shard_001.npy", rng.normal(size=(2, 64)))
    accelerator = SimpleNamespace(main_process_first=contextlib.nullcontext)
    first = {}
    for how in PAD_MODES:
        args, _ = train.parse_args(["--dataset", str(shards), "--how", how])
        labelled, pool, sources = train.load_data(args, 32, accelerator)
        assert not labelled and sources is None and pool.how == how
        first[how] = pool[0]
    assert not torch.allclose(first["pad"], first["resample"])


def test_text_options_make_one_plan():
    _, plan = train.parse_args([])
    assert isinstance(plan, PlainPlan) and plan.report is None and plan.texts is None
    _, plan = train.parse_args(["--text", "describe", "--text-mode", "distill", "--teacher", "t",
                                "--distill-targets", "z_e, t_pred,"])
    assert isinstance(plan, TextPlan) and plan.source == "describe" and plan.mode == "distill"
    assert plan.distill_targets == ("z_e", "t_pred")
    assert plan.report == {"source": "describe", "mode": "distill", "fusion": "z",
                           "keys": "tokens", "teacher": "t"}


def test_a_preset_batch_larger_than_the_pool_is_fitted_and_said():
    from vqfast.train import fit_batch_to_pool
    from vqfast.training.presets import TrainSettings

    said = []
    settings = TrainSettings(batch_size=64)
    fit_batch_to_pool(SimpleNamespace(batch_size=None, set=[]), settings, 50, 2, said.append)
    assert settings.batch_size == 25 and "50 series" in said[0] and "--batch-size" in said[0]
    for chosen in (SimpleNamespace(batch_size=64, set=[]),
                   SimpleNamespace(batch_size=None, set=["batch_size=64"])):
        settings = TrainSettings(batch_size=64)
        fit_batch_to_pool(chosen, settings, 50, 1, said.append)
        assert settings.batch_size == 64  # the user's choice is kept (and refused later)
    settings = TrainSettings(batch_size=64)
    fit_batch_to_pool(SimpleNamespace(batch_size=None, set=[]), settings, 500, 1, said.append)
    assert settings.batch_size == 64 and len(said) == 1
