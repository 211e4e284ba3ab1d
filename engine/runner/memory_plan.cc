#include "engine/runner/memory_plan.h"

#include <cstdio>

namespace sy {
namespace {

Status CheckUtilization(double u) {
  if (!(u > 0.0 && u <= 1.0)) {
    return Status::InvalidArgument("--gpu-memory-utilization must be in (0, 1], got " +
                                   std::to_string(u));
  }
  return Status::Ok();
}

size_t Budget(size_t total, double utilization) {
  return static_cast<size_t>(static_cast<double>(total) * utilization);
}

}  // namespace

std::string FormatGiB(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}

StatusOr<int64_t> PlanKvBlocks(const KvMemoryInput& in) {
  SY_RETURN_IF_ERROR(CheckUtilization(in.utilization));
  if (in.bytes_per_block == 0 || in.min_blocks < 1) {
    return Status::InvalidArgument("KV block size and minimum block count must be positive");
  }
  const size_t budget = Budget(in.total_bytes, in.utilization);
  const size_t left = budget > in.used_bytes ? budget - in.used_bytes : 0;
  const int64_t blocks = static_cast<int64_t>(left / in.bytes_per_block);
  if (blocks < in.min_blocks) {
    return Status::ResourceExhausted(
        "not enough GPU memory for the KV cache: " + std::to_string(in.min_blocks) +
        " blocks (one longest sequence) need " + FormatGiB(in.min_blocks * in.bytes_per_block) +
        ", but with --gpu-memory-utilization " + std::to_string(in.utilization) + " of " +
        FormatGiB(in.total_bytes) + " only " + FormatGiB(left) + " remain after " +
        FormatGiB(in.used_bytes) + " in use (weights " + FormatGiB(in.weights_bytes) +
        "); raise --gpu-memory-utilization, lower --max-model-len or --max-num-batched-tokens, "
        "or use a larger GPU");
  }
  return blocks;
}

Status CheckWeightsFit(size_t weights_bytes, size_t total_bytes, size_t used_bytes,
                       double utilization) {
  SY_RETURN_IF_ERROR(CheckUtilization(utilization));
  const size_t budget = Budget(total_bytes, utilization);
  const size_t left = budget > used_bytes ? budget - used_bytes : 0;
  if (weights_bytes > left) {
    return Status::ResourceExhausted("the model does not fit: its weights need " +
                                     FormatGiB(weights_bytes) + ", and " + FormatGiB(left) +
                                     " are available (--gpu-memory-utilization " +
                                     std::to_string(utilization) + " of " + FormatGiB(total_bytes) +
                                     ", " + FormatGiB(used_bytes) + " already in use)");
  }
  return Status::Ok();
}

}  // namespace sy
