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
import math
import os
import time
import warnings

import torch

from vqfast import presets as preset_lib
from vqfast.model import DEFAULTS, VQShape
from vqfast.objectives import TEXT_MODES
from vqfast.training import ShardedBatches, checkpoints, load_checkpoint, lr_factor, save_checkpoint

DEFAULT_DATASET = "BasicMotions"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="accelerate launch vqfast/train.py",
        description="Pre-train a VQShape tokenizer, export it and report how good its tokens are.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", nargs="+", default=[DEFAULT_DATASET],
                   help="dataset names shipped with aeon, .ts/.npz/.npy files, or folders of .npy "
                        "shards (unlabelled, pre-training only)")
    p.add_argument("--preset", default="default", choices=sorted(preset_lib.PRESETS))
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
    p.add_argument("--probe-protocol", choices=("cv", "paper"), default="cv")
    p.add_argument("--probe-seeds", type=int, default=5)
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the probe of the untrained model")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--balance", action="store_true",
                   help="up-sample every dataset to the largest (the authors' balancing)")
    p.add_argument("--how", choices=("pad", "resample"), default="pad",
                   help="unequal lengths: zero-pad then resample (authors) or resample each")
    p.add_argument("--checkpoint-every", type=int, help="optimizer steps between checkpoints")
    p.add_argument("--log-every", type=int, help="optimizer steps between logged losses")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("VQFAST_CACHE", Path.home() / ".cache" / "vqfast")),
                   help="preprocessed datasets are cached here")
    text = p.add_argument_group("text guidance (VQShapeText)")
    text.add_argument("--text", choices=("none", "label", "describe", "file"), default="none",
                      help="where per-sample text comes from: label templates, a rule-based "
                           "description of each series, or a JSON file of notes")
    text.add_argument("--text-mode", choices=TEXT_MODES, default="teacher",
                      help="teacher: train with text; align: two passes (with/without text) and "
                           "an alignment loss; distill: a text-free student of --teacher")
    text.add_argument("--teacher", type=Path, help="exported VQShapeText (for --text-mode distill)")
    text.add_argument("--fusion", choices=("z", "z_mu_sigma"), default="z")
    text.add_argument("--text-keys", choices=("tokens", "sentence"), default="tokens")
    text.add_argument("--text-file", type=Path, help='JSON {"train": [...], "test": [...]}')
    text.add_argument("--text-template",
                      help="label template with {label}, e.g. 'a person {label}'")
    text.add_argument("--text-model", help="sentence encoder (default offline all-MiniLM-L6-v2)")
    text.add_argument("--align-weight", type=float, default=1.0)
    text.add_argument("--distill-weight", type=float, default=1.0)
    text.add_argument("--distill-targets", default="z_e",
                      help="comma-separated student outputs that follow the teacher's: "
                           "z_e,t_pred,l_pred,mu_pred,sigma_pred")
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
    if args.text == "none" and args.text_mode != "teacher":
        p.error(f"--text-mode {args.text_mode} needs text: pass --text label|describe|file")
    if args.text_mode == "distill" and args.teacher is None:
        p.error("--text-mode distill needs --teacher DIR (an exported VQShapeText)")
    if args.text == "file" and args.text_file is None:
        p.error("--text file needs --text-file PATH")
    if args.output_dir is None:
        name = "+".join(Path(d).stem for d in args.dataset)
        args.output_dir = Path("runs") / f"{name}-{args.preset}"
    return args


def build_preset(args) -> preset_lib.Preset:
    preset = preset_lib.get_preset(args.preset)
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
        return preset_lib.apply_overrides(preset, overrides)
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
                shards.append(ShardedSeries(source, length=length))
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


def sample_texts(args, data, split: str) -> list[str]:
    from vqfast.text import texts_for

    return texts_for(args.text, data, split, template=args.text_template,
                     text_file=args.text_file)


def build_model(args, preset):
    """The model to train and, for distillation, its frozen teacher."""
    if args.text == "none":
        model = VQShape(**preset.model)
    elif args.text_mode == "distill":
        from vqfast.distill import student_from_teacher
        from vqfast.text_model import VQShapeText

        teacher = VQShapeText.from_pretrained(args.teacher)
        teacher.requires_grad_(False)
        preset.model = dict(teacher.vqshape_config)
        model = student_from_teacher(teacher)
        return model, teacher
    else:
        from vqfast.text_model import VQShapeText

        model = VQShapeText(**preset.model, fusion=args.fusion, text_keys=args.text_keys,
                            text_model=args.text_model, align_weight=args.align_weight)
    model.loss_weights.update(preset.loss_weights)
    return model, None


def build_objective(args, labelled, pool, sources, teacher, accelerator):
    from vqfast import objectives

    if args.text == "none":
        return objectives.PlainObjective()
    if not labelled or sources is None or len(sources) != len(pool):
        raise SystemExit("--text needs labelled datasets (names or files) only: .npy shard "
                         "folders have no per-sample text")
    if args.text == "file" and len(labelled) > 1:
        raise SystemExit("--text file pairs one notes file with one dataset; pass one --dataset")
    from vqfast.text import TextEncoder

    texts = [sample_texts(args, data, "train") for data in labelled]
    encoder = TextEncoder(args.text_model, device=accelerator.device,
                          cache_dir=args.cache_dir / "text")
    bank = objectives.TextBank(objectives.row_texts(texts, sources), encoder, accelerator.device)
    accelerator.print(f"text: {len(bank.texts)} distinct texts for {len(sources)} series")
    if args.text_mode == "distill":
        targets = {k.strip(): 1.0 for k in args.distill_targets.split(",") if k.strip()}
        return objectives.DistillObjective(teacher.to(accelerator.device), bank,
                                           args.distill_weight, targets)
    return objectives.TextObjective(bank, align=args.text_mode == "align")


