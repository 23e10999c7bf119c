"""What a finished pre-training run tells its user: the exported model, ``report.json``
(machine-readable), ``report.md`` (to read), the plots beside them and a summary printed at the
end."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
import time
from pathlib import Path

import torch

from vqfast.environment import versions
from vqfast.evaluation import plots
from vqfast.evaluation.probe import ProbeSettings, codebook_usage, extract_features, probe_model
from vqfast.fileio import atomic_write, atomic_write_json
from vqfast.model import VQShape


def finish(model, labelled, history: list[dict], output_dir: Path, run: dict, *, started: float,
           probe: ProbeSettings | None, baseline: bool = True, draw: bool = True,
           texts=None) -> dict:
    """Export the trained ``model`` to ``output_dir/model``, evaluate the export on every
    ``labelled`` dataset (the first in ``output_dir``, others in a folder named after them), write
    the report and print its summary; returns the report (main process only).

    ``run``: what the report records of the run (``dataset``, ``preset``, ``text``, ``config``,
    ``num_processes``, ``device``, ``seed``, ``steps``, ``series_per_step``, ``train_seconds``);
    ``started``: its ``time.perf_counter()`` at launch. ``probe``: probe settings, None for no
    probe; ``baseline``: also probe an untrained model of the same seed; ``texts(data, split)``:
    per-sample texts to probe a ``VQShapeText`` with as well.
    """
    model_dir = model.to("cpu").float().save_pretrained(output_dir / "model")
    exported = VQShape.from_pretrained(model_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run["seed"])
        untrained = type(exported)(**exported.config).eval()
    text_probe = texts is not None and hasattr(exported, "embed_text")
    evaluation = {}
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
        evaluation[data.name] = ev
    if not labelled and history and draw:
        plots.loss_curves(history, output_dir / "loss_curves.png")
    last = history[-1] if history else {}
    report = {
        **run,
        "model_type": type(exported).__name__,
        "samples_per_second": run["steps"] * run["series_per_step"]
        / max(run["train_seconds"], 1e-9),
        "losses": {k: v for k, v in last.items() if k == "loss" or k.endswith("_loss")},
        "model_dir": str(model_dir),
        "evaluation": evaluation,
        "versions": versions(),
    }
    first = next(iter(evaluation.values()), None)
    if first is not None:
        report["codebook"] = first["codebook"]
        for key in ("probe", "probe_with_text"):
            if key in first:
                report[key] = first[key]
    report["wall_seconds"] = time.perf_counter() - started
    write(output_dir, report)
    print(summary(report, output_dir))
    return report


def summary(report: dict, output_dir: Path) -> str:
    """A few lines for the terminal: steps, probe accuracies, codebook usage."""
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
    return "\n".join(lines)


def evaluate(model, untrained, data, settings: ProbeSettings | None, output_dir: Path,
             history: list[dict], progress: bool = True, texts: dict | None = None,
             draw: bool = True) -> dict:
    """Probes (skipped when ``settings`` is None; the untrained baseline when ``untrained`` is
    None), codebook usage and plots (unless ``draw`` is False) on one labelled dataset. With
    ``texts`` (``{"train", "test"}`` per-sample texts, for a ``VQShapeText``) the model is also
    probed with text (``probe_with_text``)."""
    evaluation = {}
    split_x = data.x_test if data.x_test is not None else data.x_train
    _, hist = extract_features(model, split_x, progress=progress)
    hist = hist.view(-1, model.num_code)
    evaluation["codebook"] = codebook_usage(hist)
    evaluation["codebook"]["split"] = "test" if data.x_test is not None else "train"
    images = {}
    evaluation["images"] = images
    if draw:
        _draw(model, data, hist, split_x, evaluation, output_dir, history)
    if settings is not None and data.x_test is not None and data.num_classes > 1:
        probe = probe_model(model, data, settings, progress=progress)
        if untrained is not None:
            baseline = probe_model(untrained, data, settings, progress=progress)
            probe["untrained"] = {kind: baseline[kind] for kind in ("token", "histogram")}
        evaluation["probe"] = probe
        if texts is not None:
            evaluation["probe_with_text"] = probe_model(model, data, settings, progress=progress,
                                                        texts=texts)
    return evaluation


def _draw(model, data, hist, split_x, evaluation, output_dir, history) -> None:
    images = evaluation["images"]
    if history:
        images["loss_curves"] = plots.loss_curves(history, output_dir / "loss_curves.png").name
    usage = evaluation["codebook"]
    images["code_usage"] = plots.code_usage(
        hist, output_dir / "code_usage.png",
        f"{usage['used']} of {usage['size']} codes used on {data.name} "
        f"({usage['split']}), perplexity {usage['perplexity']:.1f}",
    ).name
    path, distinct = plots.codebook_shapes(model, hist, output_dir / "codebook_shapes.png")
    images["codebook_shapes"] = path.name
    evaluation["codebook"]["distinct_shapes"] = distinct
    split_y = data.y_test if data.y_test is not None else data.y_train
    shown = _one_per_class(split_y, limit=6)
    images["reconstructions"] = plots.reconstructions(
        model, split_x[shown, 0], output_dir / "reconstructions.png",
        labels=[f"{data.classes[int(split_y[i])]}, channel 0" for i in shown],
    ).name


def _one_per_class(y: torch.Tensor, limit: int) -> list[int]:
    """Sample indices to show: the first of each class in turn, then more, up to ``limit``."""
    by_class = [(y == c).nonzero().flatten().tolist() for c in y.unique()]
    order = [i for rank in range(len(y)) for members in by_class if rank < len(members)
             for i in [members[rank]]]
    return order[:limit]


def write(output_dir: Path, report: dict) -> None:
    atomic_write_json(output_dir / "report.json", report)
    atomic_write(output_dir / "report.md", markdown(report))


def _fmt(r: dict | None) -> str:
    return "–" if not r else f"{r['accuracy']:.3f} ± {r['std']:.3f}"


def markdown(report: dict) -> str:
    lines = [
        f"# VQShape pre-training on {', '.join(report['dataset'])}",
        "",
        f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} · preset `{report['preset']}` · "
        f"{report['num_processes']} process(es) on {report['device']} · "
        f"{report['steps']} steps in {report['train_seconds']:.0f} s "
        f"({report['samples_per_second']:.0f} series/s) · {report['wall_seconds']:.0f} s in all",
        "",
        "## Final training losses",
        "",
        "| total | reconstruction | VQ | shape | disentanglement |",
        "|---|---|---|---|---|",
        "| {loss:.4f} | {ts_loss:.4f} | {vq_loss:.4f} | {shape_loss:.4f} | {dist_loss:.4f} |"
        .format(**report["losses"]),
        "",
    ]
    for name, ev in report.get("evaluation", {}).items():
        cb = ev["codebook"]
        lines += [
            f"## {name}",
            "",
            f"Codebook on the {cb['split']} split: {cb['used']} of {cb['size']} codes used, "
            f"perplexity {cb['perplexity']:.1f}"
            + (f", {cb['distinct_shapes']} distinct shapes." if "distinct_shapes" in cb else "."),
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
                f"| histograms | {_fmt(probe['histogram'])} | "
                f"{_fmt(untrained.get('histogram'))} |",
                "",
            ]
        with_text = ev.get("probe_with_text")
        if with_text:
            lines += [
                "The same probe with text at test time (an upper bound when the text derives "
                f"from labels): tokens {_fmt(with_text['token'])}, histograms "
                f"{_fmt(with_text['histogram'])}.",
                "",
            ]
        for key, title in (("loss_curves", "Loss curves"), ("code_usage", "Code usage"),
                           ("codebook_shapes", "The codebook as shapes"),
                           ("reconstructions", "Series, reconstructions and shape tokens")):
            if key in ev.get("images", {}):
                lines += [f"### {title}", "", f"![{title}]({ev['images'][key]})", ""]
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
