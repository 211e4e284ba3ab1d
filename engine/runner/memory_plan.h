// MemoryPlan: how many KV-cache blocks a GPU holds once the weights, the activation workspace
// and the backend's scratch are in place, under a cap on the share of the device this process
// may use (--gpu-memory-utilization, as vLLM). Pure arithmetic, so it is tested without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/core/status.h"

namespace sy {

struct KvMemoryInput {
  size_t total_bytes = 0;  // the device's memory
  size_t used_bytes = 0;   // in use now, by this process (weights, workspace...) and others
  double utilization = 0.9;
  size_t bytes_per_block = 0;  // one KV block across all layers, K and V
  int64_t min_blocks = 1;      // fewest blocks worth serving with (one longest sequence)
  size_t weights_bytes = 0;    // for the error message
};

// The number of blocks; ResourceExhausted saying what is needed and what is available when
// fewer than min_blocks fit. InvalidArgument for a utilization outside (0, 1].
StatusOr<int64_t> PlanKvBlocks(const KvMemoryInput& in);

// Before the weights are loaded: ResourceExhausted when `weights_bytes` exceed the device's
// budget (utilization * total minus what is already used), naming both.
Status CheckWeightsFit(size_t weights_bytes, size_t total_bytes, size_t used_bytes,
                       double utilization);

// "12.3 GiB".
std::string FormatGiB(size_t bytes);

}  // namespace sy
