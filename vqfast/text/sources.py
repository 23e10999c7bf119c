"""Dispatch: :func:`texts_for` picks a text source for a :class:`~vqfast.data.SeriesData` split."""

from __future__ import annotations

from collections.abc import Mapping

from vqfast.inputs import describe_indices
from vqfast.text.describe import DEFAULT_CHANNEL_NAMES, amplitude_scale, describe_batch
from vqfast.text.errors import TextError
from vqfast.text.notes import FILE_FORMAT, check_split, load_text_file
from vqfast.text.templates import DEFAULT_TEMPLATES, GENERIC_TEMPLATE, label_texts

#: The text sources :func:`texts_for` accepts (or pass a callable as the source).
TEXT_SOURCES = ("label", "describe", "file", "fn")


def _lookup(table: Mapping, name: str):
    for k, v in table.items():
        if k.casefold() == str(name).casefold():
            return v
    return None


def texts_for(source, data, split: str = "train", template=None, text_file=None, fn=None,
              *, channel_names=None) -> list[str]:
    """One text per sample of ``data``'s ``split`` (``"train"`` or ``"test"``).

    Args:
        source: ``"label"`` (:func:`label_texts` with ``template``, default: the dataset's
            entry in :data:`DEFAULT_TEMPLATES`, else :data:`GENERIC_TEMPLATE`), ``"describe"``
            (:func:`describe_batch`, amplitude words relative to the *training* split's
            :func:`amplitude_scale`, channel names from ``channel_names`` or
            :data:`DEFAULT_CHANNEL_NAMES`), ``"file"`` (:func:`load_text_file` of ``text_file``)
            or ``"fn"`` with ``fn``; a callable may also be passed as the source itself.
        data: a :class:`~vqfast.data.SeriesData`.
        fn: ``fn(series, label) -> str`` with ``series`` the sample's float32 ``(C, T)`` tensor
            and ``label`` its class name (``"unlabelled"`` for data without labels).

    Label text (and label-derived notes) at test time leaks the answer: use it for the teacher's
    upper bound only (see ``docs/text-guidance.md``).
    """
    where = "texts_for"
    check_split(split, where)
    if not (hasattr(data, "split") and hasattr(data, "classes") and hasattr(data, "x_train")):
        raise TypeError(f"{where}: data must be a vqfast.data.SeriesData (see "
                        f"vqfast.data.load_dataset), got {type(data).__name__}")
    if callable(source) and not isinstance(source, str):
        fn, source = source, "fn"
    if source not in TEXT_SOURCES:
        raise ValueError(f"{where}: unknown text source {source!r}; choose one of {TEXT_SOURCES} "
                         "or pass a function fn(series, label) -> str as the source")
    x, y = data.split(split)
    unlabelled = list(data.classes) == ["unlabelled"]
    if source == "label":
        if y is None or unlabelled:
            raise TextError(f"{where}: dataset {data.name!r} has no labels on its {split} split, "
                            "so label text cannot be made; use source='describe', a text file "
                            "(source='file') or a function")
        if template is None:
            template = _lookup(DEFAULT_TEMPLATES, data.name) or GENERIC_TEMPLATE
        return label_texts(y, data.classes, template)
    if source == "describe":
        names = channel_names
        if names is None:
            names = _lookup(DEFAULT_CHANNEL_NAMES, data.name)
            if names is not None and len(names) != x.shape[1]:
                names = None
        return describe_batch(x, channel_names=names, scale=amplitude_scale(data.x_train))
    if source == "file":
        if text_file is None:
            raise ValueError(f"{where}: source='file' needs text_file= the path of {FILE_FORMAT}")
        return load_text_file(text_file, split, expected_count=int(x.shape[0]),
                              dataset=data.name)
    if not callable(fn):
        raise ValueError(f"{where}: source='fn' needs fn= a function fn(series, label) -> str, "
                         f"got {fn!r}")
    texts = []
    for i in range(x.shape[0]):
        label = str(data.classes[int(y[i])]) if y is not None else "unlabelled"
        texts.append(fn(x[i].clone(), label))
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        got = sorted({type(texts[i]).__name__ for i in bad})
        raise TextError(f"{where}: fn returned no text (empty or not a str: {got}) for samples "
                        f"{describe_indices(bad)}; it must return a non-empty str for every sample")
    return texts
