"""The output folder of a run: checked writable before any work, held by one run at a time
(``fcntl.flock`` on a lock file: the kernel releases it when the holder exits, even by SIGKILL),
and removed again when a run that created it fails before training."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

LOCK_NAME = ".vqfast.lock"


class OutputDirError(ValueError):
    """The output folder cannot be used (not writable, a file in the way, in use)."""


class RunLockedError(OutputDirError):
    """Another run holds the output folder."""


def check_creatable(directory: Path) -> None:
    """Raise ``OutputDirError`` unless ``directory`` exists as a writable folder or can be made
    (its nearest existing parent is a writable folder); creates nothing."""
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise OutputDirError(f"--output-dir {directory} is a file, not a folder; choose "
                                 "another --output-dir")
        target = directory
    else:
        target = next((p for p in directory.absolute().parents if p.exists()), Path("/"))
        if not target.is_dir():
            raise OutputDirError(f"--output-dir {directory} cannot be created: {target} is a "
                                 "file, not a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        raise OutputDirError(f"--output-dir {directory} cannot be written: no write permission "
                             f"on {target}; choose another --output-dir or fix its permissions")
    model = directory / "model"
    if model.exists() and not model.is_dir():
        raise OutputDirError(f"{model} is a file; the trained model is exported to a folder of "
                             "that name: move the file away")


def check_writable(directory: Path) -> None:
    """Write and remove a small file in ``directory``: permission bits can say yes where the
    disk or the file system says no."""
    try:
        fd, name = tempfile.mkstemp(prefix=".write-test-", dir=directory)
        try:
            os.write(fd, b"vqfast")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        raise OutputDirError(f"cannot write to {directory} ({exc.strerror or exc}); choose "
                             "another --output-dir, free space or fix its permissions") from exc


class RunLock:
    """``acquire()`` creates the folder if needed and locks it, or raises ``RunLockedError``
    naming the PID of the run that holds it."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.fd: int | None = None
        self.created = False

    def acquire(self) -> RunLock:
        check_creatable(self.directory)
        self.created = not self.directory.exists()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputDirError(f"cannot create {self.path} ({exc.strerror or exc}); choose "
                                 "another --output-dir") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"{self.directory} is in use by another run (PID {holder}); wait for it to end "
                "or choose another --output-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Unlock (the lock file stays: removing it would let two runs lock different files)."""
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def rollback(self) -> None:
        """Release, and remove the folder again if this run created it and left nothing else."""
        created = self.created and self.fd is not None
        self.release()
        if created and {p.name for p in self.directory.iterdir()} <= {LOCK_NAME, "checkpoints"}:
            if not any((self.directory / "checkpoints").glob("*")):
                shutil.rmtree(self.directory, ignore_errors=True)
