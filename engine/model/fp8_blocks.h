// Writing FP8 block-scaled checkpoints as transformers reads them (quant_method "fp8"): each
// matrix as F8_E4M3 plus f32 `weight_scale_inv` [ceil(rows/B), ceil(cols/B)], value = e4m3 *
// scale. Used by make-model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "engine/model/config.h"

namespace sy {

// The quantization_config for `config` with block x block scale blocks; modules_to_not_convert
// lists the LM head, the routers and the shared-expert gates (transformers would otherwise
// convert those nn.Linear modules too).
nlohmann::json Fp8QuantizationConfigJson(const ModelConfig& config, int64_t block);

// The weights an FP8 checkpoint of `config` stores in FP8: those of the projections and FFN
// matrices (nn.Linear modules) that config.quantization_config does not exclude.
std::set<std::string> Fp8WeightNames(const ModelConfig& config);

// "<module>.weight_scale_inv" for "<module>.weight".
std::string Fp8ScaleName(const std::string& weight_name);
// [ceil(rows / block), ceil(cols / block)].
std::vector<int64_t> Fp8ScaleShape(int64_t rows, int64_t cols, int64_t block);

// Quantizes one [rows, cols] matrix whose values arrive in row-major order, one band of `block`
// rows at a time: each block gets scale max|w| / 448 (0 for an all-zero block) and e4m3 bytes
// round(w / scale) (ties to even, as torch's cast).
class Fp8BlockWriter {
 public:
  Fp8BlockWriter(int64_t rows, int64_t cols, int64_t block);

  // Fills `chunk` with the e4m3 bytes from `offset` on; chunks must arrive in order.
  // next_value(i) returns element i of the matrix (called once per element, in order).
  void Fill(uint64_t offset, std::span<std::byte> chunk,
            const std::function<float(uint64_t)>& next_value);
  // The scales, row-major [ceil(rows/block), ceil(cols/block)]; complete after the last Fill.
  const std::vector<float>& scales() const { return scales_; }

 private:
  void NextBand(const std::function<float(uint64_t)>& next_value);

  int64_t rows_, cols_, block_;
  int64_t next_row_ = 0;       // first row of the band after band_
  uint64_t band_offset_ = 0;   // byte offset of band_[0] in the matrix
  std::vector<uint8_t> band_;  // e4m3 bytes of the current band
  std::vector<float> values_;  // scratch: the band's values
  std::vector<float> scales_;
};

}  // namespace sy
