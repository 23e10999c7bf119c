"""Shared timing harness of the vqfast benchmarks.

* ``time_call``: warm-up, then timed calls (``time.perf_counter``, with ``torch.cuda.synchronize()``
  before and after each call on CUDA) until ``max_repeats`` calls or the time budget is spent
  (never fewer than ``min_repeats``). Reports the median, quartiles, min and max.
* ``peak_extra_memory``: the peak memory one call adds on top of what was allocated before it.
  CUDA: ``torch.cuda.reset_peak_memory_stats`` / ``max_memory_allocated`` minus the baseline
  (torch's caching allocator only). CPU: the process's peak RSS (``VmHWM``), reset by writing "5"
  to ``/proc/self/clear_refs``, minus ``VmRSS`` before the call, after returning freed heap pages to
  the system (``malloc_trim``); this counts every allocator (torch, FAISS, ...). ``None`` where the
  kernel does not allow resetting the peak.
* ``environment``: what ran where (device, CPU, versions, vqfast backends, date, git commit);
  ``warn_if_busy`` / ``cpu_snapshot`` + ``other_cpu_share``: how much of the cores other processes
  took before and during a run (a shared machine makes every timing slower and noisier).
* rows are plain dicts; ``print_table`` prints chosen columns; ``write_json`` writes atomically.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
MiB = 1024**2

# ---------------------------------------------------------------------------------------------
# Devices and timing
# ---------------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: torch {torch.__version__} sees no CUDA device here")
    return device


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted list."""
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize_times(times: Sequence[float]) -> dict[str, float | int]:
    s = sorted(times)
    return {
        "median_s": statistics.median(s),
        "q1_s": _quantile(s, 0.25),
        "q3_s": _quantile(s, 0.75),
        "min_s": s[0],
        "max_s": s[-1],
        "repeats": len(s),
    }


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def time_call(
    fn: Callable[[], object],
    device: torch.device | str,
    *,
    budget_s: float = 1.0,
    max_repeats: int = 30,
    min_repeats: int = 3,
    min_warmup: int = 1,
) -> dict[str, float | int]:
    """Warm up, then time ``fn()`` until ``max_repeats`` calls or ``budget_s`` seconds are spent.

    Warm-up: at least ``min_warmup`` calls, more (up to 10) while they add up to less than a
    quarter of the budget, so thread pools, caches and allocators are warm.
    """
    device = torch.device(device)
    warm_start = time.perf_counter()
    warmups = 0
    while warmups < min_warmup or (
        warmups < 10 and time.perf_counter() - warm_start < budget_s / 4
    ):
        _timed(fn, device)
        warmups += 1
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max(max_repeats, min_repeats) and (
        len(times) < min_repeats or time.perf_counter() - start < budget_s
    ):
        times.append(_timed(fn, device))
    return {**summarize_times(times), "warmup_calls": warmups}


