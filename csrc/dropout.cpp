// Dropout on the CPU that draws the same mask as torch's F.dropout (training) on the default CPU
// generator. Reference: vqfast/ops/dropout.py (dropout_ref = F.dropout).
//
// torch's CPU dropout is `noise = empty_like(x).bernoulli_(1 - p); noise.div_(1 - p); x * noise`.
// Where torch does not route bernoulli_ through MKL (MKL is used on Intel CPUs only; vqfast/ops/
// dropout.py checks which one runs here), bernoulli_ walks the tensor in memory order, one element
// at a time, each taking two 32-bit words of the generator's mt19937 stream:
//   u = (((hi & (2^21 - 1)) << 32) | lo) * 2^-53,  keep = u < 1 - p.
// Here the stream is produced in blocks (the mt19937 twist of ATen/core/MT19937RNGEngine.h, then
// its tempering, both vectorizable) and keep is the integer test bits53 < ceil((1 - p) 2^53),
// exactly equivalent (2^53 scaling is exact). The generator's state is advanced as bernoulli_
// would advance it, under its mutex.

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <tuple>

namespace vqfast {
namespace {

constexpr int kN = 624;  // at::MERSENNE_STATE_N
constexpr int kM = 397;  // at::MERSENNE_STATE_M
constexpr uint32_t kMatrixA = 0x9908b0dfu;

inline uint32_t twist(uint32_t u, uint32_t v) {
  const uint32_t mixed = (u & 0x80000000u) | (v & 0x7fffffffu);
  return (mixed >> 1) ^ ((v & 1u) ? kMatrixA : 0u);
}

// mt19937's next_state, as at::mt19937_engine::next_state.
void next_state(uint32_t* s) {
  for (int i = 0; i < kN - kM; ++i) s[i] = s[i + kM] ^ twist(s[i], s[i + 1]);
  for (int i = kN - kM; i < kN - 1; ++i) s[i] = s[i + kM - kN] ^ twist(s[i], s[i + 1]);
  s[kN - 1] = s[kM - 1] ^ twist(s[kN - 1], s[0]);
}

inline uint32_t temper(uint32_t y) {
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  return y;
}

// The engine's state as at::mt19937 keeps it: `left` calls until the next twist (the call that
// brings it to 0 twists first), `next` the index of the next word to read.
struct Stream {
  at::mt19937_data_pod pod;

  // The next `count` words of the stream into `out`.
  void fill(uint32_t* out, int64_t count) {
    uint32_t* s = pod.state_.data();
    while (count > 0) {
      if (pod.left_ == 1) {
        next_state(s);
        pod.left_ = kN + 1;
        pod.next_ = 0;
      }
      const int64_t take = std::min<int64_t>(count, pod.left_ - 1);
      const uint32_t* src = s + pod.next_;
      for (int64_t i = 0; i < take; ++i) out[i] = temper(src[i]);
      pod.next_ += static_cast<uint32_t>(take);
      pod.left_ -= static_cast<int>(take);
      out += take;
      count -= take;
    }
  }
};

constexpr int64_t kBlock = 2048;  // elements per block of drawn words (16 KiB of words)

// out[i] = x[i] * noise[i], noise = (keep ? 1 : 0) * scale as torch's `bernoulli_` then `div_`
// leave it (the product with scale is exact either way).
template <typename scalar_t>
inline void apply_keep(const scalar_t* x, const uint8_t* keep, scalar_t scale, scalar_t* out,
                       int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * (static_cast<scalar_t>(keep[i]) * scale);
}

// keep[i] (1 where torch's bernoulli_(keep_prob) draws 1) and out = x * noise for n elements,
// block by block while the block is in cache. Serial: the stream is.
template <typename scalar_t>
void draw_and_apply(Stream& stream, double keep_prob, const scalar_t* x, scalar_t scale,
                    uint8_t* keep, scalar_t* out, int64_t n) {
  // bits53 * 2^-53 < keep_prob  <=>  bits53 < ceil(keep_prob * 2^53) =: threshold, compared as
  // (hi 21 bits, lo 32 bits) pairs so that the loop vectorizes in 32-bit lanes.
  const uint64_t threshold = static_cast<uint64_t>(std::ceil(std::ldexp(keep_prob, 53)));
  const uint32_t t_hi = static_cast<uint32_t>(threshold >> 32);
  const uint32_t t_lo = static_cast<uint32_t>(threshold & 0xffffffffu);
  uint32_t words[2 * kBlock];
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t len = std::min(kBlock, n - start);
    stream.fill(words, 2 * len);
    uint8_t* k = keep + start;
    for (int64_t i = 0; i < len; ++i) {
      const uint32_t hi = words[2 * i] & 0x1fffffu, lo = words[2 * i + 1];
      k[i] = static_cast<uint8_t>((hi < t_hi) | ((hi == t_hi) & (lo < t_lo)));
    }
    apply_keep<scalar_t>(x + start, k, scale, out + start, len);
  }
}

void check_dense(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "dropout: ", name, " must be a CPU tensor");
  TORCH_CHECK(t.is_non_overlapping_and_dense(), "dropout: ", name,
              " must be dense (no gaps or overlaps); call .contiguous()");
}

