"""What a result ran on: package versions, the git commit of the source tree."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

PACKAGES = ("vqfast", "torch", "accelerate", "triton", "numpy", "aeon", "scikit-learn",
            "sentence-transformers")


def package_version(name: str) -> str | None:
    """The installed distribution's version, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(packages: tuple[str, ...] = PACKAGES) -> dict:
    """``{"python": ..., package: version or None}``."""
    return {"python": platform.python_version(), **{p: package_version(p) for p in packages}}


def git_commit(tree: Path | None = None) -> str | None:
    """HEAD of the checkout holding ``tree`` (``+uncommitted`` when it has uncommitted changes), or
    ``VQFAST_GIT_COMMIT`` when set (a copy of the tree without git); None outside a checkout."""
    if os.environ.get("VQFAST_GIT_COMMIT"):
        return os.environ["VQFAST_GIT_COMMIT"]
    cwd = Path(tree) if tree is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+uncommitted" if dirty else "")
