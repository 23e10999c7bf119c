"""Label templates: one text per sample from its class, by a mapping ``{class: text}`` or a
string such as ``"a person {label}"``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from vqfast.inputs import describe_indices
from vqfast.text.errors import TextError

#: The label template used when a dataset has none in :data:`DEFAULT_TEMPLATES`.
GENERIC_TEMPLATE = "a time series of class {label}"

#: Label templates per dataset name (class names are matched case-insensitively).
DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "BasicMotions": {
        "standing": "a person standing still",
        "running": "a person running",
        "walking": "a person walking",
        "badminton": "a person playing badminton",
    },
}


def _label_ids(labels, num_classes: int, where: str) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim != 1:
        raise TextError(f"{where}: labels must be 1-D class ids (one per sample), got shape "
                        f"{y.shape}")
    if y.size and y.dtype.kind not in "iu":
        raise TypeError(f"{where}: labels must be integer class ids into classes, got "
                        f"{y.dtype}; map label names to ids first (SeriesData.y_train holds ids)")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise TextError(f"{where}: labels of samples {describe_indices(bad)} are outside "
                        f"0..{num_classes - 1} (there are {num_classes} classes)")
    return y.astype(np.int64)


def _template_texts(template, classes: Sequence[str], used, where: str) -> dict[int, str]:
    """Text of every class id in ``used``."""
    if template is None:
        template = GENERIC_TEMPLATE
    if isinstance(template, str):
        if "{label}" not in template:
            raise TextError(f"{where}: the template {template!r} has no '{{label}}' placeholder; "
                            "write e.g. 'a person {label}', or give a mapping "
                            "{class name: text}")
        return {c: template.replace("{label}", str(classes[c])) for c in used}
    if not isinstance(template, Mapping):
        raise TypeError(f"{where}: template must be a str with '{{label}}' or a mapping "
                        f"{{class name: text}}, got {type(template).__name__}")
    exact = {str(k): v for k, v in template.items()}
    folded: dict[str, object] = {}
    for k, v in exact.items():
        folded.setdefault(k.casefold(), v)
    out = {}
    for c in used:
        name = str(classes[c])
        value = exact[name] if name in exact else folded.get(name.casefold())
        if value is None:
            raise TextError(f"{where}: the template has no entry for class {name!r}; its keys "
                            f"are {list(exact)}. Add an entry for every class (matched "
                            "case-insensitively), or use a string template such as "
                            "'a person {label}'")
        if not isinstance(value, str) or not value.strip():
            raise TextError(f"{where}: the template's text for class {name!r} is {value!r}; it "
                            "must be a non-empty str")
        out[c] = value
    return out


def label_texts(labels, classes: Sequence[str], template=None) -> list[str]:
    """One text per sample from its label.

    Args:
        labels: ``(n,)`` int class ids into ``classes`` (tensor, array or list).
        classes: the class names (``SeriesData.classes``).
        template: a mapping ``{class name: text}`` (every class present in ``labels`` needs an
            entry; names match exactly, else case-insensitively), a string with ``{label}``
            replaced by the class name (e.g. ``"a person {label}"``), or ``None`` for
            :data:`GENERIC_TEMPLATE`. Per-dataset defaults are in :data:`DEFAULT_TEMPLATES`.

    Every sample of a class gets the same text, so on its own this is close to a label
    embedding, and it does not exist at prediction time (see ``docs/text-guidance.md``).
    """
    where = "label_texts"
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(f"{where}: classes must be a list of class names, got "
                        f"{type(classes).__name__}")
    y = _label_ids(labels, len(classes), where)
    texts = _template_texts(template, classes, sorted(set(y.tolist())), where)
    return [texts[int(c)] for c in y]