# ---------------------------------------------------------------------------------------------
# Peak memory
# ---------------------------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _cpu_rss_peak_works() -> bool:
    """Whether writing "5" to clear_refs really resets VmHWM here (checked once with 64 MiB)."""
    block = torch.ones(64 * MiB // 4)
    del block
    gc.collect()
    _malloc_trim()
    if not _reset_peak_rss():
        return False
    hwm, rss = _proc_status_kib("VmHWM"), _proc_status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm - rss < 32 * 1024


_CPU_PEAK_OK: bool | None = None


def cpu_peak_supported() -> bool:
    global _CPU_PEAK_OK
    if _CPU_PEAK_OK is None:
        _CPU_PEAK_OK = _cpu_rss_peak_works()
    return _CPU_PEAK_OK


def measure_peak(fn: Callable[[], object], device: torch.device | str) -> tuple[int | None, object]:
    """``(bytes one call of fn adds at its peak over what was in use before, its output)``.

    The bytes are None when they cannot be measured here. What ``fn`` returns is alive at the
    peak and therefore counted; CPU figures count only pages actually touched.
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        sync(device)
        return int(torch.cuda.max_memory_allocated(device) - base), out
    if device.type != "cpu" or not cpu_peak_supported():
        return None, fn()
    _malloc_trim()
    if not _reset_peak_rss():
        return None, fn()
    base = _proc_status_kib("VmRSS")
    out = fn()
    peak = _proc_status_kib("VmHWM")
    if base is None or peak is None:
        return None, out
    return max(0, peak - base) * 1024, out


def peak_extra_memory(fn: Callable[[], object], device: torch.device | str) -> int | None:
    """Bytes one call of ``fn`` adds at its peak (see ``measure_peak``); None: unknown."""
    return measure_peak(fn, device)[0]


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # not installed, or broken: report as absent
        return None
    return getattr(mod, "__version__", "unknown")


def _git_commit() -> str | None:
    """HEAD (+uncommitted), or ``VQFAST_GIT_COMMIT`` when set (a copy of the tree without git)."""
    if os.environ.get("VQFAST_GIT_COMMIT"):
        return os.environ["VQFAST_GIT_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+uncommitted" if dirty else "")) or None


def vqfast_backends(device: torch.device) -> dict[str, str] | str:
    try:
        import vqfast.ops

        return vqfast.ops.backends(device)
    except Exception as exc:  # report, do not crash the benchmark
        return f"error: {type(exc).__name__}: {exc}"


def environment(device: torch.device | str) -> dict[str, object]:
    device = torch.device(device)
    info: dict[str, object] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _version("triton"),
        "faiss": _version("faiss"),
        "numpy": _version("numpy"),
        "vector_quantize_pytorch": _package_version("vector-quantize-pytorch"),
        "vqfast_backends_auto": vqfast_backends(device),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
        "cpu_peak_memory": "VmHWM via /proc/self/clear_refs"
        if cpu_peak_supported()
        else "unavailable (reported as None)",
        "git_commit": _git_commit(),
        "load_average_at_start": load_average(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_memory_gib"] = round(props.total_memory / 1024**3, 1)
        info["gpu_capability"] = f"{props.major}.{props.minor}"
    return info


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other processes competing for the cores show here."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_snapshot() -> dict[str, float] | None:
    """Jiffies: the whole machine's busy and steal time, this process's (and waited children's)."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return {"total": total, "busy": total - idle, "steal": fields[7],
            "own": sum(float(v) for v in own[11:15]),  # utime stime cutime cstime
            "wall": time.monotonic()}


def other_cpu_share(start: dict | None, end: dict | None) -> dict[str, float] | None:
    """Share of all cores that other processes (and the hypervisor: steal) used between snapshots.

    Approximate: subprocesses not waited for (e.g. torch.compile's workers) count as others.
    """
    if start is None or end is None:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    total = end["total"] - start["total"]
    if total <= 0:
        return None
    own = (end["own"] - start["own"])  # in clock ticks like /proc/stat
    others = max(0.0, end["busy"] - start["busy"] - own)
    return {"others_share_of_all_cores": round(others / total, 3),
            "steal_share": round((end["steal"] - start["steal"]) / total, 3),
            "own_cpu_s": round(own / hz, 1), "wall_s": round(end["wall"] - start["wall"], 1)}


def others_busy_now(seconds: float = 1.0) -> float | None:
    """Share of all cores other processes used over the next ``seconds`` (we only sleep)."""
    start = cpu_snapshot()
    time.sleep(seconds)
    share = other_cpu_share(start, cpu_snapshot())
    return None if share is None else share["others_share_of_all_cores"]


def warn_if_busy(env: dict[str, object], limit: float = 0.1) -> None:
    """Records (in ``env``) and warns when other processes keep the cores busy before a run."""
    share = others_busy_now()
    env["others_cpu_share_before_start"] = share
    if share is not None and share > limit:
        print(f"WARNING: other processes used {share:.0%} of all cores just before the benchmark: "
              "timings will be slower and noisier (see cpu_during_run at the end).")


def _package_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def triton_interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def vqfast_impls(op: str, device: torch.device) -> list[tuple[str, str]]:
    """``[(label, backend)]``: vqfast's implementations of ``op`` worth timing on ``device``.

    The C++ ops on CPU, the Triton kernels on CUDA (never under the Triton interpreter, far too
    slow to benchmark), and the reference; ``(auto)`` marks what ``backend="auto"`` picks.
    """
    import vqfast.ops

    auto = vqfast.ops.backends(device).get(op)
    found = []
    if device.type == "cpu":
        found.append("cpp")
    if device.type == "cuda" and not triton_interpreter_on():
        found.append("triton")
    found.append("reference")
    return [(f"vqfast {b}" + (" (auto)" if auto == b else ""), b) for b in found]


def print_environment(info: dict[str, object]) -> None:
    keys = ("date", "device", "device_name", "cpu_model", "cpu_count", "torch_threads", "torch",
            "cuda", "triton", "faiss", "numpy", "vector_quantize_pytorch", "vqfast_backends_auto",
            "cpu_peak_memory", "git_commit", "load_average_at_start")
    for key in keys:
        print(f"  {key:24s} {info.get(key)}")


# ---------------------------------------------------------------------------------------------
# Rows: formatting, printing, JSON
# ---------------------------------------------------------------------------------------------


def fmt(value: object, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and spec:
        return format(value, spec)
    return str(value)


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_mib(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / MiB:.1f}"


def fmt_sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def print_table(rows: Sequence[dict], columns: Sequence[tuple[str, Callable[[dict], str]]]) -> None:
    """``columns``: ``(header, row -> cell text)``; plain text, right-aligned, one line a row."""
    cells = [[get(row) for _, get in columns] for row in rows]
    headers = [header for header, _ in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for line in cells:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))


def write_json(path: str | os.PathLike, payload: object) -> None:
    """Write ``payload`` as JSON atomically: a temp file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def error_text(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
