"""Classification accuracy of VQShape features beside aeon's MiniRocket and Catch22, one run.

    python bench/accuracy.py                                   # every shipped dataset, 3 seeds
    python bench/accuracy.py --steps 200 --seeds 3 --threads 1 --loo-datasets BasicMotions GunPoint

Methods, each on the train/test split shipped with the dataset, for every seed:

- ``vqfast-dataset``: a tokenizer pre-trained on the dataset's training split alone;
- ``vqfast-universal``: one tokenizer pre-trained on the training splits of every shipped
  classification dataset (``vqfast.data.expand_datasets(["all"])``, balanced: every dataset
  up-sampled to the largest, as the authors do);
- ``vqfast-loo``: the same pool with the evaluated dataset left out (a zero-shot tokenizer);
  one pre-training per evaluated dataset, so ``--loo-datasets`` limits which;
- each with ``token`` and ``histogram`` features and :class:`vqfast.estimators.VQShapeClassifier`'s
  probe, whose grid point and epochs are chosen by cross-validation on the training split;
- ``minirocket`` (``aeon MiniRocketClassifier``: ridge with its regularisation chosen by
  leave-one-out on the training split) and ``catch22`` (``aeon Catch22Classifier``: 22
  features and a random forest), the series zero-padded to the dataset's longest for
  unequal-length datasets (neither takes unequal lengths).

The test split is used once per cell (method, dataset, seed). Results go to ``--out`` after every
cell; a rerun with the same settings skips finished cells and reuses the pre-trained models saved
under ``--work``. ``--jobs N`` runs N single-thread worker processes side by side (on 2 cores,
two one-thread processes do more work per second than one two-thread process: the models are
small and the probes and baselines mostly single-threaded): first every (seed, dataset)'s
per-dataset, leave-one-out and baseline cells, shared round-robin, then every seed's universal
tokenizer and its cells; each worker writes ``<out>.workerI.json``, merged into ``--out`` after
each phase. Wall times are this run's seconds on this machine: ``pre-training`` (shared by a
model's token and histogram rows) and ``fit + predict`` of the classifier.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import _harness as H  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vqfast.data import expand_datasets  # noqa: E402
from vqfast.data.readers import Source, read_source  # noqa: E402

FEATURES = ("token", "histogram")
VQ_KINDS = ("dataset", "universal", "loo")
BASELINES = ("minirocket", "catch22")
METHODS = [f"vqfast-{k}/{f}" for k in VQ_KINDS for f in FEATURES] + list(BASELINES)
#: The local phase: per (seed, dataset), what needs no universal tokenizer; then the universal one.
PHASES = ("local", "universal")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/accuracy.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["all"], help="evaluated datasets ('all')")
    p.add_argument("--loo-datasets", nargs="*", default=None,
                   help="datasets with a leave-one-out tokenizer (default: every evaluated one; "
                        "none: pass the option with no names)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="pre-training steps (preset's)")
    p.add_argument("--preset", default="default")
    p.add_argument("--probe-epochs", type=int, default=100)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of each process (torch and numba)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes side by side")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--phase", choices=PHASES, default=None, help=argparse.SUPPRESS)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    p.add_argument("--out", type=Path, default=H.REPO / "bench" / "results" / "accuracy-cpu.json")
    p.add_argument("--work", type=Path, default=H.REPO / "runs" / "accuracy",
                   help="pre-trained models are saved here (and reused on a rerun)")
    args = p.parse_args(argv)
    if args.seeds < 1 or (args.steps is not None and args.steps < 1) or args.jobs < 1:
        p.error("--seeds, --steps and --jobs must be >= 1")
    args.datasets = expand_datasets(args.datasets)
    args.loo_datasets = (args.datasets if args.loo_datasets is None
                         else expand_datasets(args.loo_datasets) if args.loo_datasets else [])
    return args


def settings_of(args) -> dict:
    """What a finished cell depends on: a rerun must match it to reuse results."""
    return {"steps": args.steps, "preset": args.preset, "probe_epochs": args.probe_epochs,
            "universal_pool": expand_datasets(["all"]), "balance": True,
            "protocol": "cv on the training split"}


def raw(name: str):
    """``(X_train, y_train, X_test, y_test)`` as aeon gives them (lists when lengths differ)."""
    return read_source(Source("aeon", name))


def padded(X_train, X_test):
    """Zero-padded at the end to the longest series of either split, as ``(n, C, T)`` arrays."""
    if isinstance(X_train, np.ndarray) and isinstance(X_test, np.ndarray):
        return X_train, X_test
    longest = max(s.shape[-1] for s in [*X_train, *X_test])
    pad = [np.stack([np.pad(s, ((0, 0), (0, longest - s.shape[-1]))) for s in X])
           for X in (X_train, X_test)]
    return pad[0], pad[1]


def baseline(name: str, seed: int):
    if name == "minirocket":
        from aeon.classification.convolution_based import MiniRocketClassifier

        return MiniRocketClassifier(random_state=seed)
    from aeon.classification.feature_based import Catch22Classifier

    return Catch22Classifier(random_state=seed)


class Bench:
    def __init__(self, args):
        self.args = args
        self.settings = settings_of(args)
        self.results = {"benchmark": "accuracy", "settings": self.settings, "cells": {},
                        "pretraining": {}}
        if args.out.is_file():
            import json

            saved = json.loads(args.out.read_text())
            if saved.get("settings") != self.settings:
                raise SystemExit(f"{args.out} holds results of other settings "
                                 f"({saved.get('settings')}); pass another --out")
            self.results["cells"] = saved.get("cells", {})
            self.results["pretraining"] = saved.get("pretraining", {})

    def save(self) -> None:
        a = self.args
        self.results["run"] = {"datasets": a.datasets, "loo_datasets": a.loo_datasets,
                               "seeds": a.seeds, "methods": a.methods, "threads": a.threads,
                               "jobs": a.jobs,
                               "environment": H.environment("cpu")}
        H.write_json(a.out, self.results)

    def tokenizer(self, kind: str, dataset: str, seed: int, X_train) -> str:
        """Folder of the pre-trained model of ``kind`` for ``dataset`` (trained if missing)."""
        from vqfast import train
        from vqfast.estimators import VQShapeTransformer

        key = f"{kind}|{'all' if kind == 'universal' else dataset}|{seed}"
        folder = self.args.work / key.replace("|", "-")
        if key in self.results["pretraining"] and (folder / "model" / "config.json").is_file():
            return str(folder)
        a, t0 = self.args, time.perf_counter()
        print(f"  pre-training {key} ...", flush=True)
        if kind == "dataset":
            VQShapeTransformer(preset=a.preset, max_steps=a.steps, random_state=seed
                               ).fit(X_train).save_pretrained(folder)
        else:
            pool = expand_datasets(["all"], exclude=[dataset] if kind == "loo" else [])
            argv = ["--dataset", *pool, "--balance", "--preset", a.preset, "--seed", str(seed),
                    "--output-dir", str(folder), "--no-probe", "--no-plots", "--no-baseline",
                    "--threads", str(a.threads), "--checkpoint-every", str(10**9)]
            if a.steps is not None:
                argv += ["--max-steps", str(a.steps)]
            if folder.exists():
                import shutil

                shutil.rmtree(folder)  # an unfinished run of an interrupted benchmark
            with contextlib.redirect_stderr(io.StringIO()):
                train.main(argv)
        self.results["pretraining"][key] = {"seconds": time.perf_counter() - t0}
        self.save()
        return str(folder)

    def cell(self, method: str, dataset: str, seed: int, data) -> None:
        key = f"{method}|{dataset}|{seed}"
        if key in self.results["cells"]:
            return
        X_train, y_train, X_test, y_test = data
        if method.startswith("vqfast-"):
            from vqfast.estimators import VQShapeClassifier

            kind, features = method[len("vqfast-"):].split("/")
            folder = self.tokenizer(kind, dataset, seed, X_train)
            clf = VQShapeClassifier(model=folder, features=features,
                                    probe_epochs=self.args.probe_epochs, random_state=seed)
            pre = "all" if kind == "universal" else dataset
            pretrain = self.results["pretraining"][f"{kind}|{pre}|{seed}"]["seconds"]
        else:
            clf, pretrain = baseline(method, seed), 0.0
            X_train, X_test = padded(X_train, X_test)
        t0 = time.perf_counter()
        pred = clf.fit(X_train, y_train).predict(X_test)
        seconds = time.perf_counter() - t0
        acc = float(np.mean(pred == y_test))
        self.results["cells"][key] = {"accuracy": acc, "seconds": seconds,
                                      "pretraining_seconds": pretrain}
        print(f"  {key:<52} accuracy {acc:.4f}  ({seconds:.1f} s)", flush=True)
        self.save()

    def units(self, phase: str) -> list[tuple[int, list[str], list[str]]]:
        """``(seed, datasets, methods)`` work units of ``phase``, in order."""
        a = self.args
        if phase == "local":
            methods = [m for m in a.methods if not m.startswith("vqfast-universal")]
            return [(seed, [d], methods) for seed in range(a.seeds) for d in a.datasets]
        methods = [m for m in a.methods if m.startswith("vqfast-universal")]
        return [(seed, a.datasets, methods) for seed in range(a.seeds)] if methods else []

    def run(self, phases=PHASES, worker: int = 0, jobs: int = 1) -> None:
        a = self.args
        for phase in phases:
            for i, (seed, datasets, methods) in enumerate(self.units(phase)):
                if i % jobs != worker:
                    continue
                for dataset in datasets:
                    data = None
                    for method in methods:
                        if method.startswith("vqfast-loo") and dataset not in a.loo_datasets:
                            continue
                        if f"{method}|{dataset}|{seed}" in self.results["cells"]:
                            continue
                        data = data or raw(dataset)
                        self.cell(method, dataset, seed, data)


def summary(results: dict) -> str:
    """Markdown: per method mean accuracy, mean rank and wall time; then per dataset."""
    cells = results["cells"]
    acc: dict[str, dict[str, list[float]]] = {}
    for key, r in cells.items():
        method, dataset, _ = key.split("|")
        acc.setdefault(method, {}).setdefault(dataset, []).append(r["accuracy"])
    methods = [m for m in METHODS if m in acc]
    datasets = sorted({d for m in acc.values() for d in m})
    common = [d for d in datasets if all(d in acc[m] for m in methods)]
    ranks = {m: [] for m in methods}
    for d in common:
        means = np.array([np.mean(acc[m][d]) for m in methods])
        order = (-means).argsort(kind="stable")
        rank = np.empty(len(methods))
        rank[order] = np.arange(1, len(methods) + 1)
        for v in np.unique(means):  # ties share their mean rank
            rank[means == v] = rank[means == v].mean()
        for m, r in zip(methods, rank):
            ranks[m].append(r)
    pre = results["pretraining"]
    lines = [f"Mean rank over the {len(common)} datasets every method ran on; accuracy = mean "
             "over datasets of the mean over seeds.", "",
             "| method | datasets | mean accuracy | mean rank | pre-training (s) | "
             "fit + predict (s) |", "|---|---|---|---|---|---|"]
    for m in methods:
        kind = m.split("/")[0].removeprefix("vqfast-") if m.startswith("vqfast-") else None
        seconds = sum(r["seconds"] for k, r in cells.items() if k.startswith(m + "|"))
        pre_s = sum(r["seconds"] for k, r in pre.items() if k.split("|")[0] == kind)
        lines.append(f"| {m} | {len(acc[m])} | {np.mean([np.mean(v) for v in acc[m].values()]):.3f}"
                     f" | {np.mean(ranks[m]) if ranks[m] else float('nan'):.2f} | {pre_s:.0f} | "
                     f"{seconds:.0f} |")
    lines += ["", "| dataset | " + " | ".join(methods) + " |",
              "|---|" + "---|" * len(methods)]
    for d in datasets:
        row = [f"{np.mean(acc[m][d]):.3f} ± {np.std(acc[m][d]):.3f}" if d in acc[m] else "–"
               for m in methods]
        lines.append(f"| {d} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def worker_out(out: Path, worker: int) -> Path:
    return out.with_name(f"{out.stem}.worker{worker}.json")


def run_workers(bench: Bench, argv: list[str]) -> None:
    """Every phase shared by ``--jobs`` worker processes; their results merged into ``--out``."""
    import json
    import subprocess

    a = bench.args
    for phase in PHASES:
        procs = []
        for w in range(a.jobs):
            out = worker_out(a.out, w)
            saved = json.loads(out.read_text()) if out.is_file() else {}
            if saved.get("settings") != bench.settings:  # start from what --out holds
                H.write_json(out, {**bench.results, "settings": bench.settings})
            cmd = [sys.executable, __file__, *argv, "--out", str(out), "--worker", str(w),
                   "--phase", phase]
            procs.append(subprocess.Popen(cmd))
        codes = [p.wait() for p in procs]
        for w in range(a.jobs):
            part = json.loads(worker_out(a.out, w).read_text())
            bench.results["cells"].update(part.get("cells", {}))
            bench.results["pretraining"].update(part.get("pretraining", {}))
        bench.save()
        if any(codes):
            raise SystemExit(f"accuracy: a worker of phase {phase!r} failed (exit codes {codes}); "
                             "rerun the same command to resume")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    bench = Bench(args)
    if args.worker is not None:
        bench.run(phases=[args.phase], worker=args.worker, jobs=args.jobs)
        return 0
    t0 = time.perf_counter()
    print(f"accuracy benchmark: {len(args.datasets)} datasets, {args.seeds} seeds, "
          f"leave-one-out on {args.loo_datasets}, steps {args.steps or 'preset'}, "
          f"{args.jobs} process(es) of {args.threads} thread(s)", flush=True)
    if args.jobs > 1:
        run_workers(bench, argv)
    else:
        bench.run()
    bench.results["summary_markdown"] = summary(bench.results)
    bench.save()
    print(f"\n{bench.results['summary_markdown']}\n\n{time.perf_counter() - t0:.0f} s this run; "
          f"results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
