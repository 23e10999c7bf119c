"""Nothing is unpickled unless asked: a planted pickle in a dataset file or in a checkpoint folder
never runs."""

import hashlib
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from tests.training.conftest import CHAIN, TINY, launch, same_weights, weights
from vqfast.data import DataError, load_dataset
from vqfast.data.readers import pickles_allowed
from vqfast.training.checkpoints import STATE_NAME, checkpoints


class Payload:
    """Unpickling it writes ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def planted_series(marker):
    x = np.empty(3, dtype=object)
    x[:] = [np.zeros(5), Payload(marker), np.zeros(7)]
    return x


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_a_dataset_with_a_pickle_is_refused_naming_the_opt_in(tmp_path, kind):
    marker = tmp_path / "ran"
    path = tmp_path / f"data.{kind}"
    if kind == "npy":
        np.save(path, planted_series(marker), allow_pickle=True)
    else:
        np.savez(path, X=planted_series(marker), y=np.arange(3))
    with pytest.raises(DataError, match="--allow-pickle"):
        load_dataset(path, length=16)
    assert not marker.exists()
    with pickles_allowed(), pytest.raises(DataError):  # opted in: it unpickles (then fails)
        load_dataset(path, length=16)
    assert marker.exists()


def test_ragged_series_load_with_the_opt_in(tmp_path):
    x = np.empty(3, dtype=object)
    x[:] = [np.arange(5.0), np.arange(9.0), np.arange(7.0)]
    np.savez(tmp_path / "ragged.npz", X=x, y=np.array([0, 1, 0]))
    with pickles_allowed():
        data = load_dataset(tmp_path / "ragged.npz", length=16)
    assert data.x_train.shape == (3, 1, 16)


def test_the_cli_refuses_a_pickled_dataset(cache_dir, tmp_path):
    marker = tmp_path / "ran"
    np.save(tmp_path / "data.npy", planted_series(marker), allow_pickle=True)
    result = launch(TINY + ["--dataset", str(tmp_path / "data.npy"), "--output-dir",
                            str(tmp_path / "run"), "--cache-dir", str(cache_dir)],
                    tmp_path / "log.txt")
    assert result.code == 2 and "--allow-pickle" in result.output, result.output
    assert not marker.exists() and not (tmp_path / "run").exists()


def _rehash(path):
    """Make the manifest vouch for the planted files, as an attacker with write access would."""
    state = json.loads((path / STATE_NAME).read_text())
    for name in list(state["files"]):
        data = (path / name).read_bytes()
        state["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / STATE_NAME).write_text(json.dumps(state))


def test_pickles_planted_in_a_checkpoint_never_run(reference, cache_dir, tmp_path):
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    shutil.copytree(reference / "checkpoints", out / "checkpoints")
    older, newest = checkpoints(out / "checkpoints")
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "scheduler.bin",
                 "optimizer.bin"):  # what accelerate.load_state would read
        with open(newest / name, "wb") as f:
            pickle.dump(Payload(marker), f)
    for name in ("optimizer.pt", "rank-0.pt"):
        torch.save({"state": Payload(marker)}, newest / name)
    _rehash(newest)
    result = launch(TINY + CHAIN + ["--output-dir", str(out), "--cache-dir", str(cache_dir),
                                    "--resume"], tmp_path / "log.txt")
    assert not marker.exists(), "a planted pickle ran"
    assert result.code == 0, result.output
    assert f"checkpoint {newest} is damaged: optimizer.pt cannot be read" in result.output
    assert f"resumed from {older}" in result.output
    assert same_weights(weights(out / "model"), weights(reference / "model"))
    assert not os.path.exists(marker)
