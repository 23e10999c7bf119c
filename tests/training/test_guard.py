"""A non-finite loss or gradient stops the run at that step, exit code 1, with the step, the
terms and the last finite checkpoint named; nothing is exported and that checkpoint is intact."""

import math
import re
import warnings

import numpy as np
import pytest
import torch

from tests.training.conftest import TINY, launch
from vqfast.training.checkpoints import checkpoints, verify_checkpoint
from vqfast.training.guard import DivergenceWatch, NonFiniteError, StepHealth

RUN = TINY + ["--max-steps", "12", "--checkpoint-every", "2", "--log-every", "1"]


def assert_stopped_cleanly(out, result, step_named: str):
    assert result.code == 1, result.output
    assert step_named in result.output and "no model was exported" in result.output
    assert "Traceback" not in result.output
    assert not (out / "model").exists() and not (out / "report.json").exists()
    found = checkpoints(out / "checkpoints")
    for path in found:
        verify_checkpoint(path)
        from safetensors.torch import load_file
        assert all(torch.isfinite(t).all() for t in load_file(str(path / "model.safetensors"))
                   .values())
    return found


def test_learning_rate_divergence_stops_at_the_first_nan(cache_dir, tmp_path):
    out = tmp_path / "run"
    result = launch(RUN + ["--lr", "1e6", "--set", "grad_clip=0", "--output-dir", str(out),
                           "--cache-dir", str(cache_dir)], tmp_path / "log.txt")
    found = assert_stopped_cleanly(out, result, "non-finite")
    # The loss itself or, first, the gradient of a still finite loss.
    what = re.search(r"non-finite (loss|gradient norm) at step (\d+)", result.output)
    assert what, result.output
    step = int(what.group(2))
    if what.group(1) == "loss":
        assert "loss=nan" in result.output or "loss=inf" in result.output
    assert found, "the steps before the NaN were checkpointed"
    last = found[-1]
    assert f"The last finite checkpoint is {last}" in result.output
    assert verify_checkpoint(last)["step"] == step - 1 - (step - 1) % 2


def test_a_series_at_1e30_stops_the_run_with_the_step_named(cache_dir, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 100)).astype(np.float32)
    x[7] *= 1e30
    np.savez(tmp_path / "huge.npz", X=x, y=np.arange(40) % 2)
    out = tmp_path / "run"
    result = launch(RUN + ["--dataset", str(tmp_path / "huge.npz"), "--output-dir", str(out),
                           "--cache-dir", str(cache_dir)], tmp_path / "log.txt")
    assert_stopped_cleanly(out, result, "step ")
    assert "too large" in result.output or "non-finite" in result.output


def test_step_health_names_the_terms_and_the_gradient():
    health = StepHealth()
    health.add({"loss": torch.tensor(1.0), "ts_loss": torch.tensor([0.5])})
    health.add({"loss": torch.tensor(float("inf")), "ts_loss": torch.tensor([0.5])})
    with pytest.raises(NonFiniteError, match=r"step 7 \(loss=inf\).*checkpoint X"):
        health.check(7, torch.tensor(1.0), last_good="checkpoint X")
    ok = StepHealth()
    ok.add({"loss": torch.tensor(1.0)})
    ok.check(1, torch.tensor(2.0))
    with pytest.raises(NonFiniteError, match=r"gradient norm at step 3 \(nan\)"):
        ok.check(3, torch.tensor(float("nan")))


def test_divergence_warns_once():
    watch = DivergenceWatch()
    watch.see(1, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        watch.see(2, 2.0e4)
    with pytest.warns(RuntimeWarning, match="diverging: 3e\\+04 at step 3"):
        watch.see(3, 3.0e4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        watch.see(4, 1e9)
        watch.see(5, math.nan)
