"""The error class of vqfast.text and the input checks its modules share."""

from __future__ import annotations

import numpy as np

from vqfast.inputs import describe_indices


class TextError(ValueError):
    """Text given to vqfast cannot be used as it is; the message says what is wrong and the fix."""


def check_texts(texts, where: str) -> list[str]:
    """A non-empty list of non-blank strings, or a :class:`TextError` naming what is wrong."""
    if isinstance(texts, str):
        raise TypeError(f"{where}: expected a list of texts, got a single str; wrap it in a list: "
                        f"[{texts[:40]!r}{'...' if len(texts) > 40 else ''}]")
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"{where}: expected a list or tuple of str, got {type(texts).__name__}")
    if len(texts) == 0:
        raise TextError(f"{where}: the list of texts is empty; give at least one text")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        kinds = sorted({type(texts[i]).__name__ for i in bad})
        raise TypeError(f"{where}: texts {describe_indices(bad)} are not str (got {kinds}); "
                        "every text must be a string")
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise TextError(f"{where}: texts {describe_indices(blank)} are empty or whitespace only; "
                        "give every sample some text (e.g. its label template or a generated "
                        "description, see vqfast.text.describe_series)")
    return list(texts)


def positive_int(v, name: str, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {v!r}")
    return int(v)
