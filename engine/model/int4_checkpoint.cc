#include "engine/model/int4_checkpoint.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

namespace sy {
namespace {

using nlohmann::json;

Status Unsupported(const std::string& field, const std::string& value, const std::string& why) {
  return Status::InvalidArgument("quantization_config." + field + " " + value +
                                 " is not supported" + (why.empty() ? "" : " (" + why + ")"));
}

// "....q_proj.weight" -> "....q_proj".
std::string Prefix(std::string_view weight_name) {
  std::string_view p = weight_name;
  if (p.ends_with(".weight")) p.remove_suffix(7);
  return std::string(p);
}

StatusOr<TensorView> GetTyped(const Checkpoint& ckpt, const std::string& name,
                              std::initializer_list<int64_t> shape, bool int32) {
  SY_ASSIGN_OR_RETURN(TensorView v, ckpt.Get(name, shape));
  const bool ok = int32
                      ? v.dtype == DType::kI32
                      : v.dtype == DType::kF16 || v.dtype == DType::kBF16 || v.dtype == DType::kF32;
  if (!ok) {
    return Status::InvalidArgument("tensor " + name + " has dtype " +
                                   std::string(dtype_name(v.dtype)) +
                                   (int32 ? "; expected i32" : "; expected f16, bf16 or f32"));
  }
  return v;
}

int32_t I32At(const TensorView& v, int64_t i) {
  int32_t x;
  std::memcpy(&x, static_cast<const uint8_t*>(v.data) + i * 4, 4);
  return x;
}

bool IsPackQuantized(const Int4CheckpointFormat& f) {
  return f.method == Int4CheckpointFormat::Method::kPackQuantized;
}

// The tensor naming each input column's group: GPTQ's g_idx, compressed-tensors' weight_g_idx
// (AWQ has none).
std::string GIdxName(const Int4CheckpointFormat& f, const std::string& prefix) {
  return prefix + (IsPackQuantized(f) ? ".weight_g_idx" : ".g_idx");
}

// The quantization_config setting that makes a checkpoint act-order, as "field value".
std::string ActOrderSetting(const Int4CheckpointFormat& f) {
  return IsPackQuantized(f) ? "actorder group" : "desc_act true";
}

// Checks that the g_idx of linear `prefix` (if it has one) puts column input_order[c] (c when
// input_order is empty) in group c / group_size: the groups of the rows ReadInt4Linear writes.
Status CheckGIdxMatchesOrder(const Checkpoint& ckpt, const Int4CheckpointFormat& f,
                             const std::string& prefix, int64_t cols,
                             std::span<const int32_t> input_order) {
  const std::string name = GIdxName(f, prefix);
  if (!ckpt.Has(name)) {
    if (input_order.empty()) return Status::Ok();
    return Status::InvalidArgument(prefix + ": an input order without a " +
                                   name.substr(prefix.size() + 1));
  }
  SY_ASSIGN_OR_RETURN(TensorView g_idx, GetTyped(ckpt, name, {cols}, true));
  for (int64_t c = 0; c < cols; ++c) {
    if (I32At(g_idx, input_order.empty() ? c : input_order[c]) != c / f.group_size) {
      return Status::InvalidArgument(
          name + (input_order.empty() ? " is not i / group_size (act-order, " + ActOrderSetting(f) +
                                            "): load it in its input order (ReadInt4InputOrder)"
                                      : std::string(" does not match the input order")));
    }
  }
  return Status::Ok();
}

// Nibble slot of column c (0-7) in an AWQ int32: AWQ packs columns in the order
// [0, 2, 4, 6, 1, 3, 5, 7], so column c sits in slot kAwqSlot[c].
constexpr int kAwqSlot[8] = {0, 4, 1, 5, 2, 6, 3, 7};

// The int4 dtype of a group size, if it is one the kernels run.
std::optional<DType> Int4DTypeOf(int64_t group_size) {
  if (group_size == 32) return DType::kI4G32;
  if (group_size == 64) return DType::kI4G64;
  if (group_size == 128) return DType::kI4G128;
  return std::nullopt;
}

StatusOr<DType> DTypeForGroup(const json& group) {
  const std::optional<DType> t = Int4DTypeOf(group.is_number_integer() ? group.get<int64_t>() : 0);
  if (!t) return Unsupported("group_size", group.dump(), "expected 32, 64 or 128");
  return *t;
}

// Whether compressed-tensors' weights.actorder stores a weight_g_idx: "group" (alias "dynamic",
// and true) quantizes groups of columns taken in activation order; "weight" (alias "static")
// only visits the columns in that order while the groups stay runs of consecutive columns, and
// null or false is no act-order: both load as stored.
StatusOr<bool> PackQuantizedActOrder(const json& actorder) {
  if (actorder.is_null()) return false;
  if (actorder.is_boolean()) return actorder.get<bool>();
  if (actorder.is_string()) {
    std::string v = actorder.get<std::string>();
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
    if (v == "group" || v == "dynamic") return true;
    if (v == "weight" || v == "static") return false;
  }
  return Unsupported("weights.actorder", actorder.dump(),
                     "expected null, false, true, group, dynamic, weight or static");
}

// compressed-tensors' quantization_config with format pack-quantized.
StatusOr<std::optional<Int4CheckpointFormat>> PackQuantizedFormat(const json& q) {
  if (!q.contains("config_groups") || !q["config_groups"].is_object() ||
      q["config_groups"].empty()) {
    return Unsupported("config_groups", "(missing)", "pack-quantized needs one");
  }
  const json* weights = nullptr;
  for (const auto& [name, group] : q["config_groups"].items()) {
    if (!group.is_object() || !group.contains("weights") || !group["weights"].is_object()) {
      return Unsupported("config_groups." + name + ".weights", "(missing)", "");
    }
    if (group.contains("input_activations") && !group["input_activations"].is_null()) {
      return Unsupported("config_groups." + name + ".input_activations", "(set)",
                         "weight-only int4 only");
    }
    if (weights != nullptr && group["weights"] != *weights) {
      return Unsupported("config_groups", "with different weights", "one int4 scheme only");
    }
    weights = &group["weights"];
  }
  const json& w = *weights;
  if (w.value("num_bits", int64_t{0}) != 4) {
    return Unsupported("weights.num_bits",
                       w.contains("num_bits") ? w["num_bits"].dump() : "(missing)",
                       "only 4-bit weights");
  }
  if (w.value("type", std::string("int")) != "int") {
    return Unsupported("weights.type", "'" + w.value("type", std::string()) + "'", "int only");
  }
  if (w.value("strategy", std::string()) != "group") {
    return Unsupported("weights.strategy", "'" + w.value("strategy", std::string()) + "'",
                       "group only");
  }
  Int4CheckpointFormat f;
  f.method = Int4CheckpointFormat::Method::kPackQuantized;
  SY_ASSIGN_OR_RETURN(f.act_order,
                      PackQuantizedActOrder(w.contains("actorder") ? w["actorder"] : json()));
  SY_ASSIGN_OR_RETURN(f.dtype, DTypeForGroup(w.contains("group_size") ? w["group_size"] : json()));
  f.group_size = int4_group_size(f.dtype);
  f.symmetric = w.value("symmetric", true);
  f.zero_offset = 0;
  return std::optional<Int4CheckpointFormat>(f);
}

// The unsigned 4-bit value at bits 4 * (k % 8) of word k / 8 of an int32 tensor's row r of
// `words` int32s (pack-quantized's packing along a row).
uint32_t RowNibble(const TensorView& t, int64_t words, int64_t r, int64_t k) {
  return (static_cast<uint32_t>(I32At(t, r * words + k / 8)) >> (4 * (k % 8))) & 0xfu;
}

// Column c of the rows written is the checkpoint's column input_order[c] (c when empty).
Status ReadPackQuantized(const Checkpoint& ckpt, const Int4CheckpointFormat& f,
                         const std::string& p, int64_t rows, int64_t cols, uint8_t* out,
                         std::span<const int32_t> input_order) {
  const int64_t groups = (cols + f.group_size - 1) / f.group_size;
  const int64_t words = (cols + 7) / 8;
  SY_ASSIGN_OR_RETURN(TensorView packed, GetTyped(ckpt, p + ".weight_packed", {rows, words}, true));
  SY_ASSIGN_OR_RETURN(TensorView scales,
                      GetTyped(ckpt, p + ".weight_scale", {rows, groups}, false));
  if (ckpt.Has(p + ".weight_shape")) {
    SY_ASSIGN_OR_RETURN(TensorView shape, ckpt.Get(p + ".weight_shape", {2}));
    int64_t dims[2] = {0, 0};
    for (int d = 0; d < 2; ++d) {
      dims[d] = shape.dtype == DType::kI64   ? static_cast<const int64_t*>(shape.data)[d]
                : shape.dtype == DType::kI32 ? I32At(shape, d)
                                             : -1;
    }
    if (dims[0] != rows || dims[1] != cols) {
      return Status::InvalidArgument(p + ".weight_shape is not [" + std::to_string(rows) + ", " +
                                     std::to_string(cols) + "]");
    }
  }
  std::optional<TensorView> zeros;
  if (!f.symmetric) {
    SY_ASSIGN_OR_RETURN(zeros,
                        GetTyped(ckpt, p + ".weight_zero_point", {(rows + 7) / 8, groups}, true));
  }
  const size_t row_bytes = dtype_row_bytes(f.dtype, cols);
  std::memset(out, 0, static_cast<size_t>(rows) * row_bytes);
  for (int64_t j = 0; j < rows; ++j) {
    uint8_t* row = out + j * row_bytes;
    for (int64_t g = 0; g < groups; ++g) {
      const float scale = load_as_f32(scales.data, scales.dtype, j * groups + g);
      // Values and zero points are stored + 8: w = ((u - 8) - (z - 8)) * scale = (u - z) * scale.
      const uint32_t zero =
          zeros ? (static_cast<uint32_t>(I32At(*zeros, j / 8 * groups + g)) >> (4 * (j % 8))) & 0xfu
                : 8u;
      set_int4_group(row, g, scale, -scale * static_cast<float>(zero));
    }
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = input_order.empty() ? c : input_order[c];
      set_int4_q(f.dtype, row, cols, c, static_cast<int>(RowNibble(packed, words, j, i)));
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::optional<Int4CheckpointFormat>> ReadInt4CheckpointFormat(
    const std::string& model_dir) {
  std::ifstream in(model_dir + "/config.json");
  if (!in) return std::optional<Int4CheckpointFormat>();
  std::stringstream text;
  text << in.rdbuf();
  const json cfg = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (cfg.is_discarded() || !cfg.is_object() || !cfg.contains("quantization_config")) {
    return std::optional<Int4CheckpointFormat>();
  }
  const json& q = cfg["quantization_config"];
  if (!q.is_object()) return Status::InvalidArgument("quantization_config is not an object");
  const std::string method = q.value("quant_method", std::string());
  if (method == "fp8") return std::optional<Int4CheckpointFormat>();
  if (method == "compressed-tensors") {
    if (q.value("format", std::string()) != "pack-quantized") {
      return std::optional<Int4CheckpointFormat>();
    }
    return PackQuantizedFormat(q);
  }
  Int4CheckpointFormat f;
  if (method == "gptq") {
    f.method = Int4CheckpointFormat::Method::kGptq;
  } else if (method == "awq") {
    f.method = Int4CheckpointFormat::Method::kAwq;
  } else {
    return Unsupported("quant_method", "'" + method + "'", "expected gptq or awq");
  }
  if (!q.contains("bits") || !q["bits"].is_number_integer() || q["bits"].get<int64_t>() != 4) {
    return Unsupported("bits", q.contains("bits") ? q["bits"].dump() : "(missing)",
                       "only 4-bit weights");
  }
  const int64_t group = q.contains("group_size") && q["group_size"].is_number_integer()
                            ? q["group_size"].get<int64_t>()
                            : 0;
  const std::optional<DType> dtype = Int4DTypeOf(group);
  if (!dtype) {
    return Unsupported("group_size",
                       q.contains("group_size") ? q["group_size"].dump() : "(missing)",
                       "expected 32, 64 or 128");
  }
  f.dtype = *dtype;
  f.group_size = group;
  if (f.method == Int4CheckpointFormat::Method::kGptq) {
    f.act_order = q.value("desc_act", false);
    const std::string format = q.value("checkpoint_format", std::string("gptq"));
    if (format == "gptq") {
      f.zero_offset = 1;
    } else if (format == "gptq_v2") {
      f.zero_offset = 0;
    } else {
      return Unsupported("checkpoint_format", "'" + format + "'", "expected gptq or gptq_v2");
    }
  } else {
    const std::string version = q.value("version", std::string("gemm"));
    if (version != "gemm" && version != "GEMM") {
      return Unsupported("version", "'" + version + "'", "only AWQ's GEMM packing");
    }
    if (!q.value("zero_point", true)) return Unsupported("zero_point", "false", "");
    f.zero_offset = 0;
  }
  return std::optional<Int4CheckpointFormat>(f);
}

bool HasInt4Linear(const Checkpoint& ckpt, std::string_view weight_name) {
  return ckpt.Has(Prefix(weight_name) + ".qweight") ||
         ckpt.Has(Prefix(weight_name) + ".weight_packed");
}

StatusOr<std::vector<int32_t>> ReadInt4InputOrder(const Checkpoint& ckpt,
                                                  const Int4CheckpointFormat& f,
                                                  std::string_view weight_name, int64_t cols) {
  if (f.method == Int4CheckpointFormat::Method::kAwq) return std::vector<int32_t>();
  const std::string name = GIdxName(f, Prefix(weight_name));
  if (!ckpt.Has(name)) {
    if (f.act_order) {
      return Status::InvalidArgument(
          name + " is missing (" + (IsPackQuantized(f) ? "actorder is group" : "desc_act is true") +
          ")");
    }
    return std::vector<int32_t>();
  }
  SY_ASSIGN_OR_RETURN(TensorView g_idx, GetTyped(ckpt, name, {cols}, true));
  const int64_t groups = (cols + f.group_size - 1) / f.group_size;
  std::vector<int64_t> next(static_cast<size_t>(groups), 0);  // counts, then next positions
  bool in_order = true;
  for (int64_t i = 0; i < cols; ++i) {
    const int32_t g = I32At(g_idx, i);
    if (g < 0 || g >= groups) {
      return Status::InvalidArgument(name + "[" + std::to_string(i) + "] is " + std::to_string(g) +
                                     ", not a group in [0, " + std::to_string(groups) + ")");
    }
    ++next[g];
    in_order = in_order && g == i / f.group_size;
  }
  if (in_order) return std::vector<int32_t>();
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t want = std::min(f.group_size, cols - g * f.group_size);
    if (next[g] != want) {
      return Status::InvalidArgument(
          name + " puts " + std::to_string(next[g]) + " columns in group " + std::to_string(g) +
          "; act-order groups hold group_size (" + std::to_string(f.group_size) +
          ") columns, the last one the rest");
    }
    next[g] = g * f.group_size;
  }
  std::vector<int32_t> order(static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i) order[next[I32At(g_idx, i)]++] = static_cast<int32_t>(i);
  return order;
}

Status ReadInt4Linear(const Checkpoint& ckpt, const Int4CheckpointFormat& f,
                      std::string_view weight_name, int64_t rows, int64_t cols, uint8_t* out,
                      std::span<const int32_t> input_order) {
  const std::string p = Prefix(weight_name);
  const bool gptq = f.method == Int4CheckpointFormat::Method::kGptq;
  const bool awq = f.method == Int4CheckpointFormat::Method::kAwq;
  if (!input_order.empty() && (awq || static_cast<int64_t>(input_order.size()) != cols)) {
    return Status::InvalidArgument(
        p + ": an input order needs a GPTQ or pack-quantized linear and one entry a column");
  }
  if (IsPackQuantized(f)) {
    SY_RETURN_IF_ERROR(CheckGIdxMatchesOrder(ckpt, f, p, cols, input_order));
    return ReadPackQuantized(ckpt, f, p, rows, cols, out, input_order);
  }
  if (rows % 8 != 0 || (gptq && cols % 8 != 0)) {
    return Status::InvalidArgument(p + ": int4 packing needs in and out features divisible by 8");
  }
  const int64_t groups = (cols + f.group_size - 1) / f.group_size;
  SY_ASSIGN_OR_RETURN(
      TensorView qweight,
      GetTyped(ckpt, p + ".qweight", {gptq ? cols / 8 : cols, gptq ? rows : rows / 8}, true));
  SY_ASSIGN_OR_RETURN(TensorView qzeros, GetTyped(ckpt, p + ".qzeros", {groups, rows / 8}, true));
  SY_ASSIGN_OR_RETURN(TensorView scales, GetTyped(ckpt, p + ".scales", {groups, rows}, false));
  if (gptq) SY_RETURN_IF_ERROR(CheckGIdxMatchesOrder(ckpt, f, p, cols, input_order));
  // The 4-bit value in an int32 [.., rows / 8] tensor (qzeros, AWQ qweight) for column j.
  auto column_nibble = [&](const TensorView& t, int64_t r, int64_t j) {
    const int slot = gptq ? static_cast<int>(j % 8) : kAwqSlot[j % 8];
    return (static_cast<uint32_t>(I32At(t, r * (rows / 8) + j / 8)) >> (4 * slot)) & 0xfu;
  };
  const size_t row_bytes = dtype_row_bytes(f.dtype, cols);
  std::memset(out, 0, static_cast<size_t>(rows) * row_bytes);
  for (int64_t j = 0; j < rows; ++j) {
    uint8_t* row = out + j * row_bytes;
    for (int64_t g = 0; g < groups; ++g) {
      const float scale = load_as_f32(scales.data, scales.dtype, g * rows + j);
      const auto zero = static_cast<float>(column_nibble(qzeros, g, j) + f.zero_offset);
      set_int4_group(row, g, scale, -scale * zero);
    }
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = input_order.empty() ? c : input_order[c];
      const uint32_t q =
          gptq ? (static_cast<uint32_t>(I32At(qweight, i / 8 * rows + j)) >> (4 * (i % 8))) & 0xfu
               : column_nibble(qweight, i, j);
      set_int4_q(f.dtype, row, cols, c, static_cast<int>(q));
    }
  }
  return Status::Ok();
}

std::vector<PackedInt4Tensor> Int4PackedLayout(const Int4CheckpointFormat& f, int64_t rows,
                                               int64_t cols) {
  if (f.method == Int4CheckpointFormat::Method::kPackQuantized) {
    const int64_t groups = (cols + f.group_size - 1) / f.group_size;
    std::vector<PackedInt4Tensor> out = {
        {".weight_packed", DType::kI32, {rows, (cols + 7) / 8}, {}},
        {".weight_scale", DType::kF16, {rows, groups}, {}},
        {".weight_shape", DType::kI64, {2}, {}}};
    if (f.act_order) out.push_back({".weight_g_idx", DType::kI32, {cols}, {}});
    return out;
  }
  const int64_t groups = (cols + f.group_size - 1) / f.group_size;
  const bool gptq = f.method == Int4CheckpointFormat::Method::kGptq;
  std::vector<PackedInt4Tensor> out = {
      {".qweight", DType::kI32, {gptq ? cols / 8 : cols, gptq ? rows : rows / 8}, {}},
      {".qzeros", DType::kI32, {groups, rows / 8}, {}},
      {".scales", DType::kF16, {groups, rows}, {}}};
  if (gptq) out.push_back({".g_idx", DType::kI32, {cols}, {}});
  return out;
}

// compressed-tensors' symmetric W4A16: scale = max|w| / 7.5 per group (f16), q = clamp(round(w /
// scale), -8, 7) stored + 8. With act_order (actorder group) group g holds the columns
// act_order[g * group_size, ...) and weight_g_idx says each column's group; weight_packed stays
// in the original column order.
std::vector<PackedInt4Tensor> PackSymmetric(const Int4CheckpointFormat& f, const float* w,
                                            int64_t rows, int64_t cols,
                                            std::span<const int32_t> act_order) {
  std::vector<PackedInt4Tensor> out = Int4PackedLayout(f, rows, cols);
  const int64_t groups = (cols + f.group_size - 1) / f.group_size;
  const int64_t words = (cols + 7) / 8;
  std::vector<uint32_t> packed(static_cast<size_t>(rows * words), 0);
  std::vector<uint16_t> scales(static_cast<size_t>(rows * groups));
  // The input column at position k of the order the groups are formed in.
  auto column = [&](int64_t k) { return act_order.empty() ? k : int64_t{act_order[k]}; };
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t begin = g * f.group_size;
      const int64_t end = std::min(cols, begin + f.group_size);
      float max_abs = 0.0f;
      for (int64_t k = begin; k < end; ++k) {
        max_abs = std::max(max_abs, std::fabs(w[j * cols + column(k)]));
      }
      const uint16_t scale_bits = f32_to_f16(max_abs / 7.5f);
      const float scale = f16_to_f32(scale_bits);
      scales[j * groups + g] = scale_bits;
      for (int64_t k = begin; k < end; ++k) {
        const int64_t i = column(k);
        const int q =
            scale > 0.0f ? std::clamp(static_cast<int>(std::lround(w[j * cols + i] / scale)), -8, 7)
                         : 0;
        packed[j * words + i / 8] |= static_cast<uint32_t>(q + 8) << (4 * (i % 8));
      }
    }
  }
  const int64_t shape[2] = {rows, cols};
  out[0].bytes.assign(reinterpret_cast<const uint8_t*>(packed.data()),
                      reinterpret_cast<const uint8_t*>(packed.data() + packed.size()));
  out[1].bytes.assign(reinterpret_cast<const uint8_t*>(scales.data()),
                      reinterpret_cast<const uint8_t*>(scales.data() + scales.size()));
  out[2].bytes.assign(reinterpret_cast<const uint8_t*>(shape),
                      reinterpret_cast<const uint8_t*>(shape + 2));
  if (f.act_order) {
    std::vector<int32_t> g_idx(static_cast<size_t>(cols));
    for (int64_t k = 0; k < cols; ++k) g_idx[column(k)] = static_cast<int32_t>(k / f.group_size);
    out[3].bytes.assign(reinterpret_cast<const uint8_t*>(g_idx.data()),
                        reinterpret_cast<const uint8_t*>(g_idx.data() + g_idx.size()));
  }
  return out;
}

