"""The text-guidance study: does text shape a better codebook, and does the benefit survive
without text at prediction time?

``python -m vqfast.experiments.text_guidance`` trains, on each dataset and seed, with the same
data, data order, model size and step budget (every run a normal ``vqfast/train.py`` run, its
report and exported model under ``--output-dir``):

- ``plain``: VQShape;
- ``teacher``: a text teacher (``VQShapeText``), probed with text and without;
- ``align``: one model on two passes with and without text plus the alignment loss, probed
  without text;
- ``distill``: a text-free student with the teacher's frozen codebook, probed without text;
- ``contrastive``: text-free tokens trained with an InfoNCE between the pooled tokens and the
  text (as LanHAR and UniMTS align text and sensors), probed without text;

for every text setting of the grid: text source (``--texts``: ``label``, ``describe``, ``file``
with ``--notes DATASET=PATH``), placement (``--fusions``: ``z``, ``z_mu_sigma``) and keys
(``--keys``: ``tokens``, ``sentence``; ``contrastive`` uses the sentence vector and no fusion, so
it runs once per text source). ``--shift`` adds the subject-shift benchmark
(``vqfast.experiments.subject_shift``): a HAR dataset whose training split is mostly "adult"
subjects and whose test split is mostly "child" ones, with per-sample text stating the subject.
``--convergence STEPS ...`` also trains plain VQShape at those budgets (the curve of its
histogram probe against steps).

The defaults are the core grid (every model, ``describe`` text, ``z`` placement, token keys, 4
datasets, 5 seeds). Statistics: for every text-free variant (and the teacher with text) against
plain VQShape, the paired difference over seeds (same seed, same data order), its 95 % bootstrap
interval and paired Wilcoxon and sign tests, per dataset and pooled (``vqfast.experiments.stats``).
Writes ``results.json``, ``results.md`` and one plot per dataset; a rerun reuses every finished run
of exactly the same command line (``--threads`` and ``--jobs`` included), so an interrupted study
resumes where it stopped. ``--jobs 2`` runs two one-thread workers side by side (on 2 cores they
do more runs per hour than one process of two threads).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vqfast.model import FUSIONS
from vqfast.model.text_model import TEXT_KEYS
from vqfast.training.cli import TEXT_CHOICES
from vqfast.training.presets import PRESETS

MODELS = ("plain", "teacher", "align", "distill", "contrastive")
#: (model, report key of its probe, label): the rows of every table.
ROWS = (
    ("plain", "probe", "VQShape"),
    ("teacher", "probe_with_text", "text teacher, with text"),
    ("teacher", "probe", "text teacher, without text"),
    ("align", "probe", "aligned, without text"),
    ("distill", "probe", "distilled student, without text"),
    ("contrastive", "probe", "contrastive, without text"),
)
FEATURES = ("token", "histogram")
CORE_DATASETS = ["BasicMotions", "JapaneseVowels", "GunPoint", "ArrowHead"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m vqfast.experiments.text_guidance",
                                description=__doc__.split("\n\n")[0],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = " (default: %(default)s)"
    p.add_argument("--datasets", nargs="+", default=CORE_DATASETS, help="shipped names" + d)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 of every run" + d)
    p.add_argument("--steps", type=int, default=300, help="optimizer steps of every run" + d)
    p.add_argument("--num-token", type=int, default=16,
                   help="shape tokens per series (fewer than the preset's 32 so that the core "
                        "grid fits in about 2 hours on 2 CPU cores)" + d)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models" + d)
    p.add_argument("--texts", nargs="+", choices=TEXT_CHOICES[1:], default=["describe"],
                   help="text sources" + d)
    p.add_argument("--fusions", nargs="+", choices=FUSIONS, default=["z"],
                   help="where text enters the teacher and the aligned model" + d)
    p.add_argument("--keys", nargs="+", choices=TEXT_KEYS, default=["tokens"],
                   help="text keys of the cross-attention" + d)
    p.add_argument("--notes", action="append", default=[], metavar="DATASET=PATH",
                   help="notes file of a dataset for --texts file (BasicMotions has a shipped "
                        "one, used when none is given)")
    p.add_argument("--shift", action="store_true",
                   help="add the subject-shift benchmark (its own subject text, every model)")
    p.add_argument("--shift-dataset", default="BasicMotions", help="its source dataset" + d)
    p.add_argument("--shift-train-child", type=float, default=0.1,
                   help="child fraction of its training split" + d)
    p.add_argument("--shift-test-child", type=float, default=0.9,
                   help="child fraction of its test split" + d)
    p.add_argument("--shift-child-amplitude", type=float, nargs=2, default=(0.35, 0.65),
                   metavar=("LOW", "HIGH"), help="children's amplitude factors" + d)
    p.add_argument("--shift-child-speed", type=float, nargs=2, default=(1.3, 1.7),
                   metavar=("LOW", "HIGH"), help="children's speed factors" + d)
    p.add_argument("--convergence", type=int, nargs="*", default=[],
                   help="also train plain VQShape at these step budgets (the convergence curve)")
    p.add_argument("--convergence-seeds", type=int, default=2, help="seeds of each budget" + d)
    p.add_argument("--convergence-datasets", nargs="+", default=None, metavar="NAME",
                   help="datasets of the convergence curve (default: the first of --datasets)")
    p.add_argument("--probe-seeds", type=int, default=3, help="probe seeds of every run" + d)
    p.add_argument("--preset", default="default-authors", choices=sorted(PRESETS),
                   help="every run's preset; text enters through the token heads, so every run, "
                        "plain VQShape included, uses shape_source=tokens" + d)
    p.add_argument("--output-dir", type=Path, default=Path("runs/text-guidance"), help="" + d)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to every run (model or optimizer setting)")
    p.add_argument("--fresh", action="store_true",
                   help="retrain runs whose report already exists (default: reuse them)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of every run (default: train.py's; 1 with --jobs > 1)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes side by side, sharing the (dataset, seed) units" + d)
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--claims", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    if args.jobs > 1 and args.threads is None:
        args.threads = 1
    if args.seeds < 1 or args.steps < 1 or args.convergence_seeds < 1:
        p.error("--seeds, --steps and --convergence-seeds must be >= 1")
    if any(s < 1 for s in args.convergence):
        p.error("--convergence budgets must be >= 1 step")
    if args.convergence_datasets is None:
        args.convergence_datasets = args.datasets[:1]
    unknown = {n.casefold() for n in args.convergence_datasets} - {
        n.casefold() for n in args.datasets}
    if unknown:
        p.error(f"--convergence-datasets {sorted(unknown)} are not among --datasets")
    args.models = [m for m in MODELS if m in args.models]
    if "distill" in args.models and "teacher" not in args.models:
        p.error("--models distill learns from the teacher of the same seed: add teacher")
    notes = {}
    for item in args.notes:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            p.error(f"--notes takes DATASET=PATH, got {item!r}")
        notes[name.casefold()] = Path(path)
    args.notes = notes
    return args


@dataclass(frozen=True)
class Setting:
    """One text setting of the grid: where the text comes from and how it enters."""

    text: str
    fusion: str = "z"
    keys: str = "tokens"

    def folder(self, model: str) -> str:
        if model == "plain":
            return "plain"
        if model == "contrastive":  # no fusion, the sentence vector: one run per text source
            return f"{self.text}/contrastive"
        return f"{self.text}/{self.fusion}-{self.keys}/{model}"

    @property
    def key(self) -> str:
        return f"{self.text}/{self.fusion}/{self.keys}"


@dataclass(frozen=True)
class Dataset:
    """A dataset of the study: ``arg`` is what ``--dataset`` gets; ``texts`` overrides the text
    sources (the shift benchmark has its own); ``notes`` is its notes file, if any."""

    name: str
    arg: str
    notes: Path | None = None
    texts: tuple[str, ...] | None = None


def datasets_of(args) -> list[Dataset]:
    from vqfast.text import example_text_file

    out = []
    for name in args.datasets:
        notes = args.notes.get(name.casefold())
        if notes is None and name.casefold() == "basicmotions":
            notes = example_text_file()
        out.append(Dataset(name, name, notes))
    if args.shift:
        from vqfast.experiments.subject_shift import SubjectShift, make_subject_shift

        shift = SubjectShift(dataset=args.shift_dataset,
                             train_child_fraction=args.shift_train_child,
                             test_child_fraction=args.shift_test_child,
                             child_amplitude=tuple(args.shift_child_amplitude),
                             child_speed=tuple(args.shift_child_speed))
        made = make_subject_shift(args.output_dir / "shift-data", shift)
        out.append(Dataset(shift.name, str(made["data"]), made["notes"], texts=("file",)))
    return out


def settings_of(args, dataset: Dataset, log=print) -> list[Setting]:
    texts = dataset.texts or args.texts
    if "file" in texts and dataset.notes is None:
        log(f"text_guidance: {dataset.name} has no notes file: its --texts file runs are skipped "
            f"(give --notes {dataset.name}=PATH)")
        texts = [t for t in texts if t != "file"]
    return [Setting(t, f, k) for t in texts for f in args.fusions for k in args.keys]


def run_args(args, dataset: Dataset, seed: int, model: str, setting: Setting | None, out: Path,
             steps: int | None = None) -> list[str]:
    argv = ["--dataset", dataset.arg, "--seed", str(seed), "--max-steps", str(steps or args.steps),
            "--preset", args.preset, "--output-dir", str(out),
            "--probe-seeds", str(args.probe_seeds), "--checkpoint-every", str(10**9),
            "--no-baseline", "--no-plots", "--num-token", str(args.num_token),
            # Text enters through the token heads: every model, plain VQShape included, takes its
            # code, mu and sigma, and its windows, from them (the authors' shape_source and
            # window_layout), so the study compares like with like.
            "--set", "shape_source=tokens", "--set", "window_layout=learned"]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    for item in args.set:
        argv += ["--set", item]
    if model != "plain":
        argv += ["--text", setting.text, "--text-mode", model]
        if model != "contrastive":
            argv += ["--fusion", setting.fusion, "--text-keys", setting.keys]
        if setting.text == "file":
            argv += ["--text-file", str(dataset.notes)]
    if model == "distill":
        argv += ["--teacher", str(out.parent.parent / "teacher" / f"seed{seed}" / "model")]
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


def finished_report(path: Path, argv: list[str], fresh: bool) -> dict | None:
    """The report of an earlier run of exactly this command line (so an interrupted study
    resumes where it stopped), else None."""
    if fresh or not path.is_file():
        return None
    report = json.loads(path.read_text())
    return report if report.get("study_argv") == argv else None


def metrics_of(report: dict, key: str) -> dict:
    """Probe accuracies, and for text-free probes the codebook figures of the histograms."""
    probe = report.get(key)
    nan = float("nan")
    if probe is None:
        return {}
    out = {"token": probe["token"]["accuracy"], "histogram": probe["histogram"]["accuracy"]}
    if key == "probe":
        cb = report["codebook"]
        out |= {"used": cb["used"], "perplexity": cb["perplexity"],
                "distinct_shapes": cb.get("distinct_shapes", nan),
                "separation": report.get("study_separation", nan)}
    return out


class Study:
    def __init__(self, args):
        self.args = args
        self.started = time.perf_counter()
        self.runs: list[dict] = []  # one entry per (dataset, setting, model, seed) probe row
        self.seconds: dict[str, float] = {}

    def train(self, argv: list[str], out: Path, dataset: Dataset, part: str) -> dict:
        from vqfast import train
        from vqfast.fileio import atomic_write_json

        report = finished_report(out / "report.json", argv, self.args.fresh)
        reused = report is not None
        if report is None:
            # A run interrupted after its first checkpoint continues from it.
            started = any((out / "checkpoints").glob("step-*"))
            report = train.main(argv + ["--resume"] if started else argv)
            report["study_argv"] = argv
            report["study_separation"] = histogram_separation(Path(report["model_dir"]),
                                                              dataset.arg)
            atomic_write_json(out / "report.json", report)
        self.seconds[part] = self.seconds.get(part, 0.0) + report["wall_seconds"]
        print(f"[{time.perf_counter() - self.started:.0f} s] {out} done"
              f"{' (reused)' if reused else ''}", flush=True)
        return report

    def units(self) -> list[tuple]:
        """The study's work, in order: ``(dataset, seed, None)`` (every model of the grid for that
        seed; a distilled student after its teacher) and ``(dataset, seed, steps)`` (a
        convergence run, the longest budgets first so that the last units are short)."""
        a = self.args
        datasets = datasets_of(a)
        out = [(dataset, seed, None) for dataset in datasets for seed in range(a.seeds)]
        wanted = {n.casefold() for n in a.convergence_datasets}
        out += [(dataset, seed, steps) for steps in sorted(a.convergence, reverse=True)
                for dataset in datasets if dataset.name.casefold() in wanted
                for seed in range(a.convergence_seeds)]
        return out

    def run(self, worker: int = 0, jobs: int = 1, claims: Path | None = None) -> None:
        """Run the units: all of them, or with ``claims`` (a folder shared by the workers of one
        invocation) each unit the first free worker claims, so that no worker idles while units
        remain; without ``claims``, worker ``w`` of ``jobs`` takes every ``jobs``-th unit."""
        for i, (dataset, seed, steps) in enumerate(self.units()):
            if claims is not None:
                try:
                    os.close(os.open(claims / str(i), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    continue
            elif i % jobs != worker:
                continue
            if steps is None:
                self.run_grid(dataset, seed)
            else:
                self.run_convergence(dataset, seed, steps)

    def run_grid(self, dataset: Dataset, seed: int) -> None:
        a = self.args
        root = a.output_dir / dataset.name
        part = "shift" if dataset.texts else "grid"
        done = set()
        for setting in settings_of(a, dataset, log=print if seed == 0 else lambda *_: None):
            for model in a.models:
                folder = setting.folder(model)
                if folder in done:
                    continue
                done.add(folder)
                out = root / folder / f"seed{seed}"
                report = self.train(run_args(a, dataset, seed, model, setting, out), out,
                                    dataset, part)
                for m, key, label in ROWS:
                    if m == model and report.get(key) is not None:
                        self.runs.append({
                            "dataset": dataset.name, "seed": seed, "model": model, "row": label,
                            "setting": None if model == "plain" else setting.key,
                            "folder": folder, **metrics_of(report, key)})

    def run_convergence(self, dataset: Dataset, seed: int, steps: int) -> None:
        root = self.args.output_dir / dataset.name
        if steps == self.args.steps:  # the grid's own plain run is this point of the curve
            out = root / "plain" / f"seed{seed}"
            argv = run_args(self.args, dataset, seed, "plain", None, out)
        else:
            out = root / "convergence" / f"steps{steps}" / f"seed{seed}"
            argv = run_args(self.args, dataset, seed, "plain", None, out, steps=steps)
        report = self.train(argv, out, dataset, "convergence")
        self.runs.append({"dataset": dataset.name, "seed": seed, "model": "plain",
                          "row": "convergence", "steps": steps, "setting": None,
                          "folder": str(out.parent.relative_to(root)),
                          **metrics_of(report, "probe")})


def run_workers(args, argv: list[str]) -> None:
    """``--jobs`` worker processes (one thread each) share the study's units: each takes the
    next unit no other worker has claimed."""
    import shutil
    import subprocess
    import sys
    import tempfile

    datasets_of(args)  # the shift benchmark's files, made once before the workers read them
    args.output_dir.mkdir(parents=True, exist_ok=True)
    claims = Path(tempfile.mkdtemp(prefix=".claims-", dir=args.output_dir))
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "vqfast.experiments.text_guidance",
                                   *argv, "--worker", str(w), "--claims", str(claims)])
                 for w in range(args.jobs)]
        codes = [p.wait() for p in procs]
    finally:
        shutil.rmtree(claims, ignore_errors=True)
    if any(codes):
        raise SystemExit(f"text_guidance: a worker failed (exit codes {codes}); rerun the same "
                         "command to resume")


def comparisons(runs: list[dict]) -> list[dict]:
    """Every non-plain row against plain VQShape, paired by (dataset, seed), per setting."""
    from vqfast.experiments.stats import compare

    plain = {(r["dataset"], r["seed"]): r for r in runs if r["row"] == "VQShape"}
    out = []
    keys = sorted({(r["setting"], r["row"]) for r in runs
                   if r["row"] not in ("VQShape", "convergence")},
                  key=lambda k: (k[0], [row[2] for row in ROWS].index(k[1])))
    for setting, row in keys:
        for feature in FEATURES:
            groups: dict = {}
            for r in runs:
                base = plain.get((r["dataset"], r["seed"]))
                if r["setting"] == setting and r["row"] == row and base is not None:
                    groups.setdefault(r["dataset"], []).append((r[feature], base[feature]))
            if groups:
                out.append({"setting": setting, "row": row, "feature": feature,
                            "stats": compare(groups)})
    return out


def summary_rows(runs: list[dict]) -> list[dict]:
    """Mean and 95 % bootstrap interval over seeds of every figure, per dataset, setting, row."""
    from vqfast.experiments.stats import mean_ci

    groups: dict = {}
    for r in runs:
        if r["row"] != "convergence":
            groups.setdefault((r["dataset"], r["setting"], r["row"]), []).append(r)
    out = []
    for (dataset, setting, row), rs in groups.items():
        figures = {}
        for k in ("token", "histogram", "used", "perplexity", "distinct_shapes", "separation"):
            values = [r[k] for r in rs if k in r]
            if values:
                figures[k] = mean_ci(values)
        out.append({"dataset": dataset, "setting": setting, "row": row, "seeds": len(rs),
                    **figures})
    return out


def convergence_rows(runs: list[dict]) -> list[dict]:
    from vqfast.experiments.stats import mean_ci

    groups: dict = {}
    for r in runs:
        if r["row"] == "convergence":
            groups.setdefault((r["dataset"], r["steps"]), []).append(r["histogram"])
    return [{"dataset": d, "steps": s, "histogram": mean_ci(v), "seeds": len(v)}
            for (d, s), v in sorted(groups.items())]


def _fmt(ci, digits=3) -> str:
    mean, lo, hi = ci
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown(results: dict) -> str:
    s = results["settings"]
    lines = [f"{s['steps']} steps per run, preset `{s['preset']}` with {s['num_token']} tokens "
             "(shape_source=tokens), honest probe (cross-validated on the training split), "
             f"seeds 0..{s['seeds'] - 1}; mean [95 % bootstrap interval] over seeds.", "",
             "#### Accuracy by model", "",
             "| dataset | text setting | model | seeds | token acc. | histogram acc. | codes used "
             "| perplexity | distinct shapes | hist. separation |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["summary"]:
        cells = [_fmt(r["token"]), _fmt(r["histogram"])]
        cells += ([f"{r['used'][0]:.1f}", f"{r['perplexity'][0]:.1f}",
                   f"{r['distinct_shapes'][0]:.1f}", f"{r['separation'][0]:+.3f}"]
                  if "used" in r else ["–"] * 4)
        lines.append(f"| {r['dataset']} | {r['setting'] or '–'} | {r['row']} | {r['seeds']} | "
                     + " | ".join(cells) + " |")
    lines += ["", "#### Paired difference from plain VQShape (same seed, same data order)", "",
              "Difference = variant − VQShape in probe accuracy; 95 % percentile-bootstrap "
              "interval over seeds (pooled: stratified by dataset, every dataset weighed "
              "equally); two-sided Wilcoxon signed-rank and sign tests on the paired "
              "differences. With 5 seeds the exact two-sided Wilcoxon p-value cannot fall below "
              "0.0625 on one dataset. **distinguishable** = the interval excludes 0 and, per "
              "dataset, every one of at least 5 seeds moves the same way; pooled, Wilcoxon "
              "p < 0.05.", "",
              "| text setting | model | features | dataset | n | mean diff. | 95 % CI | Wilcoxon p "
              "| sign p | W/L/T | distinguishable |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in results["comparisons"]:
        for dataset, st in c["stats"].items():
            pooled = dataset == "pooled"
            yes = st["distinguishable"]
            lines.append(
                f"| {c['setting']} | {c['row']} | {c['feature']} | "
                f"{'**pooled**' if pooled else dataset} | {st['n']} | {st['mean_diff']:+.3f} | "
                f"[{st['ci'][0]:+.3f}, {st['ci'][1]:+.3f}] | {st['wilcoxon_p']:.3f} | "
                f"{st['sign_p']:.3f} | {st['wins']}/{st['losses']}/{st['ties']} | "
                f"{'**yes**' if yes else 'no'} |")
    if results["convergence"]:
        lines += ["", "#### Convergence of plain VQShape (histogram probe)", "",
                  "| dataset | steps | seeds | histogram acc. |", "|---|---|---|---|"]
        lines += [f"| {r['dataset']} | {r['steps']} | {r['seeds']} | {_fmt(r['histogram'])} |"
                  for r in results["convergence"]]
    lines += ["", "Wall time of the runs (s, reused runs counted with their own time): "
              + ", ".join(f"{k} {v:.0f}" for k, v in results["run_seconds"].items())]
    return "\n".join(lines) + "\n"


def plot(results: dict, folder: Path) -> list[Path]:
    """One figure per dataset: accuracy by model with 95 % interval bars; and the convergence
    curve when measured."""
    from vqfast.evaluation.plots import pyplot, save_png

    plt = pyplot()
    paths = []
    datasets = list(dict.fromkeys(r["dataset"] for r in results["summary"]))
    for dataset in datasets:
        rows = [r for r in results["summary"] if r["dataset"] == dataset]
        labels = [r["row"] if r["setting"] is None else f"{r['row']}\n({r['setting']})"
                  for r in rows]
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 4))
        for offset, kind in ((-0.2, "token"), (0.2, "histogram")):
            means = [r[kind][0] for r in rows]
            err = [[r[kind][0] - r[kind][1] for r in rows], [r[kind][2] - r[kind][0]
                                                              for r in rows]]
            ax.bar([i + offset for i in range(len(rows))], means, 0.38, yerr=err, capsize=3,
                   label=f"{kind} features")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([label.replace(", ", ",\n") for label in labels], fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_title(f"{dataset}: linear-probe accuracy (95 % CI over seeds)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
        paths.append(save_png(fig, folder / f"results-{dataset}.png"))
    if results["convergence"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for dataset in dict.fromkeys(r["dataset"] for r in results["convergence"]):
            pts = [r for r in results["convergence"] if r["dataset"] == dataset]
            ax.errorbar([r["steps"] for r in pts], [r["histogram"][0] for r in pts],
                        yerr=[[r["histogram"][0] - r["histogram"][1] for r in pts],
                              [r["histogram"][2] - r["histogram"][0] for r in pts]],
                        marker="o", capsize=3, label=dataset)
        ax.axvline(results["settings"]["steps"], color="grey", ls="--", label="study budget")
        ax.set_xscale("log")
        ax.set_xlabel("pre-training steps")
        ax.set_ylabel("histogram probe accuracy")
        ax.set_title("plain VQShape: convergence")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        paths.append(save_png(fig, folder / "convergence.png"))
    return paths


def main(argv=None) -> dict | None:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from vqfast.fileio import atomic_write, atomic_write_json

    study = Study(args)
    if args.worker is not None:
        study.run(worker=args.worker, jobs=args.jobs, claims=args.claims)
        return None
    if args.jobs > 1:
        run_workers(args, argv)
    study.run()  # with workers: every run is finished and is read back
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["notes"] = {k: str(v) for k, v in args.notes.items()}
    results = {"settings": settings, "runs": study.runs, "summary": summary_rows(study.runs),
               "comparisons": comparisons(study.runs),
               "convergence": convergence_rows(study.runs), "run_seconds": study.seconds,
               "wall_seconds": time.perf_counter() - study.started}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(results)
    results["images"] = [str(p) for p in plot(results, args.output_dir)]
    atomic_write_json(args.output_dir / "results.json", results)
    atomic_write(args.output_dir / "results.md", text)
    print(text)
    print(f"{results['wall_seconds']:.0f} s in all; results in {args.output_dir}")
    return results


if __name__ == "__main__":
    main()
