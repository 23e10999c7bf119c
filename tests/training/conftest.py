"""Runs of ``vqfast/train.py`` for the reliability tests: forked from this process (no import
cost per run, so dozens fit in a test) and killed, stopped or left to finish."""

import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from vqfast import VQShape, train

TINY = [
    "--dim-embedding", "16", "--num-enc-head", "2", "--num-enc-layer", "1",
    "--num-tokenizer-head", "2", "--num-tokenizer-layer", "1", "--num-dec-head", "2",
    "--num-dec-layer", "1", "--num-token", "8", "--len-s", "16", "--num-code", "16",
    "--batch-size", "8", "--no-probe", "--no-plots", "--threads", "1",
]
_FORK = multiprocessing.get_context("fork")


@dataclass
class Result:
    code: int  # the exit code, or -signal for a process killed by a signal
    output: str  # stdout and stderr together

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL


def _child(argv, env, log_path):
    os.environ.update(env)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)
    torch.set_num_threads(1)
    code = train.cli(argv)
    sys.stdout.flush()
    os._exit(code)


def start(argv, log_path: Path, env=None):
    proc = _FORK.Process(target=_child, args=(list(argv), dict(env or {}), str(log_path)))
    proc.start()
    return proc


def finish(proc, log_path: Path, timeout: float = 180.0) -> Result:
    proc.join(timeout)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        raise AssertionError(f"run did not end within {timeout} s:\n{Path(log_path).read_text()}")
    return Result(proc.exitcode, Path(log_path).read_text())


def launch(argv, log_path: Path, env=None, kill_after: float | None = None) -> Result:
    """Run train.py's ``cli(argv)`` in a forked child; ``kill_after``: SIGKILL it after that
    many seconds if it is still running."""
    proc = start(argv, log_path, env)
    if kill_after is not None:
        proc.join(kill_after)
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
    return finish(proc, log_path)


def weights(folder: Path) -> dict:
    return VQShape.from_pretrained(folder).state_dict()


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def logged(history: list[dict]) -> list[dict]:
    """The history without its timing (series per second differs between runs)."""
    return [{k: v for k, v in h.items() if k != "series_per_second"} for h in history]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


# The kill-and-resume runs: a checkpoint every 2 steps, a log point every 3 (not a multiple, so
# resumed runs start inside a log window).
CHAIN = ["--max-steps", "24", "--checkpoint-every", "2", "--log-every", "3"]


@pytest.fixture(scope="session")
def reference(tmp_path_factory, cache_dir) -> Path:
    """One uninterrupted run of ``CHAIN``."""
    out = tmp_path_factory.mktemp("reference")
    t0 = time.perf_counter()
    result = launch(TINY + CHAIN + ["--output-dir", str(out / "run"), "--cache-dir",
                                    str(cache_dir)], out / "log.txt")
    assert result.code == 0, result.output
    print(f"reference run: {time.perf_counter() - t0:.1f} s")
    return out / "run"
