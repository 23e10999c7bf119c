"""``vqfast.VQShapeText``: VQShape whose shape codebook is guided by text.

Text (a note, the activity, a description of the signal), encoded by a frozen sentence encoder and
projected to the model's width, enters by cross-attention: the ``N`` shape tokens ``h`` from the
tokenizer are the queries, the text the keys and values, and the result is added to ``h`` and
normalized. Only some attribute heads read the fused tokens:

- ``fusion="z"``: the ``z_e`` head. The nearest code of a text-aware ``z_e`` is pulled toward it
  by the VQ loss, so the codebook absorbs the text.
- ``fusion="z_mu_sigma"``: the ``z_e``, ``mu`` and ``sigma`` heads (text that speaks of offset and
  scale); ``t`` and ``l`` never see text.

Keys/values are the encoder's per-token embeddings with their padding mask by default
(``text_keys="tokens"``): different shape tokens can attend to different words. With
``text_keys="sentence"`` the single sentence vector is the only key, attention over one key is
trivially 1 and the same vector is added to every token (for label-derived text, no more than a
label embedding).

Without text the model is exactly VQShape (same outputs for the same weights). ``align=True``
trains one model on two passes, with and without text, adding ``align_loss``: the text-free
``z_e`` pulled to the text-fused one (stop-gradient on the text side). See ``docs/text-guidance.md``
and ``vqfast.training.distill`` for teacher -> student distillation.

``contrastive_weight > 0`` makes a contrastive model instead (``contrastive=True`` in
pre-training): one text-free pass, plus ``contrastive_loss``, an InfoNCE between the series'
pooled token embeddings (mean of ``h`` through ``text_contrast_head``) and its projected sentence
vector, as text-sensor models (LanHAR, UniMTS) align the two modalities. Text never enters the
tokens, so the cross-attention layers take no part (frozen) and the model predicts without text.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqfast.inputs import describe_indices
from vqfast.model.checkpoint import load_vqshape_weights
from vqfast.model.config import DEFAULTS
from vqfast.model.functional import contrastive_loss, instance_stats
from vqfast.model.vqshape import VQShape

FUSIONS = ("z", "z_mu_sigma")
TEXT_KEYS = ("tokens", "sentence")


def check_embeddings(emb, batch: int, dim: int, where: str) -> None:
    """``TextEmbeddings`` checked like series: one row per series, width ``dim``, a bool padding
    mask that leaves every row a token, and finite values (skipped inside torch.compile)."""
    tokens, mask, sentence = emb
    for name, v in (("tokens", tokens), ("sentence", sentence)):
        if not (isinstance(v, torch.Tensor) and v.is_floating_point()):
            raise TypeError(f"{where}: the {name} embeddings must be a floating-point tensor, got "
                            f"{getattr(v, 'dtype', type(v).__name__)}")
    if tokens.dim() != 3 or sentence.dim() != 2:
        raise ValueError(f"{where}: expected token embeddings (B, L, d) and sentence embeddings "
                         f"(B, d), got {tuple(tokens.shape)} and {tuple(sentence.shape)}")
    if tokens.shape[0] != batch or sentence.shape[0] != batch:
        raise ValueError(f"{where} holds {tokens.shape[0]} rows for {batch} series; give one text "
                         "per row of x")
    if tokens.shape[-1] != dim or sentence.shape[-1] != dim:
        raise ValueError(f"{where} embeddings have width {tokens.shape[-1]}, the model expects "
                         f"text_dim={dim}")
    if not (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
            and mask.shape == tokens.shape[:2]):
        raise ValueError(f"{where}: the padding mask must be a bool tensor of shape "
                         f"{tuple(tokens.shape[:2])} (True = padding), got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)} "
                         f"{tuple(getattr(mask, 'shape', ()))}")
    if torch.compiler.is_compiling():
        return
    empty = mask.all(dim=1)
    if bool(empty.any()):
        raise ValueError(f"{where}: rows {describe_indices(empty.nonzero().flatten())} have no "
                         "token (all padding)")
    # Padding too: attention weighs it by 0, and 0 * NaN is NaN.
    bad_rows = (~torch.isfinite(tokens).flatten(1).all(dim=1)
                | ~torch.isfinite(sentence).all(dim=-1))
    if bool(bad_rows.any()):
        raise ValueError(f"{where}: the text embeddings of rows "
                         f"{describe_indices(bad_rows.nonzero().flatten())} hold NaN or Inf "
                         "(padding positions included); re-encode those texts, and pad with "
                         "zeros")


class VQShapeText(VQShape):
    """VQShape with text guidance; every VQShape keyword plus the text options below.

    ``text_dim``: width of the sentence encoder's embeddings (384 for all-MiniLM-L6-v2);
    ``fusion``: ``"z"`` or ``"z_mu_sigma"``; ``text_keys``: ``"tokens"`` or ``"sentence"``;
    ``num_text_head``: heads of the cross-attention (default: the tokenizer's);
    ``text_model``: the sentence encoder used when ``text`` is given as strings (default the
    offline all-MiniLM-L6-v2); ``align_weight``: weight of ``align_loss`` in ``total_loss``;
    ``contrastive_weight`` (> 0: a contrastive model, see above) and ``contrastive_temperature``:
    weight and temperature of ``contrastive_loss``.

    ``model(x, mode=..., text=None, align=False)``: ``text`` is a list of strings (one per row of
    ``x``), a ``vqfast.text.TextEmbeddings``, or a tensor of sentence ``(B, d)`` or token
    ``(B, L, d)`` embeddings; ``contrastive=True`` (mode ``pretrain``/``evaluate``) runs
    ``contrasted``.
    """

    NEW_PARAMETER_PREFIXES = ("text_",)

    def __init__(self, *args, text_dim: int = 384, fusion: str = "z", text_keys: str = "tokens",
                 num_text_head: int | None = None, text_model: str | None = None,
                 align_weight: float = 1.0, contrastive_weight: float = 0.0,
                 contrastive_temperature: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config["shape_source"] != "tokens":
            raise ValueError(
                f"VQShapeText: shape_source={self.config['shape_source']!r} measures code, mu "
                "and sigma on each token's window, so the text fused into the token heads would "
                "change nothing; use shape_source='tokens' (the authors')")
        if fusion not in FUSIONS:
            raise ValueError(f"VQShapeText: fusion must be one of {FUSIONS}, got {fusion!r}")
        if text_keys not in TEXT_KEYS:
            raise ValueError(f"VQShapeText: text_keys must be one of {TEXT_KEYS}, got "
                             f"{text_keys!r}")
        dim = self.config["dim_embedding"]
        heads = int(num_text_head or self.config["num_tokenizer_head"])
        if dim % heads:
            raise ValueError(f"VQShapeText: dim_embedding={dim} is not divisible by "
                             f"num_text_head={heads}")
        self.fusion, self.text_keys = fusion, text_keys
        self.text_project = nn.Linear(text_dim, dim)
        self.text_attention = nn.MultiheadAttention(dim, heads, dropout=0.1, batch_first=True)
        self.text_norm = nn.LayerNorm(dim)
        if not contrastive_weight >= 0 or not contrastive_temperature > 0:
            raise ValueError(f"VQShapeText: contrastive_weight must be >= 0 and "
                             f"contrastive_temperature > 0, got {contrastive_weight} and "
                             f"{contrastive_temperature}")
        if contrastive_weight > 0:
            self.text_contrast_head = nn.Linear(dim, dim)
            self.text_attention.requires_grad_(False)
            self.text_norm.requires_grad_(False)
        self.config.update(text_dim=text_dim, fusion=fusion, text_keys=text_keys,
                           num_text_head=heads, text_model=text_model,
                           align_weight=float(align_weight),
                           contrastive_weight=float(contrastive_weight),
                           contrastive_temperature=float(contrastive_temperature))
        self._text_encoder = None

    @property
    def vqshape_config(self) -> dict:
        """The keywords of the plain VQShape this model extends."""
        return {k: v for k, v in self.config.items() if k in DEFAULTS}

    @classmethod
    def from_vqshape(cls, model: VQShape, **text_options) -> VQShapeText:
        """A VQShapeText with ``model``'s configuration and weights; the text layers are new."""
        text_model = cls(**model.config, **text_options)
        load_vqshape_weights(text_model, model.state_dict())
        text_model.loss_weights.update(model.loss_weights)
        return text_model.to(model.device).train(model.training)

    # ------------------------------------------------------------------ text

    def text_encoder(self):
        """The sentence encoder for texts given as strings (created on first use)."""
        if self._text_encoder is None:
            from vqfast.text import TextEncoder

            self._text_encoder = TextEncoder(self.config["text_model"], device=self.device)
        return self._text_encoder

    def embed_text(self, text, batch: int):
        """``text`` as ``TextEmbeddings`` on the model's device, checked against the batch."""
        from vqfast.text import TextEmbeddings

        where = f"{type(self).__name__}: text"
        if isinstance(text, TextEmbeddings):  # a NamedTuple: tested before plain tuples
            emb = text
        elif isinstance(text, (list, tuple)):
            if len(text) != batch:
                raise ValueError(f"{where} has {len(text)} entries for {batch} series; give one "
                                 "text per row of x (repeat a sample's text for each channel)")
            emb = self.text_encoder().encode(list(text))
        elif isinstance(text, torch.Tensor):
            if not text.is_floating_point():
                raise TypeError(f"{where} embeddings must be a floating-point tensor, got "
                                f"{text.dtype}")
            if text.dim() == 2:
                emb = TextEmbeddings(text[:, None, :], torch.zeros(text.shape[0], 1,
                                     dtype=torch.bool, device=text.device), text)
            elif text.dim() == 3:
                mask = torch.zeros(text.shape[:2], dtype=torch.bool, device=text.device)
                emb = TextEmbeddings(text, mask, text.mean(1))
            else:
                raise ValueError(f"{where} tensor must be (B, d) sentence or (B, L, d) token "
                                 f"embeddings, got {tuple(text.shape)}")
        else:
            raise TypeError(f"{where} must be a list of strings, TextEmbeddings or a tensor, got "
                            f"{type(text).__name__}")
        check_embeddings(emb, batch, self.text_project.in_features, where)
        return emb.to(self.device)

    def fuse(self, h: torch.Tensor, emb) -> torch.Tensor:
        """Cross-attention from the shape tokens to the text, residual and normalized."""
        if self.text_keys == "tokens":
            keys, mask = emb.tokens, emb.mask
        else:
            keys, mask = emb.sentence[:, None, :], None
        kv = self.text_project(keys.to(self.text_project.weight.dtype))
        attended, _ = self.text_attention(h, kv, kv, key_padding_mask=mask, need_weights=False)
        return self.text_norm(h + attended)

    def decode_attributes(self, h, text=None):
        if text is None:
            return self.attr_decoder(h)
        fused = self.fuse(h, self.embed_text(text, h.shape[0]))
        return self.attr_decoder(
            h, h_z=fused, h_mu_sigma=fused if self.fusion == "z_mu_sigma" else None
        )

    # ------------------------------------------------------------------ modes

    def forward(self, x, *, mode="pretrain", num_input_patch=-1, mask=None, finetune=False,
                return_latents=False, text=None, align=False, contrastive=False):
        """VQShape's call with ``text``; ``align=True`` (modes ``pretrain``/``evaluate``) runs
        ``aligned``, ``contrastive=True`` runs ``contrasted``."""
        if contrastive:
            if mode not in ("pretrain", "evaluate") or align:
                raise ValueError("VQShapeText: contrastive=True goes with mode 'pretrain' or "
                                 "'evaluate' and without align")
            return self.contrasted(x, text, masked=mode == "pretrain",
                                   return_latents=return_latents)
        if text is not None and self.config["contrastive_weight"] > 0:
            raise ValueError("VQShapeText: a contrastive model (contrastive_weight > 0) takes "
                             "text only in pre-training (contrastive=True); call it without "
                             "text to predict")
        if align:
            if mode not in ("pretrain", "evaluate"):
                raise ValueError("VQShapeText: align=True goes with mode 'pretrain' or 'evaluate'")
            if text is None:
                raise ValueError("VQShapeText: align=True needs text (the fused pass's input)")
            return self.aligned(x, text, masked=mode == "pretrain")
        return super().forward(x, mode=mode, num_input_patch=num_input_patch, mask=mask,
                               finetune=finetune, return_latents=return_latents, text=text)

    def aligned(self, x, text, masked: bool = True):
        """Two passes over one encoding, with and without text: ``(outputs of the text-free
        pass, losses)`` where each VQShape loss is the mean of the two passes and ``align_loss``
        pulls the text-free ``z_e`` to the text-fused one (stop-gradient on the text side)."""
        x = self._check(x, "pretrain" if masked else "evaluate")
        stats = instance_stats(x)
        h = self._encode(x, stats, select=self._drop_patches if masked else None)
        out_text, loss_text = self._from_tokens(h, x, stats, compute_loss=True,
                                                return_latents=True, text=text)
        out_plain, loss_plain = self._from_tokens(h, x, stats, compute_loss=True,
                                                  return_latents=True)
        losses = {k: (loss_text[k] + loss_plain[k]) / 2 for k in loss_text}
        losses["align_loss"] = F.mse_loss(out_plain["z_e"], out_text["z_e"].detach()).unsqueeze(0)
        return out_plain, losses

    def contrasted(self, x, text, masked: bool = True, return_latents: bool = False):
        """One text-free pass: ``(outputs, losses)`` with the VQShape losses and
        ``contrastive_loss`` between the pooled token embeddings and the sentence vectors of
        ``text`` (rows with the same text are positives of each other)."""
        if self.config["contrastive_weight"] <= 0:
            raise ValueError("VQShapeText: contrastive=True needs a model built with "
                             "contrastive_weight > 0 (it owns the pooled-token head)")
        if text is None:
            raise ValueError("VQShapeText: contrastive=True needs text (the positives)")
        x = self._check(x, "pretrain" if masked else "evaluate")
        emb = self.embed_text(text, x.shape[0])
        stats = instance_stats(x)
        h = self._encode(x, stats, select=self._drop_patches if masked else None)
        outputs, losses = self._from_tokens(h, x, stats, compute_loss=True,
                                            return_latents=return_latents)
        sentence = emb.sentence.to(self.text_project.weight.dtype)
        same_text = (sentence[:, None, :] == sentence[None, :, :]).all(dim=-1)
        losses = dict(losses)
        losses["contrastive_loss"] = contrastive_loss(
            self.text_contrast_head(h.mean(dim=1)), self.text_project(sentence), same_text,
            self.config["contrastive_temperature"]).unsqueeze(0)
        return outputs, losses

    def total_loss(self, losses: dict) -> torch.Tensor:
        total = super().total_loss(losses)
        if "align_loss" in losses:
            total = total + self.config["align_weight"] * losses["align_loss"].mean()
        if "contrastive_loss" in losses:
            total = total + self.config["contrastive_weight"] * losses["contrastive_loss"].mean()
        return total
