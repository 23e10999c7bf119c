"""Writing files so that nothing a user saved is ever half-written: write a temporary file in the
same folder, flush it to disk, then rename it over the target (atomic on POSIX)."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path


def atomic_write(path, content: str | bytes | Callable[[Path], object]) -> Path:
    """Write ``content`` (text, bytes, or a function that writes to the path it is given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    tmp = Path(tmp_name)
    try:
        if callable(content):
            os.close(fd)
            content(tmp)
        else:
            data = content.encode() if isinstance(content, str) else content
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _mode_for(path: Path) -> int:
    """The replaced file's permissions, else what a plain open() would give (0o666 & ~umask);
    mkstemp's 0o600 would hide results from other users."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_json(path, obj) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_cache(path, expected: dict, what: str, stacklevel: int = 3) -> dict | None:
    """A dict saved with ``torch.save`` whose entries match ``expected`` (version, key, ...), or
    None when the file is absent, stale or unreadable (then with a warning: it gets rebuilt)."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        warnings.warn(f"ignoring unreadable {what} {str(path)!r} ({type(e).__name__}: {e}); it "
                      "will be rebuilt", stacklevel=stacklevel)
        return None
    if not isinstance(obj, dict) or any(obj.get(k) != v for k, v in expected.items()):
        return None
    return obj
