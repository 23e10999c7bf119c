// The VQ loss (commitment + codebook entropy) on the CPU, forward and backward, streaming over
// codes: nothing of size tokens x codes is stored. Reference: vqfast/ops/vq_loss.py (vq_loss_ref).
//
// With a_k = -d_k / tau, m = max_k a_k, Z = sum_k exp(a_k - m), p_k = exp(a_k - m) / Z and
// h(p) = -p log(max(p, eps)):
//   loss = (1 + commit) mean_n |q_n - z_n|^2 / D
//        + lambda (mean_n sum_k h(p_nk) - gamma sum_k h(pbar_k)),   pbar = mean_n p_n.
// log p_k is (a_k - m) - log Z, so the forward pass needs one exp per token and code.
// Backward, with g_nk = (lambda / M)(h'(p_nk) - gamma h'(pbar_k)) and h'(p) = -(log p + 1) for
// p >= eps (else -log eps):
//   dL/da_nk = p_nk (g_nk - sum_j p_nj g_nj),   dL/dd_nk = -dL/da_nk / tau,
//   dL/dz_n  = sum_k dL/dd_nk 2 (z_n - e_k),    dL/de_k = sum_n dL/dd_nk 2 (e_k - z_n),
// plus the commitment terms 2 (z_n - q_n) / (M D) for z and commit * 2 (q_n - z_n) / (M D) for
// the chosen code. The forward pass saves per token the index, m and log Z, and pbar.

#pragma GCC optimize("fp-contract=fast")

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "codebook.h"

