// Per-sample code histograms on the CPU. Reference: vqfast/ops/code_histogram.py
// (code_histogram_ref). Each row is counted by one thread: deterministic.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

namespace vqfast {
namespace {

at::Tensor code_histogram_cpu(const at::Tensor& indices_in, int64_t num_code) {
  TORCH_CHECK(indices_in.dim() == 2, "code_histogram: indices must be (B, N), got ",
              indices_in.sizes());
  TORCH_CHECK(num_code >= 1, "code_histogram: num_code must be >= 1");
  const auto indices = indices_in.to(at::kLong).contiguous();
  const int64_t B = indices.size(0), N = indices.size(1);
  auto hist = at::zeros({B, num_code}, indices.options());
  const int64_t* ip = indices.data_ptr<int64_t>();
  int64_t* hp = hist.data_ptr<int64_t>();
  at::parallel_for(0, B, std::max<int64_t>(1, 65536 / std::max<int64_t>(N, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t b = begin; b < end; ++b)
                       for (int64_t n = 0; n < N; ++n) {
                         const int64_t k = ip[b * N + n];
                         TORCH_CHECK(k >= 0 && k < num_code, "code_histogram: index ", k,
                                     " outside [0, ", num_code, ")");
                         ++hp[b * num_code + k];
                       }
                   });
  return hist;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(vqfast_C, m) {
  m.def("code_histogram(Tensor indices, int num_code) -> Tensor");
}

TORCH_LIBRARY_IMPL(vqfast_C, CPU, m) {
  m.impl("code_histogram", &code_histogram_cpu);
}

}  // namespace vqfast
