"""What a finished pre-training run tells its user: the exported model, ``report.json``
(machine-readable), ``report.md`` (to read), the plots beside them and a summary printed at the
end."""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from vqfast.environment import git_commit, versions
from vqfast.evaluation import plots
from vqfast.evaluation.probe import ProbeSettings, probe_model
from vqfast.evaluation.tokens import (
    DISTINCT_FRACTION_MIN,
    SHAPE_R2_MIN,
    SIGMA_MEDIAN_MIN,
    degenerate_warnings,
    token_metrics_on,
)
from vqfast.explain import distinct_codes, report_section
from vqfast.explain.figures import shape_gallery
from vqfast.fileio import atomic_write
from vqfast.model import VQShape


def finish(model, labelled, history: list[dict], output_dir: Path, run: dict, *, started: float,
           probe: ProbeSettings | None, baseline: bool = True, draw: bool = True,
           texts=None) -> dict:
    """Export the trained ``model`` to ``output_dir/model``, evaluate the export on every
    ``labelled`` dataset (the first in ``output_dir``, others in a folder named after them), write
    the report and print its summary; returns the report (main process only).

    ``run``: what the report records of the run (``dataset``, ``preset``, ``text``, ``config``,
    ``num_processes``, ``device``, ``seed``, ``steps``, ``series_per_step``, ``train_seconds``;
    when known ``command``, ``threads``, ``resume_overrides``); ``history``: the logged training
    points (kept whole in ``report.json``); ``started``: ``time.perf_counter()`` at launch.
    ``probe``: probe settings, None for no probe; ``baseline``: also probe an untrained model of
    the same seed; ``texts(data, split)``: per-sample texts to probe a ``VQShapeText`` with too.

    The first dataset's evaluation (``split``, ``tokens``, ``codebook``, ``warnings``, ``probe``
    or ``probe_skipped``, ``images``) is at the top level of the report, the others' under
    ``evaluation``, each once.
    """
    model_dir = model.to("cpu").float().save_pretrained(output_dir / "model")
    exported = VQShape.from_pretrained(model_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run["seed"])
        untrained = type(exported)(**exported.config).eval()
    text_probe = texts is not None and hasattr(exported, "embed_text")
    evaluations = {}
    progress = sys.stderr.isatty()
    for i, data in enumerate(labelled):
        folder = output_dir if i == 0 else output_dir / data.name
        folder.mkdir(parents=True, exist_ok=True)
        split_texts = None
        if text_probe and data.x_test is not None:
            split_texts = {split: texts(data, split) for split in ("train", "test")}
        ev = evaluate(exported, untrained if baseline else None, data, probe, folder,
                      history if i == 0 else [], progress=progress, texts=split_texts, draw=draw)
        if i:
            ev["images"] = {k: f"{data.name}/{v}" for k, v in ev["images"].items()}
        evaluations[data.name] = ev
    images = {}
    if not labelled and history and draw:
        images["loss_curves"] = plots.loss_curves(history, output_dir / "loss_curves.png").name
    last = history[-1] if history else {}
    report = {
        **run,
        "command": run.get("command"),
        "threads": run.get("threads"),
        "resume_overrides": run.get("resume_overrides"),
        "git_commit": git_commit(),
        "model_type": type(exported).__name__,
        "samples_per_second": run["steps"] * run["series_per_step"]
        / max(run["train_seconds"], 1e-9),
        "losses": {k: v for k, v in last.items() if k == "loss" or k.endswith("_loss")},
        "model_dir": str(model_dir),
        "data": {data.name: data_sizes(data) for data in labelled},
        "images": images,
    }
    if evaluations:
        first = next(iter(evaluations))
        report["evaluated_on"] = first
        report.update(evaluations.pop(first))
    report["evaluation"] = evaluations
    report["history"] = history
    report["versions"] = versions()
    report["wall_seconds"] = time.perf_counter() - started
    write(output_dir, report)
    print(summary(report, output_dir))
    return report


def data_sizes(data) -> dict:
    """What the report records of a labelled dataset's size."""
    n_test = None if data.x_test is None else int(data.x_test.shape[0])
    return {"n_train": int(data.x_train.shape[0]), "n_test": n_test,
            "channels": int(data.x_train.shape[1]), "length": int(data.x_train.shape[2]),
            "classes": len(data.classes)}


