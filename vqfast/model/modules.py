"""The building blocks of VQShape, with the authors' module tree and parameter names.

Construction order mirrors the authors' code, so that ``torch.manual_seed(s)`` followed by the
same constructor gives the same initial weights as their implementation.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqfast import ops
from vqfast.model import fast as fast_layers


class MLP(nn.Module):
    def __init__(self, input_dim: int, output_dim: int, hidden_dim: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, output_dim)
        )

    def forward(self, x):
        return self.layers(x)


def transformer_encoder(dim: int, heads: int, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model=dim, nhead=heads, dim_feedforward=4 * dim, dropout=0.1, activation="gelu",
        batch_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers=layers)


class PositionalEmbedding(nn.Module):
    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.positional_embeddings = nn.Embedding(max_len, dim)

    def forward(self, x):
        positions = torch.arange(x.shape[1], device=x.device)
        return self.positional_embeddings(positions)[None] + x


class PatchEncoder(nn.Module):
    fast = False  # the transformer through vqfast.model.fast (when no patch is padded)

    def __init__(self, dim_embedding, patch_size, num_patch, num_head, num_layer):
        super().__init__()
        self.patch_size = patch_size
        self.num_patch = num_patch
        self.pos_embed = PositionalEmbedding(num_patch, dim_embedding)
        self.input_project = nn.Linear(patch_size, dim_embedding)
        self.transformer = transformer_encoder(dim_embedding, num_head, num_layer)

    def windows(self, x):
        """``(B, T) -> (B, P, patch_size)``: windows with step ``int(T / num_patch)``."""
        return x.unfold(-1, self.patch_size, int(x.shape[-1] / self.num_patch))

    def forward(self, x, select=None, padding=None):
        """Normalized series ``(B, T)`` -> encoded patches ``(B, P', E)``. ``select`` picks the
        embedded patches the transformer sees (all by default); ``padding`` ``(B, P')`` is True
        for patches it ignores."""
        patches = self.pos_embed(self.input_project(self.windows(x)))
        if select is not None:
            patches = select(patches)
        if self.fast and padding is None:
            return fast_layers.encoder(patches, self.transformer)
        return self.transformer(patches, src_key_padding_mask=padding)


class Codebook(nn.Module):
    """``K`` codes of dimension ``D``; quantizes with vqfast's nearest-code and VQ-loss ops."""

    def __init__(self, num_code, dim_code, commit_loss=1.0, entropy_loss=0.0, entropy_gamma=1.0):
        super().__init__()
        self.commit_loss = commit_loss
        self.entropy_loss = entropy_loss
        self.entropy_gamma = entropy_gamma
        self.embedding = nn.Embedding(num_code, dim_code)
        self.embedding.weight.data.uniform_(-1.0 / num_code, 1.0 / num_code)
        self.backend: str | None = None

    def forward(self, z, compute_loss: bool = True):
        """``z (B, N, D)`` -> (straight-through codes, indices ``(B, N)``, VQ loss or None)."""
        weight = self.embedding.weight
        idx, _ = ops.nearest_code(z.detach(), weight.detach(), backend=self.backend)
        z_q = F.embedding(idx, weight).to(z.dtype)
        loss = None
        if compute_loss:
            loss = ops.vq_loss(
                z, weight, commit_weight=self.commit_loss, entropy_weight=self.entropy_loss,
                entropy_gamma=self.entropy_gamma, backend=self.backend,
            )
        return z + (z_q - z).detach(), idx, loss


class PatchDecoder(nn.Module):
    fast = False  # the transformer through vqfast.model.fast

    def __init__(self, dim_embedding, patch_size, num_head, num_layer):
        super().__init__()
        self.transformer = transformer_encoder(dim_embedding, num_head, num_layer)
        self.out_layer = nn.Linear(dim_embedding, patch_size)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim_embedding) / dim_embedding)

    def forward(self, h):
        """Token embeddings ``(B, N, E)`` -> normalized reconstruction ``(B, N * patch_size)``."""
        h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
        h = fast_layers.encoder(h, self.transformer) if self.fast else self.transformer(h)
        return self.out_layer(h[:, 1:, :]).flatten(1)


