#include "engine/backend/backend_factory.h"

#include <charconv>

#include "engine/backend/cpu_backend.h"
#ifdef SWITCHYARD_HAVE_CUDA
#include "engine/backend/cuda_backend.h"
#endif

namespace sy {

std::string DeviceSpec::ToString() const {
  return kind == Kind::kCpu ? "cpu" : "cuda:" + std::to_string(index);
}

StatusOr<DeviceSpec> ParseDevice(std::string_view text) {
  DeviceSpec d;
  if (text == "cpu") return d;
  d.kind = DeviceSpec::Kind::kCuda;
  if (text == "cuda") return d;
  constexpr std::string_view kPrefix = "cuda:";
  if (text.substr(0, kPrefix.size()) == kPrefix && text.size() > kPrefix.size()) {
    const std::string_view num = text.substr(kPrefix.size());
    const auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), d.index);
    if (ec == std::errc() && end == num.data() + num.size() && d.index >= 0) return d;
  }
  return Status::InvalidArgument("unknown device '" + std::string(text) +
                                 "': expected cpu, cuda or cuda:N");
}

bool CudaBackendBuilt() {
#ifdef SWITCHYARD_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

StatusOr<KvCacheDType> ParseKvCacheDType(std::string_view text) {
  if (text == "auto") return KvCacheDType::kAuto;
  if (text == "bf16") return KvCacheDType::kBF16;
  if (text == "fp8") return KvCacheDType::kFP8;
  return Status::InvalidArgument("--kv-cache-dtype must be auto, bf16 or fp8, got '" +
                                 std::string(text) + "'");
}

std::string_view KvCacheDTypeName(KvCacheDType t) {
  switch (t) {
    case KvCacheDType::kAuto:
      return "auto";
    case KvCacheDType::kBF16:
      return "bf16";
    case KvCacheDType::kFP8:
      return "fp8";
  }
  return "?";
}

StatusOr<std::unique_ptr<Backend>> CreateBackend(const DeviceSpec& device,
                                                 const BackendOptions& options) {
  if (device.kind == DeviceSpec::Kind::kCpu) {
    const DType kv = options.kv_cache_dtype == KvCacheDType::kBF16  ? DType::kBF16
                     : options.kv_cache_dtype == KvCacheDType::kFP8 ? DType::kF8Row
                                                                    : DType::kF32;
    return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(options.cpu_threads, kv));
  }
  if (options.kv_cache_dtype == KvCacheDType::kFP8) {
    return Status::Unimplemented(
        "--kv-cache-dtype fp8 runs on the CPU backend only: the CUDA attention kernels read bf16 "
        "or f32 caches (use --kv-cache-dtype bf16 or auto on " +
        device.ToString() + ")");
  }
#ifdef SWITCHYARD_HAVE_CUDA
  CudaBackendOptions o;
  o.device = device.index;
  o.kv_dtype = options.kv_cache_dtype == KvCacheDType::kBF16 ? DType::kBF16 : options.kv_dtype;
  SY_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> b, CudaBackend::Create(o));
  return std::unique_ptr<Backend>(std::move(b));
#else
  return Status::Unimplemented("this switchyard was built without CUDA (no nvcc at build time); " +
                               device.ToString() + " is not available");
#endif
}

}  // namespace sy
