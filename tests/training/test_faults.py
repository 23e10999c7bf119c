"""Fault injection: SIGKILL at random moments (inside saving and pruning too), damaged newest
checkpoints, full disks. Every listed checkpoint loads, and a resumed run is bit-identical to an
uninterrupted one."""

import collections
import json
import random
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.training.conftest import CHAIN, TINY, launch, logged, same_weights, weights
from vqfast.training.checkpoints import checkpoints, step_of, verify_checkpoint

POINTS = ["step", "save:rank", "save:model", "save:optimizer", "save:state", "save:renamed",
          "prune:renamed", "prune:partial"]
MAX_STEPS, EVERY = 24, 2


def check_listing(ckpt_dir):
    """Every listed checkpoint passes its manifest and every file loads (without pickle)."""
    found = checkpoints(ckpt_dir)
    for path in found:
        state = verify_checkpoint(path)
        assert state["step"] == step_of(path)
        load_file(str(path / "model.safetensors"))
        for name in ("optimizer.pt", "rank-0.pt"):
            torch.load(path / name, weights_only=True)
        json.loads((path / "scheduler.json").read_text())
    return found


def kill_chain(out, logs, rng, queue, cache_dir) -> list[str]:
    """Runs into ``out``, each killed at the next fault of ``queue`` or at a random moment, each
    resuming the last, until one finishes; returns the points where runs were killed."""
    common = TINY + CHAIN + ["--output-dir", str(out), "--cache-dir", str(cache_dir)]
    hit = []
    for trial in range(40):
        found = check_listing(out / "checkpoints")
        done = step_of(found[-1]) if found else 0
        argv = common + (["--resume"] if found else [])
        log = logs / f"{out.name}-{trial}.txt"
        if trial % 4 == 3 and done + 6 < MAX_STEPS:
            # A truly random moment; a backstop kill at most 6 steps on, so the chain goes on.
            point = "timer"
            result = launch(argv, log, kill_after=rng.uniform(0.2, 2.0),
                            env={"VQFAST_FAULT": f"step@{done + 6}"})
        else:
            # Each point in turn. Pruning happens once two checkpoints are kept (until then a
            # prune point waits); the step is the next save (for "step", one of the next two
            # steps), so every fault is reached.
            point = queue.popleft() if queue else rng.choice(POINTS)
            if point.startswith("prune") and len(found) < 2:
                queue.append(point)
                point = "save:renamed"
            at = done + (rng.choice([1, 2]) if point == "step" else EVERY)
            result = launch(argv, log, env={"VQFAST_FAULT": f"{point}@{at}"} if at <= MAX_STEPS
                            else {})
        if not result.killed:
            assert result.code == 0, result.output
            check_listing(out / "checkpoints")
            return hit
        hit.append(point)
    raise AssertionError(f"{out}: no run finished")


def test_twenty_kills_then_resume_is_bit_identical(reference, cache_dir, tmp_path):
    rng = random.Random(11)
    queue = collections.deque(rng.sample(POINTS, len(POINTS)) * 3)
    want_weights = weights(reference / "model")
    want_history = logged(json.loads((reference / "report.json").read_text())["history"])
    hit = []
    for chain in range(4):
        if len(hit) >= 20:
            break
        out = tmp_path / f"run{chain}"
        hit += kill_chain(out, tmp_path, rng, queue, cache_dir)
        assert same_weights(weights(out / "model"), want_weights)
        got = json.loads((out / "report.json").read_text())["history"]
        assert logged(got) == want_history
        assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert len(hit) >= 20 and set(hit) == set(POINTS) | {"timer"}, hit
    print(f"{len(hit)} SIGKILLs over {chain} resumed chains, each bit-identical")


def test_damaged_newest_checkpoint_falls_back_to_the_previous(reference, cache_dir, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference / "checkpoints", out / "checkpoints")
    older, newest = checkpoints(out / "checkpoints")
    data = bytearray((newest / "optimizer.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (newest / "optimizer.pt").write_bytes(bytes(data))
    result = launch(TINY + CHAIN + ["--output-dir", str(out), "--cache-dir", str(cache_dir),
                                    "--resume"], tmp_path / "log.txt")
    assert result.code == 0, result.output
    assert f"checkpoint {newest} is damaged: optimizer.pt" in result.output
    assert f"resumed from {older}" in result.output
    assert same_weights(weights(out / "model"), weights(reference / "model"))


@pytest.mark.parametrize("damage", ["truncate", "empty", "state"])
def test_every_checkpoint_damaged_is_one_clear_error(reference, cache_dir, tmp_path, damage):
    out = tmp_path / "run"
    shutil.copytree(reference / "checkpoints", out / "checkpoints")
    for path in checkpoints(out / "checkpoints"):
        target = path / ("trainer_state.json" if damage == "state" else "model.safetensors")
        data = target.read_bytes()
        target.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    result = launch(TINY + CHAIN + ["--output-dir", str(out), "--cache-dir", str(cache_dir),
                                    "--resume"], tmp_path / "log.txt")
    assert result.code == 2, result.output
    assert "no checkpoint in" in result.output and "can be loaded" in result.output
    assert "Traceback" not in result.output


def test_full_disk_keeps_the_older_checkpoints_and_no_temp_files(cache_dir, tmp_path):
    out = tmp_path / "run"
    result = launch(TINY + CHAIN + ["--output-dir", str(out), "--cache-dir", str(cache_dir)],
                    tmp_path / "log.txt", env={"VQFAST_FAULT": "enospc:save:model@6"})
    assert result.code == 1, result.output
    assert "could not write checkpoint" in result.output
    assert "No space left on device" in result.output and "MiB free" in result.output
    assert [step_of(p) for p in checkpoints(out / "checkpoints")] == [2, 4]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002",
                                                                       "step-00000004"]
    assert not (out / "model").exists()


def test_a_failed_export_loses_nothing_resume_exports_again(reference, cache_dir, tmp_path):
    """The last step is checkpointed before the export: with the export gone (as after a crash
    there), --resume trains no further and writes the same model."""
    out = tmp_path / "run"
    shutil.copytree(reference / "checkpoints", out / "checkpoints")
    result = launch(TINY + CHAIN + ["--output-dir", str(out), "--cache-dir", str(cache_dir),
                                    "--resume"], tmp_path / "log.txt")
    assert result.code == 0 and "(step 24)" in result.output, result.output
    assert same_weights(weights(out / "model"), weights(reference / "model"))