class Tokenizer(nn.Module):
    fast = False  # the transformer through vqfast.model.fast (when no patch is padded)

    def __init__(self, dim_embedding, num_token, num_head, num_layer):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(1, num_token, dim_embedding) / dim_embedding)
        layer = nn.TransformerDecoderLayer(
            d_model=dim_embedding, nhead=num_head, dim_feedforward=4 * dim_embedding, dropout=0.1,
            activation="gelu", batch_first=True,
        )
        self.transformer = nn.TransformerDecoder(layer, num_layers=num_layer)

    def forward(self, memory, memory_mask=None):
        queries = self.tokens.repeat(memory.shape[0], 1, 1)
        if self.fast and memory_mask is None:
            return fast_layers.decoder(queries, memory, self.transformer)
        return self.transformer(queries, memory, memory_key_padding_mask=memory_mask)


class AttributeDecoder(nn.Module):
    """Token embeddings -> shape latent ``z_e``, sigmoids of ``(t, l)``, ``mu``, ``sigma``."""

    def __init__(self, dim_code, dim_embedding):
        super().__init__()
        self.z_head = MLP(dim_embedding, dim_code, dim_embedding)
        self.tl_mean_head = MLP(dim_embedding, 2, dim_embedding)
        self.mu_head = MLP(dim_embedding, 1, dim_embedding)
        self.sigma_head = MLP(dim_embedding, 1, dim_embedding)

    def forward(self, h, h_z=None, h_mu_sigma=None):
        """``h_z`` / ``h_mu_sigma``: other inputs for those heads (``VQShapeText``'s text-fused
        tokens); ``t`` and ``l`` always read ``h``."""
        h_z = h if h_z is None else h_z
        h_ms = h if h_mu_sigma is None else h_mu_sigma
        return (
            self.z_head(h_z),
            torch.sigmoid(self.tl_mean_head(h)),
            self.mu_head(h_ms),
            F.softplus(self.sigma_head(h_ms)),
        )


class AttributeEncoder(nn.Module):
    def __init__(self, dim_code, dim_embedding):
        super().__init__()
        self.project = nn.Linear(dim_code + 4, dim_embedding)

    def forward(self, z, t, l, mu, sigma):
        return self.project(torch.cat([z, mu, sigma, t, l], dim=-1))


class UpSampleBlock(nn.Module):
    def __init__(self, channels, kernel_size=3, scale_factor=4.0):
        super().__init__()
        self.scale_factor = scale_factor
        self.conv = nn.Conv1d(channels, channels, kernel_size, 1, padding="same")

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=self.scale_factor))


class ResidualBlock(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(16, in_channels),
            nn.GELU(),
            nn.Conv1d(in_channels, out_channels, kernel_size, 1, padding="same"),
            nn.GroupNorm(16, out_channels),
            nn.GELU(),
            nn.Conv1d(out_channels, out_channels, kernel_size, 1, padding="same"),
        )
        self.channel_up = (
            nn.Conv1d(in_channels, out_channels, 1, 1) if in_channels != out_channels else None
        )

    def forward(self, x):
        skip = x if self.channel_up is None else self.channel_up(x)
        return skip + self.block(x)


class ToChannels(nn.Module):
    """``(B, N, C*L) -> (B*N, C, L)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x):
        return x.reshape(-1, self.channels, x.shape[-1] // self.channels)


class ShapeDecoder(nn.Module):
    """A code ``(B, N, D)`` -> its standardized shape ``(B, N, len_s)``."""

    fast = False  # channels-last matrix products (vqfast.model.fast)

    def __init__(self, dim_code, len_s, out_kernel_size=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim_code, len_s * 8),
            ToChannels(128),
            ResidualBlock(128, 128),
            nn.GELU(),
            UpSampleBlock(128, scale_factor=4),
            ResidualBlock(128, 64),
            nn.GELU(),
            UpSampleBlock(64, scale_factor=4),
            nn.GELU(),
            nn.Conv1d(64, 1, out_kernel_size, 1, padding="same"),
        )

    def forward(self, z):
        if self.fast:
            return fast_layers.shape_decoder_cl(self, z)
        s = self.layers(z).reshape(z.shape[0], z.shape[1], -1)
        mean = s.mean(dim=-1, keepdim=True)
        std = s.std(dim=-1, keepdim=True)
        return (s - mean) / (std + 1e-8)
