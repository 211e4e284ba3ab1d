// gpu_bench --quant: cuda::quantized_matmul alone (int8, int4, FP8 weights) per dtype, shape and
// row count: weight bytes read per second against the copy roofline, and TFLOP/s.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "engine/core/status.h"

namespace sy {

// Prints a table and returns the results. rows: the row counts (m) to time; copy_gbs: the copy
// bandwidth (read + written) measured in this run, 0 when not measured.
StatusOr<nlohmann::json> RunQuantGemmBench(const std::vector<int64_t>& rows, double copy_gbs);

}  // namespace sy
