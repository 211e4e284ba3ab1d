// Which device a model runs on (`--device cpu|cuda[:N]`), its KV cache element type
// (`--kv-cache-dtype`), and the backend that drives it.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "engine/backend/backend.h"

namespace sy {

struct DeviceSpec {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  int index = 0;  // CUDA device ordinal

  std::string ToString() const;  // "cpu", "cuda:0"
  friend bool operator==(const DeviceSpec&, const DeviceSpec&) = default;
};

// "cpu", "cuda" (= cuda:0) or "cuda:N"; InvalidArgument naming the accepted forms otherwise.
StatusOr<DeviceSpec> ParseDevice(std::string_view text);

// Whether this build has the CUDA backend (CMake found nvcc).
bool CudaBackendBuilt();

// The KV cache element type `--kv-cache-dtype` asks for. kAuto: the backend's default (f32 on
// the CPU, BackendOptions::kv_dtype on CUDA). kFP8: e4m3fn values with one f32 scale per row
// (DType::kF8Row); CPU only for now.
enum class KvCacheDType : uint8_t { kAuto, kBF16, kFP8 };

// "auto", "bf16" or "fp8"; InvalidArgument naming them otherwise.
StatusOr<KvCacheDType> ParseKvCacheDType(std::string_view text);
std::string_view KvCacheDTypeName(KvCacheDType t);

struct BackendOptions {
  int cpu_threads = 0;            // CPU: worker threads (0: all cores)
  DType kv_dtype = DType::kBF16;  // CUDA: KV cache element type under kAuto (kBF16 or kF32)
  KvCacheDType kv_cache_dtype = KvCacheDType::kAuto;  // --kv-cache-dtype
};

// Unimplemented for CUDA in a build without it; Unavailable when the device cannot be used.
StatusOr<std::unique_ptr<Backend>> CreateBackend(const DeviceSpec& device,
                                                 const BackendOptions& options);

}  // namespace sy
