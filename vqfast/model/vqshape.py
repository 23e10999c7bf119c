"""``vqfast.VQShape``: a drop-in for the authors' VQShape model (same keywords, calls, outputs,
parameter names and numbers), with its numerics in vqfast's compiled ops.

What it computes is stated in ``docs/spec`` of the project (``vqshape-spec.md``); the forward pass
follows the authors' ``VQShape._forward`` step for step, so their checkpoints give the same outputs
and gradients.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import fields
from pathlib import Path

import torch
import torch.nn as nn

from vqfast import ops
from vqfast.inputs import check_series, describe_indices
from vqfast.model import checkpoint
from vqfast.model.config import LOSS_WEIGHTS, MIN_SHAPE_LEN, VQShapeConfig
from vqfast.model.functional import (
    disentanglement_loss,
    grid_windows,
    instance_stats,
    observed_stats,
)
from vqfast.model.modules import (
    MLP,
    AttributeDecoder,
    AttributeEncoder,
    Codebook,
    PatchDecoder,
    PatchEncoder,
    ShapeDecoder,
    Tokenizer,
)

MODES = ("pretrain", "evaluate", "tokenize", "forecast", "imputation")


def total_loss(losses: dict, lambda_x=1.0, lambda_z=1.0, lambda_s=1.0, lambda_dist=0.8,
               lambda_s_norm=0.0):
    """The pre-training objective from a ``losses`` dict, weighted as in the authors' script, plus
    ``lambda_s_norm`` times vqfast's ``shape_norm_loss`` where ``losses`` has it."""
    total = (
        lambda_x * losses["ts_loss"].mean()
        + lambda_z * losses["vq_loss"].mean()
        + lambda_s * losses["shape_loss"].mean()
        + lambda_dist * losses["dist_loss"].mean()
    )
    if lambda_s_norm and "shape_norm_loss" in losses:
        total = total + lambda_s_norm * losses["shape_norm_loss"].mean()
    return total


# Added to a window's variance (in units of its series' variance) before z-scoring it: a window
# much quieter than its series (std well under half the series') stays near flat instead of its
# noise being blown up to unit variance, so its code says "quiet here" (docs/shape-collapse.md:
# same shape R² as 0.01; its effect on the histogram probe is within the run-to-run spread).
WINDOW_VAR_EPS = 0.25


