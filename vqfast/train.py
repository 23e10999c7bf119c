"""Pre-train VQShape and evaluate it: ``accelerate launch vqfast/train.py [options]``.

With no options it pre-trains the CPU-friendly ``default`` preset on BasicMotions (a real human
activity recognition dataset shipped by aeon) and writes to ``runs/BasicMotions-default``: the
exported model (``model/``, loadable with ``VQShape.from_pretrained``), ``report.json``,
``report.md`` and plots. The same script runs on one CPU or many GPUs; under several processes the
data is sharded and only the main process writes files.

A user error (a bad option, dataset or folder) is one line and exit code 2, before any work; a
run that fails (a non-finite loss, a full disk, a process that stopped answering) says why in one
line and exits with 1, its checkpoints intact.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, this file's folder (the vqfast package) is sys.path[0]; its modules must not
    # shadow top-level ones, and vqfast must import from the checkout when it is not installed.
    here = Path(__file__).resolve().parent
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != here]
    try:
        import vqfast  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(here.parent))

import argparse
import contextlib
import os
import time
import warnings

import torch

from vqfast.inputs import SeriesError
from vqfast.text.errors import TextError
from vqfast.training import ShardedBatches, lr_scheduler
from vqfast.training.checkpoints import (
    CheckpointError,
    CheckpointWriteError,
    checkpoints,
    clean_leftovers,
)
from vqfast.training.cli import build_parser, build_preset, text_plan
from vqfast.training.codebook import CodebookCare
from vqfast.training.distill import trainable_parameters
from vqfast.training.guard import NonFiniteError
from vqfast.training.loop import (
    BadBatchError,
    Run,
    apply_settings,
    resume_newest,
    train,
)
from vqfast.training.optim import make_optimizer
from vqfast.training.plans import PlainPlan, TextPlan
from vqfast.training.processes import (
    CollectiveTimeout,
    collective_kwargs,
    default_threads,
    diagnose,
    is_collective_failure,
)
from vqfast.training.resume import differences, refuse, run_settings
from vqfast.training.rundir import OutputDirError, RunLock, check_creatable, check_writable


class UsageError(ValueError):
    """A bad option, input or folder, found before any work."""


USER_ERRORS = (UsageError, SeriesError, TextError, OutputDirError, CheckpointError)
RUN_FAILURES = (NonFiniteError, BadBatchError, CheckpointWriteError, CollectiveTimeout)


@contextlib.contextmanager
def user_errors():
    """Errors of setup (before training) are the user's: one line, exit code 2."""
    try:
        yield
    except USER_ERRORS:
        raise
    except (ValueError, FileNotFoundError, NotADirectoryError, ImportError) as exc:
        raise UsageError(str(exc)) from exc


