// Bias addition after a cuBLAS product (the skinny kernel adds its bias itself).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {
namespace {

__global__ void add_bias_kernel(float* y, const float* bias, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] += bias[i % cols];
  }
}

}  // namespace

cudaError_t add_bias(float* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(n, threads), 4096);
  add_bias_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(y, bias, rows, cols);
  return launch_result();
}

}  // namespace sy::cuda
