"""Does text guidance help, and does it survive without text at prediction time?

``python -m vqfast.experiments.text_guidance`` trains, with the same data, model and step budget
and several seeds, on each dataset:

- plain VQShape;
- a text teacher (``VQShapeText``), probed with and without text at test time (with label-derived
  text, "with text" is an upper bound: the label leaks into the input);
- an aligned model (two passes, alignment loss), probed without text;
- a distilled student (text-free VQShape with the teacher's frozen codebook), probed without text;

and writes ``results.json``, ``results.md`` (the table) and ``results.png``. Every run is a full
``vqfast/train.py`` run (report, plots, exported model) under ``--output-dir``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from vqfast import train
from vqfast.model import FUSIONS
from vqfast.training.cli import TEXT_CHOICES
from vqfast.training.plans import TEXT_MODES
from vqfast.training.presets import PRESETS

VARIANTS = ("plain", *TEXT_MODES)
ROWS = (
    ("plain", "probe", "VQShape"),
    ("teacher", "probe_with_text", "text teacher, with text"),
    ("teacher", "probe", "text teacher, without text"),
    ("align", "probe", "aligned, without text"),
    ("distill", "probe", "distilled student, without text"),
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m vqfast.experiments.text_guidance",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["BasicMotions", "JapaneseVowels"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300, help="optimizer steps of every run")
    p.add_argument("--num-token", type=int, default=16,
                   help="shape tokens per series: fewer than the default preset's 32 so that "
                        "the 24 runs fit in 45 minutes on 2 CPU cores")
    p.add_argument("--text", choices=TEXT_CHOICES[1:], default="label")
    p.add_argument("--text-file", help="notes file for --text file")
    p.add_argument("--fusion", choices=FUSIONS, default="z")
    p.add_argument("--probe-seeds", type=int, default=3)
    p.add_argument("--preset", default="default-authors", choices=sorted(PRESETS),
                   help="every run's preset (text enters through the token heads, so every run, "
                        "plain VQShape included, uses shape_source=tokens)")
    p.add_argument("--output-dir", type=Path, default=Path("runs/text-guidance"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to every run (model or optimizer setting)")
    p.add_argument("--fresh", action="store_true",
                   help="retrain runs whose report already exists (default: reuse them)")
    return p.parse_args(argv)


def run_args(args, dataset: str, seed: int, variant: str, out: Path) -> list[str]:
    argv = ["--dataset", dataset, "--seed", str(seed), "--max-steps", str(args.steps),
            "--preset", args.preset, "--output-dir", str(out / f"{variant}-seed{seed}"),
            "--probe-seeds", str(args.probe_seeds), "--checkpoint-every", str(10**9),
            "--no-baseline", "--no-plots", "--num-token", str(args.num_token),
            # Text enters through the token heads: every model, plain VQShape included, takes its
            # code, mu and sigma from them (the authors' shape_source), so the study compares
            # like with like.
            "--set", "shape_source=tokens"]
    for item in args.set:
        argv += ["--set", item]
    if variant != "plain":
        argv += ["--text", args.text, "--fusion", args.fusion, "--text-mode", variant]
        if args.text_file:
            argv += ["--text-file", args.text_file]
    if variant == "distill":
        argv += ["--teacher", str(out / f"teacher-seed{seed}" / "model")]
    return argv


def histogram_separation(model_dir: Path, dataset: str) -> float:
    """Mean cosine similarity of test histograms within a class minus between classes: do
    same-class samples (of different amplitude and duration) share codes?"""
    from vqfast import VQShape
    from vqfast.data import load_dataset
    from vqfast.evaluation.probe import extract_features

    model = VQShape.from_pretrained(model_dir)
    data = load_dataset(dataset, length=model.len_input)
    _, hist = extract_features(model, data.x_test, progress=False)
    h = torch.nn.functional.normalize(hist.double(), dim=1)
    sim = h @ h.T
    same = data.y_test[:, None] == data.y_test[None, :]
    off_diag = ~torch.eye(len(h), dtype=torch.bool)
    return float(sim[same & off_diag].mean() - sim[~same].mean())


def collect(report: dict, key: str) -> dict:
    """Probe accuracies; codebook usage belongs to the text-free histograms (the ``probe`` key)."""
    probe = report[key]
    nan = float("nan")
    codebook = report["codebook"] if key == "probe" else {"used": nan, "perplexity": nan}
    return {"token": probe["token"]["accuracy"], "histogram": probe["histogram"]["accuracy"],
            "used": codebook["used"], "perplexity": codebook["perplexity"]}


def summarize(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v == v]  # drop NaN (figures a row does not have)
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def finished_report(path: Path, args, dataset: str, seed: int, variant: str) -> dict | None:
    """The report of an earlier run with the same settings (so an interrupted experiment resumes
    where it stopped), else None."""
    import json

    if args.fresh or not path.is_file():
        return None
    report = json.loads(path.read_text())
    text = report.get("text") or {}
    same = (report.get("steps") == args.steps and report.get("seed") == seed
            and report.get("dataset") == [dataset]
            and report["config"]["model"]["num_token"] == args.num_token
            and report["config"]["name"] == args.preset
            and (variant == "plain") == (not text)
            and (not text or (text.get("source") == args.text
                              and text.get("fusion") == args.fusion)))
    return report if same else None


def table(results: dict, args) -> str:
    lines = [
        f"Text source: `{args.text}`, fusion `{args.fusion}`, {args.steps} steps per run, "
        f"preset `{args.preset}` with {args.num_token} tokens, {args.seeds} seeds, honest probe "
        "(cross-validated on the training split), mean ± std over seeds.",
        "",
        "| dataset | model | token acc. | histogram acc. | codes used | perplexity | "
        "hist. separation |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, rows in results.items():
        for label, r in rows.items():
            cells = [f"{r[k][0]:.3f} ± {r[k][1]:.3f}" for k in ("token", "histogram")]
            if "separation" in r:
                cells += [f"{r['used'][0]:.1f}", f"{r['perplexity'][0]:.1f}",
                          f"{r['separation'][0]:+.3f} ± {r['separation'][1]:.3f}"]
            else:  # probed with text: codebook figures are the text-free ones above
                cells += ["–", "–", "–"]
            lines.append(f"| {dataset} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    from vqfast.evaluation.plots import pyplot, save_png

    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 3.8), squeeze=False)
    for ax, (dataset, rows) in zip(axes[0], results.items()):
        labels = list(rows)
        for offset, kind in ((-0.2, "token"), (0.2, "histogram")):
            means = [rows[label][kind][0] for label in labels]
            stds = [rows[label][kind][1] for label in labels]
            ax.bar([i + offset for i in range(len(labels))], means, 0.38, yerr=stds,
                   capsize=3, label=f"{kind} features")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([label.replace(", ", "\n") for label in labels], fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"{dataset}: linear-probe accuracy")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    save_png(fig, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from vqfast.fileio import atomic_write, atomic_write_json

    started = time.perf_counter()
    runs: dict = {}
    for dataset in args.datasets:
        out = args.output_dir / dataset
        for seed in range(args.seeds):
            for variant in VARIANTS:
                argv = run_args(args, dataset, seed, variant, out)
                done = finished_report(out / f"{variant}-seed{seed}" / "report.json", args,
                                       dataset, seed, variant)
                report = done if done is not None and not args.set else train.main(argv)
                separation = histogram_separation(Path(report["model_dir"]), dataset)
                runs.setdefault(dataset, {}).setdefault(variant, []).append(
                    {"report": report, "separation": separation})
                reused = " (reused)" if report is done else ""
                print(f"[{time.perf_counter() - started:.0f} s] {dataset} seed {seed} {variant} "
                      f"done{reused}", flush=True)

    results: dict = {}
    for dataset, variants in runs.items():
        rows = {}
        for variant, key, label in ROWS:
            got = [collect(r["report"], key) for r in variants[variant]]
            row = {k: summarize([g[k] for g in got]) for k in got[0]}
            if key == "probe":
                row["separation"] = summarize([r["separation"] for r in variants[variant]])
            rows[label] = row
        results[dataset] = rows
    text = table(results, args)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    train_seconds = sum(r["report"]["wall_seconds"] for v in runs.values() for rs in v.values()
                        for r in rs)
    atomic_write_json(args.output_dir / "results.json",
                      {"settings": vars(args) | {"output_dir": str(args.output_dir)},
                       "results": results, "runs_wall_seconds": train_seconds,
                       "wall_seconds": time.perf_counter() - started})
    atomic_write(args.output_dir / "results.md", text)
    plot(results, args.output_dir / "results.png")
    print(text)
    print(f"{time.perf_counter() - started:.0f} s in all ({train_seconds:.0f} s in the runs, "
          f"reused ones included); results in {args.output_dir}")
    return results


if __name__ == "__main__":
    main()