def measure_windows(s: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
    """Subsequences ``s (B, N, L)`` of series with ``mean``/``std`` ``(B, 1)`` -> their z-scored
    shapes ``(s_n - m) / sqrt(v + WINDOW_VAR_EPS)``, offsets ``m`` and scales ``sqrt(v)``
    ``(B, N, 1)``, where ``s_n`` is ``s`` in units of its series and ``m``, ``v`` its per-window
    mean and (population) variance."""
    s_n = (s - mean.unsqueeze(1)) / std.unsqueeze(1)
    m = s_n.mean(-1, keepdim=True)
    v = s_n.var(-1, unbiased=False, keepdim=True)
    return (s_n - m) / (v + WINDOW_VAR_EPS).sqrt(), m, v.sqrt()


class VQShape(nn.Module):
    """VQShape (Wen et al., NeurIPS 2024): time series -> interpretable shape tokens.

    Keywords and meaning are the authors' (the fields of ``VQShapeConfig``, positional in the same
    order); defaults are their pre-training script's settings (``DEFAULTS``). Call
    ``model(x, mode=...)`` with ``x (B, len_input)`` (see ``vqfast.prepare_series`` for
    multivariate or unequal-length data):

    - ``"pretrain"`` / ``"evaluate"`` -> ``(outputs, losses)``; pre-training drops ``mask_ratio`` of
      the patches before the encoder;
    - ``"tokenize"`` -> ``({"token", "histogram"}, outputs)``;
    - ``"forecast"`` (``num_input_patch`` observed patches) -> ``outputs`` (``losses`` when
      ``finetune``);
    - ``"imputation"`` (``mask``: 1 where a value is missing) -> ``(x_pred, outputs)``
      (``(x_pred, losses)`` when ``finetune``).

    ``return_latents=True`` adds the pre-quantization latent ``z_e`` to ``outputs``. ``backend``
    selects the implementation of the compiled ops (see ``vqfast.ops``). ``model.fast = True``
    runs the transformer layers and the shape decoder through ``vqfast.model.fast`` (same
    parameters, same dropout draws, equal up to float rounding; off by default, which is
    bit-exact with the authors).
    """

    def __init__(self, *args, backend: str | None = None, **kwargs):
        super().__init__()
        c = VQShapeConfig(*args, **kwargs)
        self.config = c.as_dict()
        # Construction order is the authors', so a seed gives their initial weights.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
            self.encoder = PatchEncoder(c.dim_embedding, c.patch_size, c.num_patch,
                                        c.num_enc_head, c.num_enc_layer)
            self.codebook = Codebook(c.num_code, c.dim_code, c.lambda_commit, c.lambda_entropy,
                                     c.entropy_gamma)
            self.decoder = PatchDecoder(c.dim_embedding, c.len_input // c.num_token,
                                        c.num_dec_head, c.num_dec_layer)
            self.tokenizer = Tokenizer(c.dim_embedding, c.num_token, c.num_tokenizer_head,
                                       c.num_tokenizer_layer)
            self.attr_encoder = AttributeEncoder(c.dim_code, c.dim_embedding)
            self.attr_decoder = AttributeDecoder(c.dim_code, c.dim_embedding)
            self.shape_decoder = ShapeDecoder(c.dim_code, c.len_s,
                                              out_kernel_size=c.s_smooth_factor)
        if c.shape_source == "window":
            # Built last, so that a seed gives the authors' modules their initial weights; the
            # heads whose outputs the window replaces take no part.
            self.window_encoder = MLP(c.len_s, c.dim_code, c.dim_embedding)
            for head in (self.attr_decoder.z_head, self.attr_decoder.mu_head,
                         self.attr_decoder.sigma_head):
                head.requires_grad_(False)
        if c.window_layout == "grid":
            # The windows are fixed, so nothing reads the token embeddings.
            for unused in (self.encoder, self.tokenizer, self.attr_decoder):
                unused.requires_grad_(False)
        self.backend = backend
        self.fast = False
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
    def fast(self) -> bool:
        return self._fast

    @fast.setter
    def fast(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"fast must be True or False, got {value!r}")
        self._fast = value
        for part in (self.encoder, self.tokenizer, self.decoder, self.shape_decoder):
            part.fast = value

    @property
    def len_input(self) -> int:
        return self.config["len_input"]

    @property
    def num_code(self) -> int:
        return self.config["num_code"]

    @property
    def device(self) -> torch.device:
        return self.codebook.embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.codebook.embedding.weight.dtype

    # ------------------------------------------------------------------ public modes

    def forward(self, x, *, mode="pretrain", num_input_patch=-1, mask=None, finetune=False,
                return_latents=False, text=None):
        """The authors' call; ``text`` is for ``VQShapeText`` (plain VQShape refuses it)."""
        if mode == "pretrain":
            return self.pretrain(x, return_latents=return_latents, text=text)
        if mode == "evaluate":
            return self.evaluate(x, return_latents=return_latents, text=text)
        if mode == "tokenize":
            return self.tokenize(x, return_latents=return_latents, text=text)
        if mode == "forecast":
            return self.forecast(x, num_input_patch, finetune, return_latents=return_latents,
                                 text=text)
        if mode == "imputation":
            return self.imputation(x, mask, finetune, return_latents=return_latents, text=text)
        raise ValueError(f"VQShape: unknown mode {mode!r}; use one of {MODES}")

    def total_loss(self, losses: dict) -> torch.Tensor:
        """The weighted pre-training objective from the ``losses`` of ``pretrain``/``evaluate``."""
        return total_loss(losses, **self.loss_weights)

    def tokenize(self, x, *, return_latents=False, text=None):
        """``x (B, T)`` -> ``({"token": (B, N, D+4), "histogram": (B, K)}, outputs)``."""
        x = self._check(x, "tokenize")
        stats = instance_stats(x)
        h = self._encode(x, stats)
        out = self._from_tokens(h, x, stats, compute_loss=False, return_latents=return_latents,
                                text=text)
        tokens = torch.cat(
            [out["code"], out["t_pred"], out["l_pred"], out["mu_pred"], out["sigma_pred"]], dim=-1
        )
        histogram = ops.code_histogram(out["code_idx"], self.num_code, backend=self.backend)
        return {"token": tokens, "histogram": histogram}, out

    def evaluate(self, x, *, return_latents=False, text=None):
        """``x (B, T)`` -> ``(outputs, losses)`` using every patch."""
        x = self._check(x, "evaluate")
        stats = instance_stats(x)
        h = self._encode(x, stats)
        return self._from_tokens(h, x, stats, compute_loss=True, return_latents=return_latents,
                                 text=text)

    def pretrain(self, x, *, return_latents=False, text=None):
        """``x (B, T)`` -> ``(outputs, losses)`` with ``mask_ratio`` of the patches dropped."""
        x = self._check(x, "pretrain")
        stats = instance_stats(x)
        h = self._encode(x, stats, select=self._drop_patches)
        return self._from_tokens(h, x, stats, compute_loss=True,
                                 return_latents=return_latents, text=text)

    def forecast(self, x, num_input_patch: int = -1, finetune: bool = False, *,
                 return_latents=False, text=None):
        """Tokenize from the first ``num_input_patch`` patches (Python slice semantics, as the
        authors': -1 means all but the last) and reconstruct the whole window."""
        self._needs_token_heads("forecast")
        x = self._check(x, "forecast")
        n, num_patch = int(num_input_patch), self.encoder.num_patch
        if n == 0 or not -num_patch < n <= num_patch:
            raise ValueError(
                f"VQShape.forecast: num_input_patch must be in 1..{num_patch} (or negative, "
                f"counting from the end), got {num_input_patch}"
            )
        stats = instance_stats(x[:, : n * self.encoder.patch_size])
        h = self._encode(x, stats, select=lambda patches: patches[:, :n, :])
        result = self._from_tokens(h, x, stats, compute_loss=finetune,
                                   return_latents=return_latents, text=text)
        return result[1] if finetune else result

    def imputation(self, x, mask, finetune: bool = False, *, return_latents=False, text=None):
        """Reconstruct ``x`` where ``mask`` is 1 (missing) from the observed values.

        Unlike the authors' code, which pools mean and std over the observed values of the whole
        batch, each series is normalized by its own observed values, so a result does not depend
        on the other series in the batch (identical for a batch of one).
        """
        self._needs_token_heads("imputation")
        if mask is None:
            raise ValueError("VQShape.imputation: pass mask (B, T), 1 where a value is missing")
        x_raw = torch.as_tensor(x)
        mask = torch.as_tensor(mask, device=x_raw.device)
        if mask.shape != x_raw.shape:
            raise ValueError(f"VQShape.imputation: mask {tuple(mask.shape)} must match x "
                             f"{tuple(x_raw.shape)}")
        missing = mask != 0
        if missing.all(dim=-1).any():
            rows = missing.all(dim=-1).nonzero().flatten()
            raise ValueError(f"VQShape.imputation: samples {describe_indices(rows)} have no "
                             "observed value")
        # Missing values may hold anything (NaN too): the encoder never sees them.
        x_obs = self._check(torch.where(missing, torch.zeros_like(x_raw), x_raw), "imputation")
        # Fine-tuning compares with the full series, so there it must be complete.
        x = self._check(x_raw, "imputation (finetune target)") if finetune else x_obs
        missing = missing.to(x.device)
        stats = observed_stats(x_obs, (~missing).to(x.dtype))
        padding = self.encoder.windows(missing).sum(-1) > 0  # patches with a missing value
        h = self._encode(x_obs, stats, padding=padding)
        result = self._from_tokens(h, x, stats, compute_loss=finetune,
                                   return_latents=return_latents, text=text)
        if finetune:
            outputs, losses = result
            return outputs["x_pred"], losses
        return result["x_pred"], result

    # ------------------------------------------------------------------ the shared pass

    def _needs_token_heads(self, mode):
        if self.config["shape_source"] == "window":
            raise ValueError(
                f"{type(self).__name__}.{mode}: this model has shape_source='window', which "
                "measures every token's window on the series itself, and in this mode part of "
                "the series is unknown (the windows would read it); use a model trained with "
                "shape_source='tokens' (the authors', e.g. --preset default-authors)")

    def _check(self, x, where):
        return check_series(x, self.len_input, f"{type(self).__name__}.{where}",
                            dtype=self.dtype, device=self.device)

    def _drop_patches(self, patches):
        """``mask_ratio`` of each series' patches dropped at random (pre-training)."""
        batch, num_patch, _ = patches.shape
        num_dropped = int(self.config["mask_ratio"] * num_patch)
        keep = torch.rand(batch, num_patch, device=patches.device).argsort(dim=-1)[:, num_dropped:]
        return patches[torch.arange(batch, device=patches.device).unsqueeze(1), keep]

    def _encode(self, x, stats, select=None, padding=None):
        """Shape-token embeddings ``h (B, N, E)`` of ``x`` normalized by ``stats``; ``select``
        picks the patches the encoder sees, ``padding`` marks those it and the tokenizer ignore."""
        if self.config["window_layout"] == "grid":
            return None  # fixed windows: no token embeddings to compute
        mean, std = stats
        # x -> patches -> encoder: windows of the normalized series, projected, position added.
        memory = self.encoder((x - mean) / std, select, padding)
        # tokens: N learned queries cross-attend to the encoded patches.
        return self.tokenizer(memory, padding)

    def decode_attributes(self, h, text=None):
        """Token embeddings ``h (B, N, E)`` -> ``z_e, (t, l) sigmoids, mu, sigma``.

        The extension point of ``VQShapeText``, which fuses ``text`` into some heads' inputs."""
        if text is not None:
            raise TypeError("VQShape takes no text; use vqfast.VQShapeText for text")
        return self.attr_decoder(h)

    def _from_tokens(self, h, x, stats, *, compute_loss, return_latents=False, text=None):
        """Everything after the tokenizer: attributes, codes, decoders, losses."""
        mean, std = stats
        window = self.config["shape_source"] == "window"
        # attributes: shape latent, window start t and length l >= l_min, offset mu, scale sigma.
        if self.config["window_layout"] == "grid":  # vqfast: fixed windows
            t_hat, l_hat = grid_windows(x.shape[0], self.config["num_token"],
                                        self.config["max_shape_len"], x)
        else:
            if window:
                tl = torch.sigmoid(self.attr_decoder.tl_mean_head(h))
            else:
                z_e, tl, mu_hat, sigma_hat = self.decode_attributes(h, text)
            t_hat = tl[..., [0]] * (1 - MIN_SHAPE_LEN)
            span = 1 - t_hat
            if self.config["max_shape_len"] is not None:  # vqfast: l <= max_shape_len
                span = span.clamp(max=self.config["max_shape_len"] - MIN_SHAPE_LEN)
            l_hat = tl[..., [1]] * span + MIN_SHAPE_LEN
        s = None
        if window or compute_loss:
            s = self._subsequences(x, t_hat, l_hat)
        if window:
            # vqfast: the latent is encoded from the window's z-scored shape; mu and sigma are the
            # window's measured offset and scale (data, like the authors' detached target s).
            shape_true, mu_hat, sigma_hat = measure_windows(s.detach(), mean, std)
            z_e = self.window_encoder(shape_true)
        # codes: nearest codebook entry (straight-through) and the VQ loss.
        z_q, z_idx, z_loss = self.codebook(z_e, compute_loss=compute_loss)
        # decoders: the series from every token's attributes, each token's shape from its code,
        # both back in the scale of x.
        h_hat = self.attr_encoder(z_q, t_hat, l_hat, mu_hat, sigma_hat)
        x_hat = self.decoder(h_hat) * std + mean
        shape = self.shape_decoder(z_q)
        s_hat = shape * sigma_hat + mu_hat
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

        # losses: reconstruction, shapes against the subsequences their windows cover, VQ,
        # disentanglement of the windows.
        x_loss = nn.functional.mse_loss(x_hat, x)
        s_loss = nn.functional.mse_loss(s_hat, s.detach())
        outputs["s_true"] = s
        dist = disentanglement_loss(t_hat, l_hat, MIN_SHAPE_LEN)
        losses = {
            "ts_loss": x_loss.unsqueeze(0),
            "vq_loss": z_loss.to(x_loss.dtype).unsqueeze(0),
            "shape_loss": s_loss.unsqueeze(0),
            "dist_loss": dist.unsqueeze(0),
        }
        if self.loss_weights.get("lambda_s_norm"):
            # vqfast: the decoded shape against the window's z-scored shape, a gradient into the
            # shape decoder that, unlike shape_loss's (proportional to sigma), does not vanish
            # when sigma collapses.
            shape_true = measure_windows(s.detach(), mean, std)[0]
            losses["shape_norm_loss"] = nn.functional.mse_loss(shape, shape_true).unsqueeze(0)
        return outputs, losses

    def _subsequences(self, x, t_hat, l_hat):
        """The subsequences ``(B, N, len_s)`` of ``x`` the windows ``(t, l)`` cover."""
        return ops.extract_subsequence(x.float(), t_hat.float(), l_hat.float(),
                                       self.config["len_s"], self.config["s_smooth_factor"],
                                       backend=self.backend).to(x.dtype)

    # ------------------------------------------------------------------ persistence

    @classmethod
    def from_official_checkpoint(cls, path, map_location="cpu", **kwargs) -> VQShape:
        """Load one of the authors' Lightning checkpoints (``hyper_parameters`` + ``state_dict``
        with the ``model.`` prefix) and return the model in eval mode."""
        return checkpoint.load_official(cls, path, map_location=map_location, **kwargs)

    def save_pretrained(self, directory) -> Path:
        """Write ``model.safetensors`` and ``config.json`` to ``directory`` (atomically)."""
        return checkpoint.save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory, map_location="cpu", **kwargs) -> VQShape:
        """Load what ``save_pretrained`` wrote; returns the model in eval mode."""
        return checkpoint.load_pretrained(cls, directory, map_location=map_location, **kwargs)

    def extra_repr(self) -> str:
        c = self.config
        return (f"E={c['dim_embedding']}, N={c['num_token']}, K={c['num_code']}, "
                f"D={c['dim_code']}, S={c['len_s']}, T={c['len_input']}")


def _signature() -> inspect.Signature:
    """``VQShape(...)``'s signature as help() and IDEs show it: ``VQShapeConfig``'s fields."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [inspect.Parameter("self", kind)]
        + [inspect.Parameter(f.name, kind, default=f.default, annotation=f.type)
           for f in fields(VQShapeConfig)]
        + [inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation="str | None")]
    )


VQShape.__init__.__signature__ = _signature()