namespace vqfast {
namespace {

constexpr double kEps = 1e-5;

struct Weights {
  double commit, entropy, gamma, tau;
};

// Vector partial sums are flushed into doubles every kFlushRows rows (float sums stay short).
constexpr int64_t kFlushRows = 256;

template <typename T, int DC>
void forward_chunk(const T* z, const T* codebook, int64_t begin, int64_t end,
                   const PackedCodebook<T>& cb, const Weights& w, int64_t* idx, T* row_max,
                   T* log_norm, double* sq_err, double* entropy_sum, double* p_sum) {
  using V = VecT<T>;
  constexpr int L = Simd<T>::kLanes;
  const int64_t D = DC > 0 ? DC : cb.D;
  const int64_t blocks = cb.blocks;
  const T tau = static_cast<T>(w.tau);
  const T log_eps = static_cast<T>(std::log(kEps));
  std::vector<V> dist(blocks), p_acc(w.entropy > 0 ? blocks : 0, V{});
  V h_acc{};
  double err = 0;
  auto flush = [&] {
    for (int64_t k = 0; k < static_cast<int64_t>(p_acc.size()) * L && k < cb.K; ++k)
      p_sum[k] += p_acc[k / L][k % L];
    std::fill(p_acc.begin(), p_acc.end(), V{});
    *entropy_sum -= hsum<T>(h_acc);
    h_acc = V{};
  };
  for (int64_t n = begin; n < end; ++n) {
    const T* zr = z + n * D;
    const T* rows[1] = {zr};
    distance_blocks<T, 1, DC>(rows, cb, dist.data());
    T dmin;
    argmin_blocks<T>(dist.data(), blocks, idx + n, &dmin);
    const T* q = codebook + idx[n] * D;
    for (int64_t d = 0; d < D; ++d) err += static_cast<double>(q[d] - zr[d]) * (q[d] - zr[d]);
    if (w.entropy <= 0) continue;
    // a_k - m with a_k = -d_k / tau and m = max_k a_k = -dmin / tau. Padded codes: -inf.
    const T m = -dmin / tau;
    V z_acc{};
    for (int64_t b = 0; b < blocks; ++b) {
      dist[b] = -dist[b] / tau - m;
      z_acc += vexp(dist[b]);
    }
    const T log_z = std::log(hsum<T>(z_acc));
    row_max[n] = m;
    log_norm[n] = log_z;
    for (int64_t b = 0; b < blocks; ++b) {
      const V logp = dist[b] - log_z;
      const V p = vexp(logp);
      h_acc += p * (p >= static_cast<T>(kEps) ? logp : V{} + log_eps);
      p_acc[b] += p;
    }
    if ((n - begin + 1) % kFlushRows == 0) flush();
  }
  if (w.entropy > 0) flush();
  *sq_err += err;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> vq_loss_forward_cpu(
    const at::Tensor& z_in, const at::Tensor& codebook_in, double commit, double entropy,
    double gamma, double tau) {
  check_quantizer_inputs(z_in, codebook_in, "vq_loss");
  TORCH_CHECK(z_in.size(0) >= 1, "vq_loss: z holds no vectors");
  TORCH_CHECK(tau > 0, "vq_loss: temperature must be > 0");
  const auto acc = z_in.scalar_type();
  const auto z = z_in.contiguous();
  const auto codebook = codebook_in.contiguous();
  const int64_t M = z.size(0), K = codebook.size(0), D = z.size(1);
  auto opts = z.options();
  auto idx = at::empty({M}, opts.dtype(at::kLong));
  auto row_max = at::zeros({M}, opts);
  auto log_norm = at::zeros({M}, opts);
  auto mean_p = at::zeros({K}, opts);
  auto loss = at::empty({}, opts);
  const Weights w{commit, entropy, gamma, tau};
  const int64_t chunk = chunk_rows(M);
  const int64_t chunks = (M + chunk - 1) / chunk;
  std::vector<double> sq(chunks, 0.0), ent(chunks, 0.0), psum(entropy > 0 ? chunks * K : 0, 0.0);
  AT_DISPATCH_FLOATING_TYPES(acc, "vq_loss_forward", [&] {
    const PackedCodebook<scalar_t> cb(codebook.data_ptr<scalar_t>(), K, D);
    const scalar_t* zp = z.data_ptr<scalar_t>();
    const scalar_t* cp = codebook.data_ptr<scalar_t>();
    VQFAST_DISPATCH_DIM(D, at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        forward_chunk<scalar_t, DC>(zp, cp, c * chunk, std::min(M, (c + 1) * chunk), cb, w,
                                    idx.data_ptr<int64_t>(), row_max.data_ptr<scalar_t>(),
                                    log_norm.data_ptr<scalar_t>(), &sq[c], &ent[c],
                                    entropy > 0 ? &psum[c * K] : nullptr);
      }
    }));
    double sq_total = 0, ent_total = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      sq_total += sq[c];
      ent_total += ent[c];
    }
    double value = (1.0 + commit) * sq_total / static_cast<double>(M * D);
    if (entropy > 0) {
      scalar_t* mp = mean_p.data_ptr<scalar_t>();
      double h_mean = 0;
      for (int64_t k = 0; k < K; ++k) {
        double s = 0;
        for (int64_t c = 0; c < chunks; ++c) s += psum[c * K + k];
        mp[k] = static_cast<scalar_t>(s / static_cast<double>(M));
        h_mean += -(s / M) * std::log(std::max(s / M, kEps));
      }
      value += entropy * (ent_total / static_cast<double>(M) - gamma * h_mean);
    }
    loss.fill_(value);
  });
  return {loss, idx, row_max, log_norm, mean_p};
}

