#include "engine/model/int4_checkpoint.h"

#include <algorithm>
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

// Nibble slot of column c (0-7) in an AWQ int32: AWQ packs columns in the order
// [0, 2, 4, 6, 1, 3, 5, 7], so column c sits in slot kAwqSlot[c].
constexpr int kAwqSlot[8] = {0, 4, 1, 5, 2, 6, 3, 7};

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
    if (q.value("format", std::string()) == "pack-quantized") {
      return Unsupported("format", "'pack-quantized'", "compressed-tensors int4 is not read yet");
    }
    return std::optional<Int4CheckpointFormat>();
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
  switch (group) {
    case 32:
      f.dtype = DType::kI4G32;
      break;
    case 64:
      f.dtype = DType::kI4G64;
      break;
    case 128:
      f.dtype = DType::kI4G128;
      break;
    default:
      return Unsupported("group_size",
                         q.contains("group_size") ? q["group_size"].dump() : "(missing)",
                         "expected 32, 64 or 128");
  }
  f.group_size = group;
  if (f.method == Int4CheckpointFormat::Method::kGptq) {
    if (q.value("desc_act", false)) {
      return Unsupported("desc_act", "true",
                         "act-order groups are not runs of consecutive input columns; "
                         "re-quantize with desc_act false");
    }
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
  return ckpt.Has(Prefix(weight_name) + ".qweight");
}

Status ReadInt4Linear(const Checkpoint& ckpt, const Int4CheckpointFormat& f,
                      std::string_view weight_name, int64_t rows, int64_t cols, uint8_t* out) {
  const std::string p = Prefix(weight_name);
  const bool gptq = f.method == Int4CheckpointFormat::Method::kGptq;
  if (rows % 8 != 0 || (gptq && cols % 8 != 0)) {
    return Status::InvalidArgument(p + ": int4 packing needs in and out features divisible by 8");
  }
  const int64_t groups = (cols + f.group_size - 1) / f.group_size;
  SY_ASSIGN_OR_RETURN(
      TensorView qweight,
      GetTyped(ckpt, p + ".qweight", {gptq ? cols / 8 : cols, gptq ? rows : rows / 8}, true));
  SY_ASSIGN_OR_RETURN(TensorView qzeros, GetTyped(ckpt, p + ".qzeros", {groups, rows / 8}, true));
  SY_ASSIGN_OR_RETURN(TensorView scales, GetTyped(ckpt, p + ".scales", {groups, rows}, false));
  if (gptq && ckpt.Has(p + ".g_idx")) {
    SY_ASSIGN_OR_RETURN(TensorView g_idx, GetTyped(ckpt, p + ".g_idx", {cols}, true));
    for (int64_t i = 0; i < cols; ++i) {
      if (I32At(g_idx, i) != i / f.group_size) {
        return Status::InvalidArgument(
            p + ".g_idx is not i / group_size (act-order, desc_act true): not supported");
      }
    }
  }
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
    for (int64_t i = 0; i < cols; ++i) {
      const uint32_t q =
          gptq ? (static_cast<uint32_t>(I32At(qweight, i / 8 * rows + j)) >> (4 * (i % 8))) & 0xfu
               : column_nibble(qweight, i, j);
      set_int4_q(f.dtype, row, cols, i, static_cast<int>(q));
    }
  }
  return Status::Ok();
}

std::vector<PackedInt4Tensor> Int4PackedLayout(const Int4CheckpointFormat& f, int64_t rows,
                                               int64_t cols) {
  const int64_t groups = (cols + f.group_size - 1) / f.group_size;
  const bool gptq = f.method == Int4CheckpointFormat::Method::kGptq;
  std::vector<PackedInt4Tensor> out = {
      {".qweight", DType::kI32, {gptq ? cols / 8 : cols, gptq ? rows : rows / 8}, {}},
      {".qzeros", DType::kI32, {groups, rows / 8}, {}},
      {".scales", DType::kF16, {groups, rows}, {}}};
  if (gptq) out.push_back({".g_idx", DType::kI32, {cols}, {}});
  return out;
}

std::vector<PackedInt4Tensor> PackInt4Linear(const Int4CheckpointFormat& f, const float* w,
                                             int64_t rows, int64_t cols) {
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
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t begin = g * f.group_size;
      const int64_t end = std::min(cols, begin + f.group_size);
      float lo = 0.0f, hi = 0.0f;
      for (int64_t i = begin; i < end; ++i) {
        lo = std::min(lo, w[j * cols + i]);
        hi = std::max(hi, w[j * cols + i]);
      }
      const uint16_t scale_bits = f32_to_f16((hi - lo) / 15.0f);
      const float scale = f16_to_f32(scale_bits);
      scales[g * rows + j] = scale_bits;
      const int zero =
          scale > 0.0f ? std::clamp(static_cast<int>(std::lround(-lo / scale)), min_zero, 15) : 8;
      qzeros[g * (rows / 8) + j / 8] |= static_cast<uint32_t>(zero - f.zero_offset)
                                        << column_shift(j);
      for (int64_t i = begin; i < end; ++i) {
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
    for (int64_t i = 0; i < cols; ++i) g_idx[i] = static_cast<int32_t>(i / f.group_size);
    out[3].bytes = bytes_of(g_idx);
  }
  return out;
}

std::string Int4QuantizationConfigJson(const Int4CheckpointFormat& f) {
  json q;
  if (f.method == Int4CheckpointFormat::Method::kGptq) {
    q = {{"quant_method", "gptq"},
         {"bits", 4},
         {"group_size", f.group_size},
         {"desc_act", false},
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
  if (method != "gptq" && method != "awq") {
    return Status::InvalidArgument("unknown int4 checkpoint format '" + std::string(method) +
                                   "' (expected gptq or awq)");
  }
  Int4CheckpointFormat f;
  f.method =
      method == "gptq" ? Int4CheckpointFormat::Method::kGptq : Int4CheckpointFormat::Method::kAwq;
  f.group_size = group_size;
  f.zero_offset = method == "gptq" ? 1 : 0;
  switch (group_size) {
    case 32:
      f.dtype = DType::kI4G32;
      break;
    case 64:
      f.dtype = DType::kI4G64;
      break;
    case 128:
      f.dtype = DType::kI4G128;
      break;
    default:
      return Status::InvalidArgument("int4 group size " + std::to_string(group_size) +
                                     " is not supported (expected 32, 64 or 128)");
  }
  return f;
}

}  // namespace sy
