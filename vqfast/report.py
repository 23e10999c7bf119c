"""What a finished pre-training run tells its user: ``report.json`` (machine-readable),
``report.md`` (to read) and the plots beside them."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
from pathlib import Path

import torch

from vqfast import plots
from vqfast.fileio import atomic_write, atomic_write_json
from vqfast.probe import ProbeSettings, codebook_usage, extract_features, probe_model

PACKAGES = ("vqfast", "torch", "accelerate", "triton", "numpy", "aeon", "scikit-learn",
            "sentence-transformers")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


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
        _json(report["config"]),
        "```",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
        "",
    ]
    return "\n".join(lines)


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"
