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

import functools

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


def _autocast_state(x) -> tuple:
    """The autocast state of ``x``'s device, for a backward to run its products as the forward
    did (autograd runs a Function's backward outside the forward's autocast)."""
    device = x.device.type
    return device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)


def _under_forward_autocast(backward):
    """A Function's ``backward`` run under the autocast state its forward saved in
    ``ctx.autocast`` (``_autocast_state``), so that its products take the forward's dtypes."""

    @functools.wraps(backward)
    def run(ctx, grad):
        device, enabled, dtype = ctx.autocast
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            return backward(ctx, grad)

    return run


class _ConvCL(torch.autograd.Function):
    """Odd-kernel ``"same"`` convolution of ``x (M, L, C)``: one matrix product gives every tap's
    product ``(M, L, k, Cout)``, summed with the taps' shifts (no window copy of ``x``). The
    backward is two matrix products over the gradient's windows ``(M, L, k, Cout)``: the input's
    with the taps reversed (the transposed convolution), the weight's against ``x``."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        m, length, channels = x.shape
        out_ch, _, k = weight.shape
        wk = weight.permute(2, 0, 1).reshape(k * out_ch, channels)  # rows: (tap, out channel)
        taps = (x.reshape(-1, channels) @ wk.t()).view(m, length, k, out_ch)
        pad = k // 2
        out = torch.add(taps[:, :, pad], bias)
        for j in range(k):
            shift = j - pad  # out[l] += tap_j(x[l + shift])
            if j == pad or abs(shift) >= length:
                continue
            if shift < 0:
                out[:, -shift:] += taps[:, :shift, j]
            else:
                out[:, :-shift] += taps[:, shift:, j]
        ctx.save_for_backward(x, weight)
        ctx.autocast = _autocast_state(x)
        return out

    @staticmethod
    @_under_forward_autocast
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        out_ch, channels, k = weight.shape
        m, length = x.shape[0], x.shape[1]
        grad = grad.contiguous()
        # slot j' of the gradient's windows at l holds grad[l + j' - k//2], which tap k-1-j'
        # of x[l] reached: grad_x[l] = sum_j' W_{k-1-j'}^T windows[l, j'] and
        # grad_W_{k-1-j'} = sum_l windows[l, j'] x[l]^T
        gcols = _windows(grad, k).view(-1, k * out_ch)
        w_rev = weight.flip(-1).permute(2, 0, 1).reshape(k * out_ch, channels)
        grad_w = (gcols.t() @ x.reshape(-1, channels)).view(k, out_ch, channels)
        grad_w = grad_w.flip(0).permute(1, 2, 0)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (gcols @ w_rev).view(m, length, channels)
        return grad_x, grad_w, grad.view(-1, out_ch).sum(0)


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
        if (conv.weight.shape[0] == 1 and conv.bias is not None and x.dtype == conv.weight.dtype
                and not torch.is_autocast_enabled(x.device.type)):
            return _LinearToOne.apply(x, conv.weight[:, :, 0], conv.bias)
        return F.linear(x, conv.weight[:, :, 0], conv.bias)
    return _ConvCL.apply(x, conv.weight, conv.bias)


class _UpsampleConvRows(torch.autograd.Function):
    """``conv(F.interpolate(x, scale_factor=s))`` (nearest) for a kernel-3 ``"same"``
    convolution of ``x (M, L, C)``, as its distinct rows ``(M, L, 3, Cout)``: output ``s*i + r``
    sees ``x[i]`` through every tap except the left one for ``r = 0`` (``x[i - 1]``: row
    ``first``) and the right one for ``r = s - 1`` (``x[i + 1]``: row ``last``); the outputs in
    between are all row ``inner``. Each tap's product with ``x[i]`` is formed once (a quarter of
    the work for ``s = 4``) and nothing is written twice."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        m, length, channels = x.shape
        out_ch = weight.shape[0]
        w3 = weight.permute(2, 0, 1).reshape(3 * out_ch, channels)  # rows: (tap, out channel)
        taps = (x.reshape(-1, channels) @ w3.t()).view(m, length, 3, out_ch)
        left, mid, right = taps.unbind(2)
        rows = torch.empty_like(taps)
        first, inner, last = rows.unbind(2)
        base = mid + bias
        torch.add(base, right, out=first)
        first[:, 1:] += left[:, :-1]
        torch.add(base, left, out=last)
        torch.add(last, right, out=inner)
        last[:, :-1] += right[:, 1:]
        ctx.save_for_backward(x, w3)
        ctx.autocast = _autocast_state(x)
        return rows

    @staticmethod
    @_under_forward_autocast
    def backward(ctx, grad):
        x, w3 = ctx.saved_tensors
        m, length, channels = x.shape
        g_first, g_inner, g_last = grad.unbind(2)
        gtaps = torch.empty_like(grad)
        g_left, g_mid, g_right = gtaps.unbind(2)
        torch.sum(grad, dim=2, out=g_mid)
        torch.add(g_inner, g_last, out=g_left)
        g_left[:, :-1] += g_first[:, 1:]
        torch.add(g_first, g_inner, out=g_right)
        g_right[:, 1:] += g_last[:, :-1]
        g2 = gtaps.view(m * length, -1)
        out_ch = w3.shape[0] // 3
        grad_w = (g2.t() @ x.reshape(-1, channels)).view(3, out_ch, channels).permute(1, 2, 0)
        grad_x = (g2 @ w3).view(m, length, channels) if ctx.needs_input_grad[0] else None
        return grad_x, grad_w, g_mid.sum((0, 1))


def upsample_conv_rows(x, conv):
    """The distinct rows ``(M, L, 3, Cout)`` of ``conv(F.interpolate(x, scale_factor=s))`` for
    ``x (M, L, C)``, kernel 3, any ``s >= 2`` (``expand_rows`` makes the output)."""
    return _UpsampleConvRows.apply(x, conv.weight, conv.bias)


def expand_rows(rows, scale: int):
    """``(M, L, 3, ...)`` distinct rows -> ``(M, L * scale, ...)``: per ``i``, row ``first``,
    ``scale - 2`` times row ``inner``, row ``last``."""
    index = torch.tensor([0] + [1] * (scale - 2) + [2], device=rows.device)
    out = rows.index_select(2, index)
    return out.view(rows.shape[0], rows.shape[1] * scale, *rows.shape[3:])


def upsample_conv_cl(x, conv, scale: int):
    """``conv(F.interpolate(x, scale_factor=scale))`` for ``x (M, L, C)``, kernel 3, scale >= 2."""
    return expand_rows(upsample_conv_rows(x, conv), scale)


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
    scale = int(up2.scale_factor)
    if out_conv.weight.shape[-1] == 1:
        # GELU and a kernel-1 convolution act on each position alone: on the distinct rows only
        s = expand_rows(conv1d_cl(F.gelu(upsample_conv_rows(h, up2.conv)), out_conv), scale)
    else:
        s = conv1d_cl(F.gelu(upsample_conv_cl(h, up2.conv, scale)), out_conv)
    s = s.reshape(z.shape[0], z.shape[1], -1)
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
