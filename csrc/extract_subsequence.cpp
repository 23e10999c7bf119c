// Subsequence targets of VQShape: for token (b, n), the series x[b] sampled by linear interpolation
// at `length` points evenly spaced from t*(T-1) to min(t+l, 1)*(T-1), then a moving average of odd
// width `smooth` whose ends are padded with copies of the end values.
//
// The forward pass reproduces, operation for operation, the authors' path
//   grid = 2 * pos / (T-1) - 1;  grid_sample(bilinear, align_corners=True, padding="border")
// so that float32 results are bit-identical to it for smooth == 1 (the moving average accumulates
// like conv1d's direct kernel: equal, or within an ulp for shapes where conv1d sums differently).
// The backward pass follows grid_sample's conventions:
//   * at an integer position the slope used for t and l is the right-hand one, x[i+1] - x[i];
//   * a position at or beyond the ends (<= 0 or >= T-1 after the round trip) passes no gradient
//     to t and l (border padding is flat there);
//   * when t + l > 1 the end point is clamped to T-1, so the end passes no gradient to t or l.
// Reference: vqfast/ops/extract_subsequence.py (extract_subsequence_ref).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace vqfast {
namespace {

void check_args(const at::Tensor& x, const at::Tensor& t, const at::Tensor& l, int64_t length,
                int64_t smooth) {
  TORCH_CHECK(x.dim() == 2, "extract_subsequence: x must be (B, T), got ", x.sizes());
  TORCH_CHECK(t.dim() == 2 && t.sizes() == l.sizes(),
              "extract_subsequence: t and l must both be (B, N), got ", t.sizes(), " and ",
              l.sizes());
  TORCH_CHECK(t.size(0) == x.size(0), "extract_subsequence: t has ", t.size(0),
              " rows but x has ", x.size(0));
  TORCH_CHECK(x.size(1) >= 2, "extract_subsequence: series need at least 2 points, got ",
              x.size(1));
  TORCH_CHECK(length >= 1, "extract_subsequence: length must be >= 1, got ", length);
  TORCH_CHECK(smooth >= 1 && smooth % 2 == 1,
              "extract_subsequence: smooth must be an odd width >= 1, got ", smooth);
  TORCH_CHECK(x.scalar_type() == t.scalar_type() && x.scalar_type() == l.scalar_type(),
              "extract_subsequence: x, t and l must share a dtype");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "extract_subsequence (C++): float32 or float64 only, got ", x.scalar_type());
}

// Relative sample positions, exactly as torch.linspace(0, 1, length) (float32) computes them.
at::Tensor relative_positions(int64_t length, at::ScalarType dtype) {
  return at::linspace(0, 1, length, at::TensorOptions().dtype(at::kFloat)).to(dtype);
}

template <typename scalar_t>
struct TokenSampler {
  scalar_t t1, half_t1, start, span;
  bool end_clamped;

  TokenSampler(int64_t T, scalar_t t, scalar_t l) {
    t1 = static_cast<scalar_t>(T - 1);
    half_t1 = static_cast<scalar_t>(T - 1) / 2;
    start = t * t1;
    scalar_t tl = t + l;
    end_clamped = tl > scalar_t(1);
    if (end_clamped) tl = scalar_t(1);
    const scalar_t end = tl * t1;
    span = end - start;
  }

  // The unnormalized position grid_sample sees (before clipping to [0, T-1]).
  scalar_t position(scalar_t r) const {
    const scalar_t pos = start + span * r;
    const scalar_t grid = (scalar_t(2) * pos) / t1 - scalar_t(1);
    return (grid + scalar_t(1)) * half_t1;
  }
};

