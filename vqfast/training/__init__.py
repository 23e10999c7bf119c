"""Pre-training: presets (``presets``), when the loop steps and what it reads (``schedule``,
``loop``), atomic checkpoints (``checkpoints``), and what a step minimizes, with or without text
(``objectives``, ``distill``). ``vqfast/train.py`` wires them together."""

from vqfast.training.checkpoints import (
    CHECKPOINT_PREFIX,
    STATE_NAME,
    checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from vqfast.training.schedule import ShardedBatches, lr_factor, lr_scheduler

__all__ = ["CHECKPOINT_PREFIX", "STATE_NAME", "ShardedBatches", "checkpoints", "load_checkpoint",
           "lr_factor", "lr_scheduler", "save_checkpoint"]
