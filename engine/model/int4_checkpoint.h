// Pre-quantized int4 checkpoints read as they are: GPTQ (v1 and v2 zero points, act-order too),
// AWQ (GEMM packing) and compressed-tensors pack-quantized (actorder too) linear layers converted
// into DType::kI4G* rows at load, with no re-quantization: each group's scale is the checkpoint's,
// its min -scale * zero.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "engine/model/checkpoint.h"
#include "kernels/dtype.h"

namespace sy {

struct Int4CheckpointFormat {
  enum class Method { kGptq, kAwq, kPackQuantized };
  Method method = Method::kGptq;
  int64_t group_size = 128;      // 32, 64 or 128
  DType dtype = DType::kI4G128;  // the rows it loads into: kI4G<group_size>
  int zero_offset = 1;           // GPTQ v1 stores zero - 1 (its "+1"); GPTQ v2 and AWQ store zero
  bool symmetric = false;        // pack-quantized: no weight_zero_point (the zero is 8)
  // GPTQ desc_act, compressed-tensors actorder "group" (act-order): a group is not a run of
  // consecutive input columns but the columns whose g_idx (weight_g_idx) is the group
  // (ReadInt4InputOrder).
  bool act_order = false;
};

// The int4 format of <model_dir>/config.json's quantization_config: nullopt when it has none,
// or a quant_method another loader reads (fp8, compressed-tensors other than pack-quantized).
// compressed-tensors pack-quantized needs one config group (or all alike) of int weights with
// num_bits 4, strategy group, group_size 32/64/128, no input_activations, and actorder null,
// false, "weight" / "static" (groups of consecutive columns: read as stored) or true, "group" /
// "dynamic" (act_order: each linear's weight_g_idx says its columns' groups).
// InvalidArgument naming the field for what is not supported: bits other than 4, group_size
// other than 32/64/128, checkpoint_format other than gptq/gptq_v2, AWQ version other than gemm
// or zero_point false, another actorder, or an unknown quant_method.
StatusOr<std::optional<Int4CheckpointFormat>> ReadInt4CheckpointFormat(
    const std::string& model_dir);

// Whether linear `weight_name` ("....q_proj.weight") is stored quantized: the checkpoint has
// "....q_proj.qweight" (GPTQ, AWQ) or "....q_proj.weight_packed" (pack-quantized) instead.
bool HasInt4Linear(const Checkpoint& ckpt, std::string_view weight_name);

// Converts linear `weight_name` of shape [rows (out features), cols (in features)] into `rows`
// int4 rows of format.dtype at `out` (rows * dtype_row_bytes(format.dtype, cols) bytes). The
// checkpoint's tensors (GPTQ: qweight int32 [cols / 8, rows], qzeros int32 [groups, rows / 8],
// scales [groups, rows], g_idx int32 [cols] if present; AWQ: qweight int32 [cols, rows / 8],
// qzeros int32 [groups, rows / 8], scales [groups, rows]) are checked against those shapes.
// pack-quantized: weight_packed int32 [rows, ceil(cols / 8)] (value 8c+k in bits 4k, stored
// + 8), weight_scale [rows, groups], weight_zero_point int32 [ceil(rows / 8), groups] when
// asymmetric (packed along rows, + 8), weight_shape [2] = {rows, cols}, weight_g_idx int32
// [cols] if present. A g_idx (weight_g_idx) must put column input_order[c] (c when input_order
// is empty) in group c / group_size (InvalidArgument otherwise, naming desc_act or actorder when
// input_order is empty, as an act-order checkpoint read without its order). Column c of the
// rows written is the checkpoint's column input_order[c]: pass ReadInt4InputOrder's order
// (GPTQ and pack-quantized; AWQ has none).
Status ReadInt4Linear(const Checkpoint& ckpt, const Int4CheckpointFormat& format,
                      std::string_view weight_name, int64_t rows, int64_t cols, uint8_t* out,
                      std::span<const int32_t> input_order = {});

// The order GPTQ or pack-quantized linear `weight_name` ([rows, cols]) loads its input columns
// in: sorted by group (g_idx or weight_g_idx, stably), so that each group's columns are
// consecutive as DType::kI4G* rows need; a matmul then reads x's column input_order[c] for
// column c. Empty when the columns are in order already (no g_idx, or g_idx[i] == i /
// group_size), and for AWQ. Act-order (GPTQ's, llm-compressor's) gives every group exactly
// group_size columns (the last one the rest): InvalidArgument naming the g_idx tensor for any
// other count, a group out of range, or act_order (desc_act true, actorder group) without one.
StatusOr<std::vector<int32_t>> ReadInt4InputOrder(const Checkpoint& ckpt,
                                                  const Int4CheckpointFormat& format,
                                                  std::string_view weight_name, int64_t cols);

// One tensor of a packed linear: the name suffix after the linear's prefix (".qweight", ...).
struct PackedInt4Tensor {
  std::string suffix;
  DType dtype = DType::kI32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // empty from Int4PackedLayout
};

// The tensors (names, dtypes, shapes) PackInt4Linear writes for a [rows, cols] linear; rows and
// cols (GPTQ) must be multiples of 8.
std::vector<PackedInt4Tensor> Int4PackedLayout(const Int4CheckpointFormat& format, int64_t rows,
                                               int64_t cols);

// A linear [rows (out), cols (in)] of f32 values w quantized and packed as format's library
// writes it: round to nearest per group of input columns. GPTQ, AWQ: asymmetric, range widened
// to include 0 (scale = (max - min) / 15 in f16, zero = round(-min / scale) in [1, 15] for GPTQ
// v1 (which stores zero - 1), [0, 15] otherwise), q = clamp(round(w / scale) + zero, 0, 15).
// pack-quantized: symmetric, scale = max|w| / 7.5 in f16, q = clamp(round(w / scale), -8, 7).
// With act_order (format.act_order, GPTQ or pack-quantized): columns are grouped in the order
// GPTQ visits them (by descending Hessian diagonal), group g holding columns
// act_order[g * group_size, ...), and g_idx (weight_g_idx) says each column's group; qweight
// (weight_packed) stays in the original column order, as AutoGPTQ / GPTQModel and
// llm-compressor (actorder "group") write it. act_order is a permutation of [0, cols), empty
// otherwise.
std::vector<PackedInt4Tensor> PackInt4Linear(const Int4CheckpointFormat& format, const float* w,
                                             int64_t rows, int64_t cols,
                                             std::span<const int32_t> act_order = {});

// The quantization_config object the library writes into config.json for `format`.
std::string Int4QuantizationConfigJson(const Int4CheckpointFormat& format);

// "gptq", "awq" or "pack-quantized" with a group size (32, 64 or 128) as a format (GPTQ: v1;
// pack-quantized: compressed-tensors' symmetric W4A16; act_order false unless set after);
// InvalidArgument for anything else.
StatusOr<Int4CheckpointFormat> Int4FormatFor(std::string_view method, int64_t group_size);

}  // namespace sy
