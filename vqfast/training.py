"""Pieces of the pre-training loop that are not the loop: the learning-rate schedule, a
deterministic and resumable batch order sharded across processes, and atomic checkpoints."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from vqfast.fileio import atomic_write_json

CHECKPOINT_PREFIX = "step-"
STATE_NAME = "trainer_state.json"


def lr_factor(step: int, warmup_steps: int, total_steps: int, start_factor: float,
              min_factor: float) -> float:
    """The authors' schedule as a multiple of the peak rate: linear warm-up from ``start_factor``
    over ``warmup_steps``, then cosine annealing to ``min_factor`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return start_factor + (1 - start_factor) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


class ShardedBatches:
    """Batches of row indices for one process: epoch ``e`` shuffles all rows with seed
    ``seed + e``, drops the tail that does not fill a batch on every process, and gives process
    ``rank`` every ``world``-th batch. The order depends only on (seed, epoch, position), so a
    resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, num_rows: int, batch_size: int, rank: int, world: int, seed: int):
        if num_rows < batch_size * world:
            raise ValueError(
                f"the training pool has {num_rows} series, fewer than one batch per process "
                f"({batch_size} x {world}); lower --batch-size"
            )
        self.num_rows, self.batch_size = num_rows, batch_size
        self.rank, self.world, self.seed = rank, world, seed
        self.per_epoch = num_rows // (batch_size * world)  # batches per process and epoch

    def batches(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Index batches of this process from its ``start``-th batch on, forever."""
        epoch, offset = divmod(start, self.per_epoch)
        while True:
            order = torch.randperm(self.num_rows,
                                   generator=torch.Generator().manual_seed(self.seed + epoch))
            for b in range(offset, self.per_epoch):
                first = (b * self.world + self.rank) * self.batch_size
                yield order[first : first + self.batch_size]
            epoch, offset = epoch + 1, 0


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
