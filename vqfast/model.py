"""``vqfast.VQShape``: a drop-in for the authors' VQShape model (same keywords, calls, outputs,
parameter names and numbers), with its numerics in vqfast's compiled ops.

What it computes is stated in ``docs/spec`` of the project (``vqshape-spec.md``); the forward pass
follows the authors' ``VQShape._forward`` step for step, so their checkpoints give the same outputs
and gradients.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from vqfast import ops
from vqfast.functional import disentanglement_loss, instance_stats
from vqfast.inputs import check_series
from vqfast.modules import (
    AttributeDecoder,
    AttributeEncoder,
    Codebook,
    PatchDecoder,
    PatchEncoder,
    ShapeDecoder,
    Tokenizer,
)

MIN_SHAPE_LEN = 1 / 64
MODES = ("pretrain", "evaluate", "tokenize", "forecast", "imputation")

# The constructor's defaults: the authors' pre-training script (pretrain.sh), i.e. the settings of
# their released E512/K512 checkpoint. Their class's own defaults cannot be built (256 dims over
# 6 heads). The same values are the "paper" preset of vqfast.presets.
DEFAULTS = dict(
    dim_embedding=512,
    patch_size=8,
    num_patch=64,
    num_enc_head=8,
    num_enc_layer=4,
    num_tokenizer_head=8,
    num_tokenizer_layer=4,
    num_dec_head=8,
    num_dec_layer=2,
    num_token=64,
    len_s=128,
    len_input=512,
    s_smooth_factor=1,
    num_code=512,
    dim_code=8,
    codebook_type="standard",
    lambda_commit=0.25,
    lambda_entropy=0.1,
    entropy_gamma=1.0,
    mask_ratio=0.25,
)

# The weights of the four losses in the authors' training script (outside their model class).
LOSS_WEIGHTS = dict(lambda_x=1.0, lambda_z=1.0, lambda_s=1.0, lambda_dist=0.8)


def total_loss(losses: dict, lambda_x=1.0, lambda_z=1.0, lambda_s=1.0, lambda_dist=0.8):
    """The pre-training objective from a ``losses`` dict, weighted as in the authors' script."""
    return (
        lambda_x * losses["ts_loss"].mean()
        + lambda_z * losses["vq_loss"].mean()
        + lambda_s * losses["shape_loss"].mean()
        + lambda_dist * losses["dist_loss"].mean()
    )


def _validate_config(c: dict) -> None:
    def need(cond, msg):
        if not cond:
            raise ValueError(f"VQShape: {msg}")

    for key in ("dim_embedding", "patch_size", "num_patch", "num_token", "len_s", "len_input",
                "num_code", "dim_code", "s_smooth_factor"):
        need(int(c[key]) == c[key] and c[key] >= 1,
             f"{key} must be a positive integer, got {c[key]}")
    for part in ("enc", "tokenizer", "dec"):
        heads, layers = c[f"num_{part}_head"], c[f"num_{part}_layer"]
        need(heads >= 1 and layers >= 1, f"num_{part}_head and num_{part}_layer must be >= 1")
        need(
            c["dim_embedding"] % heads == 0,
            f"dim_embedding={c['dim_embedding']} is not divisible by num_{part}_head={heads} "
            "(attention splits the embedding evenly over heads)",
        )
    need(c["len_s"] % 16 == 0, f"len_s must be a multiple of 16 (the shape decoder upsamples "
                               f"16x), got {c['len_s']}")
    need(c["len_input"] % c["num_token"] == 0,
         f"len_input={c['len_input']} must be divisible by num_token={c['num_token']} (each token "
         "reconstructs len_input/num_token values)")
    step = int(c["len_input"] / c["num_patch"])
    need(step >= 1 and c["patch_size"] <= c["len_input"],
         f"num_patch={c['num_patch']} and patch_size={c['patch_size']} do not fit len_input="
         f"{c['len_input']}")
    need((c["len_input"] - c["patch_size"]) // step + 1 <= c["num_patch"],
         f"patch_size={c['patch_size']} with step {step} gives more than num_patch="
         f"{c['num_patch']} patches")
    need(c["s_smooth_factor"] % 2 == 1, f"s_smooth_factor must be odd, got {c['s_smooth_factor']}")
    need(c["codebook_type"] == "standard",
         f"codebook_type={c['codebook_type']!r} is not supported; vqfast implements the authors' "
         "'standard' Euclidean codebook (their 'vqtorch' option needs an external library)")
    need(0 <= c["mask_ratio"] < 1, f"mask_ratio must be in [0, 1), got {c['mask_ratio']}")
    need(c["lambda_entropy"] >= 0, "lambda_entropy must be >= 0")