std::vector<PackedInt4Tensor> PackInt4Linear(const Int4CheckpointFormat& f, const float* w,
                                             int64_t rows, int64_t cols,
                                             std::span<const int32_t> act_order) {
  if (f.method == Int4CheckpointFormat::Method::kPackQuantized) {
    return PackSymmetric(f, w, rows, cols, act_order);
  }
  std::vector<PackedInt4Tensor> out = Int4PackedLayout(f, rows, cols);
  const bool gptq = f.method == Int4CheckpointFormat::Method::kGptq;
  const int64_t groups = (cols + f.group_size - 1) / f.group_size;
  std::vector<uint32_t> qweight(static_cast<size_t>(rows * cols / 8), 0);
  std::vector<uint32_t> qzeros(static_cast<size_t>(groups * rows / 8), 0);
  std::vector<uint16_t> scales(static_cast<size_t>(groups * rows));
  // Column j of an int32 [.., rows / 8] tensor: its word and shift.
  auto column_shift = [&](int64_t j) {
    return 4 * (gptq ? static_cast<int>(j % 8) : kAwqSlot[j % 8]);
  };
  const int min_zero = f.zero_offset == 1 ? 1 : 0;
  // The input column at position k of the order the groups are formed in.
  auto column = [&](int64_t k) { return act_order.empty() ? k : int64_t{act_order[k]}; };
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t begin = g * f.group_size;
      const int64_t end = std::min(cols, begin + f.group_size);
      float lo = 0.0f, hi = 0.0f;
      for (int64_t k = begin; k < end; ++k) {
        lo = std::min(lo, w[j * cols + column(k)]);
        hi = std::max(hi, w[j * cols + column(k)]);
      }
      const uint16_t scale_bits = f32_to_f16((hi - lo) / 15.0f);
      const float scale = f16_to_f32(scale_bits);
      scales[g * rows + j] = scale_bits;
      const int zero =
          scale > 0.0f ? std::clamp(static_cast<int>(std::lround(-lo / scale)), min_zero, 15) : 8;
      qzeros[g * (rows / 8) + j / 8] |= static_cast<uint32_t>(zero - f.zero_offset)
                                        << column_shift(j);
      for (int64_t k = begin; k < end; ++k) {
        const int64_t i = column(k);
        const int q =
            scale > 0.0f
                ? std::clamp(static_cast<int>(std::lround(w[j * cols + i] / scale)) + zero, 0, 15)
                : zero;
        if (gptq) {
          qweight[i / 8 * rows + j] |= static_cast<uint32_t>(q) << (4 * (i % 8));
        } else {
          qweight[i * (rows / 8) + j / 8] |= static_cast<uint32_t>(q) << column_shift(j);
        }
      }
    }
  }
  auto bytes_of = [](const auto& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    return std::vector<uint8_t>(p, p + v.size() * sizeof(v[0]));
  };
  out[0].bytes = bytes_of(qweight);
  out[1].bytes = bytes_of(qzeros);
  out[2].bytes = bytes_of(scales);
  if (gptq) {
    std::vector<int32_t> g_idx(static_cast<size_t>(cols));
    for (int64_t k = 0; k < cols; ++k) g_idx[column(k)] = static_cast<int32_t>(k / f.group_size);
    out[3].bytes = bytes_of(g_idx);
  }
  return out;
}