template <typename T, int DC>
void backward_chunk(const T* z, const T* codebook, int64_t begin, int64_t end,
                    const PackedCodebook<T>& cb, const Weights& w, double grad, int64_t M,
                    const int64_t* idx, const T* row_max, const T* log_norm,
                    const std::vector<VecT<T>>& code_term, const std::vector<VecT<T>>& finite_cb,
                    T* gz, double* gc_commit, double* gc_weight, double* gc_outer) {
  using V = VecT<T>;
  constexpr int L = Simd<T>::kLanes;
  const int64_t D = DC > 0 ? DC : cb.D;
  const int64_t blocks = cb.blocks;
  const double mse_scale = 2.0 * grad / static_cast<double>(M * D);
  const T g_scale = static_cast<T>(grad * w.entropy / static_cast<double>(M));
  const T neg_log_eps = static_cast<T>(-std::log(kEps));
  const T tau = static_cast<T>(w.tau);
  const bool entropy = w.entropy > 0;
  std::vector<V> dist(entropy ? blocks : 0), g(entropy ? blocks : 0), dot_e(D);
  // Per code: sum_n dL/dd_nk and sum_n dL/dd_nk z_n (packed like the codebook).
  std::vector<V> weight_acc(entropy ? blocks : 0, V{}), outer_acc(entropy ? blocks * D : 0, V{});
  for (int64_t n = begin; n < end; ++n) {
    const T* zr = z + n * D;
    T* gzr = gz + n * D;
    const T* q = codebook + idx[n] * D;
    for (int64_t d = 0; d < D; ++d) {
      const double diff = static_cast<double>(zr[d]) - static_cast<double>(q[d]);
      gzr[d] = static_cast<T>(mse_scale * diff);
      gc_commit[idx[n] * D + d] -= w.commit * mse_scale * diff;
    }
    if (!entropy) continue;
    const T* rows[1] = {zr};
    distance_blocks<T, 1, DC>(rows, cb, dist.data());
    // (a - m) - log Z, in this order: a and m are large when tau is small, their difference is not
    const T m = row_max[n], log_z = log_norm[n];
    V dot{};
    for (int64_t b = 0; b < blocks; ++b) {
      const V logp = (-dist[b] / tau - m) - log_z;
      const V p = vexp(logp);
      // h'(p) = -(log p + 1) where p >= eps, else -log(eps)
      const V hprime = p >= static_cast<T>(kEps) ? -(logp + T(1)) : V{} + neg_log_eps;
      g[b] = g_scale * (hprime - code_term[b]);
      dist[b] = p;
      dot += p * g[b];
    }
    const T total = hsum<T>(dot);
    V dd_sum{};
    std::fill(dot_e.begin(), dot_e.end(), V{});
    for (int64_t b = 0; b < blocks; ++b) {
      const V dd = -(dist[b] * (g[b] - total)) / tau;  // dL/dd_nk; 0 for padded codes
      dd_sum += dd;
      weight_acc[b] += dd;
      for (int64_t d = 0; d < D; ++d) {
        dot_e[d] += dd * finite_cb[b * D + d];
        outer_acc[b * D + d] += dd * zr[d];
      }
    }
    const T s = hsum<T>(dd_sum);
    for (int64_t d = 0; d < D; ++d) gzr[d] += T(2) * (zr[d] * s - hsum<T>(dot_e[d]));
  }
  if (entropy) {
    for (int64_t k = 0; k < cb.K; ++k) {
      gc_weight[k] += weight_acc[k / L][k % L];
      for (int64_t d = 0; d < D; ++d) gc_outer[k * D + d] += outer_acc[(k / L) * D + d][k % L];
    }
  }
}

