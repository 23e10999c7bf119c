"""The cv probe of saved runs under both tie-break rules (``vqfast.evaluation.probe``).

For each output dir of ``vqfast/train.py``: the exported model and the untrained model of the
same architecture and seed (as the report builds it), token and histogram features of the run's
first dataset, probed with ``tie_break="first"`` (the default) and ``"loss"``. One JSON line per
run and rule, with the chosen epochs.

    python bench/probe_rules.py runs/BasicMotions [runs/other ...]
"""

from __future__ import annotations

import argparse
import json

import torch

from vqfast import VQShape
from vqfast.data import load_dataset
from vqfast.evaluation.probe import TIE_BREAKS, ProbeSettings, extract_features, linear_probe


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="output dirs of train.py (with model/ and "
                                                "report.json)")
    parser.add_argument("--probe-seeds", type=int, default=5)
    args = parser.parse_args(argv)
    for run in args.runs:
        report = json.load(open(f"{run}/report.json"))
        model = VQShape.from_pretrained(f"{run}/model").eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(report["seed"])
            untrained = VQShape(**model.config).eval()
        data = load_dataset(report["dataset"][0], length=model.config["len_input"])
        features = {}
        for name, m in {"trained": model, "untrained": untrained}.items():
            tr = extract_features(m, data.x_train, progress=False)
            te = extract_features(m, data.x_test, progress=False)
            features[name] = {"token": (tr[0], te[0]), "histogram": (tr[1], te[1])}
        for rule in TIE_BREAKS:
            settings = ProbeSettings(seeds=args.probe_seeds, tie_break=rule)
            line = {"run": run, "seed": report["seed"], "tie_break": rule}
            for name, feats in features.items():
                for kind, (tr, te) in feats.items():
                    r = linear_probe(tr, data.y_train, te, data.y_test, kind, settings)
                    line[f"{name}_{kind}"] = [round(r.accuracy, 3), round(r.std, 3), r.epochs]
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
