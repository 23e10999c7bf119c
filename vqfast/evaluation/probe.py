"""Linear probes on VQShape features: how much a pre-trained tokenizer's tokens and code histograms
say about the classes of a dataset.

Features (per sample; every channel tokenized on its own): the flattened tokens ``(C*N*(D+4))``,
standard-scaled, or the code histograms ``(C*K)``, min-max scaled; scalers are fit on the training
split. The classifier is the authors': dropout on the input, one linear layer, Adam (lr 0.005),
batch 64, 100 epochs, cross-entropy, over a grid of weight decay x dropout, several seeds.

Protocols:

- ``"cv"`` (default, honest): the grid point and the number of epochs are chosen by stratified
  k-fold cross-validation on the training split; the test split is used once per seed. Among
  grid points and epochs of equal validation accuracy (frequent: a small split's accuracies take
  few values, and its curves plateau early) ``tie_break="first"`` (default) takes the first (the
  earliest epoch, often a few Adam steps from the random start on a small split);
  ``tie_break="loss"`` the lowest validation cross-entropy (docs/shape-collapse.md compares
  them: no consistent difference on the main job's runs).
- ``"paper"``: the authors' choice, grid point and epoch picked on the *test* split: optimistic,
  reported only to compare with their numbers.

``python -m vqfast.probe --model DIR --dataset NAME`` (or ``vqfast-probe``) runs it on an exported
model.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vqfast.inputs import PAD_MODES

PROTOCOLS = ("cv", "paper")
TIE_BREAKS = ("first", "loss")
FEATURES = ("token", "histogram")
WEIGHT_DECAYS = (0.0, 0.01, 0.1, 1.0, 10.0, 100.0)
DROPOUTS = (0.0, 0.2, 0.5, 0.8)


@dataclass
class ProbeSettings:
    protocol: str = "cv"
    seeds: int = 5
    epochs: int = 100
    lr: float = 0.005
    batch_size: int = 64
    folds: int = 5
    weight_decays: tuple = WEIGHT_DECAYS
    dropouts: tuple = DROPOUTS
    seed: int = 0
    tie_break: str = "first"

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"probe: protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.tie_break not in TIE_BREAKS:
            raise ValueError(f"probe: tie_break must be one of {TIE_BREAKS}, got "
                             f"{self.tie_break!r}")
        if self.seeds < 1 or self.epochs < 1 or self.folds < 2:
            raise ValueError("probe: seeds and epochs must be >= 1 and folds >= 2")


@dataclass
class ProbeResult:
    accuracy: float
    std: float
    per_seed: list[float]
    weight_decay: float
    dropout: float
    epochs: int
    selection: str

    def as_dict(self) -> dict:
        return {
            "accuracy": self.accuracy, "std": self.std, "per_seed": self.per_seed,
            "weight_decay": self.weight_decay, "dropout": self.dropout, "epochs": self.epochs,
            "selection": self.selection,
        }


# ----------------------------------------------------------------------------- features


@torch.no_grad()
def extract_features(model, x: torch.Tensor, batch_size: int = 256, progress: bool = True,
                     texts: list[str] | None = None):
    """``x (n, C, T)`` -> ``(tokens (n, C*N*(D+4)) float32, histograms (n, C*K) float32)``.

    ``texts``: one text per sample, given to a ``VQShapeText`` for every channel of the sample.
    """
    from tqdm.auto import tqdm

    if x.dim() != 3:
        raise ValueError(f"extract_features: x must be (n, C, T), got {tuple(x.shape)}")
    n, C, T = x.shape
    if n == 0:
        raise ValueError("extract_features: no samples")
    if texts is not None and len(texts) != n:
        raise ValueError(f"extract_features: {len(texts)} texts for {n} samples")
    row_texts = None if texts is None else [t for t in texts for _ in range(C)]
    was_training = model.training
    model.eval()
    flat = x.reshape(n * C, T)
    tokens, hists = [], []
    rows = range(0, flat.shape[0], batch_size)
    for i in tqdm(rows, desc="tokenizing", unit="batch", disable=not progress, leave=False):
        context = {} if row_texts is None else {"text": row_texts[i : i + batch_size]}
        rep, _ = model(flat[i : i + batch_size].to(model.device), mode="tokenize", **context)
        tokens.append(rep["token"].float().cpu())
        hists.append(rep["histogram"].float().cpu())
    model.train(was_training)
    return torch.cat(tokens).reshape(n, -1), torch.cat(hists).reshape(n, -1)


def scaler(train: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(shift, divisor)`` per feature, fit on ``train``: mean and std (tokens) or minimum and
    range (histograms); a constant feature's divisor is 1. Scaled = ``(x - shift) / divisor``."""
    if kind == "token":
        mean, std = train.mean(0), train.std(0, unbiased=False)
        return mean, torch.where(std > 0, std, torch.ones_like(std))
    lo, hi = train.min(0).values, train.max(0).values
    return lo, torch.where(hi > lo, hi - lo, torch.ones_like(hi))


