// Helpers for the GPU tests: skip with a clear message when no CUDA device is present, device
// arrays that upload, download and poison themselves, and a CHECK for CUDA calls. The kernel
// tests compare sy::cuda against sy::cpu::ref with kernels/cpu/testing.h's compare_close.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/testing.h"

namespace sy::gpu_testing {

// "" when a CUDA device can run kernels, else why not.
inline std::string NoGpuReason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return std::string("no CUDA device: ") + cudaGetErrorString(err);
  if (count == 0) return "no CUDA device";
  return "";
}

// Skips the current test (with the reason) when no GPU is present.
#define SY_REQUIRE_GPU()                                                        \
  do {                                                                          \
    const std::string sy_no_gpu = ::sy::gpu_testing::NoGpuReason();             \
    if (!sy_no_gpu.empty()) GTEST_SKIP() << sy_no_gpu << " (GPU test skipped)"; \
  } while (0)

#define SY_CUDA_OK(expr)                                                           \
  do {                                                                             \
    const cudaError_t sy_err = (expr);                                             \
    ASSERT_EQ(sy_err, cudaSuccess) << #expr << ": " << cudaGetErrorString(sy_err); \
  } while (0)

// Synchronizes and fails the test on any pending launch or execution error.
inline ::testing::AssertionResult DeviceOk() {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  if (err == cudaSuccess) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "CUDA error: " << cudaGetErrorString(err);
}

// A device array of n elements of T (freed on destruction).
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    if (n_ > 0 && cudaMalloc(&data_, n_ * sizeof(T)) != cudaSuccess) data_ = nullptr;
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { Upload(host); }
  ~DeviceArray() { cudaFree(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return static_cast<T*>(data_); }
  size_t size() const { return n_; }
  void Upload(const std::vector<T>& host) {
    cudaMemcpy(data_, host.data(), std::min(n_, host.size()) * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    cudaMemcpy(host.data(), data_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }
  // All bytes 0xff: NaN as f32, bf16 and f16, -1 as integers. Unwritten outputs then fail.
  void Poison() { cudaMemset(data_, 0xff, n_ * sizeof(T)); }

 private:
  void* data_ = nullptr;
  size_t n_ = 0;
};

// Tolerances for results computed from weights of `dtype` (f32 accumulation on both sides;
// the order of summation differs between a GPU kernel and the CPU reference).
inline cpu::Tolerance ToleranceFor(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return {1e-5, 1e-4};
    default:
      return {2e-3, 2e-2};
  }
}

}  // namespace sy::gpu_testing
