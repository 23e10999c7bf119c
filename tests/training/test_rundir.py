"""One run per output folder, settings a resume must share, and user errors as one line with
exit code 2 before anything is created."""

import json
import os
import shutil

from tests.training.conftest import CHAIN, TINY, finish, launch, start
from vqfast.training.checkpoints import checkpoints
from vqfast.training.rundir import RunLock


def test_a_locked_folder_is_refused_at_once_naming_the_pid(cache_dir, tmp_path):
    out = tmp_path / "run"
    lock = RunLock(out).acquire()
    try:
        result = launch(TINY + CHAIN + ["--output-dir", str(out), "--cache-dir", str(cache_dir)],
                        tmp_path / "log.txt")
    finally:
        lock.release()
    assert result.code == 2, result.output
    assert f"in use by another run (PID {os.getpid()})" in result.output
    assert not (out / "checkpoints").exists()


def test_two_runs_into_one_folder_exactly_one_runs(cache_dir, tmp_path):
    out = tmp_path / "run"
    argv = TINY + CHAIN + ["--output-dir", str(out), "--cache-dir", str(cache_dir)]
    procs = [start(argv, tmp_path / f"log{i}.txt") for i in range(2)]
    results = [finish(p, tmp_path / f"log{i}.txt") for i, p in enumerate(procs)]
    codes = sorted(r.code for r in results)
    assert codes == [0, 2], [r.output for r in results]
    loser = next(r for r in results if r.code == 2)
    assert "in use by another run (PID" in loser.output or "already holds" in loser.output
    assert json.loads((out / "report.json").read_text())["steps"] == 24


def test_resume_with_another_setting_is_refused_unless_overridden(reference, cache_dir,
                                                                  tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference / "checkpoints", out / "checkpoints")
    older = checkpoints(out / "checkpoints")[0]
    shutil.rmtree(checkpoints(out / "checkpoints")[-1])  # resume from step 22 of 24
    argv = TINY + CHAIN + ["--output-dir", str(out), "--cache-dir", str(cache_dir), "--resume"]
    result = launch(argv + ["--lr", "0.5", "--seed", "3"], tmp_path / "log.txt")
    assert result.code == 2, result.output
    assert "lr: 0.001 in the checkpoint, 0.5 now" in result.output
    assert "seed: 0 in the checkpoint, 3 now" in result.output
    assert "--resume-override" in result.output and "Traceback" not in result.output
    result = launch(argv + ["--lr", "0.5", "--resume-override"], tmp_path / "log2.txt")
    assert result.code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["resume_overrides"] == {"lr": {"checkpoint": 0.001, "now": 0.5}}
    assert report["config"]["train"]["lr"] == 0.5
    assert report["history"][-1]["lr"] > 0.01, "the new peak rate is the one used"
    assert older.name == "step-00000022"


def test_user_errors_are_one_line_exit_2_and_create_nothing(cache_dir, tmp_path):
    out = tmp_path / "nothing"
    cases = {
        "unknown dataset 'NoSuchDataset'": ["--dataset", "NoSuchDataset"],
        "does not exist": ["--dataset", str(tmp_path / "missing.npz")],
        "--resume: no checkpoint": ["--resume"],
        "--text-file": ["--text", "file", "--text-file", str(tmp_path / "notes.json")],
        "unknown setting 'no_such'": ["--set", "no_such=1"],
        "lr must be positive": ["--lr", "-1"],
        "--teacher": ["--text", "label", "--text-mode", "distill", "--teacher",
                      str(tmp_path / "t")],
    }
    for i, (message, extra) in enumerate(cases.items()):
        result = launch(TINY + ["--output-dir", str(out), "--cache-dir", str(cache_dir)] + extra,
                        tmp_path / f"log{i}.txt")
        assert result.code == 2, (extra, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("vqfast: error: "), (extra, lines)
        assert message in lines[0], (extra, lines)
        assert not out.exists(), extra


def test_data_errors_after_the_lock_leave_no_folder(cache_dir, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    out = tmp_path / "run"
    result = launch(TINY + ["--dataset", str(bad), "--output-dir", str(out), "--cache-dir",
                            str(cache_dir)], tmp_path / "log.txt")
    assert result.code == 2 and "could not read" in result.output, result.output
    assert not out.exists()


def test_an_unwritable_folder_is_refused_before_training(cache_dir, tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):  # root ignores permission bits: a file in the way instead
            out.chmod(0o700)
            shutil.rmtree(out)
            out.write_text("a file")
        result = launch(TINY + ["--output-dir", str(out), "--cache-dir", str(cache_dir)],
                        tmp_path / "log.txt")
    finally:
        if out.is_dir():
            out.chmod(0o700)
    assert result.code == 2, result.output
    assert "--output-dir" in result.output and "pre-training" not in result.output
