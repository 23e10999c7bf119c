"""Choosing the implementation of an op: ``backend="auto" | "cpp" | "triton" | "reference"``.

``auto`` picks the fastest implementation that can run on the tensor's device and quietly falls
back to the pure-torch reference; an explicit request that cannot be met raises an error that says
why and how to fix it. The environment variable ``VQFAST_BACKEND`` sets the default for calls that
pass ``backend=None``.
"""

from __future__ import annotations

import functools
import os

import torch

BACKENDS = ("auto", "cpp", "triton", "reference")
ENV_VAR = "VQFAST_BACKEND"

# Which compiled implementations exist for each op, and on which device types.
# "cpu" for triton means: only under the Triton interpreter (TRITON_INTERPRET=1).
IMPLEMENTATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "extract_subsequence": {"cpp": ("cpu",), "triton": ("cuda", "cpu")},
    "nearest_code": {"cpp": ("cpu",), "triton": ("cuda", "cpu")},
    "code_histogram": {"cpp": ("cpu",), "triton": ("cuda", "cpu")},
    "vq_loss": {"cpp": ("cpu",), "triton": ("cuda", "cpu")},
    "dropout": {"cpp": ("cpu",)},
}


class BackendUnavailableError(RuntimeError):
    """An explicitly requested implementation cannot run here."""


def default_backend() -> str:
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"{ENV_VAR}={value!r} is not one of {BACKENDS}; unset it or pick one.")
    return value


def triton_interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return False
    return True


def _why_not(op: str, backend: str, device: torch.device) -> str | None:
    """None when ``backend`` can run ``op`` on ``device``, else the reason it cannot."""
    if backend == "reference":
        return None
    devices = IMPLEMENTATIONS[op].get(backend, ())
    if device.type not in devices:
        where = ", ".join(devices) or "no device"
        return (f"vqfast has no {backend} implementation of {op} for {device.type} tensors "
                f"(only {where})")
    if backend == "cpp":
        from vqfast.ops import _extension

        reason = _extension.load_error()
        if reason is None and op == "dropout":
            from vqfast.ops.dropout import stream_mismatch

            reason = stream_mismatch()
        return reason
    if backend == "triton":
        if not triton_importable():
            return "triton is not installed: pip install 'vqfast[triton]'"
        if device.type == "cpu" and not triton_interpreter_on():
            return (
                "Triton kernels run on CPU tensors only under the interpreter: set "
                "TRITON_INTERPRET=1 before vqfast is imported"
            )
        return None
    raise AssertionError(backend)


def resolve(op: str, backend: str | None, device: torch.device) -> str:
    """The implementation that a call of ``op`` with ``backend`` runs for tensors on ``device``."""
    return _resolve(op, backend, torch.device(device).type)


# torch.compile treats the answer as a constant (it depends on the environment, not on tensors).
@torch.compiler.assume_constant_result
def _resolve(op: str, backend: str | None, device_type: str) -> str:
    device = torch.device(device_type)
    requested = default_backend() if backend is None else str(backend).lower()
    if requested not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    if requested == "auto":
        preference = ("triton", "reference") if device.type == "cuda" else ("cpp", "reference")
        for candidate in preference:
            if _why_not(op, candidate, device) is None:
                return candidate
        if device.type == "cpu":
            from vqfast.ops import _extension

            _extension.warn_fallback_once(op)
        return "reference"
    reason = _why_not(op, requested, device)
    if reason is not None:
        raise BackendUnavailableError(
            f"backend={requested!r} was requested for {op}, but {reason}. "
            "Use backend='auto' to fall back to the fastest implementation that can run."
        )
    return requested


def backends(device: str | torch.device = "cpu") -> dict[str, str]:
    """``{op name: implementation that backend='auto' uses}`` for tensors on ``device``."""
    device = torch.device(device)
    return {op: resolve(op, "auto", device) for op in IMPLEMENTATIONS}
