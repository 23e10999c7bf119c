"""The VQ loss (commitment + codebook entropy), forward and backward, streaming over codes.

Same math and saved tensors as ``csrc/vq_loss.cpp`` (see its header). With ``d_nk`` the direct
squared distances, ``a_nk = -d_nk / tau``, ``m_n = max_k a_nk``, ``Z_n = sum_k exp(a_nk - m_n)``,
``p_nk = exp(a_nk - m_n - log Z_n)``, ``h(p) = -p log(max(p, eps))`` and ``pbar = mean_n p_n``::

    loss = (1 + commit) mean_n |q_n - z_n|^2 / D + lambda (mean_n sum_k h(p_nk) - gamma H(pbar))

Nothing of size tokens x codes is stored, and every reduction over programs goes through a small
buffer of per-program partial sums that torch adds up in a fixed order (no float atomics), so
results are deterministic.

Forward: ``_forward_rows_kernel`` (one program per block of tokens) finds the nearest code and the
log-normalizer with an online log-sum-exp over code tiles; ``_forward_codes_kernel`` (a grid of
code tiles x at most a few hundred token groups) recomputes ``p`` and sums ``p`` per code and
``p log p`` into partial buffers. Backward: ``_backward_rows_kernel`` gives ``dL/dz`` (two passes
over the codes: ``sum_j p_j g_j`` first, then ``dL/dd``) and saves ``sum_j p_j g_j`` per token;
``_backward_codes_kernel`` sums ``dL/de`` per code tile over its token group into a partial buffer.

Every kernel computes distances with the same ``distance_tile`` (one dimension at a time, the same
operations for every entry, no fp contraction: see ``_helpers.py``), so the recomputed distance
of the nearest code equals the saved ``m`` bit for bit and the recomputed ``p`` sums to 1 to
rounding. This matters: with ``tau`` small the logits are hundreds, and a recomputed ``p`` off by
1e-5 in total wrecks ``g_nk - sum_j p_nj g_nj``, which cancels almost exactly for the nearest code.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._helpers import (
    FP_FUSION,
    accumulate_dtype,
    block_size,
    device_guard,
    distance_tile,
    tl_dtype,
)

EPS = tl.constexpr(1e-5)
LOG_EPS = tl.constexpr(math.log(1e-5))

# Programs of the code-tile x token-group kernels: bounds the partial buffers to about
# TARGET_PROGRAMS x BLOCK_K (x D) values, and fixes their summation order independently of the
# device.
TARGET_PROGRAMS = 512
# Elements of the [BLOCK_M, BLOCK_K, BLOCK_D] tiles of the float64 backward kernels (registers).
TILE_BUDGET_F64 = 4096


@triton.jit
def _forward_rows_kernel(z_ptr, c_ptr, params_ptr, idx_ptr, row_max_ptr, log_norm_ptr, sq_ptr,
                         M, K, D, ENTROPY: tl.constexpr, ACC: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    z_rows = z_ptr + rows * D
    neg_inv_tau = tl.load(params_ptr)
    best = tl.full([BLOCK_M], float("inf"), ACC)
    best_idx = tl.zeros([BLOCK_M], tl.int32)
    norm = tl.zeros([BLOCK_M], ACC)
    for k0 in range(0, K, BLOCK_K):
        codes = k0 + tl.arange(0, BLOCK_K)
        code_ok = codes < K
        dist = distance_tile(z_rows, row_ok, c_ptr, codes, code_ok, D, ACC, BLOCK_M, BLOCK_K)
        dist = tl.where(code_ok[None, :], dist, float("inf"))
        tile_min, tile_arg = tl.min(dist, axis=1, return_indices=True)
        better = tile_min < best
        if ENTROPY:
            # Online log-sum-exp of a = -d / tau around the running maximum m = -min(d) / tau;
            # before the first tile best = inf, so the old sum is scaled by exp(-inf) = 0.
            m_new = tl.minimum(best, tile_min) * neg_inv_tau
            norm = norm * tl.exp(best * neg_inv_tau - m_new)
            norm += tl.sum(tl.exp(dist * neg_inv_tau - m_new[:, None]), axis=1)
        best = tl.where(better, tile_min, best)
        best_idx = tl.where(better, k0 + tile_arg, best_idx)
    tl.store(idx_ptr + rows, best_idx.to(tl.int64), mask=row_ok)
    if ENTROPY:
        tl.store(row_max_ptr + rows, best * neg_inv_tau, mask=row_ok)
        tl.store(log_norm_ptr + rows, tl.log(norm), mask=row_ok)
    tl.store(sq_ptr + pid, tl.sum(tl.where(row_ok, best, 0.0), axis=0))


@triton.jit
def _log_probs(dist, row_max, log_norm, ok, neg_inv_tau):
    """``log p = (a - m) - log Z`` with ``a = -d / tau``, ``-inf`` where not ``ok``. Subtracting
    ``m`` before ``log Z`` keeps ``a - m`` exact for the nearest code (``m + log Z`` would round
    at the scale of ``|m|``, which can be hundreds)."""
    log_p = (dist * neg_inv_tau - row_max[:, None]) - log_norm[:, None]
    return tl.where(ok, log_p, float("-inf"))


@triton.jit
def _forward_codes_kernel(z_ptr, c_ptr, params_ptr, row_max_ptr, log_norm_ptr, p_part_ptr,
                          h_part_ptr, M, K, D, ACC: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_K: tl.constexpr):
    tile = tl.program_id(0)
    group = tl.program_id(1)
    groups = tl.num_programs(1)
    codes = tile * BLOCK_K + tl.arange(0, BLOCK_K)
    code_ok = codes < K
    neg_inv_tau = tl.load(params_ptr)
    p_sum = tl.zeros([BLOCK_K], ACC)
    h_sum = tl.zeros([BLOCK_K], ACC)
    for block in range(group, tl.cdiv(M, BLOCK_M), groups):
        rows = tl.cast(block, tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < M
        row_max = tl.load(row_max_ptr + rows, mask=row_ok, other=0.0)
        log_norm = tl.load(log_norm_ptr + rows, mask=row_ok, other=0.0)
        dist = distance_tile(z_ptr + rows * D, row_ok, c_ptr, codes, code_ok, D, ACC,
                             BLOCK_M, BLOCK_K)
        ok = row_ok[:, None] & code_ok[None, :]
        log_p = _log_probs(dist, row_max, log_norm, ok, neg_inv_tau)
        p = tl.exp(log_p)
        p_sum += tl.sum(p, axis=0)
        h_sum += tl.sum(p * tl.where(p >= EPS, log_p, LOG_EPS), axis=0)
    tl.store(p_part_ptr + group.to(tl.int64) * K + codes, p_sum, mask=code_ok)
    tl.store(h_part_ptr + group * tl.num_programs(0) + tile, tl.sum(h_sum, axis=0))


@triton.jit
def _probs_and_weights(dist, row_max, log_norm, code_term, code_ok, neg_inv_tau, g_scale):
    """``p_nk`` (0 for padded codes) and ``g_nk = g_scale (h'(p_nk) - gamma h'(pbar_k))`` with
    ``h'(p) = -(log p + 1)`` for ``p >= eps``, else ``-log eps``."""
    log_p = _log_probs(dist, row_max, log_norm, code_ok[None, :], neg_inv_tau)
    p = tl.exp(log_p)
    h_prime = tl.where(p >= EPS, -(log_p + 1.0), -LOG_EPS)
    return p, g_scale * (h_prime - code_term[None, :])


