"""Pre-training: presets (``presets``), the command line's options (``cli``), when the loop steps
and what it reads (``schedule``, ``loop``), checkpoints that exist whole or not at all and load
without pickle (``checkpoints``), the non-finite guard (``guard``), settings a resume must share
(``resume``), the output folder's lock (``rundir``), collective timeouts and threads
(``processes``), and what a step minimizes, with or without text (``objectives``, ``distill``).
``vqfast/train.py`` wires them together."""

from vqfast.training.checkpoints import (
    CHECKPOINT_PREFIX,
    STATE_NAME,
    CheckpointError,
    checkpoints,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from vqfast.training.schedule import ShardedBatches, lr_factor, lr_scheduler

__all__ = ["CHECKPOINT_PREFIX", "STATE_NAME", "CheckpointError", "ShardedBatches", "checkpoints",
           "load_checkpoint", "lr_factor", "lr_scheduler", "save_checkpoint",
           "verify_checkpoint"]
