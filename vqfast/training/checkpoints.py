"""Resumable checkpoints of a pre-training run that exist whole or not at all, and that are read
back without unpickling anything.

A checkpoint is a folder ``step-NNNNNNNN`` holding the model (``model.safetensors``), the
optimizer (``optimizer.pt``, tensors and numbers only), the learning-rate schedule
(``scheduler.json``), one ``rank-R.pt`` per process (its random-number states and the losses it
summed since the last log point) and, written last, ``trainer_state.json``: the run's state and a
manifest (size and SHA-256 of every file). It is written into a temporary folder and renamed into
place, so a listed checkpoint is a complete one; an old one is renamed out of the listing before
it is deleted. Everything is loaded with ``weights_only=True``, safetensors or JSON, and checked
against the manifest first: a damaged checkpoint is an error that names it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from vqfast.training.faults import fault

CHECKPOINT_PREFIX = "step-"
STATE_NAME = "trainer_state.json"  # written last: a listed checkpoint has one
MODEL_NAME = "model.safetensors"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.json"
FORMAT = 2  # format 1 was accelerate.save_state (pickles); it is refused


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (damaged, incomplete, from another setup)."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (full disk, permissions); nothing of it is kept."""


def rank_name(rank: int) -> str:
    return f"rank-{rank}.pt"


def checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints under ``directory``, oldest first (temp and trash folders start with
    a dot and are never listed)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir()
             if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
             and p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / STATE_NAME).is_file()]
    return sorted(found, key=step_of)


def step_of(path: Path) -> int:
    return int(Path(path).name[len(CHECKPOINT_PREFIX):])


def clean_leftovers(directory: Path) -> list[Path]:
    """Remove what an interrupted save or prune left (``.step-*.tmp``, ``.trash-*``)."""
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for p in directory.iterdir():
            if p.name.startswith((f".{CHECKPOINT_PREFIX}", ".trash-")):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def save_checkpoint(accelerator, directory: Path, step: int, state: dict, *, model, optimizer,
                    scheduler, rank_state: dict | None = None, keep: int = 2) -> Path:
    """Write the checkpoint of ``step`` and keep the newest ``keep``. Every process calls it:
    each writes its ``rank-R.pt`` (random states and ``rank_state``, a dict of tensors); the main
    process writes the rest. Raises ``CheckpointWriteError`` (on every process) when a file cannot
    be written; the temporary folder is removed then and older checkpoints stay as they were."""
    directory = Path(directory)
    final = directory / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = directory / f".{final.name}.tmp"
    main = accelerator.is_main_process
    error = None
    if main:
        error = _attempt(lambda: _fresh_dir(tmp))
    if not _agree(accelerator, error is None):
        _fail(accelerator, tmp, final, error)
    error = _attempt(lambda: _write_rank(tmp, accelerator.process_index, rank_state, step))
    if main and error is None:
        error = _attempt(lambda: _write_main(tmp, step, model, optimizer, scheduler, accelerator))
    if not _agree(accelerator, error is None):
        _fail(accelerator, tmp, final, error)
    if main:
        error = _attempt(lambda: _seal(tmp, final, step, state))
    if not _agree(accelerator, error is None):
        _fail(accelerator, tmp, final, error)
    if main:
        fault("save:renamed", step)
        prune(directory, keep, step)
    accelerator.wait_for_everyone()
    return final


def _attempt(write) -> BaseException | None:
    try:
        write()
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        return exc
    return None


def _fresh_dir(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)


def _write_rank(tmp: Path, rank: int, rank_state: dict | None, step: int) -> None:
    torch.save({"rng": rng_state(), "state": dict(rank_state or {})}, tmp / rank_name(rank))
    fault("save:rank", step)


def _write_main(tmp: Path, step: int, model, optimizer, scheduler, accelerator) -> None:
    from safetensors.torch import save_file

    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / MODEL_NAME))
    fault("save:model", step)  # also VQFAST_FAULT=enospc:save:model@N: a full disk here
    bundle = {"optimizer": optimizer.state_dict()}
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None:
        bundle["scaler"] = scaler.state_dict()
    torch.save(bundle, tmp / OPTIMIZER_NAME)
    fault("save:optimizer", step)
    (tmp / SCHEDULER_NAME).write_text(json.dumps(scheduler.state_dict()))


def _seal(tmp: Path, final: Path, step: int, state: dict) -> None:
    files = {}
    for p in sorted(tmp.iterdir()):
        _fsync(p)
        files[p.name] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    record = {"format": FORMAT, **state, "files": files}
    (tmp / STATE_NAME).write_text(json.dumps(record, indent=1, allow_nan=False))
    _fsync(tmp / STATE_NAME)
    fault("save:state", step)
    if final.exists():  # a damaged checkpoint of the same step, left by an earlier run
        _discard(final, step)
    tmp.rename(final)
    _fsync(final.parent)