def summary(report: dict, output_dir: Path) -> str:
    """A few lines for the terminal: steps, token metrics, probe accuracies, warnings."""
    lines = [f"\nvqfast: {report['steps']} steps in {report['train_seconds']:.0f} s, report in "
             f"{output_dir / 'report.md'}"]
    tokens, cb = report.get("tokens"), report.get("codebook")
    if tokens and cb:
        lines.append(f"  tokens ({report['split']}): x R² {_num(tokens['x_r2'])}, shape R² "
                     f"{_num(tokens['shape_r2'])}, median sigma {_num(tokens['sigma']['median'])}"
                     f"; {cb['used']}/{cb['size']} codes used, perplexity "
                     f"{_num(cb['perplexity'], 1)}, {cb['distinct_shapes']} distinct shapes")
    probe = report.get("probe")
    if probe:
        for kind in ("token", "histogram"):
            r = probe[kind]
            u = probe.get("untrained", {}).get(kind)
            baseline = f" (untrained {u['accuracy']:.3f})" if u else ""
            lines.append(f"  {kind:<9} probe accuracy {r['accuracy']:.3f} ± {r['std']:.3f}"
                         + baseline)
    elif report.get("probe_skipped"):
        lines.append(f"  no probe: {report['probe_skipped']}")
    lines += [f"  WARNING: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


def evaluate(model, untrained, data, settings: ProbeSettings | None, output_dir: Path,
             history: list[dict], progress: bool = True, texts: dict | None = None,
             draw: bool = True) -> dict:
    """Token metrics, codebook usage and distinct shapes on the test split (train without one),
    warnings when the shape tokens are degenerate, probes (the untrained baseline unless
    ``untrained`` is None; with ``texts``, ``{"train", "test"}`` per-sample texts for a
    ``VQShapeText``, also ``probe_with_text``) and plots (unless ``draw`` is False) on one
    labelled dataset."""
    split = "test" if data.x_test is not None else "train"
    split_x = data.x_test if data.x_test is not None else data.x_train
    tokens, values = token_metrics_on(model, split_x, return_values=True)
    distinct = distinct_shapes(model, values["counts"])
    codebook = {"used": tokens.pop("codes_used"), "size": tokens.pop("num_code"),
                "perplexity": tokens.pop("perplexity"),
                "distinct_shapes": len(distinct.used_groups), "distinct": distinct.as_dict()}
    evaluation = {"split": split, "tokens": tokens, "codebook": codebook,
                  "warnings": degenerate_warnings(
                      tokens | {"codes_used": codebook["used"]}, codebook["distinct_shapes"],
                      sigma_measured=model.config.get("shape_source") == "window"),
                  "images": {}}
    if draw:
        _draw(model, data, values, distinct, evaluation, output_dir, history)
    reason = _probe_skipped(settings, data)
    if reason:
        evaluation["probe_skipped"] = reason
        return evaluation
    probe = probe_model(model, data, settings, progress=progress)
    if untrained is not None:
        baseline = probe_model(untrained, data, settings, progress=progress)
        probe["untrained"] = {kind: baseline[kind] for kind in ("token", "histogram")}
    evaluation["probe"] = probe
    if texts is not None:
        evaluation["probe_with_text"] = probe_model(model, data, settings, progress=progress,
                                                    texts=texts)
    if draw:
        explained = report_section(model, data, output_dir, probe=settings)
        evaluation["images"].update(
            {f"explain_{k}": v for k, v in explained.pop("images").items()})
        evaluation["explain"] = explained
    return evaluation


def _probe_skipped(settings, data) -> str | None:
    if settings is None:
        return "the probe was turned off (--no-probe)"
    if data.x_test is None:
        return (f"{data.name} has no test split, and the probe needs one (it selects its "
                "settings on train and measures on test); give a dataset with a test split, or "
                "hold one out (vqfast.data.load_dataset(..., test_fraction=0.3)) and call "
                "vqfast.evaluation.probe_model on it")
    if data.num_classes < 2:
        return f"{data.name} has a single class: there is nothing to classify"
    return None


def distinct_shapes(model, counts: torch.Tensor):
    """The one place the report groups the codebook into distinct shapes."""
    return distinct_codes(model, counts)


def _draw(model, data, values, distinct, evaluation, output_dir, history) -> None:
    images = evaluation["images"]
    if history:
        images["loss_curves"] = plots.loss_curves(history, output_dir / "loss_curves.png").name
    cb, tokens = evaluation["codebook"], evaluation["tokens"]
    where = f"{data.name} ({evaluation['split']} split)"
    images["code_usage"] = plots.code_usage(
        values["counts"][None], output_dir / "code_usage.png",
        f"{cb['used']} of {cb['size']} codes used on {where}, perplexity "
        f"{cb['perplexity']:.1f}",
    ).name
    images["token_attributes"] = plots.token_attributes(
        values["sigma"], values["l"], output_dir / "token_attributes.png", SIGMA_MEDIAN_MIN,
        f"{tokens['tokens']} shape tokens of {where}",
    ).name
    if distinct.used_groups:
        images["codebook_shapes"] = shape_gallery(
            distinct, output_dir / "codebook_shapes.png",
            title=f"{distinct.summary()} on {where}").name
    split_x = data.x_test if data.x_test is not None else data.x_train
    split_y = data.y_test if data.y_test is not None else data.y_train
    shown = _one_per_class(split_y, limit=6 if split_x.shape[1] == 1 else 4)
    images["reconstructions"] = plots.reconstructions(
        model, split_x[shown], output_dir / "reconstructions.png",
        labels=[f"class {data.classes[int(split_y[i])]}" for i in shown],
    ).name


def _one_per_class(y: torch.Tensor, limit: int) -> list[int]:
    """Sample indices to show: the first of each class in turn, then more, up to ``limit``."""
    by_class = [(y == c).nonzero().flatten().tolist() for c in y.unique()]
    order = [i for rank in range(len(y)) for members in by_class if rank < len(members)
             for i in [members[rank]]]
    return order[:limit]


def strict_json(obj, where: str = "report", notes: list | None = None):
    """``obj`` with every NaN or infinite number replaced by None (each replacement noted in
    ``notes`` by its path), numpy and torch values as Python numbers and lists."""
    notes = [] if notes is None else notes
    if isinstance(obj, dict):
        return {k: strict_json(v, f"{where}.{k}", notes) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v, f"{where}[{i}]", notes) for i, v in enumerate(obj)]
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):  # numpy or torch
        return strict_json(obj.tolist(), where, notes)
    if isinstance(obj, float) and not math.isfinite(obj):
        notes.append(f"{where} was {obj} (written as null)")
        return None
    return obj


