"""Every explanation of one model on one labelled dataset at once: what ``python -m
vqfast.explain`` writes and what the run's report shows (:func:`report_section`)."""

from __future__ import annotations

from pathlib import Path

import torch

from vqfast.evaluation.probe import ProbeSettings, extract_features, fit_probe
from vqfast.explain import figures
from vqfast.explain.attribution import class_attribution
from vqfast.explain.faithfulness import DEFAULT_DRAWS, DEFAULT_FRACTION, faithfulness
from vqfast.explain.series import explain_series
from vqfast.explain.shapes import DEFAULT_THRESHOLD, decode_codes, distinct_codes


def check_samples(samples, n: int, split: str) -> list[int]:
    """Sample indices into a split of ``n`` samples, or an error that names the valid range."""
    out = []
    for i in samples:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"explain: sample indices must be integers, got {i!r}")
        if not 0 <= i < n:
            raise ValueError(f"explain: sample {i} is out of range: the {split} split has {n} "
                             f"samples (indices 0..{n - 1})")
        out.append(i)
    return out


def one_per_class(y: torch.Tensor) -> list[int]:
    """The first sample of each class, in class order."""
    return [int((y == c).nonzero()[0]) for c in torch.unique(y).tolist()]


def explain(model, data, output_dir=None, *, samples=None, threshold: float = DEFAULT_THRESHOLD,
            metric="correlation", top: int = 6, fraction: float = DEFAULT_FRACTION,
            draws: int = DEFAULT_DRAWS, seed: int = 0, probe: ProbeSettings | None = None,
            prefix: str = "explain_", progress: bool = False) -> dict:
    """Distinct shapes, class attribution, per-sample explanations and the deletion test of
    ``model`` on ``data`` (a ``vqfast.data.SeriesData``).

    The histogram probe is fit on the training split (grid point and epochs by cross-validation
    there); everything else is measured on the test split (the training split when there is
    none). ``samples``: indices into that split to explain (default: the first of each class).
    With ``output_dir``, the figures are written there (names start with ``prefix``) and
    ``images`` maps each to its file name. Returns the dictionary ``explain.json`` holds.
    """
    if not hasattr(model, "codebook") or not hasattr(model, "shape_decoder"):
        raise TypeError(f"explain: expected a VQShape model, got {type(model).__name__}")
    if data.num_classes < 2:
        raise ValueError(f"explain: {data.name} has {data.num_classes} class; explaining a "
                         "classification needs labelled data with at least 2 classes")
    split = "test" if data.x_test is not None else "train"
    x = data.x_test if data.x_test is not None else data.x_train
    y = data.y_test if data.y_test is not None else data.y_train
    if x.shape[-1] != model.len_input:
        raise ValueError(f"explain: {data.name} is resampled to length {x.shape[-1]}, the model "
                         f"takes {model.len_input}; load it with "
                         f"load_dataset(..., length={model.len_input})")
    chosen = one_per_class(y) if samples is None else check_samples(list(samples), len(x), split)
    K = model.num_code
    _, train_hist = extract_features(model, data.x_train, progress=progress)
    hist = train_hist if split == "train" else extract_features(model, x, progress=progress)[1]
    fitted = fit_probe(train_hist, data.y_train, "histogram", probe, data.num_classes)
    distinct = distinct_codes(model, hist, threshold=threshold, metric=metric)
    attributions = class_attribution(fitted, hist, y, K, data.classes, top=top)
    deletion = faithfulness(fitted, hist, K, fraction=fraction, draws=draws, seed=seed)
    explained = [explain_series(model, fitted, x[i], label=int(y[i]), sample=i,
                                class_names=data.classes, distinct=distinct) for i in chosen]
    accuracy = float((fitted.logits(hist).argmax(-1) == y).float().mean())
    result = {
        "dataset": data.name, "split": split, "channels": data.channels,
        "distinct_shapes": distinct.as_dict(),
        "probe": {"kind": "histogram", "fit_on": "train", "weight_decay": fitted.weight_decay,
                  "dropout": fitted.dropout, "epochs": fitted.epochs,
                  "selection": fitted.selection, f"{split}_accuracy": accuracy},
        "classes": [a.as_dict() for a in attributions],
        "faithfulness": deletion.as_dict() | {"fraction": fraction, "split": split},
        "samples": [e.as_dict() for e in explained],
        "images": {},
    }
    if output_dir is not None:
        result["images"] = _draw(Path(output_dir), prefix, distinct, attributions, deletion,
                                 explained, decode_codes(model).numpy(), data, split)
    return result


def _draw(out: Path, prefix, distinct, attributions, deletion, explained, shapes, data, split):
    out.mkdir(parents=True, exist_ok=True)
    where = f"{data.name} ({split} split)"
    images = {}
    if distinct.used_groups:
        images["shapes"] = figures.shape_gallery(
            distinct, out / f"{prefix}shapes.png", title=f"{distinct.summary()} on {where}").name
    images["classes"] = figures.class_attribution_figure(
        attributions, shapes, out / f"{prefix}classes.png", channels=data.channels,
        title=f"{where}: codes that push a series toward each class (mean contribution to "
              "the class's centred logit)").name
    images["class_histograms"] = figures.class_histograms_figure(
        attributions, out / f"{prefix}class_histograms.png",
        title=f"Class-mean code histograms, {where}").name
    images["faithfulness"] = figures.faithfulness_figure(
        deletion, out / f"{prefix}faithfulness.png").name
    for e in explained:
        images[f"sample_{e.sample}"] = figures.series_figure(
            e, out / f"{prefix}sample_{e.sample}.png").name
    return images


def report_section(model, data, output_dir, **options) -> dict:
    """What the run's report shows of the explanations: the distinct-shape count, the
    class-attribution figure, one explained series per class and the deletion test, figures
    written to ``output_dir`` (``explain_*.png``). ``options`` go to :func:`explain`."""
    full = explain(model, data, output_dir, **options)
    distinct = full["distinct_shapes"]
    return {
        "summary": distinct["summary"], "distinct_shapes": distinct["distinct"],
        "codes_used": distinct["used"], "num_codes": distinct["num_codes"],
        "faithfulness": {k: full["faithfulness"][k]
                         for k in ("attributed_aopc", "random_aopc", "ratio", "steps",
                                   "samples")},
        "top_codes": {c["name"]: c["top_codes"] for c in full["classes"]},
        "samples": [{"sample": s["sample"], "text": s["text"]} for s in full["samples"]],
        "probe": full["probe"], "images": full["images"],
    }


__all__ = ["check_samples", "explain", "one_per_class", "report_section"]
