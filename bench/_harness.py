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
* ``start_run`` / ``finish_run``: the environment printed at the start, the CPU use of others and
  the total time at the end.
* rows are plain dicts (``new_row``); ``measure`` adds one call's timing, tokens/s and peak memory;
  ``add_speedups`` the speed-up over the authors' row of the same case; ``print_table`` prints
  chosen columns (``timing_columns``: those every benchmark shows); ``write_json`` writes
  atomically.
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
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vqfast.environment import git_commit, package_version

REPO = Path(__file__).resolve().parent.parent
MiB = 1024**2
GiB = 1024**3

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
# Measuring one row
# ---------------------------------------------------------------------------------------------


@dataclass
class Settings:
    """Where rows run and how long each is timed; ``mem_limit``: bytes, or None for no limit."""

    device: torch.device
    budget_s: float
    repeats: int
    mem_limit: int | None = None


def new_row(op: str, impl: str, **fields: object) -> dict:
    return {"op": op, "impl": impl, **fields}


def measure(row: dict, call: Callable[[], object], cfg: Settings, *, tokens: int,
            device: torch.device | str | None = None) -> object:
    """Adds timing, tokens/s and peak extra memory of ``call`` (on ``device``, default the
    settings' device) to ``row``; returns one output of ``call``."""
    device = cfg.device if device is None else device
    row.update(time_call(call, device, budget_s=cfg.budget_s, max_repeats=cfg.repeats))
    row["tokens_per_s"] = tokens / row["median_s"]
    row["peak_extra_bytes"], out = measure_peak(call, device)
    return out


def no_grad_call(fn: Callable, *args: object) -> Callable[[], object]:
    """``fn(*args)`` under ``torch.no_grad()``: a forward-only call to time."""

    def call():
        with torch.no_grad():
            return fn(*args)

    return call


def matrix_skip(factor: float, n: int, k: int, limit: int | None,
                itemsize: int = 4) -> str | None:
    """Why a call whose peak is ``factor`` tokens x codes matrices of ``itemsize`` bytes is left
    out under ``limit`` bytes; None when it fits."""
    need = int(factor * n * k * itemsize)
    if limit is None or need <= limit:
        return None
    return f"skipped: stores tokens x codes, ~{need / GiB:.1f} GiB > {limit / GiB:g} GiB"


def add_speedups(rows: list[dict], same: Sequence[str], baseline: str = "authors") -> None:
    """``speedup_vs_authors``: the ``baseline`` row's median / this median, among the rows that
    agree on the fields ``same`` (op, case, mode)."""

    def key(r: dict) -> tuple:
        return tuple(r.get(field) for field in same)

    base = {key(r): r["median_s"] for r in rows if r["impl"] == baseline and "median_s" in r}
    for r in rows:
        if "median_s" in r and key(r) in base:
            r["speedup_vs_authors"] = base[key(r)] / r["median_s"]


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
        "triton": package_version("triton"),
        "faiss": package_version("faiss-cpu"),
        "numpy": package_version("numpy"),
        "vector_quantize_pytorch": package_version("vector-quantize-pytorch"),
        "vqfast_backends_auto": vqfast_backends(device),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
        "cpu_peak_memory": "VmHWM via /proc/self/clear_refs"
        if cpu_peak_supported()
        else "unavailable (reported as None)",
        "git_commit": git_commit(REPO),
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


@dataclass
class Run:
    env: dict[str, object]
    started: float
    cpu_at_start: dict[str, float] | None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def start_run(device: torch.device) -> Run:
    """Prints the environment and warns when the machine is busy; the clock starts here."""
    env = environment(device)
    print("Environment:")
    print_environment(env)
    warn_if_busy(env)
    return Run(env, time.perf_counter(), cpu_snapshot())


def finish_run(run: Run) -> None:
    """Records (in ``run.env``) and prints the load and other processes' CPU use at the end."""
    run.env["load_average_at_end"] = load_average()
    run.env["cpu_during_run"] = other_cpu_share(run.cpu_at_start, cpu_snapshot())
    print(f"\nTotal {run.elapsed():.0f} s; CPU use during the run {run.env['cpu_during_run']}; "
          f"load average at the end {run.env['load_average_at_end']}")


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


def case_columns(*fields: str) -> list[tuple[str, Callable[[dict], str]]]:
    """One column per case field (``"N"``, ``"K"``, ...), headed by its name."""
    return [(field, lambda r, field=field: str(r[field])) for field in fields]


def note(r: dict, width: int = 90) -> str:
    """Why a row has no timing, or what to know about it (a first call that compiles)."""
    text = r.get("skipped") or r.get("error") or r.get("note") or ""
    if r.get("compile_s") is not None:
        text = f"first call (compiles) {r['compile_s']:.1f} s"
    return text[:width]


def timing_columns() -> list[tuple[str, Callable[[dict], str]]]:
    """The columns every benchmark table shows after its case columns."""
    return [
        ("impl", lambda r: r["impl"]),
        ("on", lambda r: r["runs_on"]),
        ("median ms", lambda r: fmt_ms(r.get("median_s"))),
        ("IQR ms", lambda r: f"{fmt_ms(r['q1_s'])}-{fmt_ms(r['q3_s'])}" if "q1_s" in r else "-"),
        ("n", lambda r: fmt(r.get("repeats"))),
        ("Mtok/s", lambda r: fmt(r.get("tokens_per_s") and r["tokens_per_s"] / 1e6, ".3g")),
        ("peak MiB", lambda r: fmt_mib(r.get("peak_extra_bytes"))),
        ("speedup", lambda r: fmt(r.get("speedup_vs_authors"), ".2f")),
    ]


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
