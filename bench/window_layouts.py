"""Histogram probe of a trained ``shape_source="window"`` model with its windows replaced.

The window encoder and codebook of a trained model are kept; only where the windows lie changes:
``grid-L`` (``num_token`` windows of length L evenly spaced from the start to the end of the series,
as ``window_layout="grid"``), ``grid64-L`` (64 such windows), ``learned-median`` (every series gets
the model's median window of each token), ``learned-l-centred`` (each token keeps its own learned
length but is centred on the grid point of its rank by mean start). The model's own windows are
the report's histogram probe. Used for docs/shape-collapse.md ("Where the windows lie").

    python bench/window_layouts.py runs/BasicMotions [runs/other ...] [--dataset BasicMotions]
"""

from __future__ import annotations

import argparse
import json

import torch

from vqfast import VQShape
from vqfast.data import load_dataset
from vqfast.evaluation.probe import ProbeSettings, linear_probe
from vqfast.model.functional import grid_windows, instance_stats
from vqfast.model.vqshape import measure_windows


@torch.no_grad()
def histograms(model, x, windows, batch=512):
    """Code histograms ``(rows, K)`` of ``x (rows, T)`` with windows from ``windows(xb, out)``."""
    hists = []
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch]
        _, out = model(xb, mode="tokenize")
        t, l = windows(xb, out)
        mean, std = instance_stats(xb)
        s = model._subsequences(xb, t.contiguous(), l.contiguous())
        _, idx, _ = model.codebook(model.window_encoder(measure_windows(s, mean, std)[0]),
                                   compute_loss=False)
        hists.append(torch.nn.functional.one_hot(idx, model.config["num_code"]).sum(1).float())
    return torch.cat(hists)


def layouts(model, x_train):
    N = model.config["num_token"]
    with torch.no_grad():
        _, out = model(x_train, mode="tokenize")
    t_med, l_med = out["t_pred"].median(0).values, out["l_pred"].median(0).values
    rank = out["t_pred"].squeeze(-1).mean(0).argsort()
    centres = ((torch.arange(N) + 0.5) / N).view(1, N, 1)

    def grid(num, length):
        return lambda xb, o: grid_windows(xb.shape[0], num, length, xb)

    def median(xb, o):
        return t_med.expand(xb.shape[0], -1, -1), l_med.expand(xb.shape[0], -1, -1)

    def centred(xb, o):
        l = o["l_pred"][:, rank]
        return torch.minimum((centres - l / 2).clamp(min=0), 1 - l), l

    return {"learned-median": median, "learned-l-centred": centred,
            "grid-0.06": grid(N, 0.06), "grid-0.12": grid(N, 0.12), "grid64-0.06": grid(64, 0.06)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="output dirs of train.py (with model/)")
    parser.add_argument("--dataset", default="BasicMotions")
    parser.add_argument("--probe-seeds", type=int, default=5)
    args = parser.parse_args(argv)
    for run in args.runs:
        model = VQShape.from_pretrained(f"{run}/model").eval()
        if model.config["shape_source"] != "window":
            raise SystemExit(f"{run}: shape_source={model.config['shape_source']!r}; this "
                             "re-measures windows, so it needs a shape_source='window' model")
        data = load_dataset(args.dataset, length=model.config["len_input"])
        n, C, T = data.x_train.shape
        x_tr, x_te = data.x_train.reshape(-1, T), data.x_test.reshape(-1, T)
        with torch.no_grad():
            _, out = model(x_te, mode="tokenize")
        q = torch.tensor([0.02, 0.5, 0.98])
        print(json.dumps({"run": run, "learned windows on the test split": {
            "t quantiles 2/50/98 %": [round(float(v), 3) for v in out["t_pred"].quantile(q)],
            "l min/median/max": [round(float(out["l_pred"].min()), 4),
                                 round(float(out["l_pred"].median()), 4),
                                 round(float(out["l_pred"].max()), 4)]}}), flush=True)
        for name, windows in layouts(model, x_tr).items():
            h_tr = histograms(model, x_tr, windows).reshape(n, -1)
            h_te = histograms(model, x_te, windows).reshape(data.x_test.shape[0], -1)
            r = linear_probe(h_tr, data.y_train, h_te, data.y_test, "histogram",
                             ProbeSettings(seeds=args.probe_seeds))
            print(json.dumps({"run": run, "layout": name, "histogram_probe": round(r.accuracy, 3),
                              "std": round(r.std, 3)}), flush=True)


if __name__ == "__main__":
    main()