def fetch(pool, idx: torch.Tensor) -> torch.Tensor:
    if isinstance(pool, torch.utils.data.TensorDataset):
        return pool.tensors[0][idx]
    return torch.stack([_row(pool[int(i)]) for i in idx])


def _row(item):
    return item[0] if isinstance(item, (tuple, list)) else item


def main(argv=None) -> dict:
    args = parse_args(argv)
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
    model, teacher = build_model(args, preset)
    labelled, pool, sources = load_data(args, model.len_input, accelerator)
    objective = build_objective(args, labelled, pool, sources, teacher, accelerator)

    world, rank = accelerator.num_processes, accelerator.process_index
    batches = ShardedBatches(len(pool), settings.batch_size, rank, world, args.seed)
    if settings.epochs is not None:
        settings.max_steps = max(1, math.ceil(settings.epochs * batches.per_epoch
                                              / settings.grad_accum))
    # Frozen parameters (a distilled student's codebook) never reach the optimizer.
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, settings.warmup_steps, settings.max_steps, settings.warmup_start_factor,
        settings.min_lr / settings.lr))
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
    window: dict[str, torch.Tensor] = {}
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
            for key, value in {"loss": loss, **losses}.items():
                window[key] = window.get(key, 0) + value.detach().float().reshape(()) / accum
        if settings.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if step % settings.log_every == 0 or step == settings.max_steps:
            n = settings.log_every if step % settings.log_every == 0 else step % settings.log_every
            logged = {k: accelerator.reduce(v / n, "mean").item() for k, v in window.items()}
            window = {}
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
        report = finish(args, preset, core, labelled, history, step, train_seconds,
                        series_per_step, world, accelerator.device, started)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return report


def finish(args, preset, model, labelled, history, step, train_seconds, series_per_step, world,
           device, started) -> dict:
    """Export the model, evaluate it and write the report (main process only)."""
    from vqfast import report as report_lib
    from vqfast.probe import ProbeSettings

    output_dir = args.output_dir
    model_dir = model.to("cpu").float().save_pretrained(output_dir / "model")
    exported = VQShape.from_pretrained(model_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        untrained = type(exported)(**exported.config).eval()
    text_probe = args.text != "none" and hasattr(exported, "embed_text")
    settings = ProbeSettings(protocol=args.probe_protocol, seeds=args.probe_seeds)
    evaluation = {}
    progress = sys.stderr.isatty()
    for i, data in enumerate(labelled):
        folder = output_dir if i == 0 else output_dir / data.name
        folder.mkdir(parents=True, exist_ok=True)
        texts = None
        if text_probe and data.x_test is not None:
            texts = {split: sample_texts(args, data, split) for split in ("train", "test")}
        ev = report_lib.evaluate(exported, None if args.no_baseline else untrained, data,
                                 None if args.no_probe else settings, folder,
                                 history if i == 0 else [], progress=progress, texts=texts,
                                 draw=not args.no_plots)
        if i:
            ev["images"] = {k: f"{data.name}/{v}" for k, v in ev["images"].items()}
        evaluation[data.name] = ev
    if not labelled and history and not args.no_plots:
        from vqfast import plots

        plots.loss_curves(history, output_dir / "loss_curves.png")
    last = history[-1] if history else {}
    report = {
        "dataset": [str(d) for d in args.dataset],
        "preset": preset.name,
        "model_type": type(exported).__name__,
        "text": None if args.text == "none" else {
            "source": args.text, "mode": args.text_mode, "fusion": args.fusion,
            "keys": args.text_keys, "teacher": str(args.teacher) if args.teacher else None},
        "config": preset.as_dict(),
        "num_processes": world,
        "device": report_lib.device_name(device),
        "seed": args.seed,
        "steps": step,
        "series_per_step": series_per_step,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - started,
        "samples_per_second": step * series_per_step / max(train_seconds, 1e-9),
        "losses": {k: v for k, v in last.items()
                   if k == "loss" or k.endswith("_loss")},
        "model_dir": str(model_dir),
        "evaluation": evaluation,
        "versions": report_lib.versions(),
    }
    first = next(iter(evaluation.values()), None)
    if first is not None:
        report["codebook"] = first["codebook"]
        for key in ("probe", "probe_with_text"):
            if key in first:
                report[key] = first[key]
    report["wall_seconds"] = time.perf_counter() - started
    report_lib.write(output_dir, report)
    _summary(report, output_dir)
    return report


def _summary(report: dict, output_dir: Path) -> None:
    lines = [f"\nvqfast: {report['steps']} steps in {report['train_seconds']:.0f} s, report in "
             f"{output_dir / 'report.md'}"]
    probe = report.get("probe")
    if probe:
        for kind in ("token", "histogram"):
            r = probe[kind]
            u = probe.get("untrained", {}).get(kind)
            baseline = f" (untrained {u['accuracy']:.3f})" if u else ""
            lines.append(f"  {kind:<9} probe accuracy {r['accuracy']:.3f} ± {r['std']:.3f}"
                         + baseline)
    if "codebook" in report:
        cb = report["codebook"]
        lines.append(f"  codebook: {cb['used']}/{cb['size']} codes used, perplexity "
                     f"{cb['perplexity']:.1f}")
    print("\n".join(lines))


if __name__ == "__main__":
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
    main()
