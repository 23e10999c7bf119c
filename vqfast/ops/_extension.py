"""Just-in-time build of the C++ ops in ``csrc/`` against the torch that is running.

The library is compiled on first use with the host's vector ISA (``-march=native``) and OpenMP and
cached by ``torch.utils.cpp_extension`` (``$TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``). The cache name includes the torch and Python versions and a hash of
the CPU's feature flags, so a different torch or a different machine sharing the same home
directory gets its own build. ``python -m vqfast.build`` builds it ahead of time.

A failed build is not an import error: ``backend="auto"`` falls back to the reference ops (with one
warning) and ``backend="cpp"`` raises with the compiler's message.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import threading
import warnings
from pathlib import Path

import torch

_lock = threading.Lock()
_state: dict[str, object] = {"loaded": False, "error": None}

DISABLE_VAR = "VQFAST_DISABLE_CPP"


def source_dir() -> Path:
    """``csrc/`` in a source checkout, or the copy installed as ``vqfast.csrc``."""
    import vqfast.csrc

    return Path(vqfast.csrc.__file__).resolve().parent


def sources() -> list[str]:
    return sorted(str(p) for p in source_dir().glob("*.cpp"))


def _cpu_tag() -> str:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line
                    break
    except OSError:
        pass
    return hashlib.sha1((platform.machine() + flags).encode()).hexdigest()[:8]


def extension_name() -> str:
    torch_version = torch.__version__.split("+")[0].replace(".", "_")
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    return f"vqfast_C_t{torch_version}_py{py}_{_cpu_tag()}"


def compile_flags() -> list[str]:
    # -ffp-contract=off: no silent a*b+c -> fma contraction, so the subsequence op reproduces
    # grid_sample's rounding; the quantizer asks for fma explicitly where it wants one.
    flags = ["-O3", "-std=c++17", "-ffp-contract=off", "-fopenmp", "-fno-math-errno"]
    if platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64"):
        flags.append("-march=native")
    return flags


def _build(verbose: bool) -> None:
    from torch.utils import cpp_extension

    cpp_extension.load(
        name=extension_name(),
        sources=sources(),
        extra_cflags=compile_flags(),
        extra_ldflags=["-fopenmp"],
        is_python_module=False,
        verbose=verbose,
    )


def load(verbose: bool = False) -> None:
    """Build (once per machine and torch version) and load the C++ ops; raise on failure."""
    with _lock:
        if _state["loaded"]:
            return
        if _state["error"] is not None:
            raise RuntimeError(_state["error"])
        if os.environ.get(DISABLE_VAR, "0") not in ("", "0"):
            _state["error"] = f"the C++ ops are disabled by {DISABLE_VAR}"
            raise RuntimeError(_state["error"])
        try:
            _build(verbose)
        except Exception as exc:  # a compiler error, missing ninja, ...
            _state["error"] = (
                f"building vqfast's C++ ops failed ({type(exc).__name__}: {exc}). They need a "
                "C++17 compiler with OpenMP and ninja (pip install ninja); run `python -m "
                "vqfast.build --verbose` to see the whole compiler output"
            )
            raise RuntimeError(_state["error"]) from exc
        _register_fakes()
        _state["loaded"] = True


def _register_fakes() -> None:
    """Shapes of the C++ ops' outputs, for FakeTensor tracing (torch.compile, opcheck)."""

    def acc(*tensors):
        return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32

    fake = torch.library.register_fake

    @fake("vqfast_C::extract_subsequence")
    def _(x, t, l, length, smooth):
        return x.new_empty((t.shape[0], t.shape[1], length))

    @fake("vqfast_C::extract_subsequence_backward")
    def _(grad, x, t, l, length, smooth):
        return torch.empty_like(x), torch.empty_like(t), torch.empty_like(l)

    @fake("vqfast_C::nearest_code")
    def _(z, codebook):
        return (z.new_empty(z.shape[0], dtype=torch.int64),
                z.new_empty(z.shape[0], dtype=acc(z, codebook)))

    @fake("vqfast_C::code_histogram")
    def _(indices, num_code):
        return indices.new_empty((indices.shape[0], num_code), dtype=torch.int64)

    @fake("vqfast_C::vq_loss_forward")
    def _(z, codebook, commit, entropy, gamma, temperature):
        a = acc(z, codebook)
        M, K = z.shape[0], codebook.shape[0]
        return (z.new_empty((), dtype=a), z.new_empty(M, dtype=torch.int64),
                z.new_empty(M, dtype=a), z.new_empty(M, dtype=a), z.new_empty(K, dtype=a))

    @fake("vqfast_C::vq_loss_backward")
    def _(grad, z, codebook, indices, row_max, log_norm, mean_p, *args):
        return torch.empty_like(z), torch.empty_like(codebook)


def load_error() -> str | None:
    """None when the C++ ops are loaded (building them if needed), else why they are not."""
    try:
        load()
    except RuntimeError as exc:
        return str(exc)
    return None


_warned = False


def warn_fallback_once(op: str) -> None:
    global _warned
    if not _warned and _state["error"] is not None:
        _warned = True
        warnings.warn(f"vqfast: using the reference {op} because {_state['error']}", stacklevel=3)