def scale(train: torch.Tensor, test: torch.Tensor, kind: str):
    """Standard scaling (tokens) or min-max scaling (histograms), fit on the training split."""
    shift, divisor = scaler(train, kind)
    return (train - shift) / divisor, (test - shift) / divisor


# ----------------------------------------------------------------------------- classifier


def train_grid(x, y, num_classes, weight_decays, dropouts, epochs, settings, seed, x_eval=None,
               y_eval=None):
    """Train one linear classifier per grid point ``(weight decay, dropout)`` at once.

    The classifiers are independent (separate weights, per-point L2 as in Adam's weight_decay,
    per-point input dropout), batched into one tensor program: the input is masked once per
    dropout rate and multiplied with the weights of every weight decay at that rate. Returns the
    accuracy and the mean cross-entropy on ``(x_eval, y_eval)`` after every epoch, each
    ``(P, W, epochs)`` for ``P`` dropout rates and ``W`` weight decays, and the final weights.
    """
    gen = torch.Generator().manual_seed(seed)
    (n, F_), C = x.shape, num_classes
    P, Wn = len(dropouts), len(weight_decays)
    keep = torch.tensor([1 - p for p in dropouts]).view(P, 1, 1)
    wd = torch.tensor(weight_decays).repeat_interleave(C).view(1, 1, Wn * C)
    bound = 1 / math.sqrt(F_)
    W = ((torch.rand(P, F_, Wn * C, generator=gen) * 2 - 1) * bound).requires_grad_()
    b = ((torch.rand(P, 1, Wn * C, generator=gen) * 2 - 1) * bound).requires_grad_()
    opt = torch.optim.Adam([W, b], lr=settings.lr)
    curve = torch.zeros(P, Wn, epochs)
    eval_loss = torch.zeros(P, Wn, epochs)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, settings.batch_size):
            idx = order[i : i + settings.batch_size]
            noise = torch.rand(len(idx), F_, generator=gen)
            xb = x[idx] * ((noise < keep) / keep)  # (P, batch, F)
            logits = torch.baddbmm(b, xb, W).view(P, len(idx), Wn, C)
            target = y[idx].view(1, -1, 1).expand(P, -1, Wn)
            loss = F.cross_entropy(logits.permute(0, 3, 1, 2), target, reduction="none")
            loss = loss.mean(1).sum()  # mean over the batch, summed over independent classifiers
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():  # Adam's weight_decay: L2 added to the gradient, per point
                W.grad += wd * W
                b.grad += wd * b
            opt.step()
        if x_eval is not None:
            with torch.no_grad():
                logits = (x_eval @ W + b).view(P, -1, Wn, C)
                pred = logits.argmax(-1)  # (P, m, Wn)
                curve[:, :, epoch] = (pred == y_eval.view(1, -1, 1)).float().mean(1)
                target = y_eval.view(1, -1, 1).expand(P, -1, Wn)
                eval_loss[:, :, epoch] = F.cross_entropy(logits.permute(0, 3, 1, 2), target,
                                                         reduction="none").mean(1)
    return curve, eval_loss, (W.detach(), b.detach())


