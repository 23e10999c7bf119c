"""Atomic, resumable checkpoints of an ``accelerate`` run: a checkpoint exists whole or not at
all, and the newest ``keep`` are kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vqfast.fileio import atomic_write_json

CHECKPOINT_PREFIX = "step-"
STATE_NAME = "trainer_state.json"


def checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints under ``directory``, oldest first (unfinished ones are temp dirs)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir()
             if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def save_checkpoint(accelerator, directory: Path, step: int, state: dict, keep: int = 2) -> Path:
    """``accelerator.save_state`` into a temp folder, then renamed: a checkpoint either exists
    whole or not at all. Every process must call it (each saves its own RNG state)."""
    final = directory / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = directory / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / STATE_NAME, state)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoints(directory)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> dict:
    accelerator.load_state(str(path))
    return json.loads((path / STATE_NAME).read_text())
