"""Fast forward passes of VQShape's layers, written as plain functional code over the modules' own
parameters (same module tree, same ``state_dict``).

- The shape decoder runs channels-last, ``(M, L, C)``: its 1-D convolutions become matrix
  products (a kernel-3 convolution after a 4x nearest upsampling is computed at the coarse
  resolution, a quarter of the products) and its group norms use torch's channels-last kernel.
- The transformer layers call the same operations as ``nn.TransformerEncoderLayer`` /
  ``nn.TransformerDecoderLayer`` in training mode without ``nn.MultiheadAttention``'s checks, mask
  conversions and layout copies. Dropout draws its masks in the same order and of the same sizes
  as torch's layers, so a seeded step drops the same units (``vqfast.ops.dropout``: the same
  draws as ``F.dropout``, several times faster on CPUs where torch draws them one by one).

They compute what the modules compute up to float rounding (summation order), not bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vqfast.ops.dropout import dropout as _vq_dropout

# ---------------------------------------------------------------------------------------------
# Shape decoder (channels-last)
# ---------------------------------------------------------------------------------------------


def group_norm_cl(x, norm):
    """``nn.GroupNorm`` over the channels of ``x (M, L, C)``; the result is ``(M, L, C)``."""
    y = F.group_norm(x.transpose(1, 2).unsqueeze(2), norm.num_groups, norm.weight, norm.bias,
                     norm.eps)
    return y.squeeze(2).transpose(1, 2)


class _ConvCL(torch.autograd.Function):
    """Odd-kernel ``"same"`` convolution of ``x (M, L, C)`` as one matrix product over windows
    ``(M, L, k, C)``. Its backward is two matrix products: the weight's over the saved windows,
    the input's over the gradient's windows with the taps reversed (the transposed convolution;
    cheaper than a product into ``(M, L, k, C)`` and ``k`` shifted sums)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        k = weight.shape[-1]
        cols = _windows(x, k)
        w2 = weight.permute(0, 2, 1).reshape(weight.shape[0], -1)  # (Cout, k*C)
        out = torch.addmm(bias, cols.view(-1, cols.shape[-1]), w2.t())
        ctx.save_for_backward(cols, weight)
        return out.view(x.shape[0], x.shape[1], -1)

    @staticmethod
    def backward(ctx, grad):
        cols, weight = ctx.saved_tensors
        out_ch, channels, k = weight.shape
        grad = grad.contiguous()
        g2 = grad.view(-1, out_ch)
        grad_w = (g2.t() @ cols.view(-1, cols.shape[-1])).view(-1, k, channels).permute(0, 2, 1)
        grad_x = None
        if ctx.needs_input_grad[0]:
            # grad_x[l] = sum_j W_j^T grad[l - j + k//2] = windows(grad)[l] @ (W_{k-1-j'}^T)_j'
            w_t = weight.flip(-1).permute(2, 0, 1).reshape(k * out_ch, channels)
            gcols = _windows(grad, k)
            grad_x = (gcols.view(-1, k * out_ch) @ w_t).view(cols.shape[0], cols.shape[1], -1)
        return grad_x, grad_w, g2.sum(0)