def predict(x, weights) -> torch.Tensor:
    """Class predictions of a single classifier trained by ``train_grid`` with a 1 x 1 grid."""
    W, b = weights
    return (x @ W[0] + b[0]).argmax(-1)


def stratified_folds(y: torch.Tensor, k: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    folds = [[] for _ in range(k)]
    for c in y.unique():
        members = (y == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        for i, m in enumerate(members.tolist()):
            folds[i % k].append(m)
    return [torch.tensor(sorted(f), dtype=torch.long) for f in folds if f]


def linear_probe(train_x, train_y, test_x, test_y, kind: str, settings: ProbeSettings | None = None
                 ) -> ProbeResult:
    """Probe accuracy of features ``(n, F)`` with labels ``(n,)`` (see the module docstring)."""
    settings = settings or ProbeSettings()
    if kind not in FEATURES:
        raise ValueError(f"linear_probe: kind must be one of {FEATURES}, got {kind!r}")
    # Strong weight decay drives weights and Adam's moments into denormal floats, which the CPU
    # handles ~5x slower; flushing them to zero changes no prediction.
    torch.set_flush_denormal(True)
    try:
        return _linear_probe(train_x, train_y, test_x, test_y, kind, settings)
    finally:
        torch.set_flush_denormal(False)


def _linear_probe(train_x, train_y, test_x, test_y, kind, settings):
    train_x, test_x = scale(train_x.float(), test_x.float(), kind)
    train_y, test_y = train_y.long(), test_y.long()
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    wds, drops = list(settings.weight_decays), list(settings.dropouts)
    if settings.protocol == "paper":
        curves = torch.stack([
            train_grid(train_x, train_y, num_classes, wds, drops, settings.epochs, settings,
                       settings.seed + s, test_x, test_y)[0].flatten(0, 1)
            for s in range(settings.seeds)
        ])  # (seeds, grid, epochs), grid = (dropout, weight decay) pairs
        best_per_seed = curves.max(-1).values  # best epoch on test, per seed and grid point
        g = int(best_per_seed.mean(0).argmax())
        accs = best_per_seed[:, g]
        epochs = int(curves[:, g].mean(0).argmax()) + 1
        selection = "grid point and epoch chosen on the test split (the authors' protocol)"
    else:
        g, epochs, k = select_by_cv(train_x, train_y, num_classes, settings)
        accs = []
        for s in range(settings.seeds):
            _, _, weights = train_grid(train_x, train_y, num_classes, [wds[g % len(wds)]],
                                       [drops[g // len(wds)]], epochs, settings,
                                       settings.seed + s)
            accs.append((predict(test_x, weights) == test_y).float().mean().item())
        accs = torch.tensor(accs)
        selection = (f"grid point and epoch chosen by {k}-fold cross-validation on the training "
                     f"split{_TIE_BREAK_WORDS[settings.tie_break]}")
    return ProbeResult(
        accuracy=float(accs.mean()), std=float(accs.std(unbiased=False)),
        per_seed=[float(a) for a in accs], weight_decay=wds[g % len(wds)],
        dropout=drops[g // len(wds)],
        epochs=epochs, selection=selection,
    )


_TIE_BREAK_WORDS = {"loss": ", ties broken by validation loss",
                    "first": ", ties broken by the earliest epoch"}


def select_by_cv(train_x, train_y, num_classes, settings: ProbeSettings):
    """The grid point (index into the ``(dropout, weight decay)`` pairs, dropout-major) and
    number of epochs with the best stratified k-fold validation accuracy on scaled training
    features, ties broken as ``settings.tie_break`` says; returns ``(grid index, epochs, k)``."""
    wds, drops = list(settings.weight_decays), list(settings.dropouts)
    smallest = int(torch.bincount(train_y).min())
    k = max(2, min(settings.folds, smallest))
    folds = stratified_folds(train_y, k, settings.seed)
    val = torch.zeros(len(drops) * len(wds), settings.epochs, dtype=torch.float64)
    val_loss = torch.zeros_like(val)
    for i, fold in enumerate(folds):
        rest = torch.cat([f for j, f in enumerate(folds) if j != i])
        curve, loss, _ = train_grid(train_x[rest], train_y[rest], num_classes, wds, drops,
                                    settings.epochs, settings, settings.seed + 1000 + i,
                                    train_x[fold], train_y[fold])
        val += curve.flatten(0, 1).double() * len(fold)
        val_loss += loss.flatten(0, 1).double() * len(fold)
    val, val_loss = val.flatten() / len(train_y), val_loss.flatten() / len(train_y)
    # Accuracies are counts over the training split: equal counts are ties.
    best = (val - val.max()).abs() < 0.5 / len(train_y)
    if settings.tie_break == "loss":
        flat = int(torch.where(best, val_loss, torch.inf).argmin())
    else:
        flat = int(best.nonzero()[0])
    return flat // settings.epochs, flat % settings.epochs + 1, k


@dataclass
class FittedProbe:
    """One linear probe fit on a training split: ``logits = ((x - shift) / divisor) @ weight +
    bias`` for raw features ``x (n, F)``; ``weight (F, classes)``, ``bias (classes,)``,
    ``shift`` and ``divisor (F,)`` (the scaler fit on the training split)."""

    kind: str
    weight: torch.Tensor
    bias: torch.Tensor
    shift: torch.Tensor
    divisor: torch.Tensor
    weight_decay: float
    dropout: float
    epochs: int
    selection: str

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[1])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"FittedProbe: features must be (n, {self.weight.shape[0]}), got "
                             f"{tuple(x.shape)}")
        return ((x.float() - self.shift) / self.divisor) @ self.weight + self.bias

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(-1)


def fit_probe(train_x, train_y, kind: str = "histogram", settings: ProbeSettings | None = None,
              num_classes: int | None = None) -> FittedProbe:
    """The probe :func:`linear_probe` evaluates, fit once on the training split (the seed
    ``settings.seed``) with the grid point and epochs chosen by cross-validation on it (or the
    only grid point when the grid has one; ``settings.protocol`` does not apply: there is no
    test split here), and returned with its weights and scaler."""
    settings = settings or ProbeSettings()
    if kind not in FEATURES:
        raise ValueError(f"fit_probe: kind must be one of {FEATURES}, got {kind!r}")
    if train_x.dim() != 2 or train_y.shape != (train_x.shape[0],):
        raise ValueError(f"fit_probe: features must be (n, F) with labels (n,), got "
                         f"{tuple(train_x.shape)} and {tuple(train_y.shape)}")
    train_y = train_y.long()
    num_classes = num_classes or int(train_y.max()) + 1
    if int(train_y.max()) >= num_classes or int(train_y.min()) < 0:
        raise ValueError(f"fit_probe: labels must lie in 0..{num_classes - 1}")
    shift, divisor = scaler(train_x.float(), kind)
    x = (train_x.float() - shift) / divisor
    wds, drops = list(settings.weight_decays), list(settings.dropouts)
    torch.set_flush_denormal(True)
    try:
        if len(wds) * len(drops) == 1:
            g, epochs, selection = 0, settings.epochs, "the only grid point, all epochs"
        else:
            g, epochs, k = select_by_cv(x, train_y, num_classes, settings)
            selection = f"grid point and epoch chosen by {k}-fold cross-validation on train"
        wd, drop = wds[g % len(wds)], drops[g // len(wds)]
        _, _, (W, b) = train_grid(x, train_y, num_classes, [wd], [drop], epochs, settings,
                                  settings.seed)
    finally:
        torch.set_flush_denormal(False)
    return FittedProbe(kind, W[0], b[0, 0], shift, divisor, wd, drop, epochs, selection)


def probe_model(model, data, settings: ProbeSettings | None = None, batch_size: int = 256,
                progress: bool = True, texts: dict | None = None) -> dict:
    """Token and histogram probes of ``model`` on a ``vqfast.data.SeriesData`` with a test split.

    ``texts``: ``{"train": [...], "test": [...]}`` per-sample texts for a ``VQShapeText``.
    Returns ``{"protocol", "selection", "token": {...}, "histogram": {...}}``.
    """
    settings = settings or ProbeSettings()
    if data.x_test is None:
        raise ValueError(
            f"probe: dataset {data.name!r} has no test split; load it with test_fraction=0.3 "
            "(vqfast.data.load_dataset) to hold one out"
        )
    texts = texts or {}
    tok_tr, hist_tr = extract_features(model, data.x_train, batch_size, progress,
                                       texts.get("train"))
    tok_te, hist_te = extract_features(model, data.x_test, batch_size, progress, texts.get("test"))
    out = {"protocol": settings.protocol, "seeds": settings.seeds}
    for kind, (tr, te) in {"token": (tok_tr, tok_te), "histogram": (hist_tr, hist_te)}.items():
        result = linear_probe(tr, data.y_train, te, data.y_test, kind, settings)
        out[kind] = result.as_dict()
        out["selection"] = result.selection
    return out


def codebook_usage(histograms: torch.Tensor) -> dict:
    """Codes used and perplexity ``exp(H(usage))`` from per-sample histograms ``(n, K)``."""
    counts = histograms.sum(0).double()
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"used": int((counts > 0).sum()), "size": int(histograms.shape[1]),
            "perplexity": float(entropy.exp())}


# ----------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vqfast.probe",
        description="Linear-probe accuracy of a saved VQShape model's tokens and histograms.",
    )
    parser.add_argument("--model", required=True, help="folder written by save_pretrained")
    parser.add_argument("--dataset", required=True, help="dataset name or path (vqfast.data)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="cv")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--tie-break", choices=TIE_BREAKS, default="first",
                        help="among equally accurate grid points and epochs of the cv protocol, "
                             "the first (the earliest epoch) or the lowest validation loss")
    parser.add_argument("--how", choices=PAD_MODES, default="pad")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)

    from vqfast import VQShape
    from vqfast.data import load_dataset
    from vqfast.fileio import atomic_write_json

    model = VQShape.from_pretrained(args.model)
    data = load_dataset(args.dataset, length=model.len_input, how=args.how)
    result = probe_model(model, data, ProbeSettings(protocol=args.protocol, seeds=args.seeds,
                                                    tie_break=args.tie_break),
                         batch_size=args.batch_size, progress=sys.stderr.isatty())
    result["dataset"] = data.name
    print(f"{data.name}: {result['selection']}")
    for kind in FEATURES:
        r = result[kind]
        print(f"  {kind:<9} accuracy {r['accuracy']:.4f} +- {r['std']:.4f} "
              f"(weight decay {r['weight_decay']}, dropout {r['dropout']}, {r['epochs']} epochs)")
    if args.json:
        atomic_write_json(args.json, result)
    return 0


__all__ = ["DROPOUTS", "FEATURES", "PROTOCOLS", "TIE_BREAKS", "WEIGHT_DECAYS", "FittedProbe",
           "ProbeResult", "ProbeSettings", "codebook_usage", "extract_features", "fit_probe",
           "linear_probe", "main", "predict", "probe_model", "scale", "scaler", "select_by_cv",
           "stratified_folds", "train_grid"]


if __name__ == "__main__":
    raise SystemExit(main())

