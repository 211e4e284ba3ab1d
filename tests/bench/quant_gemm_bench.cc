#include "tests/bench/quant_gemm_bench.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "kernels/cuda/ops.h"
#include "kernels/dtype.h"

namespace sy {
namespace {

struct Shape {
  const char* name;
  int64_t n, k;
};
// Mixtral-8x7B's attention output / q projection, and one expert's gate and down.
constexpr Shape kShapes[] = {
    {"4096x4096", 4096, 4096}, {"14336x4096", 14336, 4096}, {"4096x14336", 4096, 14336}};
constexpr DType kDTypes[] = {DType::kI8, DType::kI4G128, DType::kF8};
// Weight copies the timed calls cycle through, so that repetitions do not find the weights in
// the 50 MB L2 cache.
constexpr int kCopies = 4;
constexpr int kReps = 20;

Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return Status::Internal(std::string(what) + ": " + cudaGetErrorString(err));
}

// Frees its device allocations, events and stream on every exit path.
struct Resources {
  std::vector<void*> buffers;
  std::vector<cudaEvent_t> events;
  cudaStream_t stream = nullptr;
  ~Resources() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    if (stream != nullptr) cudaStreamDestroy(stream);
    for (void* p : buffers) cudaFree(p);
  }
  StatusOr<void*> Alloc(size_t bytes) {
    void* p = nullptr;
    SY_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&p, bytes), "cudaMalloc"));
    buffers.push_back(p);
    return p;
  }
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

StatusOr<nlohmann::json> RunQuantGemmBench(const std::vector<int64_t>& rows, double copy_gbs) {
  const int64_t max_m = *std::max_element(rows.begin(), rows.end());
  nlohmann::json out = nlohmann::json::array();
  std::printf("\nquantized_matmul (median of %d, %d weight copies)\n", kReps, kCopies);
  std::printf("%-8s %-11s %6s %10s %9s %8s %8s\n", "dtype", "n x k", "rows", "us", "GB/s",
              "of copy", "TFLOP/s");
  for (const Shape& s : kShapes) {
    for (DType dtype : kDTypes) {
      Resources r;
      SY_RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking),
                                    "cudaStreamCreate"));
      r.events.resize(2 * kReps);
      for (cudaEvent_t& e : r.events) {
        SY_RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&e), "cudaEventCreate"));
      }
      // Random bytes (every row length here is a multiple of 4): the speed does not depend on
      // the values.
      const size_t weight_bytes = static_cast<size_t>(s.n) * dtype_row_bytes(dtype, s.k);
      std::vector<void*> weights;
      for (int c = 0; c < kCopies; ++c) {
        SY_ASSIGN_OR_RETURN(void* w, r.Alloc(weight_bytes));
        SY_RETURN_IF_ERROR(
            CudaStatus(cuda::fill_random(w, DType::kF32, static_cast<int64_t>(weight_bytes / 4),
                                         10 + c, 1.0f, r.stream),
                       "fill_random"));
        weights.push_back(w);
      }
      SY_ASSIGN_OR_RETURN(void* x, r.Alloc(static_cast<size_t>(max_m * s.k) * sizeof(float)));
      SY_ASSIGN_OR_RETURN(void* y, r.Alloc(static_cast<size_t>(max_m * s.n) * sizeof(float)));
      SY_RETURN_IF_ERROR(CudaStatus(
          cuda::fill_random(x, DType::kF32, max_m * s.k, 7, 1.0f, r.stream), "fill_random"));
      for (int64_t m : rows) {
        auto call = [&](int i) {
          return cuda::quantized_matmul(static_cast<const float*>(x), weights[i % kCopies], dtype,
                                        nullptr, static_cast<float*>(y), m, s.n, s.k, r.stream);
        };
        for (int i = 0; i < kCopies; ++i) SY_RETURN_IF_ERROR(CudaStatus(call(i), "warm-up"));
        for (int i = 0; i < kReps; ++i) {
          cudaEventRecord(r.events[2 * i], r.stream);
          SY_RETURN_IF_ERROR(CudaStatus(call(i), "quantized_matmul"));
          cudaEventRecord(r.events[2 * i + 1], r.stream);
        }
        SY_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(r.stream), "quantized_matmul"));
        std::vector<double> times;
        for (int i = 0; i < kReps; ++i) {
          float ms = 0;
          SY_RETURN_IF_ERROR(CudaStatus(
              cudaEventElapsedTime(&ms, r.events[2 * i], r.events[2 * i + 1]), "events"));
          times.push_back(ms * 1e-3);
        }
        const double t = Median(times);
        const double gbs = static_cast<double>(weight_bytes) / t / 1e9;
        const double tflops = 2.0 * static_cast<double>(m * s.n * s.k) / t / 1e12;
        const double share = copy_gbs > 0 ? gbs / copy_gbs : 0;
        std::printf("%-8s %-11s %6lld %10.1f %9.1f %7.0f%% %8.2f\n",
                    std::string(dtype_name(dtype)).c_str(), s.name, static_cast<long long>(m),
                    t * 1e6, gbs, share * 100, tflops);
        out.push_back({{"dtype", std::string(dtype_name(dtype))},
                       {"n", s.n},
                       {"k", s.k},
                       {"rows", m},
                       {"median_us", t * 1e6},
                       {"weight_gbs", gbs},
                       {"of_copy", share},
                       {"tflops", tflops}});
      }
    }
  }
  return out;
}

}  // namespace sy
