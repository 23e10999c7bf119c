// Shared machinery of the CPU quantizer (nearest_code.cpp, vq_loss.cpp): SIMD vectors, a codebook
// packed for them, and the fused squared-distance loop.
//
// Vectors are GCC/Clang vector extensions of 64 bytes (16 floats or 8 doubles; one AVX-512 or four
// NEON registers), or of 32 bytes (one AVX2 register) on x86 without AVX-512: 64-byte vectors split
// over AVX2 registers made the search many times slower there (compares and selects spill). The
// codebook is stored transposed in blocks of one vector of codes:
// packed[block * D + d][lane] = codebook[block * LANES + lane][d]. Missing codes of the last block
// are +inf, so their distance is +inf and they never win.
//
// Distances are computed directly as sum_d (z_d - e_d)^2 (one fma per dimension), which is more
// accurate than the |z|^2 + |e|^2 - 2 z.e expansion; lanes keep running minima and their indices,
// and ties go to the lowest index, like torch.argmin.

#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace vqfast {

#if defined(__x86_64__) && !defined(__AVX512F__)
#define VQFAST_VECTOR_BYTES 32
#else
#define VQFAST_VECTOR_BYTES 64
#endif

template <typename T>
struct Simd;

template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(VQFAST_VECTOR_BYTES)));
  typedef int32_t I __attribute__((vector_size(VQFAST_VECTOR_BYTES)));
  static constexpr int kLanes = VQFAST_VECTOR_BYTES / 4;
};

template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(VQFAST_VECTOR_BYTES)));
  typedef int64_t I __attribute__((vector_size(VQFAST_VECTOR_BYTES)));
  static constexpr int kLanes = VQFAST_VECTOR_BYTES / 8;
};

template <typename T>
using VecT = typename Simd<T>::V;
template <typename T>
using IVecT = typename Simd<T>::I;

template <typename T>
inline VecT<T> splat(T v) {
  return VecT<T>{} + v;
}

template <typename T>
inline IVecT<T> lane_iota() {
  IVecT<T> r{};
  for (int i = 0; i < Simd<T>::kLanes; ++i) r[i] = i;
  return r;
}

