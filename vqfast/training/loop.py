"""The pre-training loop: read a batch of rows from the pool, step, stop at the first non-finite
loss or gradient, log the mean losses since the last log point, checkpoint, and resume exactly
(the partial loss window travels with the checkpoint)."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vqfast.inputs import SeriesError
from vqfast.training.checkpoints import (
    CheckpointError,
    checkpoints,
    load_checkpoint,
    save_checkpoint,
    step_of,
    verify_checkpoint,
)
from vqfast.training.faults import fault
from vqfast.training.guard import DivergenceWatch, NonFiniteError, StepHealth, grad_norm


def fetch(pool, rows: torch.Tensor) -> torch.Tensor:
    """The series at ``rows`` of the training pool (a ``TensorDataset`` or any dataset of rows)."""
    if isinstance(pool, torch.utils.data.TensorDataset):
        return pool.tensors[0][rows]
    return torch.stack([_series(pool[int(i)]) for i in rows])


def _series(item):
    return item[0] if isinstance(item, (tuple, list)) else item


class LossWindow:
    """Losses summed over the micro-batches since the last log, each divided by ``accum``, and
    the optimizer steps they span; saved with a checkpoint so a resumed run logs the same means."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    def add(self, losses: dict[str, torch.Tensor], accum: int) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0) + value.detach().float().reshape(()) / accum

    def end_step(self) -> None:
        self.steps += 1

    def take(self, reduce) -> dict[str, float]:
        """The mean per optimizer step since the last take, averaged across processes with
        ``reduce`` (``accelerator.reduce``); the window starts again empty."""
        steps = max(self.steps, 1)
        means = {k: reduce(v / steps, "mean").item() for k, v in self.sums.items()}
        self.sums, self.steps = {}, 0
        return means

    def state(self) -> dict:
        return {"window_steps": self.steps,
                "window_sums": {k: v.detach().cpu() for k, v in self.sums.items()}}

    def load(self, state: dict, device) -> None:
        self.steps = int(state.get("window_steps", 0))
        self.sums = {k: v.to(device) for k, v in state.get("window_sums", {}).items()}


@dataclass
class Run:
    """What the loop reads and updates. ``describe(outputs)``: extra metrics of the forward pass
    of each log step's last micro-batch (this process's), logged as ``tokens`` (or None)."""

    accelerator: object
    model: torch.nn.Module
    optimizer: object
    scheduler: object
    objective: object
    pool: object
    batches: object
    settings: object  # TrainSettings
    ckpt_dir: Path
    state_extra: dict  # saved in every checkpoint (settings, ...)
    describe: object = None
    care: object = None  # a CodebookCare (vqfast.training.codebook), or None
    crash_after_step: int | None = None
    step: int = 0
    history: list = field(default_factory=list)
    train_seconds: float = 0.0
    window: LossWindow = field(default_factory=LossWindow)
    last_checkpoint: Path | None = None

    @property
    def series_per_step(self) -> int:
        s = self.settings
        return s.batch_size * s.grad_accum * self.accelerator.num_processes


def resume_newest(run: Run, check=None, log=print) -> tuple[Path, dict]:
    """Load the newest checkpoint that checks out and loads into ``run``; each damaged newer one
    is named and skipped. ``check(path, state)`` sees the trainer state before anything is
    loaded (and may raise). Raises ``CheckpointError`` when none is left."""
    found = checkpoints(run.ckpt_dir)
    if not found:
        raise CheckpointError(f"--resume: no checkpoint in {run.ckpt_dir}")
    damaged = []
    for path in reversed(found):
        try:
            state = verify_checkpoint(path)
            if check is not None:
                check(path, state)
            return path, restore(run, path)
        except CheckpointError as exc:
            damaged.append(str(exc))
            log(f"vqfast: {exc}; trying the previous checkpoint")
    raise CheckpointError(f"--resume: no checkpoint in {run.ckpt_dir} can be loaded: "
                          + "; ".join(damaged))


def restore(run: Run, path: Path) -> dict:
    """Load the checkpoint at ``path`` into ``run``; returns its trainer state."""
    core = run.accelerator.unwrap_model(run.model)
    state, rank_state = load_checkpoint(run.accelerator, path, model=core,
                                        optimizer=run.optimizer, scheduler=run.scheduler)
    run.step, run.history = state["step"], state["history"]
    run.train_seconds = state["train_seconds"]
    run.window.load(rank_state, run.accelerator.device)
    if run.care is not None:
        run.care.load(rank_state.get("codebook_care"))
    run.last_checkpoint = path
    return state