class _LinearToOne(torch.autograd.Function):
    """``F.linear(x, weight (1, C), bias)`` for ``x (..., C)``: the products are matrix-vector
    ones; the input's gradient an outer product by broadcasting (a K = 1 ``mm`` is slow)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        flat = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(flat, weight)
        ctx.shape = x.shape
        return torch.addmv(bias, flat, weight[0]).view(*x.shape[:-1], 1)

    @staticmethod
    def backward(ctx, grad):
        flat, weight = ctx.saved_tensors
        g = grad.reshape(-1)
        grad_x = (g[:, None] * weight).view(ctx.shape) if ctx.needs_input_grad[0] else None
        return grad_x, torch.mv(flat.t(), g)[None], g.sum().view(1)


def _windows(x, k: int):
    """``x (M, L, C)`` -> ``(M, L, k*C)``: row ``l`` holds ``x[l - k//2 .. l + k//2]``, zeros
    outside the series."""
    m, length, channels = x.shape
    pad = k // 2
    cols = x.new_empty(m, length, k, channels)
    for j in range(k):
        shift = j - pad  # window slot j reads x[l + shift]
        lo, hi = max(0, -shift), min(length, length - shift)
        cols[:, lo:hi, j] = x[:, lo + shift:hi + shift]
        cols[:, :lo, j] = 0
        cols[:, hi:, j] = 0
    return cols.view(m, length, k * channels)


def conv1d_cl(x, conv):
    """``nn.Conv1d`` (stride 1, odd kernel, ``"same"`` padding) of ``x (M, L, C)``."""
    if conv.weight.shape[-1] == 1:
        if conv.weight.shape[0] == 1 and conv.bias is not None:
            return _LinearToOne.apply(x, conv.weight[:, :, 0], conv.bias)
        return F.linear(x, conv.weight[:, :, 0], conv.bias)
    return _ConvCL.apply(x, conv.weight, conv.bias)


class _UpsampleConvCL(torch.autograd.Function):
    """``conv(F.interpolate(x, scale_factor=scale))`` (nearest) for a kernel-3 ``"same"``
    convolution, at the resolution of ``x (M, L, C)``: output ``s*i + r`` sees ``x[i]`` through
    every tap except the left one for ``r = 0`` (``x[i - 1]``) and the right one for ``r = s - 1``
    (``x[i + 1]``), so each tap's product with ``x[i]`` is formed once, a quarter of the work for
    ``s = 4``."""

    @staticmethod
    def forward(ctx, x, weight, bias, scale):
        m, length, channels = x.shape
        out_ch = weight.shape[0]
        w3 = weight.permute(2, 0, 1).reshape(3 * out_ch, channels)  # rows: (tap, out channel)
        taps = (x.reshape(-1, channels) @ w3.t()).view(m, length, 3, out_ch)
        left, mid, right = taps.unbind(2)
        out = x.new_empty(m, length, scale, out_ch)
        inner = out[:, :, 1] if scale > 2 else x.new_empty(m, length, out_ch)
        torch.add(mid, bias, out=inner)
        out[:, :, 0] = inner
        out[:, :, scale - 1] = inner
        inner += left
        inner += right
        out[:, :, 0] += right
        out[:, 1:, 0] += left[:, :-1]
        out[:, :, scale - 1] += left
        out[:, :-1, scale - 1] += right[:, 1:]
        for r in range(2, scale - 1):
            out[:, :, r] = inner
        ctx.save_for_backward(x, w3)
        return out.view(m, length * scale, out_ch)

    @staticmethod
    def backward(ctx, grad):
        x, w3 = ctx.saved_tensors
        m, length, channels = x.shape
        out_ch = w3.shape[0] // 3
        g = grad.reshape(m, length, -1, out_ch)
        gtaps = x.new_empty(m, length, 3, out_ch)
        torch.sum(g, dim=2, out=gtaps[:, :, 1])
        gtaps[:, :, 0] = g[:, :, 1:].sum(2)
        gtaps[:, :-1, 0] += g[:, 1:, 0]
        gtaps[:, :, 2] = g[:, :, :-1].sum(2)
        gtaps[:, 1:, 2] += g[:, :-1, -1]
        g2 = gtaps.view(-1, 3 * out_ch)
        grad_w = (g2.t() @ x.reshape(-1, channels)).view(3, out_ch, channels).permute(1, 2, 0)
        grad_x = (g2 @ w3).view(m, length, channels) if ctx.needs_input_grad[0] else None
        return grad_x, grad_w, gtaps[:, :, 1].sum((0, 1)), None


def upsample_conv_cl(x, conv, scale: int):
    """``conv(F.interpolate(x, scale_factor=scale))`` for ``x (M, L, C)``, kernel 3, scale >= 2."""
    return _UpsampleConvCL.apply(x, conv.weight, conv.bias, scale)


def residual_block_cl(x, block):
    norm1, _, conv1, norm2, _, conv2 = block.block
    h = conv1d_cl(F.gelu(group_norm_cl(x, norm1)), conv1)
    h = conv1d_cl(F.gelu(group_norm_cl(h, norm2)), conv2)
    skip = x if block.channel_up is None else conv1d_cl(x, block.channel_up)
    return skip + h


def shape_decoder_cl(decoder, z):
    """``ShapeDecoder.forward`` of ``z (B, N, D)`` -> standardized shapes ``(B, N, len_s)``."""
    linear, to_channels, res1, _, up1, res2, _, up2, _, out_conv = decoder.layers
    channels = to_channels.channels
    length = linear.out_features // channels
    # The linear layer's outputs reordered from (channel, position) to (position, channel).
    weight = linear.weight.view(channels, length, -1).transpose(0, 1).reshape(linear.weight.shape)
    bias = linear.bias.view(channels, length).t().reshape(-1)
    h = F.linear(z, weight, bias).reshape(-1, length, channels)
    h = F.gelu(residual_block_cl(h, res1))
    h = upsample_conv_cl(h, up1.conv, int(up1.scale_factor))
    h = F.gelu(residual_block_cl(h, res2))
    h = F.gelu(upsample_conv_cl(h, up2.conv, int(up2.scale_factor)))
    s = conv1d_cl(h, out_conv).reshape(z.shape[0], z.shape[1], -1)
    mean = s.mean(dim=-1, keepdim=True)
    std = s.std(dim=-1, keepdim=True)
    return (s - mean) / (std + 1e-8)


# ---------------------------------------------------------------------------------------------
# Transformer layers (post-norm, batch first, as torch's layers with norm_first=False)
# ---------------------------------------------------------------------------------------------


def attention(query, key_value, mha, training: bool):
    """``nn.MultiheadAttention(query, key_value, key_value, need_weights=False)[0]`` without a
    mask, batch first. The attention weights ``(B, H, L, S)`` get dropout in training, as in
    torch's math kernel, with the same random draws."""
    batch, length, dim = query.shape
    heads = mha.num_heads
    head_dim = dim // heads
    if key_value is query:
        q, k, v = F.linear(query, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    else:
        w_q, w_kv = mha.in_proj_weight.split([dim, 2 * dim])
        b_q, b_kv = mha.in_proj_bias.split([dim, 2 * dim])
        q = F.linear(query, w_q, b_q)
        k, v = F.linear(key_value, w_kv, b_kv).chunk(2, dim=-1)
    q = q.reshape(batch, length, heads, head_dim).transpose(1, 2)
    k = k.reshape(batch, -1, heads, head_dim).transpose(1, 2)
    v = v.reshape(batch, -1, heads, head_dim).transpose(1, 2)
    if training and mha.dropout > 0:
        scores = torch.matmul(q, k.transpose(-1, -2)).mul_(head_dim**-0.5)
        probs = _vq_dropout(torch.softmax(scores, dim=-1), mha.dropout, True)
        out = torch.matmul(probs, v)
    else:
        out = F.scaled_dot_product_attention(q, k, v)
    # (L, B, E) in memory, as torch's layer: dropout of the result then draws in that order.
    out = out.permute(2, 0, 1, 3).reshape(length * batch, dim)
    out = F.linear(out, mha.out_proj.weight, mha.out_proj.bias)
    return out.view(length, batch, dim).transpose(0, 1)


def _dropout(x, module, training):
    return _vq_dropout(x, module.p, training) if training and module.p > 0 else x


def _feed_forward(x, layer, dropout_out, training):
    h = _dropout(layer.activation(layer.linear1(x)), layer.dropout, training)
    return _dropout(layer.linear2(h), dropout_out, training)


def encoder_layer(x, layer):
    """``nn.TransformerEncoderLayer(x)`` (no mask)."""
    training = layer.training
    sa = _dropout(attention(x, x, layer.self_attn, training), layer.dropout1, training)
    x = layer.norm1(x + sa)
    return layer.norm2(x + _feed_forward(x, layer, layer.dropout2, training))


def decoder_layer(x, memory, layer):
    """``nn.TransformerDecoderLayer(x, memory)`` (no masks)."""
    training = layer.training
    sa = _dropout(attention(x, x, layer.self_attn, training), layer.dropout1, training)
    x = layer.norm1(x + sa)
    ca = _dropout(attention(x, memory, layer.multihead_attn, training), layer.dropout2, training)
    x = layer.norm2(x + ca)
    return layer.norm3(x + _feed_forward(x, layer, layer.dropout3, training))


def encoder(x, stack):
    """``nn.TransformerEncoder(x)`` without masks."""
    for layer in stack.layers:
        x = encoder_layer(x, layer)
    return x if stack.norm is None else stack.norm(x)


def decoder(x, memory, stack):
    """``nn.TransformerDecoder(x, memory)`` without masks."""
    for layer in stack.layers:
        x = decoder_layer(x, memory, layer)
    return x if stack.norm is None else stack.norm(x)