// (out, keep): out = x * (keep ? 1/(1-p) : 0) with keep drawn as torch's bernoulli_(1 - p)
// over x's memory order; both have x's strides.
std::tuple<at::Tensor, at::Tensor> dropout_forward_cpu(const at::Tensor& x, double p) {
  check_dense(x, "x");
  TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout: p must lie in [0, 1), got ", p);
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "dropout: x must be float32 or float64, got ", x.scalar_type());
  auto out = at::empty_like(x);
  auto keep = at::empty_like(x, x.options().dtype(at::kByte));
  const int64_t n = x.numel();
  const double keep_prob = 1.0 - p;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dropout_forward_cpu", [&] {
    // as noise.div_(1 - p): the scalar in x's dtype, one division
    const scalar_t scale = scalar_t(1) / static_cast<scalar_t>(keep_prob);
    auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(
        std::nullopt, at::detail::getDefaultCPUGenerator());
    std::lock_guard<std::mutex> lock(gen->mutex_);
    at::mt19937 engine = gen->engine();
    Stream stream{engine.data()};
    draw_and_apply<scalar_t>(stream, keep_prob, x.data_ptr<scalar_t>(), scale,
                             keep.data_ptr<uint8_t>(), out.data_ptr<scalar_t>(), n);
    engine.set_data(stream.pod);
    gen->set_engine(engine);
  });
  return {out, keep};
}

// grad * (keep ? 1/(1-p) : 0), the gradient of dropout_forward_cpu's out.
at::Tensor dropout_backward_cpu(const at::Tensor& grad_in, const at::Tensor& keep, double p) {
  check_dense(keep, "keep");
  TORCH_CHECK(keep.scalar_type() == at::kByte, "dropout: keep must be uint8");
  // the gradient in keep's layout, so that element i of both is the same element
  at::Tensor g = grad_in;
  if (!(grad_in.strides() == keep.strides() && grad_in.is_non_overlapping_and_dense())) {
    g = at::empty_like(keep, grad_in.options());
    g.copy_(grad_in);
  }
  auto out = at::empty_like(g);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "dropout_backward_cpu", [&] {
    const scalar_t scale = scalar_t(1) / static_cast<scalar_t>(1.0 - p);
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const uint8_t* kp = keep.data_ptr<uint8_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, g.numel(), 32768, [&](int64_t begin, int64_t end) {
      apply_keep<scalar_t>(gp + begin, kp + begin, scale, op + begin, end - begin);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vqfast_C, m) {
  m.def("dropout_forward(Tensor x, float p) -> (Tensor, Tensor)");
  m.def("dropout_backward(Tensor grad, Tensor keep, float p) -> Tensor");
}

TORCH_LIBRARY_IMPL(vqfast_C, CPU, m) {
  m.impl("dropout_forward", &dropout_forward_cpu);
  m.impl("dropout_backward", &dropout_backward_cpu);
}

}  // namespace vqfast