def write(output_dir: Path, report: dict) -> None:
    """``report.json`` (strict JSON: non-finite numbers become null, listed under
    ``non_finite``) and ``report.md``, each written atomically."""
    notes: list[str] = []
    clean = strict_json(report, notes=notes)
    if notes:
        clean["non_finite"] = notes
    text = json.dumps(clean, indent=2, allow_nan=False, default=str) + "\n"
    atomic_write(output_dir / "report.json", text)
    atomic_write(output_dir / "report.md", markdown(report, notes))


def _num(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _fmt(r: dict | None) -> str:
    return "–" if not r else f"{r['accuracy']:.3f} ± {r['std']:.3f}"


def _spread(q: dict) -> str:
    return f"{_num(q['median'])} ({_num(q['p10'])} – {_num(q['p90'])})"


def _losses(losses: dict) -> list[str]:
    terms = [("loss", "total"), ("ts_loss", "reconstruction"), ("vq_loss", "VQ"),
             ("shape_loss", "shape"), ("dist_loss", "disentanglement")]
    terms += [(k, k.removesuffix("_loss")) for k in losses if k not in dict(terms)]
    if not losses:
        return ["No training point was logged.", ""]
    return ["| " + " | ".join(name for _, name in terms) + " |",
            "|" + "---|" * len(terms),
            "| " + " | ".join(_num(losses.get(k), 4) for k, _ in terms) + " |", ""]


def _section(name: str, ev: dict, sizes: dict | None) -> list[str]:
    cb, tokens = ev["codebook"], ev["tokens"]
    lines = [f"## {name}", ""]
    if sizes:
        split = (f"{sizes['n_train']} train series, no test split" if sizes["n_test"] is None
                 else f"{sizes['n_train']} train and {sizes['n_test']} test series")
        lines += [f"{split}; {sizes['channels']} channel(s) of length {sizes['length']}; "
                  f"{sizes['classes']} classes.", ""]
    if ev["warnings"]:
        lines += ["> **WARNING: the shape tokens are degenerate.**", ">",
                  *[f"> - {w}" for w in ev["warnings"]], ">",
                  f"> (thresholds: {_thresholds()})", ""]
    lines += [
        f"Shape tokens on the {ev['split']} split ({tokens['series']} channels of series, each "
        f"tokenized alone; {tokens['tokens']} tokens). Sigma in units of the series' std, l as "
        "a share of its length, both median (p10 – p90):",
        "",
        "| x R² | shape R² | sigma | l | codes used | perplexity | distinct shapes |",
        "|---|---|---|---|---|---|---|",
        f"| {_num(tokens['x_r2'])} | {_num(tokens['shape_r2'])} | {_spread(tokens['sigma'])} | "
        f"{_spread(tokens['l'])} | {cb['used']} of {cb['size']} | {_num(cb['perplexity'], 1)} | "
        f"{cb['distinct_shapes']} |",
        "",
    ]
    probe = ev.get("probe")
    if probe:
        untrained = probe.get("untrained", {})
        lines += [
            f"Linear probe ({probe['protocol']}: {probe['selection']}; mean ± std over "
            f"{probe['seeds']} seeds):",
            "",
            "| features | pre-trained | untrained (same seed) |",
            "|---|---|---|",
            f"| tokens | {_fmt(probe['token'])} | {_fmt(untrained.get('token'))} |",
            f"| histograms | {_fmt(probe['histogram'])} | {_fmt(untrained.get('histogram'))} |",
            "",
        ]
    elif ev.get("probe_skipped"):
        lines += [f"No linear probe: {ev['probe_skipped']}.", ""]
    with_text = ev.get("probe_with_text")
    if with_text:
        lines += [
            "The same probe with text at test time (an upper bound when the text derives "
            f"from labels): tokens {_fmt(with_text['token'])}, histograms "
            f"{_fmt(with_text['histogram'])}.",
            "",
        ]
    lines += _explain_lines(ev.get("explain"), ev.get("images", {}))
    for key, title in (("loss_curves", "Training curves"), ("code_usage", "Code usage"),
                       ("token_attributes", "Token scale and length"),
                       ("codebook_shapes", "The codebook as shapes"),
                       ("reconstructions", "Series, reconstructions and shape tokens")):
        if key in ev.get("images", {}):
            lines += [f"### {title}", "", f"![{title}]({ev['images'][key]})", ""]
    return lines


def _explain_lines(ex: dict | None, images: dict) -> list[str]:
    """The explanations (``vqfast.explain.report_section``): what the codes mean for each class,
    one explained series per class, and how faithful the attribution is."""
    if not ex:
        return []
    f = ex["faithfulness"]
    ratio = "n/a (random deletion did not lower the probability)" if f["ratio"] is None \
        else f"{f['ratio']:.2f}"
    lines = [
        "### Explanations (`python -m vqfast.explain` gives more)", "",
        f"{ex['summary']}. Deletion test on the histogram probe: removing the tokens with the "
        f"highest attributed contribution lowers the predicted-class probability by AOPC "
        f"{f['attributed_aopc']:.3f}, removing them in random order by {f['random_aopc']:.3f} "
        f"(ratio {ratio}; {f['steps']} tokens removed per series, {f['samples']} series). A "
        "ratio near 1 means the attribution is no better than chance.", "",
    ]
    for s in ex["samples"]:
        lines += [f"- {s['text']}"]
    lines.append("")
    for key, name in sorted(images.items()):
        if key.startswith("explain_") and key != "explain_shapes":  # the gallery is shown below
            lines += [f"![{key[len('explain_'):]}]({name})", ""]
    return lines


def _thresholds() -> str:
    return (f"shape R² ≤ {SHAPE_R2_MIN:g}; median sigma < {SIGMA_MEDIAN_MIN:g} of the series' "
            f"std; distinct shapes < {DISTINCT_FRACTION_MIN:.0%} of the codes used")


def markdown(report: dict, notes: list[str] = ()) -> str:
    commit = report.get("git_commit") or "unknown commit"
    threads = f" · {report['threads']} thread(s)" if report.get("threads") else ""
    lines = [
        f"# VQShape pre-training on {', '.join(report['dataset'])}",
        "",
        f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} · preset `{report['preset']}` · "
        f"{report['num_processes']} process(es) on {report['device']}{threads} · "
        f"{report['steps']} steps in {report['train_seconds']:.0f} s "
        f"({report['samples_per_second']:.0f} series/s) · {report['wall_seconds']:.0f} s in all "
        f"· `{commit}`",
        "",
    ]
    if report.get("command"):
        lines += ["```", str(report["command"]), "```", ""]
    if report.get("resume_overrides"):
        lines += [f"Resumed with overrides: `{json.dumps(report['resume_overrides'])}`.", ""]
    lines += ["## Final training losses", "", *_losses(report.get("losses", {}))]
    if report.get("evaluated_on"):
        name = report["evaluated_on"]
        lines += _section(name, report, report.get("data", {}).get(name))
    elif "loss_curves" in report.get("images", {}):
        lines += ["### Training curves", "", "![Training curves](loss_curves.png)", ""]
    for name, ev in report.get("evaluation", {}).items():
        lines += _section(name, ev, report.get("data", {}).get(name))
    if notes:
        lines += ["## Non-finite values", "", "Written as null in report.json:", "",
                  *[f"- {n}" for n in notes], ""]
    lines += [
        "## Configuration",
        "",
        "```json",
        json.dumps(report["config"], indent=2),
        "```",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
        "",
    ]
    return "\n".join(lines)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"