def _fail(accelerator, tmp: Path, final: Path, error: BaseException | None):
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    if error is None:
        raise CheckpointWriteError(f"could not write checkpoint {final}: another process failed "
                                   "to write its part (see its message)")
    free = ""
    with contextlib.suppress(OSError):
        free = f"; {shutil.disk_usage(final.parent).free / 2**20:.0f} MiB free on that disk"
    raise CheckpointWriteError(
        f"could not write checkpoint {final} ({type(error).__name__}: {error}){free}. Its "
        "temporary files were removed and the older checkpoints are intact; free some space or "
        "fix the folder's permissions, then run again with --resume") from error


def prune(directory: Path, keep: int, step: int = -1) -> None:
    """Delete all but the newest ``keep`` checkpoints: each is first renamed out of the listing,
    so one killed mid-way is never listed half-deleted."""
    for old in checkpoints(directory)[:-keep] if keep > 0 else []:
        _discard(old, step)


def _discard(path: Path, step: int) -> None:
    trash = path.parent / f".trash-{path.name}-{os.getpid()}"
    path.rename(trash)
    fault("prune:renamed", step)
    first = next(iter(sorted(trash.iterdir())), None)
    if first is not None:
        first.unlink()
    fault("prune:partial", step)
    shutil.rmtree(trash, ignore_errors=True)


def verify_checkpoint(path: Path) -> dict:
    """The checkpoint's ``trainer_state.json`` after checking every file against its manifest;
    raises ``CheckpointError`` naming what is wrong."""
    path = Path(path)
    state_file = path / STATE_NAME
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged: {STATE_NAME} cannot be read "
                              f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format", 1) if isinstance(state, dict) else "?"
        raise CheckpointError(
            f"checkpoint {path} has format {found}, not {FORMAT}: it was written by an older "
            "vqfast (accelerate pickles, which are never loaded); start a new run or use that "
            "vqfast to finish it")
    for name, expected in state.get("files", {}).items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is damaged: {name} is missing")
        size = f.stat().st_size
        if size != expected["bytes"] or _sha256(f) != expected["sha256"]:
            raise CheckpointError(f"checkpoint {path} is damaged: {name} has changed since it was "
                                  f"written ({size} bytes, {expected['bytes']} expected or a "
                                  "different checksum)")
    return state


def load_checkpoint(accelerator, path: Path, *, model, optimizer, scheduler) -> tuple[dict, dict]:
    """Restore ``model``, ``optimizer``, ``scheduler`` and this process's random states from the
    checkpoint at ``path``; returns ``(trainer state, this process's rank_state)``."""
    from safetensors.torch import load_file

    path = Path(path)
    state = verify_checkpoint(path)
    rank = accelerator.process_index
    if rank_name(rank) not in state.get("files", {}):
        raise CheckpointError(f"checkpoint {path} has no state for process {rank}: it was "
                              f"written by {state.get('num_processes', '?')} processes; resume "
                              "with as many")
    device = accelerator.device
    weights = _read(path / MODEL_NAME, lambda p: load_file(str(p)))
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} holds weights of another model "
                              f"({str(exc).splitlines()[0]})") from exc
    bundle = _read(path / OPTIMIZER_NAME, lambda p: _torch_load(p, device))
    optimizer.load_state_dict(bundle["optimizer"])
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and "scaler" in bundle:
        scaler.load_state_dict(bundle["scaler"])
    scheduler.load_state_dict(_read(path / SCHEDULER_NAME, lambda p: json.loads(p.read_text())))
    ours = _read(path / rank_name(rank), lambda p: _torch_load(p, "cpu"))
    set_rng_state(ours["rng"])
    return state, ours["state"]


def _torch_load(p: Path, device):
    return torch.load(p, map_location=device, weights_only=True)


def _read(p: Path, load):
    try:
        return load(p)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"checkpoint {p.parent} is damaged: {p.name} cannot be read (it "
                              "holds objects other than tensors and numbers, and loading those "
                              "would run code from the file: refused)") from exc
    except Exception as exc:  # any reader's failure on a file the manifest vouched for
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"checkpoint {p.parent} is damaged: {p.name} cannot be read "
                              f"({type(exc).__name__}: {first})") from exc


def rng_state() -> dict:
    """Every random-number state a training step may draw from, as tensors and numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _agree(accelerator, ok: bool) -> bool:
    """Whether every process is ``ok`` (one all-reduce when there are several)."""
    if accelerator.num_processes == 1:
        return ok
    flag = torch.tensor([1 if ok else 0], device=accelerator.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