std::tuple<at::Tensor, at::Tensor> vq_loss_backward_cpu(
    const at::Tensor& grad_loss, const at::Tensor& z_in, const at::Tensor& codebook_in,
    const at::Tensor& indices, const at::Tensor& row_max_in, const at::Tensor& log_norm_in,
    const at::Tensor& mean_p_in, double commit, double entropy, double gamma, double tau) {
  check_quantizer_inputs(z_in, codebook_in, "vq_loss_backward");
  const auto acc = z_in.scalar_type();
  const auto z = z_in.contiguous();
  const auto codebook = codebook_in.contiguous();
  const auto idx = indices.to(at::kLong).contiguous();
  const auto row_max = row_max_in.to(acc).contiguous();
  const auto log_norm = log_norm_in.to(acc).contiguous();
  const auto mean_p = mean_p_in.to(at::kDouble).contiguous();
  const int64_t M = z.size(0), K = codebook.size(0), D = z.size(1);
  const double grad = grad_loss.item<double>();
  auto gz = at::empty_like(z);
  const Weights w{commit, entropy, gamma, tau};
  const int64_t chunk = chunk_rows(M);
  const int64_t chunks = (M + chunk - 1) / chunk;
  // Per-chunk partial sums for the codebook gradient (summed in chunk order: deterministic).
  std::vector<double> gc_commit(chunks * K * D, 0.0), gc_weight(entropy > 0 ? chunks * K : 0, 0.0),
      gc_outer(entropy > 0 ? chunks * K * D : 0, 0.0);
  auto gc = at::zeros({K, D}, at::TensorOptions().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(acc, "vq_loss_backward", [&] {
    const PackedCodebook<scalar_t> cb(codebook.data_ptr<scalar_t>(), K, D);
    // gamma h'(pbar_k) per code, packed like the codebook
    std::vector<VecT<scalar_t>> code_term(cb.blocks, VecT<scalar_t>{});
    const double* mp = mean_p.data_ptr<double>();
    for (int64_t k = 0; k < K; ++k) {
      const double hp = mp[k] >= kEps ? -(std::log(mp[k]) + 1.0) : -std::log(kEps);
      code_term[k / cb.L][k % cb.L] = static_cast<scalar_t>(gamma * hp);
    }
    // The packed codebook with 0 instead of +inf in padded lanes (their dL/dd is 0).
    std::vector<VecT<scalar_t>> finite_cb(cb.data);
    const auto inf = splat<scalar_t>(std::numeric_limits<scalar_t>::infinity());
    for (auto& v : finite_cb) v = v == inf ? VecT<scalar_t>{} : v;
    const scalar_t* zp = z.data_ptr<scalar_t>();
    const scalar_t* cp = codebook.data_ptr<scalar_t>();
    VQFAST_DISPATCH_DIM(D, at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        backward_chunk<scalar_t, DC>(
            zp, cp, c * chunk, std::min(M, (c + 1) * chunk), cb, w, grad, M,
            idx.data_ptr<int64_t>(), row_max.data_ptr<scalar_t>(), log_norm.data_ptr<scalar_t>(),
            code_term, finite_cb, gz.data_ptr<scalar_t>(), &gc_commit[c * K * D],
            entropy > 0 ? &gc_weight[c * K] : nullptr, entropy > 0 ? &gc_outer[c * K * D] : nullptr);
      }
    }));
    double* g = gc.data_ptr<double>();
    for (int64_t c = 0; c < chunks; ++c) {
      for (int64_t i = 0; i < K * D; ++i) g[i] += gc_commit[c * K * D + i];
      if (entropy > 0) {
        for (int64_t k = 0; k < K; ++k)
          for (int64_t d = 0; d < D; ++d)
            // dL/de_k = sum_n dd_nk 2 (e_k - z_n) = 2 (e_k sum_n dd_nk - sum_n dd_nk z_n)
            g[k * D + d] += 2.0 * (gc_weight[c * K + k] * cp[k * D + d] - gc_outer[(c * K + k) * D + d]);
      }
    }
  });
  return {gz, gc.to(acc)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vqfast_C, m) {
  m.def(
      "vq_loss_forward(Tensor z, Tensor codebook, float commit_weight, float entropy_weight, "
      "float entropy_gamma, float temperature) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "vq_loss_backward(Tensor grad, Tensor z, Tensor codebook, Tensor indices, Tensor row_max, "
      "Tensor log_norm, Tensor mean_p, float commit_weight, float entropy_weight, "
      "float entropy_gamma, float temperature) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vqfast_C, CPU, m) {
  m.impl("vq_loss_forward", &vq_loss_forward_cpu);
  m.impl("vq_loss_backward", &vq_loss_backward_cpu);
}

}  // namespace vqfast