// Horizontal minimum by halving shuffles (log2(lanes) steps, constant masks).
template <typename V, typename I>
inline auto hmin(V v) {
  constexpr int L = sizeof(V) / sizeof(v[0]);
  static_assert(L == 16 || L == 8 || L == 4, "16, 8 or 4 lanes");
  auto step = [&v](I perm) {
    const V w = __builtin_shuffle(v, perm);
    v = w < v ? w : v;
  };
  if constexpr (L == 16) {
    step(I{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
    step(I{4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11});
    step(I{2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13});
    step(I{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
  } else if constexpr (L == 8) {
    step(I{4, 5, 6, 7, 0, 1, 2, 3});
    step(I{2, 3, 0, 1, 6, 7, 4, 5});
    step(I{1, 0, 3, 2, 5, 4, 7, 6});
  } else {
    step(I{2, 3, 0, 1});
    step(I{1, 0, 3, 2});
  }
  return v[0];
}

template <typename T>
inline T hsum(const VecT<T>& v) {
  T s = 0;
  for (int i = 0; i < Simd<T>::kLanes; ++i) s += v[i];
  return s;
}

// exp for vectors of float, Cephes' expf scheme (max error ~2 ulp over the range used here);
// inputs below -88.37 give 0 instead of denormals.
inline VecT<float> vexp(VecT<float> x) {
  using V = VecT<float>;
  using I = IVecT<float>;
  const V lo = splat(-88.3762626647949f), hi = splat(88.3762626647949f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  V fx = x * 1.44269504088896341f + 0.5f;
  V fl = __builtin_convertvector(__builtin_convertvector(fx, I), V);
  fl = fl > fx ? fl - 1.0f : fl;  // floor
  x = x - fl * 0.693359375f;
  x = x - fl * -2.12194440e-4f;
  const V x2 = x * x;
  V y = splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * x2 + x + 1.0f;
  const I bits = (__builtin_convertvector(fl, I) + 127) << 23;
  V scale;
  __builtin_memcpy(&scale, &bits, sizeof(V));
  return y * scale;
}

// Doubles only serve gradient checks: exact std::exp per lane.
inline VecT<double> vexp(VecT<double> x) {
  for (int i = 0; i < Simd<double>::kLanes; ++i) x[i] = std::exp(x[i]);
  return x;
}

template <typename T>
struct PackedCodebook {
  using V = VecT<T>;
  static constexpr int L = Simd<T>::kLanes;
  int64_t K = 0, D = 0, blocks = 0;
  std::vector<V> data;  // blocks * D vectors

  PackedCodebook(const T* codebook, int64_t K_, int64_t D_) : K(K_), D(D_) {
    blocks = (K + L - 1) / L;
    data.assign(blocks * D, splat<T>(std::numeric_limits<T>::infinity()));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t d = 0; d < D; ++d) data[(k / L) * D + d][k % L] = codebook[k * D + d];
  }
};

// Squared distances of G rows of z to every code: out[g * blocks + b] holds codes b*L .. b*L+L-1.
// DC is D when known at compile time (loops fully unrolled), else 0.
template <typename T, int G, int DC>
inline void distance_blocks(const T* const* rows, const PackedCodebook<T>& cb, VecT<T>* out) {
  using V = VecT<T>;
  const int64_t D = DC > 0 ? DC : cb.D;
  const V* P = cb.data.data();
  for (int64_t b = 0; b < cb.blocks; ++b) {
    V acc[G];
    for (int g = 0; g < G; ++g) acc[g] = V{};
    for (int64_t d = 0; d < D; ++d) {
      const V e = P[b * D + d];
      for (int g = 0; g < G; ++g) {
        const V diff = rows[g][d] - e;
        acc[g] = diff * diff + acc[g];
      }
    }
    for (int g = 0; g < G; ++g) out[g * cb.blocks + b] = acc[g];
  }
}

// The index of the smallest distance of one row (lowest index among ties) and that distance.
template <typename T>
inline void argmin_blocks(const VecT<T>* dist, int64_t blocks, int64_t* index, T* value) {
  using V = VecT<T>;
  using I = IVecT<T>;
  constexpr int L = Simd<T>::kLanes;
  V best = splat<T>(std::numeric_limits<T>::infinity());
  I best_i = I{};
  I cur = lane_iota<T>();
  for (int64_t b = 0; b < blocks; ++b) {
    const auto better = dist[b] < best;  // strict: earlier blocks win ties within a lane
    best = better ? dist[b] : best;
    best_i = better ? cur : best_i;
    cur += L;
  }
  T v = best[0];
  int64_t i = best_i[0];
  for (int l = 1; l < L; ++l) {
    if (best[l] < v || (best[l] == v && best_i[l] < i)) {
      v = best[l];
      i = best_i[l];
    }
  }
  if (!(v < std::numeric_limits<T>::infinity())) i = 0;  // every distance inf: torch gives 0
  *index = i;
  *value = v;
}

// Runs the statement with `constexpr int DC` = D for the common dimensions, else 0 (runtime D).
#define VQFAST_DISPATCH_DIM(D, ...)                   \
  switch (D) {                                        \
    case 4: { constexpr int DC = 4; __VA_ARGS__; } break;   \
    case 8: { constexpr int DC = 8; __VA_ARGS__; } break;   \
    case 16: { constexpr int DC = 16; __VA_ARGS__; } break; \
    case 32: { constexpr int DC = 32; __VA_ARGS__; } break; \
    case 64: { constexpr int DC = 64; __VA_ARGS__; } break; \
    default: { constexpr int DC = 0; __VA_ARGS__; } break;  \
  }

// Rows are processed in fixed chunks (independent of the thread count), so reductions over
// chunks are deterministic.
inline int64_t chunk_rows(int64_t M) {
  return std::max<int64_t>(1024, (M + 255) / 256);
}

// The Python custom ops cast z and the codebook to their compute dtype (vqfast/ops/_common.py,
// accumulate_dtype) before calling: both arrive as float32, or both as float64.
inline void check_quantizer_inputs(const at::Tensor& z, const at::Tensor& codebook,
                                   const char* op) {
  TORCH_CHECK(z.dim() == 2, op, ": z must be (M, D), got ", z.sizes());
  TORCH_CHECK(codebook.dim() == 2 && codebook.size(0) >= 1, op,
              ": codebook must be (K, D) with K >= 1, got ", codebook.sizes());
  TORCH_CHECK(z.size(1) == codebook.size(1), op, ": z has D = ", z.size(1),
              " but the codebook ", codebook.size(1));
  TORCH_CHECK(z.device().is_cpu() && codebook.device().is_cpu(), op, ": CPU tensors only");
  TORCH_CHECK(z.scalar_type() == codebook.scalar_type() &&
                  (z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble),
              op, ": z and the codebook must both be float32 or both float64, got ",
              z.scalar_type(), " and ", codebook.scalar_type());
}

}  // namespace vqfast