template <typename scalar_t>
void smooth_forward(const scalar_t* in, scalar_t* out, int64_t S, int64_t width, scalar_t* padded) {
  const int64_t pad = width / 2;
  for (int64_t q = 0; q < S + 2 * pad; ++q) {
    padded[q] = in[std::min(std::max(q - pad, int64_t(0)), S - 1)];
  }
  // conv1d's direct CPU kernel accumulates the taps in order with fma; so do we. Taps in the
  // outer loop keep the inner loop vectorizable.
  const scalar_t w = scalar_t(1) / static_cast<scalar_t>(width);
  for (int64_t j = 0; j < S; ++j) out[j] = scalar_t(0);
  for (int64_t k = 0; k < width; ++k) {
    const scalar_t* src = padded + k;
    for (int64_t j = 0; j < S; ++j) out[j] = std::fma(src[j], w, out[j]);
  }
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& x, const at::Tensor& t, const at::Tensor& l,
                    const at::Tensor& rel, at::Tensor& out, int64_t smooth) {
  const int64_t B = t.size(0), N = t.size(1), T = x.size(1), S = out.size(2);
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* tp = t.data_ptr<scalar_t>();
  const scalar_t* lp = l.data_ptr<scalar_t>();
  const scalar_t* rp = rel.data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(S, 1));
  at::parallel_for(0, B * N, grain, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> pos(S), interp(S), padded(S + smooth);
    for (int64_t bn = begin; bn < end; ++bn) {
      const scalar_t* row = xp + (bn / N) * T;
      const TokenSampler<scalar_t> s(T, tp[bn], lp[bn]);
      scalar_t* dst = smooth > 1 ? interp.data() : op + bn * S;
      // Positions first (a loop the compiler vectorizes), then the gathers.
      for (int64_t j = 0; j < S; ++j) pos[j] = std::min(s.t1, std::max(s.position(rp[j]), scalar_t(0)));
      for (int64_t j = 0; j < S; ++j) {
        const scalar_t x0 = std::floor(pos[j]);
        const scalar_t w = pos[j] - x0;
        const int64_t i0 = static_cast<int64_t>(x0);
        const scalar_t v1 = i0 + 1 < T ? row[i0 + 1] : scalar_t(0);
        // grid_sample's CPU kernel, as compiled in torch's builds, contracts its weighted sum to
        // fma(x1, w, x0 * (1 - w)); doing the same keeps float32 results bit-identical.
        dst[j] = std::fma(v1, w, row[i0] * (scalar_t(1) - w));
      }
      if (smooth > 1) smooth_forward(interp.data(), op + bn * S, S, smooth, padded.data());
    }
  });
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& t,
                     const at::Tensor& l, const at::Tensor& rel, at::Tensor& gx, at::Tensor& gt,
                     at::Tensor& gl, int64_t smooth) {
  const int64_t B = t.size(0), N = t.size(1), T = x.size(1), S = grad.size(2);
  const int64_t pad = smooth / 2;
  const scalar_t* gp = grad.data_ptr<scalar_t>();
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* tp = t.data_ptr<scalar_t>();
  const scalar_t* lp = l.data_ptr<scalar_t>();
  const scalar_t* rp = rel.data_ptr<scalar_t>();
  scalar_t* gxp = gx.data_ptr<scalar_t>();
  scalar_t* gtp = gt.data_ptr<scalar_t>();
  scalar_t* glp = gl.data_ptr<scalar_t>();
  // One row of x per task: every token of a row scatters into the same gx row.
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> g_interp(S), g_padded(S + 2 * pad);
    const scalar_t w_avg = scalar_t(1) / static_cast<scalar_t>(smooth);
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* row = xp + b * T;
      scalar_t* grow = gxp + b * T;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t bn = b * N + n;
        const scalar_t* g = gp + bn * S;
        if (smooth > 1) {
          std::fill(g_padded.begin(), g_padded.end(), scalar_t(0));
          for (int64_t k = 0; k < smooth; ++k)  // taps outside: the inner loop vectorizes
            for (int64_t j = 0; j < S; ++j) g_padded[j + k] += g[j] * w_avg;
          for (int64_t j = 0; j < S; ++j) g_interp[j] = g_padded[j + pad];
          for (int64_t q = 0; q < pad; ++q) {
            g_interp[0] += g_padded[q];
            g_interp[S - 1] += g_padded[S + pad + q];
          }
          g = g_interp.data();
        }
        const TokenSampler<scalar_t> s(T, tp[bn], lp[bn]);
        double d_start = 0, d_end = 0;
        for (int64_t j = 0; j < S; ++j) {
          const scalar_t raw = s.position(rp[j]);
          const scalar_t p = std::min(s.t1, std::max(raw, scalar_t(0)));
          const scalar_t x0 = std::floor(p);
          const scalar_t w = p - x0;
          const int64_t i0 = static_cast<int64_t>(x0);
          const bool has_right = i0 + 1 < T;
          grow[i0] += g[j] * (scalar_t(1) - w);
          if (has_right) grow[i0 + 1] += g[j] * w;
          if (raw > scalar_t(0) && raw < s.t1) {
            const double d_pos =
                static_cast<double>(g[j]) * (static_cast<double>(has_right ? row[i0 + 1] : 0) -
                                             static_cast<double>(row[i0]));
            const double r = static_cast<double>(rp[j]);
            d_start += d_pos * (1.0 - r);
            d_end += d_pos * r;
          }
        }
        const double t1 = static_cast<double>(s.t1);
        const double d_end_t = s.end_clamped ? 0.0 : d_end * t1;
        gtp[bn] = static_cast<scalar_t>(d_start * t1 + d_end_t);
        glp[bn] = static_cast<scalar_t>(d_end_t);
      }
    }
  });
}

at::Tensor extract_subsequence_cpu(const at::Tensor& x_in, const at::Tensor& t_in,
                                   const at::Tensor& l_in, int64_t length, int64_t smooth) {
  check_args(x_in, t_in, l_in, length, smooth);
  const auto x = x_in.contiguous(), t = t_in.contiguous(), l = l_in.contiguous();
  auto out = at::empty({t.size(0), t.size(1), length}, x.options());
  if (out.numel() == 0) return out;
  const auto rel = relative_positions(length, x.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "extract_subsequence", [&] {
    forward_kernel<scalar_t>(x, t, l, rel, out, smooth);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> extract_subsequence_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& t_in,
    const at::Tensor& l_in, int64_t length, int64_t smooth) {
  check_args(x_in, t_in, l_in, length, smooth);
  TORCH_CHECK(grad_in.dim() == 3 && grad_in.size(0) == t_in.size(0) &&
                  grad_in.size(1) == t_in.size(1) && grad_in.size(2) == length,
              "extract_subsequence_backward: grad must be (B, N, length)");
  const auto x = x_in.contiguous(), t = t_in.contiguous(), l = l_in.contiguous();
  const auto grad = grad_in.to(x.scalar_type()).contiguous();
  auto gx = at::zeros_like(x);
  auto gt = at::zeros_like(t);
  auto gl = at::zeros_like(l);
  if (grad.numel() == 0) return {gx, gt, gl};
  const auto rel = relative_positions(length, x.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "extract_subsequence_backward", [&] {
    backward_kernel<scalar_t>(grad, x, t, l, rel, gx, gt, gl, smooth);
  });
  return {gx, gt, gl};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vqfast_C, m) {
  m.def("extract_subsequence(Tensor x, Tensor t, Tensor l, int length, int smooth) -> Tensor");
  m.def(
      "extract_subsequence_backward(Tensor grad, Tensor x, Tensor t, Tensor l, int length, "
      "int smooth) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vqfast_C, CPU, m) {
  m.impl("extract_subsequence", &extract_subsequence_cpu);
  m.impl("extract_subsequence_backward", &extract_subsequence_backward_cpu);
}

}  // namespace vqfast
