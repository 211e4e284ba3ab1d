// Fp8CheckpointMatrix: one FP8 matrix of a published checkpoint (e4m3fn values beside their
// scale tensor, as config.json's quantization_config describes), read row by row into the
// in-memory DType::kF8 layout (one f32 scale per 128 columns of each row).
#pragma once

#include <cstdint>
#include <string>

#include "engine/core/status.h"
#include "engine/model/checkpoint.h"
#include "engine/model/quant_config.h"

namespace sy {

struct Fp8CheckpointMatrix {
  std::string name;   // "<module>.weight"
  TensorView values;  // DType::kE4M3 [rows, cols]
  TensorView scales;  // f32, bf16 or f16, shaped by the granularity
  ScaleGranularity granularity = ScaleGranularity::kTensor;
  int64_t block_rows = 0, block_cols = 0;
  int64_t rows = 0, cols = 0;

  // The scale of element (r, c).
  float Scale(int64_t r, int64_t c) const;
  // Whether every 128-column block of a kF8 row lies inside one scale block, so rows convert
  // exactly (per tensor, per channel, and blocks whose width is a multiple of 128 or at least
  // cols). Otherwise rows are dequantized and quantized again (see ConvertRow).
  bool Exact() const;
  // Writes row r as a kF8 row (dtype_row_bytes(kF8, cols) bytes): exact rows copy their bytes
  // and expand the scales; the others quantize the dequantized values afresh (128-column
  // blocks, scale max|w| / 448). DataLoss when the row holds an e4m3fn NaN code.
  Status ConvertRow(int64_t r, uint8_t* out) const;
  // Row r as f32 values e4m3fn(q) * scale.
  void DequantizeRow(int64_t r, float* out) const;
};

// The FP8 matrix `name` ([rows, cols], stored as F8_E4M3 in `checkpoint`) with its scales.
// Errors: InvalidArgument when the config has no FP8 quantization_config or lists the module as
// not converted, or a scale tensor is missing or misshapen (naming it).
StatusOr<Fp8CheckpointMatrix> FindFp8Matrix(const Checkpoint& checkpoint,
                                            const QuantizationConfig& config,
                                            const std::string& name, int64_t rows, int64_t cols);

}  // namespace sy