@triton.jit
def _backward_rows_kernel(z_ptr, c_ptr, idx_ptr, row_max_ptr, log_norm_ptr, code_term_ptr,
                          params_ptr, gz_ptr, total_ptr, M, K, D, ENTROPY: tl.constexpr,
                          ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
                          BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < D
    tile_ok = row_ok[:, None] & dim_ok[None, :]
    z = tl.load(z_ptr + rows[:, None] * D + dims[None, :], mask=tile_ok, other=0.0).to(ACC)
    idx = tl.load(idx_ptr + rows, mask=row_ok, other=0)
    q = tl.load(c_ptr + idx[:, None] * D + dims[None, :], mask=tile_ok, other=0.0).to(ACC)
    mse_scale = tl.load(params_ptr + 1)
    gz = mse_scale * (z - q)
    if ENTROPY:
        neg_inv_tau = tl.load(params_ptr)
        g_scale = tl.load(params_ptr + 2)
        row_max = tl.load(row_max_ptr + rows, mask=row_ok, other=0.0)
        log_norm = tl.load(log_norm_ptr + rows, mask=row_ok, other=0.0)
        z_rows = z_ptr + rows * D
        # Pass 1: total_n = sum_k p_nk g_nk.
        total = tl.zeros([BLOCK_M], ACC)
        for k0 in range(0, K, BLOCK_K):
            codes = k0 + tl.arange(0, BLOCK_K)
            code_ok = codes < K
            dist = distance_tile(z_rows, row_ok, c_ptr, codes, code_ok, D, ACC, BLOCK_M, BLOCK_K)
            code_term = tl.load(code_term_ptr + codes, mask=code_ok, other=0.0)
            p, g = _probs_and_weights(dist, row_max, log_norm, code_term, code_ok,
                                      neg_inv_tau, g_scale)
            total += tl.sum(p * g, axis=1)
        # Pass 2: dL/dd_nk = -p_nk (g_nk - total_n) / tau; dL/dz_n = 2 sum_k dL/dd_nk (z_n - e_k).
        acc = tl.zeros([BLOCK_M, BLOCK_D], ACC)
        for k0 in range(0, K, BLOCK_K):
            codes = k0 + tl.arange(0, BLOCK_K)
            code_ok = codes < K
            dist = distance_tile(z_rows, row_ok, c_ptr, codes, code_ok, D, ACC, BLOCK_M, BLOCK_K)
            code_term = tl.load(code_term_ptr + codes, mask=code_ok, other=0.0)
            p, g = _probs_and_weights(dist, row_max, log_norm, code_term, code_ok,
                                      neg_inv_tau, g_scale)
            dd = p * (g - total[:, None]) * neg_inv_tau
            e = tl.load(c_ptr + codes[:, None] * D + dims[None, :],
                        mask=code_ok[:, None] & dim_ok[None, :], other=0.0).to(ACC)
            if DOT:
                # sum_k dd_nk (z_n - e_k) = (sum_k dd_nk) z_n - (dd E)_n, in IEEE float32.
                acc += tl.sum(dd, axis=1)[:, None] * z - tl.dot(dd, e, input_precision="ieee")
            else:
                acc += tl.sum(dd[:, :, None] * (z[:, None, :] - e[None, :, :]), axis=1)
        gz += 2.0 * acc
        tl.store(total_ptr + rows, total, mask=row_ok)
    tl.store(gz_ptr + rows[:, None] * D + dims[None, :], gz.to(gz_ptr.dtype.element_ty),
             mask=tile_ok)


@triton.jit
def _backward_codes_kernel(z_ptr, c_ptr, idx_ptr, row_max_ptr, log_norm_ptr, code_term_ptr,
                           params_ptr, total_ptr, gc_part_ptr, M, K, D, ENTROPY: tl.constexpr,
                           ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
                           BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    tile = tl.program_id(0)
    group = tl.program_id(1)
    groups = tl.num_programs(1)
    codes = tile * BLOCK_K + tl.arange(0, BLOCK_K)
    code_ok = codes < K
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < D
    e_ok = code_ok[:, None] & dim_ok[None, :]
    e = tl.load(c_ptr + codes[:, None] * D + dims[None, :], mask=e_ok, other=0.0).to(ACC)
    code_term = tl.load(code_term_ptr + codes, mask=code_ok, other=0.0)
    neg_inv_tau = tl.load(params_ptr)
    g_scale = tl.load(params_ptr + 2)
    commit_scale = tl.load(params_ptr + 3)
    gc = tl.zeros([BLOCK_K, BLOCK_D], ACC)
    for block in range(group, tl.cdiv(M, BLOCK_M), groups):
        rows = tl.cast(block, tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < M
        z = tl.load(z_ptr + rows[:, None] * D + dims[None, :],
                    mask=row_ok[:, None] & dim_ok[None, :], other=0.0).to(ACC)
        idx = tl.load(idx_ptr + rows, mask=row_ok, other=-1)
        # Commitment: commit * 2 grad (e_k - z_n) / (M D) for the tokens whose nearest code is k.
        w = tl.where(idx[:, None] == codes[None, :], commit_scale, 0.0)
        if ENTROPY:
            dist = distance_tile(z_ptr + rows * D, row_ok, c_ptr, codes, code_ok, D, ACC,
                                 BLOCK_M, BLOCK_K)
            row_max = tl.load(row_max_ptr + rows, mask=row_ok, other=0.0)
            log_norm = tl.load(log_norm_ptr + rows, mask=row_ok, other=0.0)
            total = tl.load(total_ptr + rows, mask=row_ok, other=0.0)
            p, g = _probs_and_weights(dist, row_max, log_norm, code_term, code_ok,
                                      neg_inv_tau, g_scale)
            # dL/de_k = sum_n dL/dd_nk 2 (e_k - z_n)
            w += 2.0 * p * (g - total[:, None]) * neg_inv_tau
        w = tl.where(row_ok[:, None], w, 0.0)
        if DOT:
            # sum_n w_nk (z_n - e_k) = (W^T Z)_k - (sum_n w_nk) e_k, in IEEE float32.
            gc -= tl.dot(tl.trans(w), z, input_precision="ieee") - tl.sum(w, axis=0)[:, None] * e
        else:
            gc -= tl.sum(w[:, :, None] * (z[:, None, :] - e[None, :, :]), axis=0)
    out = gc_part_ptr + group.to(tl.int64) * K * D + codes[:, None] * D + dims[None, :]
    tl.store(out, gc, mask=e_ok)


def _token_groups(token_blocks: int, code_tiles: int) -> int:
    return max(1, min(token_blocks, triton.cdiv(TARGET_PROGRAMS, code_tiles)))


def _params(acc, device, tau, *scales):
    """``[-1/tau, *scales]`` on the device, in the accumulate dtype (Python floats would reach
    the kernels as float32). Filled in place: no host-to-device copy, so CUDA graphs can
    capture it."""
    params = torch.empty(1 + len(scales), dtype=acc, device=device)
    for i, value in enumerate((-1.0 / tau, *scales)):
        params[i].fill_(value)
    return params


def _row_blocks(M: int, K: int, acc: torch.dtype) -> tuple[int, int]:
    """Token and code tile of the forward kernels ([BLOCK_M, BLOCK_K] distance tiles)."""
    return block_size(M, 16, 64 if acc == torch.float32 else 32), block_size(K, 16, 64)


def _use_dot(acc: torch.dtype) -> bool:
    """float32: the backward's sums over codes and tokens are ``tl.dot`` products (IEEE float32,
    no TF32); float64: broadcast products summed in registers."""
    return acc == torch.float32


def _tile_blocks(M: int, K: int, D: int, acc: torch.dtype) -> tuple[int, int, int]:
    """Token, code and dimension tile of the backward kernels: ``[BLOCK_M, BLOCK_K]`` and
    ``[BLOCK_K, BLOCK_D]`` operands of ``tl.dot`` (every side >= 16), else ``[BLOCK_M, BLOCK_K,
    BLOCK_D]`` broadcast products."""
    if _use_dot(acc):
        return block_size(M, 16, 32), block_size(K, 16, 32), max(16, triton.next_power_of_2(D))
    block_d = triton.next_power_of_2(D)
    block_m = block_size(M, 16, 16 if block_d >= 64 else 32)
    block_k = block_size(K, 2, max(2, TILE_BUDGET_F64 // (block_m * block_d)))
    return block_m, block_k, block_d


def forward(z, codebook, commit_weight, entropy_weight, entropy_gamma, temperature):
    """-> ``(loss (), idx (M,) int64, row_max (M,), log_norm (M,), mean_p (K,))``."""
    z, codebook = z.contiguous(), codebook.contiguous()
    M, D = z.shape
    K = codebook.shape[0]
    acc = accumulate_dtype(z, codebook)
    device = z.device
    entropy = entropy_weight > 0
    idx = torch.empty(M, dtype=torch.int64, device=device)
    row_max = torch.zeros(M, dtype=acc, device=device)
    log_norm = torch.zeros(M, dtype=acc, device=device)
    mean_p = torch.zeros(K, dtype=acc, device=device)
    params = _params(acc, device, temperature)
    block_m, block_k = _row_blocks(M, K, acc)
    token_blocks = triton.cdiv(M, block_m)
    sq = torch.empty(token_blocks, dtype=acc, device=device)
    with device_guard(device):
        _forward_rows_kernel[(token_blocks,)](
            z, codebook, params, idx, row_max, log_norm, sq, M, K, D,
            ENTROPY=entropy, ACC=tl_dtype(acc), BLOCK_M=block_m, BLOCK_K=block_k,
            enable_fp_fusion=FP_FUSION,
        )
        loss = (1.0 + commit_weight) * sq.sum(dtype=torch.float64) / (M * D)
        if entropy:
            code_tiles = triton.cdiv(K, block_k)
            groups = _token_groups(token_blocks, code_tiles)
            p_part = torch.empty(groups, K, dtype=acc, device=device)
            h_part = torch.empty(groups, code_tiles, dtype=acc, device=device)
            _forward_codes_kernel[(code_tiles, groups)](
                z, codebook, params, row_max, log_norm, p_part, h_part, M, K, D,
                ACC=tl_dtype(acc), BLOCK_M=block_m, BLOCK_K=block_k, enable_fp_fusion=FP_FUSION,
            )
            p_bar = p_part.sum(0, dtype=torch.float64) / M
            h_bar = -(p_bar * p_bar.clamp(min=EPS.value).log()).sum()
            h_mean = -h_part.sum(dtype=torch.float64) / M
            loss = loss + entropy_weight * (h_mean - entropy_gamma * h_bar)
            mean_p = p_bar.to(acc)
    return loss.to(acc), idx, row_max, log_norm, mean_p


def backward(grad, z, codebook, idx, row_max, log_norm, mean_p, commit_weight, entropy_weight,
             entropy_gamma, temperature):
    """-> ``(grad_z, grad_codebook)`` in the dtypes of ``z`` and ``codebook``."""
    z, codebook = z.contiguous(), codebook.contiguous()
    M, D = z.shape
    K = codebook.shape[0]
    acc = accumulate_dtype(z, codebook)
    device = z.device
    entropy = entropy_weight > 0
    idx = idx.contiguous()
    row_max = row_max.to(acc).contiguous()
    log_norm = log_norm.to(acc).contiguous()
    mse = 2.0 / (M * D)
    params = _params(acc, device, temperature, mse, entropy_weight / M, commit_weight * mse)
    params[1:] *= grad.detach().to(device=device, dtype=acc).reshape(())
    if entropy:
        p_bar = mean_p.to(torch.float64)
        h_prime = torch.where(p_bar >= EPS.value, -(p_bar.log() + 1.0), -LOG_EPS.value)
        code_term = (entropy_gamma * h_prime).to(acc).contiguous()
    else:
        code_term = torch.zeros(K, dtype=acc, device=device)
    gz = torch.empty_like(z)
    total = torch.zeros(M, dtype=acc, device=device)
    block_m, block_k, block_d = _tile_blocks(M, K, D, acc)
    token_blocks = triton.cdiv(M, block_m)
    code_tiles = triton.cdiv(K, block_k)
    groups = _token_groups(token_blocks, code_tiles)
    gc_part = torch.empty(groups, K, D, dtype=acc, device=device)
    meta = dict(ENTROPY=entropy, ACC=tl_dtype(acc), BLOCK_M=block_m, BLOCK_K=block_k,
                BLOCK_D=block_d, DOT=_use_dot(acc), enable_fp_fusion=FP_FUSION)
    with device_guard(device):
        _backward_rows_kernel[(token_blocks,)](
            z, codebook, idx, row_max, log_norm, code_term, params, gz, total, M, K, D, **meta
        )
        _backward_codes_kernel[(code_tiles, groups)](
            z, codebook, idx, row_max, log_norm, code_term, params, total, gc_part, M, K, D,
            **meta,
        )
        gc = gc_part.sum(0).to(codebook.dtype)
    return gz, gc
