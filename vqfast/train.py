"""Pre-train VQShape and evaluate it: ``accelerate launch vqfast/train.py [options]``.

With no options it pre-trains the CPU-friendly ``default`` preset on BasicMotions (a real human
activity recognition dataset shipped by aeon) and writes to ``runs/BasicMotions-default``: the
exported model (``model/``, loadable with ``VQShape.from_pretrained``), ``report.json``,
``report.md`` and plots. The same script runs on one CPU or many GPUs; under several processes the
data is sharded and only the main process writes files.
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

from vqfast.evaluation import report as report_lib
from vqfast.evaluation.probe import PROTOCOLS, ProbeSettings
from vqfast.inputs import PAD_MODES
from vqfast.model import DEFAULTS, FUSIONS, TEXT_KEYS
from vqfast.text import TEXT_SOURCES
from vqfast.training import (
    ShardedBatches,
    checkpoints,
    load_checkpoint,
    lr_scheduler,
    presets,
    save_checkpoint,
)
from vqfast.training.distill import TARGETS, trainable_parameters
from vqfast.training.loop import LossWindow, fetch
from vqfast.training.plans import TEXT_MODES, PlainPlan, TextPlan

DEFAULT_DATASET = "BasicMotions"
# "fn" (a Python callable) is the one text source a command line cannot give.
TEXT_CHOICES = ("none", *(s for s in TEXT_SOURCES if s != "fn"))


def parse_args(argv=None) -> tuple[argparse.Namespace, PlainPlan | TextPlan]:
    """The options, and the plan they make for text (``PlainPlan`` without ``--text``)."""
    p = argparse.ArgumentParser(
        prog="accelerate launch vqfast/train.py",
        description="Pre-train a VQShape tokenizer, export it and report how good its tokens are.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", nargs="+", default=[DEFAULT_DATASET],
                   help="dataset names shipped with aeon, .ts/.npz/.npy files, or folders of .npy "
                        "shards (unlabelled, pre-training only)")
    p.add_argument("--preset", default="default", choices=sorted(presets.PRESETS),
                   help="; ".join(f"{name}: {preset.description}"
                                  for name, preset in presets.PRESETS.items()))
    p.add_argument("--output-dir", type=Path, default=None,
                   help="where everything is written (default runs/<dataset>-<preset>)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (preset's default)")
    p.add_argument("--epochs", type=float, help="train for this many passes over the data instead")
    p.add_argument("--batch-size", type=int, help="series per process and micro-batch")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --output-dir")
    p.add_argument("--no-probe", action="store_true", help="skip the linear probes")
    p.add_argument("--probe-protocol", choices=PROTOCOLS, default="cv")
    p.add_argument("--probe-seeds", type=int, default=5)
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the probe of the untrained model")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--balance", action="store_true",
                   help="up-sample every dataset to the largest (the authors' balancing)")
    p.add_argument("--how", choices=PAD_MODES, default="pad",
                   help="unequal lengths: zero-pad then resample (authors) or resample each")
    p.add_argument("--checkpoint-every", type=int, help="optimizer steps between checkpoints")
    p.add_argument("--log-every", type=int, help="optimizer steps between logged losses")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("VQFAST_CACHE", Path.home() / ".cache" / "vqfast")),
                   help="preprocessed datasets are cached here")
    text = p.add_argument_group("text guidance (VQShapeText)")
    text.add_argument("--text", choices=TEXT_CHOICES, default="none",
                      help="where per-sample text comes from: label templates, a rule-based "
                           "description of each series, or a JSON file of notes")
    text.add_argument("--text-mode", choices=TEXT_MODES, default="teacher",
                      help="teacher: train with text; align: two passes (with/without text) and "
                           "an alignment loss; distill: a text-free student of --teacher")
    text.add_argument("--teacher", type=Path, help="exported VQShapeText (for --text-mode distill)")
    text.add_argument("--fusion", choices=FUSIONS, default="z")
    text.add_argument("--text-keys", choices=TEXT_KEYS, default="tokens")
    text.add_argument("--text-file", type=Path, help='JSON {"train": [...], "test": [...]}')
    text.add_argument("--text-template",
                      help="label template with {label}, e.g. 'a person {label}'")
    text.add_argument("--text-model", help="sentence encoder (default offline all-MiniLM-L6-v2)")
    text.add_argument("--align-weight", type=float, default=1.0)
    text.add_argument("--distill-weight", type=float, default=1.0)
    text.add_argument("--distill-targets", default="z_e",
                      help="comma-separated student outputs that follow the teacher's: "
                           + ",".join(TARGETS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any preset setting (model keyword, optimizer setting or loss "
                        "weight), e.g. --set num_code=128 --set lambda_dist=0.5")
    model = p.add_argument_group("model overrides (VQShape keywords)")
    for key, value in DEFAULTS.items():
        model.add_argument(f"--{key.replace('_', '-')}", dest=f"model_{key}", type=type(value),
                           default=None, help=argparse.SUPPRESS if key == "codebook_type" else None)
    p.add_argument("--threads", type=int,
                   help="CPU threads per process (default: the machine's cores shared among the "
                        "processes on it; accelerate launch would otherwise pin 1)")
    p.add_argument("--crash-after-step", type=int, help=argparse.SUPPRESS)  # tests: abrupt stop
    args = p.parse_args(argv)
    try:
        plan = text_plan(args)
    except ValueError as exc:
        p.error(str(exc))
    if args.output_dir is None:
        name = "+".join(Path(d).stem for d in args.dataset)
        args.output_dir = Path("runs") / f"{name}-{args.preset}"
    return args, plan


def text_plan(args) -> PlainPlan | TextPlan:
    """The one place that reads ``--text`` and the options that go with it."""
    if args.text == "none":
        if args.text_mode != "teacher":
            raise ValueError(f"--text-mode {args.text_mode} needs text: pass --text "
                             + "|".join(TEXT_CHOICES[1:]))
        return PlainPlan()
    if args.text_mode == "distill" and args.teacher is None:
        raise ValueError("--text-mode distill needs --teacher DIR (an exported VQShapeText)")
    if args.text == "file" and args.text_file is None:
        raise ValueError("--text file needs --text-file PATH")
    return TextPlan(
        source=args.text, mode=args.text_mode, teacher=args.teacher, fusion=args.fusion,
        text_keys=args.text_keys, text_model=args.text_model, template=args.text_template,
        text_file=args.text_file, align_weight=args.align_weight,
        distill_weight=args.distill_weight,
        distill_targets=tuple(k.strip() for k in args.distill_targets.split(",") if k.strip()),
        cache_dir=args.cache_dir / "text",
    )


def build_preset(args) -> presets.Preset:
    preset = presets.get_preset(args.preset)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise SystemExit(f"--set takes KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value)
    for key in DEFAULTS:
        value = getattr(args, f"model_{key}")
        if value is not None:
            overrides[key] = value
    for key in ("max_steps", "epochs", "batch_size", "grad_accum", "lr", "checkpoint_every",
                "log_every"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    try:
        return presets.apply_overrides(preset, overrides)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def load_data(args, length: int, accelerator):
    """(labelled datasets, pretraining pool, pool row sources): the pool is a tensor or a sharded
    dataset; sources (dataset, sample, channel) are known for labelled data."""
    from vqfast.data import ShardedSeries, load_dataset, pretraining_series

    labelled, shards, sources = [], [], None
    with accelerator.main_process_first():
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


def main(argv=None) -> dict:
    args, plan = parse_args(argv)
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    started = time.perf_counter()
    accelerator = Accelerator()
    is_main = accelerator.is_main_process
    if accelerator.device.type == "cpu":
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local))
    preset = build_preset(args)
    settings = preset.train
    output_dir: Path = args.output_dir
    ckpt_dir = output_dir / "checkpoints"
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    if not args.resume and checkpoints(ckpt_dir):
        raise SystemExit(f"{output_dir} already holds checkpoints of a run; pass --resume to "
                         "continue it or choose another --output-dir")

    set_seed(args.seed)
    model, teacher = plan.build_model(preset)
    labelled, pool, sources = load_data(args, model.len_input, accelerator)
    try:
        objective = plan.objective(labelled, pool, sources, teacher, accelerator.device,
                                   log=accelerator.print)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None

    world, rank = accelerator.num_processes, accelerator.process_index
    batches = ShardedBatches(len(pool), settings.batch_size, rank, world, args.seed)
    if settings.epochs is not None:
        settings.max_steps = batches.optimizer_steps(settings.epochs, settings.grad_accum)
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    scheduler = lr_scheduler(optimizer, settings)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    step, history, train_seconds = 0, [], 0.0
    if args.resume:
        found = checkpoints(ckpt_dir)
        if not found:
            raise SystemExit(f"--resume: no checkpoint in {ckpt_dir}")
        state = load_checkpoint(accelerator, found[-1])
        step, history, train_seconds = state["step"], state["history"], state["train_seconds"]
        accelerator.print(f"resumed from {found[-1]} (step {step})")

    core = accelerator.unwrap_model(model)
    accum = settings.grad_accum
    stream = batches.batches(start=step * accum)
    series_per_step = settings.batch_size * accum * world
    window = LossWindow()
    bar = tqdm(total=settings.max_steps, initial=step, disable=not is_main, desc="pre-training",
               unit="step", dynamic_ncols=True)
    model.train()
    t0 = time.perf_counter()
    while step < settings.max_steps:
        for micro in range(accum):
            rows = next(stream)
            x = fetch(pool, rows).to(accelerator.device)
            sync = contextlib.nullcontext() if micro == accum - 1 else accelerator.no_sync(model)
            with sync:
                loss, losses = objective(model, x, rows)
                accelerator.backward(loss / accum)
            window.add({"loss": loss, **losses}, accum)
        if settings.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if step % settings.log_every == 0 or step == settings.max_steps:
            logged = window.take(step % settings.log_every or settings.log_every,
                                 accelerator.reduce)
            elapsed = train_seconds + time.perf_counter() - t0
            logged.update(step=step, lr=scheduler.get_last_lr()[0],
                          series_per_second=step * series_per_step / max(elapsed, 1e-9))
            history.append(logged)
            bar.set_postfix(loss=f"{logged['loss']:.4f}",
                            series_s=f"{logged['series_per_second']:.0f}")
        if step % settings.checkpoint_every == 0 and step < settings.max_steps:
            state = {"step": step, "history": history,
                     "train_seconds": train_seconds + time.perf_counter() - t0,
                     "args": {k: str(v) for k, v in vars(args).items()}}
            save_checkpoint(accelerator, ckpt_dir, step, state)
        if args.crash_after_step is not None and step == args.crash_after_step:
            os._exit(3)  # a crash: no cleanup, no final files
    bar.close()
    train_seconds += time.perf_counter() - t0

    report = {}
    if is_main:
        run = {"dataset": [str(d) for d in args.dataset], "preset": preset.name,
               "text": plan.report, "config": preset.as_dict(), "num_processes": world,
               "device": report_lib.device_name(accelerator.device), "seed": args.seed,
               "steps": step, "series_per_step": series_per_step,
               "train_seconds": train_seconds}
        probe = None if args.no_probe else ProbeSettings(protocol=args.probe_protocol,
                                                         seeds=args.probe_seeds)
        report = report_lib.finish(core, labelled, history, output_dir, run, started=started,
                                   probe=probe, baseline=not args.no_baseline,
                                   draw=not args.no_plots, texts=plan.texts)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return report


if __name__ == "__main__":
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
    main()
