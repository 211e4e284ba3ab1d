#include "engine/model/fp8_checkpoint.h"

#include <cstring>
#include <vector>

#include "kernels/dtype.h"

namespace sy {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The scale tensor, which may come in either of two shapes (e.g. [rows] or [rows, 1]).
StatusOr<TensorView> GetScales(const Checkpoint& ckpt, const std::string& name,
                               std::initializer_list<int64_t> shape,
                               std::initializer_list<int64_t> other_shape) {
  StatusOr<TensorView> v = ckpt.Get(name, shape);
  if (!v.ok() && other_shape.size() > 0 && ckpt.Has(name)) v = ckpt.Get(name, other_shape);
  return v;
}

}  // namespace

float Fp8CheckpointMatrix::Scale(int64_t r, int64_t c) const {
  switch (granularity) {
    case ScaleGranularity::kTensor:
      return load_as_f32(scales.data, scales.dtype, 0);
    case ScaleGranularity::kChannel:
      return load_as_f32(scales.data, scales.dtype, r);
    case ScaleGranularity::kBlock:
      return load_as_f32(scales.data, scales.dtype,
                         r / block_rows * CeilDiv(cols, block_cols) + c / block_cols);
  }
  return 0.0f;
}

bool Fp8CheckpointMatrix::Exact() const {
  return granularity != ScaleGranularity::kBlock || block_cols % kF8BlockColumns == 0 ||
         cols <= block_cols;
}

void Fp8CheckpointMatrix::DequantizeRow(int64_t r, float* out) const {
  const auto* q = static_cast<const uint8_t*>(values.data) + r * cols;
  for (int64_t c = 0; c < cols; ++c) out[c] = e4m3_to_f32(q[c]) * Scale(r, c);
}

Status Fp8CheckpointMatrix::ConvertRow(int64_t r, uint8_t* out) const {
  const auto* q = static_cast<const uint8_t*>(values.data) + r * cols;
  for (int64_t c = 0; c < cols; ++c) {
    if ((q[c] & 0x7f) == 0x7f) {
      return Status::DataLoss("tensor " + name + " holds an FP8 NaN at row " + std::to_string(r) +
                              ", column " + std::to_string(c));
    }
  }
  if (!Exact()) {
    std::vector<float> row(cols);
    DequantizeRow(r, row.data());
    quantize_f8_row(row.data(), cols, out);
    return Status::Ok();
  }
  for (int64_t b = 0; b * kF8BlockColumns < cols; ++b) {
    const float scale = Scale(r, b * kF8BlockColumns);
    std::memcpy(out + b * sizeof(float), &scale, sizeof scale);
  }
  std::memcpy(out + f8_row_scale_bytes(cols), q, cols);
  return Status::Ok();
}

StatusOr<Fp8CheckpointMatrix> FindFp8Matrix(const Checkpoint& ckpt, const QuantizationConfig& qc,
                                            const std::string& name, int64_t rows, int64_t cols) {
  Fp8CheckpointMatrix m;
  m.name = name;
  m.rows = rows;
  m.cols = cols;
  SY_ASSIGN_OR_RETURN(m.values, ckpt.Get(name, {rows, cols}));
  if (m.values.dtype != DType::kE4M3) {
    return Status::InvalidArgument("tensor " + name + " is not F8_E4M3");
  }
  constexpr std::string_view kSuffix = ".weight";
  if (!name.ends_with(kSuffix)) {
    return Status::InvalidArgument("tensor " + name + " is F8_E4M3 but is not a module's weight");
  }
  const std::string module = name.substr(0, name.size() - kSuffix.size());
  if (qc.method != QuantMethod::kFp8) {
    return Status::InvalidArgument("tensor " + name +
                                   " is F8_E4M3 but config.json has no FP8 quantization_config");
  }
  if (!qc.Quantizes(module)) {
    return Status::InvalidArgument(
        "tensor " + name + " is F8_E4M3 but quantization_config." +
        (qc.not_converted_as_substring ? "modules_to_not_convert" : "ignore") + " lists " + module);
  }
  m.granularity = qc.granularity;
  m.block_rows = qc.block_rows;
  m.block_cols = qc.block_cols;
  const std::string scale_name = module + "." + qc.scale_name;
  switch (qc.granularity) {
    case ScaleGranularity::kTensor: {
      SY_ASSIGN_OR_RETURN(m.scales, GetScales(ckpt, scale_name, {}, {1}));
      break;
    }
    case ScaleGranularity::kChannel: {
      SY_ASSIGN_OR_RETURN(m.scales, GetScales(ckpt, scale_name, {rows, 1}, {rows}));
      break;
    }
    case ScaleGranularity::kBlock: {
      SY_ASSIGN_OR_RETURN(
          m.scales, GetScales(ckpt, scale_name,
                              {CeilDiv(rows, qc.block_rows), CeilDiv(cols, qc.block_cols)}, {}));
      break;
    }
  }
  if (m.scales.dtype != DType::kF32 && m.scales.dtype != DType::kBF16 &&
      m.scales.dtype != DType::kF16) {
    return Status::InvalidArgument("tensor " + scale_name + " has dtype " +
                                   std::string(dtype_name(m.scales.dtype)) +
                                   "; expected f32, bf16 or f16");
  }
  return m;
}

}  // namespace sy
