"""Just-in-time build of the C++ ops in ``csrc/`` against the torch that is running: build and
load only (the ops' fakes and gradients are registered by the Python custom ops in ``vqfast.ops``).

The library is compiled on first use with the host's vector ISA (``-march=native``) and OpenMP and
cached by ``torch.utils.cpp_extension`` (``$TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``) under a name that holds two keys: the torch install (its folder,
version, CUDA version and C++ ABI, and the Python version), so two environments with the same torch
version keep their own builds instead of rebuilding each other's; and the build (the C++ sources,
the compile flags and the CPU's feature flags), so a changed source or another machine sharing the
home directory gets a new build. ``python -m vqfast.build`` builds it ahead of time.

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
LINK_FLAGS = ["-fopenmp"]


def source_dir() -> Path:
    """``csrc/`` in a source checkout, or the copy installed as ``vqfast.csrc``."""
    import vqfast.csrc

    return Path(vqfast.csrc.__file__).resolve().parent


def sources() -> list[str]:
    return sorted(str(p) for p in source_dir().glob("*.cpp"))


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return ""


def _digest(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:10]


def torch_install_dir() -> Path:
    return Path(torch.__file__).resolve().parent


def torch_key() -> str:
    """Which torch the library links against: its install folder, version, CUDA, C++ ABI."""
    return _digest(
        str(torch_install_dir()),
        torch.__version__,
        str(torch.version.cuda),
        str(torch.compiled_with_cxx11_abi()),
        sys.version,
    )


def build_key() -> str:
    """What the library is built from: every C++ source and header, the flags, the CPU."""
    files = sorted(p for p in source_dir().iterdir() if p.suffix in (".cpp", ".h"))
    contents = [f"{p.name}:{hashlib.sha1(p.read_bytes()).hexdigest()}" for p in files]
    return _digest(*contents, " ".join(compile_flags()), " ".join(LINK_FLAGS),
                   platform.machine(), _cpu_flags())


def extension_name() -> str:
    torch_version = torch.__version__.split("+")[0].replace(".", "_")
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    return f"vqfast_C_t{torch_version}_py{py}_{torch_key()}_{build_key()}"


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
        extra_ldflags=LINK_FLAGS,
        is_python_module=False,
        verbose=verbose,
    )


def load(verbose: bool = False) -> None:
    """Build (once per torch install and source tree) and load the C++ ops; raise on failure."""
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
        _state["loaded"] = True


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
