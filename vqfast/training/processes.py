"""Processes and threads: a collective that waits too long ends the job with a message naming the
process that stopped answering, and the default CPU thread count backs off on a busy machine
(OpenMP threads that wait for a shared core slow a step down several times)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

DEFAULT_TIMEOUT_S = 600.0
_KEY = "vqfast/answering/{}"


class CollectiveTimeout(RuntimeError):
    """A collective operation failed or did not complete within the timeout."""


def collective_kwargs(timeout_s: float):
    """Accelerate's handler that gives every collective ``timeout_s`` seconds."""
    from accelerate.utils import InitProcessGroupKwargs

    return InitProcessGroupKwargs(timeout=timedelta(seconds=timeout_s))


def is_collective_failure(exc: BaseException) -> bool:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    errors = tuple(e for e in (getattr(dist, "DistError", None),) if e is not None)
    text = str(exc).lower()
    return isinstance(exc, errors) or any(w in text for w in (
        "timed out", "timeout", "gloo", "nccl", "connection closed", "connection reset"))


def diagnose(exc: BaseException, rank: int, world: int, timeout_s: float) -> CollectiveTimeout:
    """Each process that is still alive marks itself in the job's key-value store; the ones not
    marked after a few seconds (at most 10, at most the timeout) stopped answering."""
    silent, wait_s = None, min(10.0, max(2.0, timeout_s))
    try:
        import torch.distributed.distributed_c10d as c10d

        store = c10d._get_default_store()
        store.set_timeout(timedelta(seconds=max(wait_s, 1.0)))
        store.set(_KEY.format(rank), str(os.getpid()))
        deadline = time.monotonic() + wait_s
        while True:
            silent = [r for r in range(world) if not store.check([_KEY.format(r)])]
            if not silent or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    except Exception:  # the store itself is gone: only the original error is known
        silent = None
    who = (f"process(es) {', '.join(map(str, silent))} of {world} stopped answering"
           if silent else "another process failed or stopped answering")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CollectiveTimeout(
        f"process {rank}: a collective operation did not complete within "
        f"--collective-timeout {timeout_s:g} s: {who} ({first}). The job is stopped; resume it "
        "with --resume from the last checkpoint")


def busy_cores(seconds: float = 0.3) -> float | None:
    """How many cores other processes keep busy now: ``/proc/stat``'s busy time over ``seconds``
    while this process sleeps (so its own work does not count; the load average would count this
    run's own start-up and whatever just finished). None where ``/proc/stat`` is unreadable."""

    def snapshot():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    try:
        busy0, total0 = snapshot()
        time.sleep(seconds)
        busy1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    cores = os.cpu_count() or 1
    return cores * (busy1 - busy0) / max(1, total1 - total0)


def default_threads(local_processes: int, busy: float | None = None) -> tuple[int, str | None]:
    """``(threads, note)``: the cores this process may run on shared among the processes of this
    machine; a single process takes fewer when other processes keep cores busy (``busy``, default
    :func:`busy_cores`), with a note saying so. (Several processes of one job start together and
    would count each other as busy, so they keep their share.)"""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    share = max(1, cores // max(1, local_processes))
    if local_processes > 1:
        return share, None
    busy = busy_cores() if busy is None else busy
    if busy is None:
        return share, None
    threads = max(1, min(share, int(cores - busy + 0.5)))
    if threads == share:
        return share, None
    return threads, (f"using {threads} CPU thread(s), not {share}: other processes keep "
                     f"{busy:.1f} of {cores} cores busy, and threads that wait for a busy core "
                     "slow every step down; --threads N chooses")
