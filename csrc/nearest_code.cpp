// Nearest-code search on the CPU. Reference: vqfast/ops/nearest_code.py (nearest_code_ref).

// Let a*b+c on vectors become one fma (the subsequence op keeps -ffp-contract=off).
#pragma GCC optimize("fp-contract=fast")

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "codebook.h"

namespace vqfast {
namespace {

constexpr int kGroup = 4;  // rows per pass over the codebook: independent fma chains

// Exact search: direct distances of every code, then the lane-parallel argmin.
template <typename T, int DC>
void nearest_rows_direct(const T* z, int64_t begin, int64_t end, const PackedCodebook<T>& cb,
                         int64_t* idx, T* dist) {
  std::vector<VecT<T>> scratch(kGroup * cb.blocks);
  const T* rows[kGroup];
  for (int64_t r = begin; r < end; r += kGroup) {
    const int n = static_cast<int>(std::min<int64_t>(kGroup, end - r));
    for (int g = 0; g < kGroup; ++g) rows[g] = z + (r + std::min(g, n - 1)) * cb.D;
    distance_blocks<T, kGroup, DC>(rows, cb, scratch.data());
    for (int g = 0; g < n; ++g)
      argmin_blocks<T>(scratch.data() + g * cb.blocks, cb.blocks, idx + r + g, dist + r + g);
  }
}

// One float32 row searched in float64: the distance of every code is exact to ~1e-16, so the
// chosen code is the true nearest one (lowest index among exact ties). Used for the rare rows
// whose screening was inconclusive.
inline void nearest_row_exact(const float* zr, const float* codebook, int64_t K, int64_t D,
                              int64_t* idx, float* dist) {
  double best = std::numeric_limits<double>::infinity();
  int64_t best_k = 0;
  for (int64_t k = 0; k < K; ++k) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) {
      const double diff = static_cast<double>(zr[d]) - static_cast<double>(codebook[k * D + d]);
      s += diff * diff;
    }
    if (s < best) {
      best = s;
      best_k = k;
    }
  }
  *idx = best_k;
  *dist = static_cast<float>(best);
}