def parse_args(argv=None) -> tuple[argparse.Namespace, PlainPlan | TextPlan]:
    """The options, and the plan they make for text (``PlainPlan`` without ``--text``)."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        plan = text_plan(args)
    except ValueError as exc:
        p.error(str(exc))
    if args.output_dir is None:
        name = "+".join(Path(d).stem for d in args.dataset)
        args.output_dir = Path("runs") / f"{name}-{args.preset}"
    return args, plan


def check_inputs(args) -> None:
    """Every dataset, file and folder the options name exists and is what it should be; expands
    ``--dataset all`` (less ``--exclude``). Reads no data."""
    from vqfast.data import expand_datasets
    from vqfast.data.datasets import resolve_source

    args.dataset = expand_datasets(args.dataset, args.exclude)
    for source in args.dataset:
        if not Path(source).is_dir():
            resolve_source(source)
    if args.teacher is not None and not args.teacher.is_dir():
        raise UsageError(f"--teacher {args.teacher} is not a folder of an exported VQShapeText "
                         "(the model/ folder of a --text run)")
    if args.text_file is not None and not args.text_file.is_file():
        raise UsageError(f"--text-file {args.text_file} does not exist")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    if not args.collective_timeout > 0:
        raise UsageError(f"--collective-timeout must be positive, got {args.collective_timeout}")
    found = checkpoints(args.output_dir / "checkpoints")
    if args.resume and not found:
        where = "" if args.output_dir.is_dir() else " (the folder does not exist)"
        raise UsageError(f"--resume: no checkpoint in {args.output_dir / 'checkpoints'}{where}; "
                         "run without --resume to start a run there")
    if args.resume_override and not args.resume:
        raise UsageError("--resume-override goes with --resume")
    if not args.resume and found:
        raise UsageError(f"{args.output_dir} already holds checkpoints of a run; pass --resume to "
                         "continue it or choose another --output-dir")
    check_creatable(args.output_dir)


def load_data(args, length: int, accelerator):
    """(labelled datasets, pretraining pool, pool row sources): the pool is a tensor or a sharded
    dataset; sources (dataset, sample, channel) are known for labelled data."""
    from vqfast.data import ShardedSeries, load_dataset, pretraining_series
    from vqfast.data.readers import pickles_allowed

    labelled, shards, sources = [], [], None
    with accelerator.main_process_first(), pickles_allowed(args.allow_pickle):
        for source in args.dataset:
            if Path(source).is_dir():
                shards.append(ShardedSeries(source, length=length, how=args.how))
            else:
                labelled.append(load_dataset(source, length=length, how=args.how,
                                             cache_dir=args.cache_dir / "data"))
    pools = []
    if labelled:
        series, sources = pretraining_series(labelled, "train", balance=args.balance,
                                             seed=args.seed, return_source=True)
        pools.append(torch.utils.data.TensorDataset(series))
    pools += shards
    pool = pools[0] if len(pools) == 1 else torch.utils.data.ConcatDataset(pools)
    return labelled, pool, sources


def _acquire(accelerator, output_dir: Path) -> RunLock | None:
    """The main process locks the output folder; every process learns whether it could."""
    lock, error = None, None
    if accelerator.is_main_process:
        try:
            lock = RunLock(output_dir).acquire()
        except OutputDirError as exc:
            error = exc
    if accelerator.num_processes > 1:
        flag = torch.tensor([0 if error else 1], device=accelerator.device)
        torch.distributed.broadcast(flag, src=0)
        if not flag.item() and error is None:
            raise UsageError(f"the main process could not take {output_dir} (see its message)")
    if error is not None:
        raise error
    return lock


def _threads(args, accelerator) -> int:
    if accelerator.device.type == "cpu":
        if args.threads:
            torch.set_num_threads(args.threads)
        else:
            local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
            threads, note = default_threads(local)
            torch.set_num_threads(threads)
            if note:
                accelerator.print(f"vqfast: {note}")
    return torch.get_num_threads()


def main(argv=None) -> dict:
    args, plan = parse_args(argv)
    command = " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])
    with user_errors():
        preset = build_preset(args)
        check_inputs(args)
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    started = time.perf_counter()
    accelerator = Accelerator(kwargs_handlers=[collective_kwargs(args.collective_timeout)])
    threads = _threads(args, accelerator)
    output_dir: Path = args.output_dir
    lock = _acquire(accelerator, output_dir)
    try:
        with user_errors():
            run, labelled, facts = _setup(args, plan, preset, accelerator, set_seed)
    except BaseException:
        if lock is not None:
            lock.rollback()
        raise
    try:
        report = _train_and_report(args, plan, preset, accelerator, run, labelled, started,
                                   dict(facts, command=command, threads=threads))
    finally:
        if lock is not None:
            lock.release()
    return report


def fit_batch_to_pool(args, settings, pool_size: int, world: int, log=print) -> None:
    """A preset's batch larger than a small training pool (GunPoint has 50 series) is lowered to
    what every process can fill, saying so; a batch size the user chose is kept (and refused
    later with the fix named)."""
    chosen = args.batch_size is not None or any(
        item.split("=", 1)[0].strip() == "batch_size" for item in args.set)
    fitted = pool_size // world
    if chosen or pool_size >= settings.batch_size * world or fitted < 1:
        return
    log(f"vqfast: the training pool has {pool_size} series, fewer than the preset's batch of "
        f"{settings.batch_size} per process x {world} process(es): using batches of {fitted} "
        "(--batch-size N chooses)")
    settings.batch_size = fitted


def _setup(args, plan, preset, accelerator, set_seed):
    """Everything before the first step: the model, the data, the optimizer and, with
    ``--resume``, the state of the newest loadable checkpoint."""
    settings = preset.train
    ckpt_dir = args.output_dir / "checkpoints"
    if accelerator.is_main_process:
        clean_leftovers(ckpt_dir)
        check_writable(args.output_dir)
    set_seed(args.seed)
    model, teacher = plan.build_model(preset)
    labelled, pool, sources = load_data(args, model.len_input, accelerator)
    objective = plan.objective(labelled, pool, sources, teacher, accelerator.device,
                               log=accelerator.print)
    world, rank = accelerator.num_processes, accelerator.process_index
    fit_batch_to_pool(args, settings, len(pool), world, accelerator.print)
    batches = ShardedBatches(len(pool), settings.batch_size, rank, world, args.seed)
    if settings.epochs is not None:
        settings.max_steps = batches.optimizer_steps(settings.epochs, settings.grad_accum)
    for m in (model, teacher):
        if m is not None:
            m.fast = not args.no_fast
    optimizer = make_optimizer(trainable_parameters(model), settings,
                               implementation="for-loop" if args.no_fast else "fused")
    scheduler = lr_scheduler(optimizer, settings)
    model, optimizer = accelerator.prepare(model, optimizer)
    current = run_settings(preset, seed=args.seed, datasets=args.dataset, how=args.how,
                           balance=args.balance, plan=plan, num_processes=world)
    run = Run(accelerator, model, optimizer, scheduler, objective, pool, batches, settings,
              ckpt_dir, {"settings": current}, describe=_token_metrics(model, accelerator),
              crash_after_step=args.crash_after_step,
              care=CodebookCare(settings.kmeans_init_step, settings.dead_code_every,
                                seed=args.seed, gather=accelerator.gather))
    facts = {}
    if args.resume:
        differ = {}

        def check(path, state):
            differ.clear()
            differ.update(differences(state.get("settings", {}), current))
            if differ and not args.resume_override:
                raise refuse(differ, path)

        path, _ = resume_newest(run, check, log=accelerator.print)
        if differ:
            apply_settings(run)
            facts["resume_overrides"] = differ
            accelerator.print(f"vqfast: --resume-override: continuing with new "
                              f"{', '.join(differ)}")
        accelerator.print(f"resumed from {path} (step {run.step})")
    return run, labelled, facts


def _token_metrics(model, accelerator):
    from vqfast.evaluation.tokens import token_metrics

    num_code = accelerator.unwrap_model(model).num_code

    def describe(outputs):
        with torch.no_grad():
            return token_metrics(outputs, num_code)

    return describe


def _train_and_report(args, plan, preset, accelerator, run, labelled, started, facts) -> dict:
    from tqdm.auto import tqdm

    from vqfast import report as report_lib
    from vqfast.evaluation.probe import ProbeSettings

    is_main, world = accelerator.is_main_process, accelerator.num_processes
    bar = tqdm(total=run.settings.max_steps, initial=run.step, disable=not is_main,
               desc="pre-training", unit="step", dynamic_ncols=True)
    try:
        train(run, bar)
    except RuntimeError as exc:
        if world > 1 and not isinstance(exc, RUN_FAILURES + (CheckpointError,)) \
                and is_collective_failure(exc):
            raise diagnose(exc, accelerator.process_index, world,
                           args.collective_timeout) from exc
        raise
    finally:
        bar.close()
    report = {}
    if is_main:
        run_facts = {"dataset": [str(d) for d in args.dataset], "preset": preset.name,
                     "text": plan.report, "config": preset.as_dict(), "num_processes": world,
                     "device": report_lib.device_name(accelerator.device), "seed": args.seed,
                     "steps": run.step, "series_per_step": run.series_per_step,
                     "train_seconds": run.train_seconds, **facts}
        probe = None if args.no_probe else ProbeSettings(protocol=args.probe_protocol,
                                                         seeds=args.probe_seeds,
                                                         tie_break=args.probe_tie_break)
        core = accelerator.unwrap_model(run.model)
        report = report_lib.finish(core, labelled, run.history, args.output_dir, run_facts,
                                   started=started, probe=probe, baseline=not args.no_baseline,
                                   draw=not args.no_plots, texts=plan.texts)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return report


def _rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def cli(argv=None) -> int:
    """``main`` with its errors as one line each: 2 for a user error, 1 for a failed run."""
    try:
        main(argv)
    except RUN_FAILURES as exc:
        if _rank() == 0 or isinstance(exc, CollectiveTimeout):
            print(f"vqfast: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except USER_ERRORS as exc:
        if _rank() == 0:
            print(f"vqfast: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
    code = cli()
    sys.stdout.flush()
    sys.stderr.flush()
    if code == 1 and "RANK" in os.environ:
        os._exit(code)  # a broken process group can hang the interpreter's exit
    sys.exit(code)