class VQShape(nn.Module):
    """VQShape (Wen et al., NeurIPS 2024): time series -> interpretable shape tokens.

    Keywords and meaning are the authors'; defaults are their pre-training script's settings
    (``DEFAULTS``). Call ``model(x, mode=...)`` with ``x (B, len_input)`` (see
    ``vqfast.prepare_series`` for multivariate or unequal-length data):

    - ``"pretrain"`` / ``"evaluate"`` -> ``(outputs, losses)``; pre-training drops ``mask_ratio`` of
      the patches before the encoder;
    - ``"tokenize"`` -> ``({"token", "histogram"}, outputs)``;
    - ``"forecast"`` (``num_input_patch`` observed patches) -> ``outputs`` (``losses`` when
      ``finetune``);
    - ``"imputation"`` (``mask``: 1 where a value is missing) -> ``(x_pred, outputs)``
      (``(x_pred, losses)`` when ``finetune``).

    ``backend`` selects the implementation of the compiled ops (see ``vqfast.ops``).
    """

    def __init__(
        self,
        dim_embedding: int = DEFAULTS["dim_embedding"],
        patch_size: int = DEFAULTS["patch_size"],
        num_patch: int = DEFAULTS["num_patch"],
        num_enc_head: int = DEFAULTS["num_enc_head"],
        num_enc_layer: int = DEFAULTS["num_enc_layer"],
        num_tokenizer_head: int = DEFAULTS["num_tokenizer_head"],
        num_tokenizer_layer: int = DEFAULTS["num_tokenizer_layer"],
        num_dec_head: int = DEFAULTS["num_dec_head"],
        num_dec_layer: int = DEFAULTS["num_dec_layer"],
        num_token: int = DEFAULTS["num_token"],
        len_s: int = DEFAULTS["len_s"],
        len_input: int = DEFAULTS["len_input"],
        s_smooth_factor: int = DEFAULTS["s_smooth_factor"],
        num_code: int = DEFAULTS["num_code"],
        dim_code: int = DEFAULTS["dim_code"],
        codebook_type: str = DEFAULTS["codebook_type"],
        lambda_commit: float = DEFAULTS["lambda_commit"],
        lambda_entropy: float = DEFAULTS["lambda_entropy"],
        entropy_gamma: float = DEFAULTS["entropy_gamma"],
        mask_ratio: float = DEFAULTS["mask_ratio"],
        *,
        backend: str | None = None,
    ):
        super().__init__()
        self.config = dict(
            dim_embedding=dim_embedding, patch_size=patch_size, num_patch=num_patch,
            num_enc_head=num_enc_head, num_enc_layer=num_enc_layer,
            num_tokenizer_head=num_tokenizer_head, num_tokenizer_layer=num_tokenizer_layer,
            num_dec_head=num_dec_head, num_dec_layer=num_dec_layer, num_token=num_token,
            len_s=len_s, len_input=len_input, s_smooth_factor=s_smooth_factor, num_code=num_code,
            dim_code=dim_code, codebook_type=codebook_type, lambda_commit=lambda_commit,
            lambda_entropy=lambda_entropy, entropy_gamma=entropy_gamma, mask_ratio=mask_ratio,
        )
        _validate_config(self.config)
        self.len_s = len_s
        self.len_input = len_input
        self.s_smooth_factor = s_smooth_factor
        self.num_code = num_code
        self.codebook_type = codebook_type
        self.min_shape_len = MIN_SHAPE_LEN
        self.num_patch = num_patch
        self.patch_size = patch_size
        self.mask_ratio = mask_ratio
        self.num_token = num_token

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
            self.encoder = PatchEncoder(dim_embedding, patch_size, num_patch, num_enc_head,
                                        num_enc_layer)
            self.codebook = Codebook(num_code, dim_code, lambda_commit, lambda_entropy,
                                     entropy_gamma)
            self.decoder = PatchDecoder(dim_embedding, len_input // num_token, num_dec_head,
                                        num_dec_layer)
        self.tokenizer = Tokenizer(dim_embedding, num_token, num_tokenizer_head,
                                   num_tokenizer_layer)
        self.attr_encoder = AttributeEncoder(dim_code, dim_embedding)
        self.attr_decoder = AttributeDecoder(dim_code, dim_embedding)
        self.shape_decoder = ShapeDecoder(dim_code, len_s, out_kernel_size=s_smooth_factor)
        self.backend = backend
        # Weights of the four losses in the pre-training objective (the authors keep them in their
        # training script; checkpoints carry them).
        self.loss_weights = dict(LOSS_WEIGHTS)

    # ------------------------------------------------------------------ configuration

    @property
    def backend(self) -> str | None:
        return self._backend

    @backend.setter
    def backend(self, value: str | None) -> None:
        if value is not None and value not in ops.BACKENDS:
            raise ValueError(f"backend={value!r} is not one of {ops.BACKENDS}")
        self._backend = value
        self.codebook.backend = value

    @property
    def device(self) -> torch.device:
        return self.codebook.embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.codebook.embedding.weight.dtype

    # ------------------------------------------------------------------ public modes

    def forward(self, x, *, mode="pretrain", num_input_patch=-1, mask=None, finetune=False,
                **context):
        """The authors' call. ``context`` goes to the mode (e.g. ``return_latents=True`` adds
        the pre-quantization latent ``z_e`` to ``outputs``; ``VQShapeText`` takes ``text``)."""
        if mode == "pretrain":
            return self.pretrain(x, **context)
        if mode == "evaluate":
            return self.evaluate(x, **context)
        if mode == "tokenize":
            return self.tokenize(x, **context)
        if mode == "forecast":
            return self.forecast(x, num_input_patch, finetune, **context)
        if mode == "imputation":
            return self.imputation(x, mask, finetune, **context)
        raise ValueError(f"VQShape: unknown mode {mode!r}; use one of {MODES}")

    def total_loss(self, losses: dict) -> torch.Tensor:
        """The weighted pre-training objective from the ``losses`` of ``pretrain``/``evaluate``."""
        return total_loss(losses, **self.loss_weights)

    def _check(self, x, where):
        return check_series(x, self.len_input, f"{type(self).__name__}.{where}",
                            dtype=self.dtype, device=self.device)

    def _encode(self, x, where: str, masked: bool = False):
        """Checked input, its normalization statistics and the encoder's output; with ``masked``,
        ``mask_ratio`` of the patches of each series are dropped before the encoder."""
        x = self._check(x, where)
        stats = instance_stats(x)
        normalized = (x - stats[0]) / stats[1]
        if not masked:
            return x, stats, self.encoder(normalized)
        x_embed = self.encoder.patch_and_embed(normalized)
        batch, num_patch, _ = x_embed.shape
        num_masked = int(self.mask_ratio * num_patch)
        keep = torch.rand(batch, num_patch, device=x.device).argsort(dim=-1)[:, num_masked:]
        x_kept = x_embed[torch.arange(batch, device=x.device).unsqueeze(1), keep]
        return x, stats, self.encoder.transformer(x_kept)

    def tokenize(self, x, **context):
        """``x (B, T)`` -> ``({"token": (B, N, D+4), "histogram": (B, K)}, outputs)``."""
        x, stats, x_embed = self._encode(x, "tokenize")
        out = self._forward(x, x_embed, None, stats, compute_loss=False, **context)
        tokens = torch.cat(
            [out["code"], out["t_pred"], out["l_pred"], out["mu_pred"], out["sigma_pred"]], dim=-1
        )
        histogram = ops.code_histogram(out["code_idx"], self.num_code, backend=self.backend)
        return {"token": tokens, "histogram": histogram}, out

    def evaluate(self, x, **context):
        """``x (B, T)`` -> ``(outputs, losses)`` using every patch."""
        x, stats, x_embed = self._encode(x, "evaluate")
        return self._forward(x, x_embed, None, stats, compute_loss=True, **context)

    def pretrain(self, x, **context):
        """``x (B, T)`` -> ``(outputs, losses)`` with ``mask_ratio`` of the patches dropped."""
        x, stats, x_embed = self._encode(x, "pretrain", masked=True)
        return self._forward(x, x_embed, None, stats, compute_loss=True, **context)

    def forecast(self, x, num_input_patch: int = -1, finetune: bool = False, **context):
        """Tokenize from the first ``num_input_patch`` patches (Python slice semantics, as the
        authors': -1 means all but the last) and reconstruct the whole window."""
        x = self._check(x, "forecast")
        n = int(num_input_patch)
        if n == 0 or not -self.num_patch < n <= self.num_patch:
            raise ValueError(
                f"VQShape.forecast: num_input_patch must be in 1..{self.num_patch} (or negative, "
                f"counting from the end), got {num_input_patch}"
            )
        observed = x[:, : n * self.patch_size]
        stats = instance_stats(observed)
        x_embed = self.encoder.patch_and_embed((x - stats[0]) / stats[1])[:, :n, :]
        x_embed = self.encoder.transformer(x_embed)
        if finetune:
            return self._forward(x, x_embed, None, stats, compute_loss=True, **context)[1]
        return self._forward(x, x_embed, None, stats, compute_loss=False, **context)

    def imputation(self, x, mask, finetune: bool = False, **context):
        """Reconstruct ``x`` where ``mask`` is 1 (missing) from the observed values.

        Unlike the authors' code, which pools mean and std over the observed values of the whole
        batch, each series is normalized by its own observed values, so a result does not depend
        on the other series in the batch (identical for a batch of one).
        """
        if mask is None:
            raise ValueError("VQShape.imputation: pass mask (B, T), 1 where a value is missing")
        x_raw = torch.as_tensor(x)
        mask = torch.as_tensor(mask, device=x_raw.device)
        if mask.shape != x_raw.shape:
            raise ValueError(f"VQShape.imputation: mask {tuple(mask.shape)} must match x "
                             f"{tuple(x_raw.shape)}")
        missing = mask != 0
        if missing.all(dim=-1).any():
            rows = missing.all(dim=-1).nonzero().flatten().tolist()[:10]
            raise ValueError(f"VQShape.imputation: samples {rows} have no observed value")
        # Missing values may hold anything (NaN too): the encoder never sees them.
        x_obs = self._check(torch.where(missing, torch.zeros_like(x_raw), x_raw), "imputation")
        # Fine-tuning compares with the full series, so there it must be complete.
        x = self._check(x_raw, "imputation (finetune target)") if finetune else x_obs
        missing = missing.to(x.device)
        observed = (~missing).to(x.dtype)
        count = observed.sum(-1, keepdim=True)
        mean = (x_obs * observed).sum(-1, keepdim=True) / count
        var = (((x_obs - mean) * observed) ** 2).sum(-1, keepdim=True) / (count - 1).clamp(min=1)
        stats = (mean, (var + 1e-5).sqrt())
        x_embed = self.encoder.patch_and_embed((x_obs - stats[0]) / stats[1])
        patch_mask = missing.unfold(-1, self.patch_size, int(x.shape[-1] / self.num_patch))
        patch_mask = patch_mask.sum(-1) > 0
        x_embed = self.encoder.transformer(x_embed, src_key_padding_mask=patch_mask)
        result = self._forward(x, x_embed, patch_mask, stats, compute_loss=finetune, **context)
        if finetune:
            outputs, losses = result
            return outputs["x_pred"], losses
        return result["x_pred"], result

    # ------------------------------------------------------------------ the shared pass

    def decode_attributes(self, h, **context):
        """Token embeddings ``h (B, N, E)`` -> ``z_e, (t, l) sigmoids, mu, sigma``.

        The extension point of ``VQShapeText``, which fuses text into some heads' inputs."""
        if context:
            raise TypeError(f"VQShape takes no {sorted(context)}; use vqfast.VQShapeText for text")
        return self.attr_decoder(h)

    def _forward(self, x, x_embed, memory_mask, stats, compute_loss=False, return_latents=False,
                 **context):
        h = self.tokenizer(x_embed, memory_mask)
        return self._from_tokens(h, x, stats, compute_loss, return_latents, **context)

    def _from_tokens(self, h, x, stats, compute_loss=False, return_latents=False, **context):
        """Everything after the tokenizer: attributes, quantization, decoders, losses."""
        mean, std = stats
        z_e, tl, mu_hat, sigma_hat = self.decode_attributes(h, **context)
        t_hat = tl[..., [0]] * (1 - self.min_shape_len)
        l_hat = tl[..., [1]] * (1 - t_hat) + self.min_shape_len
        z_q, z_idx, z_loss = self.codebook(z_e, compute_loss=compute_loss)
        h_hat = self.attr_encoder(z_q, t_hat, l_hat, mu_hat, sigma_hat)

        x_hat, _ = self.decoder(h_hat)
        x_hat = x_hat * std + mean
        s_hat = self.shape_decoder(z_q) * sigma_hat + mu_hat
        s_hat = s_hat * std.unsqueeze(1) + mean.unsqueeze(1)

        outputs = {
            "x_true": x,
            "x_pred": x_hat,
            "s_true": None,
            "s_pred": s_hat,
            "code": z_q,
            "code_idx": z_idx,
            "t_pred": t_hat,
            "l_pred": l_hat,
            "mu_pred": mu_hat,
            "sigma_pred": sigma_hat,
        }
        if return_latents:
            outputs["z_e"] = z_e
        if not compute_loss:
            return outputs

        x_loss = nn.functional.mse_loss(x_hat, x)
        s = ops.extract_subsequence(x.float(), t_hat.float(), l_hat.float(), self.len_s,
                                    self.s_smooth_factor, backend=self.backend).to(x.dtype)
        s_loss = nn.functional.mse_loss(s_hat, s.detach())
        outputs["s_true"] = s
        dist = disentanglement_loss(t_hat, l_hat, self.min_shape_len)
        losses = {
            "ts_loss": x_loss.unsqueeze(0),
            "vq_loss": z_loss.to(x_loss.dtype).unsqueeze(0),
            "shape_loss": s_loss.unsqueeze(0),
            "dist_loss": dist.unsqueeze(0),
        }
        return outputs, losses

    # ------------------------------------------------------------------ persistence

    @classmethod
    def from_official_checkpoint(cls, path, map_location="cpu", **kwargs) -> VQShape:
        """Load one of the authors' Lightning checkpoints (``hyper_parameters`` + ``state_dict``
        with the ``model.`` prefix) and return the model in eval mode."""
        from vqfast.checkpoint import load_official

        return load_official(cls, path, map_location=map_location, **kwargs)

    def save_pretrained(self, directory) -> Path:
        """Write ``model.safetensors`` and ``config.json`` to ``directory`` (atomically)."""
        from vqfast.checkpoint import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory, map_location="cpu", **kwargs) -> VQShape:
        """Load what ``save_pretrained`` wrote; returns the model in eval mode."""
        from vqfast.checkpoint import load_pretrained

        return load_pretrained(cls, directory, map_location=map_location, **kwargs)

    def extra_repr(self) -> str:
        c = self.config
        return (f"E={c['dim_embedding']}, N={c['num_token']}, K={c['num_code']}, "
                f"D={c['dim_code']}, S={c['len_s']}, T={c['len_input']}")