// Screened search (float32): the expansion |e|^2 - 2 z.e costs one fma per dimension instead of
// a subtraction and an fma, but its rounding error grows with |z| and |e|. Each lane keeps its best
// and second-best value; when the best code beats every other by more than twice the expansion's
// error bound, it is the true nearest code. Otherwise (near-ties, duplicate codes) the row is
// searched again in float64. Either way the chosen code is the true nearest one.
template <int DC>
void nearest_rows_screened(const float* z, int64_t begin, int64_t end, const float* codebook,
                           const PackedCodebook<float>& cb, const std::vector<VecT<float>>& norms,
                           float max_norm, int64_t* idx, float* dist) {
  using V = VecT<float>;
  using I = IVecT<float>;
  constexpr int L = Simd<float>::kLanes;
  const int64_t D = DC > 0 ? DC : cb.D;
  const V* P = cb.data.data();
  const float inf = std::numeric_limits<float>::infinity();
  // Rounding bound of one expansion distance: (D + 2) fp32 roundings of terms of size
  // |e|^2 + 2|z||e|, doubled for safety.
  const float unit = 2.0f * static_cast<float>(D + 2) * std::numeric_limits<float>::epsilon();
  std::vector<float> zm2(kGroup * D);
  for (int64_t r = begin; r < end; r += kGroup) {
    const int n = static_cast<int>(std::min<int64_t>(kGroup, end - r));
    for (int g = 0; g < kGroup; ++g)
      for (int64_t d = 0; d < D; ++d) zm2[g * D + d] = -2.0f * z[(r + std::min(g, n - 1)) * D + d];
    V best[kGroup], second[kGroup];
    I best_i[kGroup];
    for (int g = 0; g < kGroup; ++g) {
      best[g] = splat(inf);
      second[g] = splat(inf);
      best_i[g] = I{};
    }
    I cur = lane_iota<float>();
    for (int64_t b = 0; b < cb.blocks; ++b) {
      V acc[kGroup];
      for (int g = 0; g < kGroup; ++g) acc[g] = norms[b];
      for (int64_t d = 0; d < D; ++d) {
        const V e = P[b * D + d];
        for (int g = 0; g < kGroup; ++g) acc[g] = zm2[g * D + d] * e + acc[g];
      }
      for (int g = 0; g < kGroup; ++g) {
        const auto better = acc[g] < best[g];
        const V hi = better ? best[g] : acc[g];
        second[g] = hi < second[g] ? hi : second[g];
        best[g] = better ? acc[g] : best[g];
        best_i[g] = better ? cur : best_i[g];
      }
      cur += L;
    }
    for (int g = 0; g < n; ++g) {
      const int64_t row = r + g;
      const float* zr = z + row * D;
      // Winner: the smallest value, lowest index among equal values. Runner-up: the winner
      // lane's second best and every other lane's best.
      const float m = hmin<V, I>(best[g]);
      const I big = I{} + std::numeric_limits<int32_t>::max();
      const int64_t k = hmin<I, I>(best[g] == m ? best_i[g] : big);
      const float runner_up = hmin<V, I>(best_i[g] == static_cast<int32_t>(k) ? second[g] : best[g]);
      float z2 = 0;
      for (int64_t d = 0; d < D; ++d) z2 = zr[d] * zr[d] + z2;
      const float tol = unit * (max_norm * max_norm + 2.0f * std::sqrt(z2) * max_norm);
      if (runner_up - m > 2.0f * tol) {
        const float* e = codebook + k * D;
        float s = 0;
        for (int64_t d = 0; d < D; ++d) {
          const float diff = zr[d] - e[d];
          s = diff * diff + s;
        }
        idx[row] = k;
        dist[row] = s;
      } else {
        nearest_row_exact(zr, codebook, cb.K, D, idx + row, dist + row);
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor> nearest_code_cpu(const at::Tensor& z_in,
                                                    const at::Tensor& codebook_in) {
  check_quantizer_inputs(z_in, codebook_in, "nearest_code");
  const auto z = z_in.contiguous();
  const auto codebook = codebook_in.contiguous();
  const int64_t M = z.size(0), K = codebook.size(0), D = z.size(1);
  auto idx = at::empty({M}, z.options().dtype(at::kLong));
  auto dist = at::empty({M}, z.options());
  if (M == 0) return {idx, dist};
  if (z.scalar_type() == at::kFloat) {
    const PackedCodebook<float> cb(codebook.data_ptr<float>(), K, D);
    std::vector<VecT<float>> norms(cb.blocks, splat(std::numeric_limits<float>::infinity()));
    const float* cp = codebook.data_ptr<float>();
    float max_norm2 = 0;
    for (int64_t k = 0; k < K; ++k) {
      float s = 0;
      for (int64_t d = 0; d < D; ++d) s = cp[k * D + d] * cp[k * D + d] + s;
      norms[k / cb.L][k % cb.L] = s;
      max_norm2 = std::max(max_norm2, s);
    }
    const float max_norm = std::sqrt(max_norm2);
    const float* zp = z.data_ptr<float>();
    int64_t* ip = idx.data_ptr<int64_t>();
    float* dp = dist.data_ptr<float>();
    VQFAST_DISPATCH_DIM(D, at::parallel_for(0, M, 256, [&](int64_t begin, int64_t end) {
      nearest_rows_screened<DC>(zp, begin, end, cp, cb, norms, max_norm, ip, dp);
    }));
  } else {
    const PackedCodebook<double> cb(codebook.data_ptr<double>(), K, D);
    const double* zp = z.data_ptr<double>();
    int64_t* ip = idx.data_ptr<int64_t>();
    double* dp = dist.data_ptr<double>();
    VQFAST_DISPATCH_DIM(D, at::parallel_for(0, M, 256, [&](int64_t begin, int64_t end) {
      nearest_rows_direct<double, DC>(zp, begin, end, cb, ip, dp);
    }));
  }
  return {idx, dist};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vqfast_C, m) {
  m.def("nearest_code(Tensor z, Tensor codebook) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vqfast_C, CPU, m) {
  m.impl("nearest_code", &nearest_code_cpu);
}

}  // namespace vqfast
