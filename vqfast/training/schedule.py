"""When the pre-training loop steps and what it reads: the learning-rate schedule and a
deterministic, resumable batch order sharded across processes."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


def lr_factor(step: int, warmup_steps: int, total_steps: int, start_factor: float,
              min_factor: float) -> float:
    """The authors' schedule as a multiple of the peak rate: linear warm-up from ``start_factor``
    over ``warmup_steps``, then cosine annealing to ``min_factor`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return start_factor + (1 - start_factor) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_scheduler(optimizer, settings) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`lr_factor` as ``optimizer``'s schedule, with a preset's ``TrainSettings``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, settings.warmup_steps, settings.max_steps, settings.warmup_start_factor,
        settings.min_lr / settings.lr))


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

    def optimizer_steps(self, epochs: float, grad_accum: int) -> int:
        """Optimizer steps for ``epochs`` passes over the rows (at least one)."""
        return max(1, math.ceil(epochs * self.per_epoch / grad_accum))
