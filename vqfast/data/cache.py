"""The dataset cache: ``load_dataset``'s preprocessed tensors, one file per source, ``length`` and
``how``, written atomically and ignored (rebuilt) when stale or unreadable."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import torch

from vqfast.data.readers import Source
from vqfast.environment import package_version
from vqfast.fileio import atomic_write, read_cache

#: Bumped whenever the preprocessing or the cache file layout changes; old cache files are ignored.
CACHE_VERSION = 1

FIELDS = ("x_train", "y_train", "x_test", "y_test", "classes")


def _identity(src: Source) -> str:
    """What the key depends on: a shipped dataset's name and aeon's version, or every file read
    with its size and mtime."""
    if src.kind == "aeon":
        return f"aeon:{src.name}:{package_version('aeon') or '?'}"
    parts = [src.kind]
    for p in (src.path, src.test_path):
        if p is not None:
            st = p.stat()
            parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def cache_entry(cache_dir, src: Source, length: int, how: str) -> tuple[Path, str]:
    """``(file, key)`` of the cache entry of ``src`` preprocessed with ``length`` and ``how``."""
    key = f"vqfast-data-v{CACHE_VERSION}|{_identity(src)}|length={length}|how={how}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", src.name)[:60] or "data"
    return Path(cache_dir).expanduser() / f"{slug}-{length}-{how}-{digest}.pt", key


def load_cached(path: Path, key: str) -> dict | None:
    """The cached ``FIELDS`` of ``path``, or None when it is absent, stale or unreadable."""
    # stacklevel: the warning points at load_dataset's caller.
    obj = read_cache(path, {"key": key, "version": CACHE_VERSION}, "data cache", stacklevel=4)
    return None if obj is None else {k: obj[k] for k in FIELDS}


def save_cached(path: Path, key: str, name: str, prep: dict) -> None:
    """Write ``prep`` (the ``FIELDS``) to ``path``; a failure only warns."""
    obj = {"version": CACHE_VERSION, "key": key, "name": name, **prep}
    try:
        atomic_write(path, lambda p: torch.save(obj, p))
    except OSError as e:
        warnings.warn(f"could not write the data cache {str(path)!r} ({e}); continuing "
                      "without it", stacklevel=3)