def apply_settings(run: Run) -> None:
    """After ``--resume-override``: the current peak rate and weight decay, not the saved ones."""
    s, sched = run.settings, run.scheduler
    sched.base_lrs = [s.lr for _ in sched.base_lrs]
    for group, lam in zip(run.optimizer.param_groups, sched.lr_lambdas):
        group["initial_lr"], group["weight_decay"] = s.lr, s.weight_decay
        group["lr"] = s.lr * lam(sched.last_epoch)
    sched._last_lr = [g["lr"] for g in run.optimizer.param_groups]


def save(run: Run, elapsed: float) -> Path:
    core = run.accelerator.unwrap_model(run.model)
    if not all(torch.isfinite(p).all() for p in core.parameters()):
        raise NonFiniteError(f"the model's weights are not finite after step {run.step}; no "
                             f"checkpoint was written. {last_good(run)}")
    state = {"step": run.step, "history": run.history, "train_seconds": elapsed,
             "num_processes": run.accelerator.num_processes, **run.state_extra}
    path = save_checkpoint(run.accelerator, run.ckpt_dir, run.step, state, model=core,
                           optimizer=run.optimizer, scheduler=run.scheduler,
                           rank_state=rank_state(run))
    run.last_checkpoint = path
    return path


def rank_state(run: Run) -> dict:
    state = run.window.state()
    if run.care is not None:
        state["codebook_care"] = run.care.state()
    return state


def last_good(run: Run) -> str:
    if run.last_checkpoint is None:
        return "No checkpoint had been saved yet."
    return (f"The last finite checkpoint is {run.last_checkpoint} (step "
            f"{step_of(run.last_checkpoint)}): --resume continues from it.")


class BadBatchError(RuntimeError):
    """The model refused a training batch (e.g. values that overflow float32); the run stops."""


@contextlib.contextmanager
def _data_errors(run: Run):
    try:
        yield
    except SeriesError as exc:
        raise BadBatchError(f"step {run.step + 1}: {exc}. Training stopped before applying this "
                            f"step, and no model was exported. {last_good(run)}") from exc


def train(run: Run, progress=None) -> None:
    """Step until ``settings.max_steps``, logging and checkpointing (the last step included, so
    the trained weights are on disk before anything is exported)."""
    acc, s = run.accelerator, run.settings
    accum, world = s.grad_accum, acc.num_processes
    stream = run.batches.batches(start=run.step * accum)
    params = [p for p in run.model.parameters() if p.requires_grad]
    watch = DivergenceWatch(run.history[0]["loss"] if run.history else None)
    reduce = acc.reduce if world > 1 else None
    care = run.care if run.care is not None and run.care.active else None
    core = acc.unwrap_model(run.model)
    if care is not None:
        run.objective.latents = True  # the care reads z_e
    run.model.train()
    t0 = time.perf_counter()
    while run.step < s.max_steps:
        health, outputs = StepHealth(), None
        for micro in range(accum):
            rows = next(stream)
            x = fetch(run.pool, rows).to(acc.device)
            last = micro == accum - 1
            sync = contextlib.nullcontext() if last else acc.no_sync(run.model)
            with sync, _data_errors(run):
                loss, losses, outputs = run.objective.with_outputs(run.model, x, rows)
                terms = {"loss": loss, **losses}
                health.add(terms)
                acc.backward(loss / accum)
            if care is not None:
                care.observe(outputs["z_e"], outputs["code_idx"], core.num_code)
            run.window.add(terms, accum)
        norm = (acc.clip_grad_norm_(run.model.parameters(), s.grad_clip) if s.grad_clip
                else grad_norm(params))
        health.check(run.step + 1, norm, reduce, last_good(run))
        logging = (run.step + 1) % s.log_every == 0 or run.step + 1 == s.max_steps
        described = run.describe(outputs) if logging and run.describe else None
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.step += 1
        if care is not None:
            care.after_step(run.step, core.codebook.embedding, run.optimizer)
        run.window.end_step()
        if progress is not None:
            progress.update(1)
        elapsed = run.train_seconds + time.perf_counter() - t0
        if logging:
            logged = run.window.take(acc.reduce)
            logged.update(step=run.step, lr=run.scheduler.get_last_lr()[0],
                          series_per_second=run.step * run.series_per_step / max(elapsed, 1e-9))
            if described is not None:
                logged["tokens"] = described
            run.history.append(logged)
            watch.see(run.step, logged["loss"])
            if progress is not None:
                progress.set_postfix(loss=f"{logged['loss']:.4f}",
                                     series_s=f"{logged['series_per_second']:.0f}")
        if run.step % s.checkpoint_every == 0 or run.step == s.max_steps:
            save(run, elapsed)
        fault("step", run.step)
        if run.crash_after_step is not None and run.step == run.crash_after_step:
            os._exit(3)  # a crash: no cleanup, no final files
    run.train_seconds += time.perf_counter() - t0
