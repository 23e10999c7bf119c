"""What the pre-training loop does between optimizer steps: read a batch of rows from the pool
and average the losses of the steps since the last log."""

from __future__ import annotations

import torch


def fetch(pool, rows: torch.Tensor) -> torch.Tensor:
    """The series at ``rows`` of the training pool (a ``TensorDataset`` or any dataset of rows)."""
    if isinstance(pool, torch.utils.data.TensorDataset):
        return pool.tensors[0][rows]
    return torch.stack([_series(pool[int(i)]) for i in rows])


def _series(item):
    return item[0] if isinstance(item, (tuple, list)) else item


class LossWindow:
    """Losses summed over the micro-batches since the last log, each divided by ``accum``."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, losses: dict[str, torch.Tensor], accum: int) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0) + value.detach().float().reshape(()) / accum

    def take(self, steps: int, reduce) -> dict[str, float]:
        """The mean per optimizer step over ``steps`` steps, averaged across processes with
        ``reduce`` (``accelerator.reduce``); the window starts again empty."""
        means = {k: reduce(v / steps, "mean").item() for k, v in self.sums.items()}
        self.sums = {}
        return means