std::string Int4QuantizationConfigJson(const Int4CheckpointFormat& f) {
  json q;
  if (f.method == Int4CheckpointFormat::Method::kPackQuantized) {
    const json weights = {{"num_bits", 4},
                          {"type", "int"},
                          {"symmetric", true},
                          {"strategy", "group"},
                          {"group_size", f.group_size},
                          {"actorder", f.act_order ? json("group") : json()},
                          {"dynamic", false},
                          {"observer", "minmax"}};
    q = {{"quant_method", "compressed-tensors"},
         {"format", "pack-quantized"},
         {"config_groups",
          {{"group_0",
            {{"targets", {"Linear"}},
             {"weights", weights},
             {"input_activations", nullptr},
             {"output_activations", nullptr}}}}},
         {"ignore", {"lm_head"}},
         {"quantization_status", "compressed"}};
  } else if (f.method == Int4CheckpointFormat::Method::kGptq) {
    q = {{"quant_method", "gptq"},
         {"bits", 4},
         {"group_size", f.group_size},
         {"desc_act", f.act_order},
         {"sym", false},
         {"static_groups", false},
         {"true_sequential", true},
         {"checkpoint_format", f.zero_offset == 1 ? "gptq" : "gptq_v2"}};
  } else {
    q = {{"quant_method", "awq"},
         {"bits", 4},
         {"group_size", f.group_size},
         {"zero_point", true},
         {"version", "gemm"}};
  }
  return q.dump();
}

StatusOr<Int4CheckpointFormat> Int4FormatFor(std::string_view method, int64_t group_size) {
  Int4CheckpointFormat f;
  if (method == "gptq") {
    f.method = Int4CheckpointFormat::Method::kGptq;
  } else if (method == "awq") {
    f.method = Int4CheckpointFormat::Method::kAwq;
  } else if (method == "pack-quantized") {
    f.method = Int4CheckpointFormat::Method::kPackQuantized;
    f.symmetric = true;
  } else {
    return Status::InvalidArgument("unknown int4 checkpoint format '" + std::string(method) +
                                   "' (expected gptq, awq or pack-quantized)");
  }
  f.group_size = group_size;
  f.zero_offset = method == "gptq" ? 1 : 0;
  const std::optional<DType> dtype = Int4DTypeOf(group_size);
  if (!dtype) {
    return Status::InvalidArgument("int4 group size " + std::to_string(group_size) +
                                   " is not supported (expected 32, 64 or 128)");
  }
  f.dtype = *dtype;
  return f;
}

}  // namespace sy
