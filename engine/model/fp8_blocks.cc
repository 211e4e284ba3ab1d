#include "engine/model/fp8_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/model/weight_names.h"
#include "kernels/dtype.h"

namespace sy {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string ModuleOf(const std::string& weight_name) {
  return weight_name.substr(0, weight_name.rfind(".weight"));
}

}  // namespace

nlohmann::json Fp8QuantizationConfigJson(const ModelConfig& config, int64_t block) {
  const ModelWeightNames names = WeightNamesFor(config);
  std::vector<std::string> keep = {"lm_head"};
  for (const LayerWeightNames& layer : names.layers) {
    if (!layer.router.empty()) keep.push_back(ModuleOf(layer.router));
    if (!layer.shared_expert_gate.empty()) keep.push_back(ModuleOf(layer.shared_expert_gate));
  }
  return {{"quant_method", "fp8"},
          {"fmt", "e4m3"},
          {"activation_scheme", "dynamic"},
          {"weight_block_size", {block, block}},
          {"modules_to_not_convert", keep}};
}

std::set<std::string> Fp8WeightNames(const ModelConfig& config) {
  const ModelWeightNames names = WeightNamesFor(config);
  std::set<std::string> out;
  auto add = [&](const std::string& name) {
    if (!name.empty() && config.quantization_config.Quantizes(ModuleOf(name))) out.insert(name);
  };
  auto add_ffn = [&](const FfnNames& f) {
    add(f.gate);
    add(f.up);
    add(f.down);
  };
  add(names.lm_head);
  for (const LayerWeightNames& layer : names.layers) {
    for (const std::string* name : {&layer.q, &layer.k, &layer.v, &layer.o, &layer.q_a, &layer.q_b,
                                    &layer.kv_a, &layer.kv_b}) {
      add(*name);
    }
    for (const FfnNames& expert : layer.experts) add_ffn(expert);
    add_ffn(layer.shared_expert);
    add_ffn(layer.dense);
  }
  return out;
}

std::string Fp8ScaleName(const std::string& weight_name) { return weight_name + "_scale_inv"; }

std::vector<int64_t> Fp8ScaleShape(int64_t rows, int64_t cols, int64_t block) {
  return {CeilDiv(rows, block), CeilDiv(cols, block)};
}

Fp8BlockWriter::Fp8BlockWriter(int64_t rows, int64_t cols, int64_t block)
    : rows_(rows), cols_(cols), block_(block) {
  scales_.reserve(CeilDiv(rows, block) * CeilDiv(cols, block));
}

void Fp8BlockWriter::NextBand(const std::function<float(uint64_t)>& next_value) {
  const int64_t band_rows = std::min(block_, rows_ - next_row_);
  values_.resize(band_rows * cols_);
  for (int64_t i = 0; i < band_rows * cols_; ++i) {
    values_[i] = next_value(static_cast<uint64_t>(next_row_ * cols_ + i));
  }
  band_offset_ = static_cast<uint64_t>(next_row_ * cols_);
  band_.resize(values_.size());
  for (int64_t c0 = 0; c0 < cols_; c0 += block_) {
    const int64_t c1 = std::min(cols_, c0 + block_);
    float max_abs = 0.0f;
    for (int64_t r = 0; r < band_rows; ++r) {
      for (int64_t c = c0; c < c1; ++c)
        max_abs = std::max(max_abs, std::fabs(values_[r * cols_ + c]));
    }
    const float scale = max_abs / 448.0f;
    scales_.push_back(scale);
    for (int64_t r = 0; r < band_rows; ++r) {
      for (int64_t c = c0; c < c1; ++c) {
        band_[r * cols_ + c] = scale > 0.0f ? f32_to_e4m3(values_[r * cols_ + c] / scale) : 0;
      }
    }
  }
  next_row_ += band_rows;
}

void Fp8BlockWriter::Fill(uint64_t offset, std::span<std::byte> chunk,
                          const std::function<float(uint64_t)>& next_value) {
  size_t done = 0;
  while (done < chunk.size()) {
    const uint64_t at = offset + done;
    if (at >= band_offset_ + band_.size()) {
      NextBand(next_value);
      continue;
    }
    const size_t n = std::min<size_t>(chunk.size() - done, band_offset_ + band_.size() - at);
    std::memcpy(chunk.data() + done, band_.data() + (at - band_offset_), n);
    done += n;
  }
}

}  // namespace sy
