"""The options of ``vqfast/train.py``: every one with help, and for the settings a preset decides
the preset's values instead of "(default: None)"; the text plan and the preset they make."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vqfast.evaluation.probe import PROTOCOLS, TIE_BREAKS
from vqfast.inputs import PAD_MODES
from vqfast.model import DEFAULTS, FUSIONS, TEXT_KEYS
from vqfast.text import TEXT_SOURCES
from vqfast.training import presets
from vqfast.training.distill import TARGETS
from vqfast.training.plans import TEXT_MODES, PlainPlan, TextPlan
from vqfast.training.processes import DEFAULT_TIMEOUT_S

DEFAULT_DATASET = "BasicMotions"
# "fn" (a Python callable) is the one text source a command line cannot give.
TEXT_CHOICES = ("none", *(s for s in TEXT_SOURCES if s != "fn"))

MODEL_HELP = {
    "dim_embedding": "width E of the transformers and token embeddings",
    "patch_size": "points per input patch",
    "num_patch": "patches per series (len_input / patch_size)",
    "num_enc_head": "attention heads of the patch encoder",
    "num_enc_layer": "layers of the patch encoder",
    "num_tokenizer_head": "attention heads of the tokenizer",
    "num_tokenizer_layer": "layers of the tokenizer",
    "num_dec_head": "attention heads of the series decoder",
    "num_dec_layer": "layers of the series decoder",
    "num_token": "shape tokens per series N",
    "len_s": "points of each decoded shape",
    "len_input": "length T every series is resampled to",
    "s_smooth_factor": "smoothing of the decoded shapes",
    "num_code": "codebook size K",
    "dim_code": "code dimension D",
    "lambda_commit": "weight of the VQ commitment loss",
    "lambda_entropy": "weight of the codebook entropy term",
    "entropy_gamma": "gamma of the codebook entropy term",
    "mask_ratio": "share of patches masked in pre-training",
    "shape_source": "where a token's code, mu and sigma come from: 'tokens' (heads on the token "
                    "embedding, the authors') or 'window' (measured on the token's window)",
    "window_layout": "where the windows (t, l) come from: 'learned' (a head on the token "
                     "embedding, the authors') or 'grid' (num_token windows of max_shape_len, "
                     "evenly spaced; needs shape_source 'window')",
    "max_shape_len": "longest window a token may cover, as a share of the series (none: up to "
                     "the series' end, as the authors)",
}
# Keywords whose default is None: the type their values take on the command line.
NONE_DEFAULT_TYPES = {"max_shape_len": float}


def preset_values(key: str) -> str:
    """``"preset's value; default preset: 1600, paper: 100000, ..."`` for a setting."""
    shown = []
    for name, p in sorted(presets.PRESETS.items(), key=lambda item: item[0] != "default"):
        value = p.model[key] if key in p.model else getattr(p.train, key)
        shown.append(f"{name} preset: {value}" if name == "default" else f"{name}: {value}")
    return "preset's value; " + ", ".join(shown)


class HelpFormatter(argparse.HelpFormatter):
    """Shows a default only where there is one (no "(default: None)" or "(default: False)")."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "%(default)" not in text and "default" not in text):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="accelerate launch vqfast/train.py",
        description="Pre-train a VQShape tokenizer, export it and report how good its tokens are.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--dataset", nargs="+", default=[DEFAULT_DATASET],
                   help="dataset names shipped with aeon ('all': every one), .ts/.npz/.npy files, "
                        f"or folders of .npy shards (unlabelled, pre-training only); default "
                        f"{DEFAULT_DATASET}")
    p.add_argument("--exclude", nargs="+", default=[], metavar="NAME",
                   help="datasets to leave out of --dataset (with 'all')")
    p.add_argument("--allow-pickle", action="store_true",
                   help="unpickle object arrays in .npz/.npy datasets (runs code from the file: "
                        "only for files you trust)")
    p.add_argument("--preset", default="default", choices=sorted(presets.PRESETS),
                   help="; ".join(f"{name}: {preset.description}"
                                  for name, preset in presets.PRESETS.items()))
    p.add_argument("--output-dir", type=Path, default=None,
                   help="where everything is written (default runs/<dataset>-<preset>)")
    p.add_argument("--max-steps", type=int,
                   help=f"optimizer steps ({preset_values('max_steps')})")
    p.add_argument("--epochs", type=float,
                   help="train for this many passes over the data instead of --max-steps")
    p.add_argument("--batch-size", type=int,
                   help=f"series per process and micro-batch ({preset_values('batch_size')})")
    p.add_argument("--grad-accum", type=int,
                   help=f"micro-batches per optimizer step ({preset_values('grad_accum')})")
    p.add_argument("--lr", type=float, help=f"peak learning rate ({preset_values('lr')})")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the model's initial weights, the batch order and the masks")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in --output-dir (a damaged "
                        "one is named and the one before it used)")
    p.add_argument("--resume-override", action="store_true",
                   help="with --resume: continue although settings differ from the checkpoint's "
                        "(the report records both)")
    p.add_argument("--no-probe", action="store_true", help="skip the linear probes")
    p.add_argument("--probe-protocol", choices=PROTOCOLS, default="cv",
                   help="how the probe's regularization is chosen")
    p.add_argument("--probe-tie-break", choices=TIE_BREAKS, default="first",
                   help="cv protocol: among equally accurate grid points and epochs, the first "
                        "(the earliest epoch) or the lowest validation loss")
    p.add_argument("--probe-seeds", type=int, default=5,
                   help="probe repeats with different seeds (mean and std are reported)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the probe of the untrained model")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--balance", action="store_true",
                   help="up-sample every dataset to the largest (the authors' balancing)")
    p.add_argument("--how", choices=PAD_MODES, default="pad",
                   help="unequal lengths: zero-pad then resample (authors) or resample each")
    p.add_argument("--checkpoint-every", type=int,
                   help="optimizer steps between checkpoints; the last step is always saved "
                        f"({preset_values('checkpoint_every')})")
    p.add_argument("--log-every", type=int,
                   help=f"optimizer steps between logged losses ({preset_values('log_every')})")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("VQFAST_CACHE", Path.home() / ".cache" / "vqfast")),
                   help="preprocessed datasets are cached here")
    _text_options(p.add_argument_group("text guidance (VQShapeText)"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any preset setting (model keyword, optimizer setting or loss "
                        "weight), e.g. --set num_code=128 --set lambda_dist=0.5")
    model = p.add_argument_group("model overrides (VQShape keywords)")
    for key, value in DEFAULTS.items():
        hidden = key == "codebook_type"
        model.add_argument(f"--{key.replace('_', '-')}", dest=f"model_{key}",
                           type=NONE_DEFAULT_TYPES[key] if value is None else type(value),
                           default=None, metavar=key.upper(), help=argparse.SUPPRESS if hidden else
                           f"{MODEL_HELP[key]} ({preset_values(key)})")
    p.add_argument("--no-fast", action="store_true",
                   help="the authors' layers and for-loop AdamW instead of vqfast's fast layers "
                        "(vqfast.model.fast: same parameters, same dropout draws, equal to float "
                        "rounding) and fused AdamW")
    p.add_argument("--threads", type=int,
                   help="CPU threads per process (default: the cores this process may use, shared "
                        "among the processes on the machine, fewer when the load average says "
                        "other processes keep cores busy)")
    p.add_argument("--collective-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help="seconds a collective operation between processes may wait before the "
                        "job stops, naming the process that stopped answering")
    p.add_argument("--crash-after-step", type=int, help=argparse.SUPPRESS)  # tests: abrupt stop
    return p


def _text_options(text) -> None:
    text.add_argument("--text", choices=TEXT_CHOICES, default="none",
                      help="where per-sample text comes from: label templates, a rule-based "
                           "description of each series, or a JSON file of notes")
    text.add_argument("--text-mode", choices=TEXT_MODES, default="teacher",
                      help="teacher: train with text; align: two passes (with/without text) and "
                           "an alignment loss; distill: a text-free student of --teacher; "
                           "contrastive: text-free tokens, InfoNCE between the pooled tokens and "
                           "the text")
    text.add_argument("--teacher", type=Path, help="exported VQShapeText (for --text-mode distill)")
    text.add_argument("--fusion", choices=FUSIONS, default="z",
                      help="where the text enters the model")
    text.add_argument("--text-keys", choices=TEXT_KEYS, default="tokens",
                      help="which text embedding is used: per-word tokens or the sentence")
    text.add_argument("--text-file", type=Path, help='JSON {"train": [...], "test": [...]}')
    text.add_argument("--text-template",
                      help="label template with {label}, e.g. 'a person {label}'")
    text.add_argument("--text-model", help="sentence encoder (default offline all-MiniLM-L6-v2)")
    text.add_argument("--align-weight", type=float, default=1.0,
                      help="weight of the alignment loss (--text-mode align)")
    text.add_argument("--contrastive-weight", type=float, default=1.0,
                      help="weight of the contrastive loss (--text-mode contrastive)")
    text.add_argument("--distill-weight", type=float, default=1.0,
                      help="weight of the distillation loss (--text-mode distill)")
    text.add_argument("--distill-targets", default="z_e",
                      help="comma-separated student outputs that follow the teacher's: "
                           + ",".join(TARGETS))


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
    if args.text_mode == "contrastive" and not args.contrastive_weight > 0:
        raise ValueError(f"--text-mode contrastive needs --contrastive-weight > 0, got "
                         f"{args.contrastive_weight}")
    return TextPlan(
        source=args.text, mode=args.text_mode, teacher=args.teacher, fusion=args.fusion,
        text_keys=args.text_keys, text_model=args.text_model, template=args.text_template,
        text_file=args.text_file, align_weight=args.align_weight,
        contrastive_weight=args.contrastive_weight, distill_weight=args.distill_weight,
        distill_targets=tuple(k.strip() for k in args.distill_targets.split(",") if k.strip()),
        cache_dir=args.cache_dir / "text",
    )


def build_preset(args) -> presets.Preset:
    """The preset with ``--set`` and the named options applied; ValueError names a bad one."""
    preset = presets.get_preset(args.preset)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = parse_value(value)
    for key in DEFAULTS:
        value = getattr(args, f"model_{key}")
        if value is not None:
            overrides[key] = value
    for key in ("max_steps", "epochs", "batch_size", "grad_accum", "lr", "checkpoint_every",
                "log_every"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    preset = presets.apply_overrides(preset, overrides)
    t = preset.train
    for key in ("max_steps", "batch_size", "grad_accum", "checkpoint_every", "log_every"):
        if not isinstance(getattr(t, key), int) or getattr(t, key) < 1:
            raise ValueError(f"{key} must be a positive whole number, got {getattr(t, key)!r}")
    if not (t.lr > 0):
        raise ValueError(f"lr must be positive, got {t.lr!r}")
    return preset


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)
