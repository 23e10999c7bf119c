"""Two real gloo processes: one frozen with SIGSTOP ends the job within the collective timeout
plus a margin, with a message naming it; and the thread default on a busy machine."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.conftest import TINY
from vqfast.training import processes

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def test_a_frozen_process_ends_the_job_naming_it(tmp_path, cache_dir):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           "2", "--num_machines", "1", "--main_process_port", str(free_port()),
           str(ROOT / "vqfast" / "train.py"), *TINY, "--max-steps", "100000",
           "--checkpoint-every", "50", "--log-every", "50", "--output-dir", str(out),
           "--cache-dir", str(cache_dir), "--collective-timeout", str(TIMEOUT_S)]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("TRITON_INTERPRET", None)
    log = open(tmp_path / "log.txt", "w")
    launcher = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    ranks = []
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoints").is_dir() or not any((out / "checkpoints").iterdir()):
            assert launcher.poll() is None, (tmp_path / "log.txt").read_text()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.5)
        main_pid = int((out / ".vqfast.lock").read_text())
        ranks = children(launcher.pid)
        other = [p for p in ranks if p != main_pid]
        assert len(ranks) == 2 and len(other) == 1, (ranks, main_pid)
        os.kill(other[0], signal.SIGSTOP)
        stopped = time.monotonic()
        launcher.wait(timeout=TIMEOUT_S + 60)
        took = time.monotonic() - stopped
        for pid in ranks:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
                f"/proc/{pid}/status").read_text(), pid
    finally:
        for pid in ranks:
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        log.close()
    text = (tmp_path / "log.txt").read_text()
    assert launcher.returncode != 0
    assert "process(es) 1 of 2 stopped answering" in text, text[-3000:]
    assert f"--collective-timeout {TIMEOUT_S} s" in text
    print(f"frozen rank: job gone {took:.0f} s after SIGSTOP (timeout {TIMEOUT_S} s)")


def test_threads_back_off_when_other_processes_keep_cores_busy(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert processes.default_threads(1, busy=0.1) == (2, None)
    assert processes.default_threads(1, busy=0.4) == (2, None)
    assert processes.default_threads(1, busy=0.6)[0] == 1
    threads, note = processes.default_threads(1, busy=1.0)
    assert threads == 1 and "keep 1.0 of 2 cores busy" in note and "--threads" in note
    assert processes.default_threads(2, busy=1.0) == (1, None)  # a job's processes keep shares
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert processes.default_threads(1, busy=4.0)[0] == 12
    assert processes.default_threads(2, busy=4.0) == (8, None)


def test_busy_cores_sees_a_busy_process():
    quiet = processes.busy_cores(0.3)
    if quiet is None:
        pytest.skip("no /proc/stat on this system")
    import multiprocessing

    spinner = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
    spinner.start()
    try:
        time.sleep(0.5)
        busy = processes.busy_cores(0.5)
    finally:
        spinner.terminate()
        spinner.join()
    assert busy >= quiet + 0.5, (quiet, busy)


def _spin():
    while True:
        pass
