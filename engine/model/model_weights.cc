#include "engine/model/model_weights.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/model/expert_layout.h"
#include "engine/model/fp8_checkpoint.h"
#include "engine/model/int4_checkpoint.h"
#include "engine/model/rope.h"
#include "engine/model/weight_names.h"
#include "kernels/cpu/ops.h"

namespace sy {
namespace {

// Where weights come from (a checkpoint, or random values made on the device). Allocates each
// tensor in backend memory and keeps every buffer in `out`.
class WeightSource {
 public:
  WeightSource(Backend* backend, ModelWeights* out, Quantization quantization)
      : backend_(backend), out_(out), quantization_(quantization) {}
  virtual ~WeightSource() = default;

  // A matrix [rows, cols].
  virtual StatusOr<Tensor> Matrix(const std::string& name, int64_t rows, int64_t cols) = 0;
  // Two matrices with the same columns stacked as [2 * rows, cols].
  virtual StatusOr<Tensor> Stacked(const std::string& a, const std::string& b, int64_t rows,
                                   int64_t cols) = 0;
  // A vector of `n` values in f32.
  virtual StatusOr<Tensor> VectorF32(const std::string& name, int64_t n) = 0;

  StatusOr<Tensor> FromHost(const std::vector<float>& host) {
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(DType::kF32, 1, static_cast<int64_t>(host.size())));
    backend_->CopyToDevice(t.data, host.data(), t.nbytes());
    return t;
  }

  // A matrix a matmul reads: as the checkpoint stores it when pre-quantized (GPTQ, AWQ, FP8),
  // int8, int4 or fp8 rows when quantizing, else as Matrix gives it.
  StatusOr<Tensor> Linear(const std::string& name, int64_t rows, int64_t cols) {
    if (const std::optional<DType> stored = PreQuantizedDType(name)) {
      SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(*stored, rows, cols));
      SY_ASSIGN_OR_RETURN(std::vector<int32_t> order, UploadPreQuantized(name, t, {}));
      SY_RETURN_IF_ERROR(AttachInputOrder(name, order, &t));
      return t;
    }
    if (quantization_ == Quantization::kNone || StoredQuantized(name, rows, cols)) {
      return Matrix(name, rows, cols);
    }
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(QuantizedWeightDType(quantization_), rows, cols));
    SY_RETURN_IF_ERROR(UploadQuantized(name, t));
    return t;
  }

  // Two such matrices stacked as [2 * rows, cols]; each row keeps its own scales. With a
  // row_order (pre-quantized only), row r of each is its row row_order[r].
  StatusOr<Tensor> LinearStacked(const std::string& a, const std::string& b, int64_t rows,
                                 int64_t cols, std::span<const int32_t> row_order = {}) {
    if (const std::optional<DType> stored = PreQuantizedDType(a)) {
      if (PreQuantizedDType(b) != stored) {
        return Status::Unimplemented("tensors " + a + " and " + b + " are stored differently");
      }
      SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(*stored, 2 * rows, cols));
      SY_ASSIGN_OR_RETURN(std::vector<int32_t> order_a,
                          UploadPreQuantized(a, t.Rows(0, rows), row_order));
      SY_ASSIGN_OR_RETURN(std::vector<int32_t> order_b,
                          UploadPreQuantized(b, t.Rows(rows, rows), row_order));
      if (order_a != order_b) {
        return Status::InvalidArgument(
            "the g_idx of " + a + " and " + b +
            " group the input columns differently (act-order); stacked, they need one order");
      }
      SY_RETURN_IF_ERROR(AttachInputOrder(a, order_a, &t));
      return t;
    }
    if (!row_order.empty()) {
      return Status::Unimplemented("tensors " + a + " and " + b +
                                   " are not int4-quantized but their down_proj is (act-order)");
    }
    if (quantization_ == Quantization::kNone || StoredQuantized(a, rows, cols)) {
      return Stacked(a, b, rows, cols);
    }
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(QuantizedWeightDType(quantization_), 2 * rows, cols));
    SY_RETURN_IF_ERROR(UploadQuantized(a, t.Rows(0, rows)));
    SY_RETURN_IF_ERROR(UploadQuantized(b, t.Rows(rows, rows)));
    return t;
  }

  // Rows `pick` of matrix `name` [rows, cols], as one matrix a matmul reads (in the stored
  // dtype, FP8 rows copied exactly, or quantized rows when quantizing).
  StatusOr<Tensor> LinearRows(const std::string& name, int64_t rows, int64_t cols,
                              const std::vector<int64_t>& pick) {
    if (StoredQuantized(name, rows, cols)) {
      SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(DType::kF8, static_cast<int64_t>(pick.size()), cols));
      SY_RETURN_IF_ERROR(UploadStoredRows(name, rows, cols, pick, t));
      return t;
    }
    SY_ASSIGN_OR_RETURN(RowReader read, RowsOf(name, rows, cols));
    SY_ASSIGN_OR_RETURN(DType dtype, LinearDType(name, rows, cols));
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(dtype, static_cast<int64_t>(pick.size()), cols));
    SY_RETURN_IF_ERROR(UploadValues([&](int64_t r, float* out) { read(pick[r], out); }, t));
    return t;
  }

  // Matrix `name` [rows, cols] seen as `blocks` row blocks of `stride` rows: the transpose of
  // rows [offset, offset + n) of each block, stacked as [blocks * cols, n].
  StatusOr<Tensor> LinearTransposedBlocks(const std::string& name, int64_t rows, int64_t cols,
                                          int64_t blocks, int64_t stride, int64_t offset,
                                          int64_t n) {
    SY_ASSIGN_OR_RETURN(RowReader read, RowsOf(name, rows, cols));
    SY_ASSIGN_OR_RETURN(DType dtype, LinearDType(name, rows, cols));
    std::vector<float> host(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) read(r, host.data() + r * cols);
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(dtype, blocks * cols, n));
    SY_RETURN_IF_ERROR(UploadValues(
        [&](int64_t r, float* out) {
          const int64_t block = r / cols, col = r % cols;
          for (int64_t i = 0; i < n; ++i) out[i] = host[(block * stride + offset + i) * cols + col];
        },
        t));
    return t;
  }

  // A pre-quantized act-order down_proj needs no permutation at run time: gate_up's rows are
  // stored in down's input order instead, so silu(gate) * up comes out in that order (exact:
  // each row keeps its own scales).
  StatusOr<FfnWeights> Ffn(const FfnNames& names, int64_t inter, int64_t hidden) {
    if (names.fused_expert >= 0) return FusedFfn(names, inter, hidden);
    FfnWeights f;
    if (const std::optional<DType> stored = PreQuantizedDType(names.down)) {
      SY_ASSIGN_OR_RETURN(f.down, NewTensor(*stored, hidden, inter));
      SY_ASSIGN_OR_RETURN(std::vector<int32_t> down_order,
                          UploadPreQuantized(names.down, f.down, {}));
      SY_ASSIGN_OR_RETURN(f.gate_up,
                          LinearStacked(names.gate, names.up, inter, hidden, down_order));
      return f;
    }
    SY_ASSIGN_OR_RETURN(f.gate_up, LinearStacked(names.gate, names.up, inter, hidden));
    SY_ASSIGN_OR_RETURN(f.down, Linear(names.down, hidden, inter));
    return f;
  }

 protected:
  // Writes row r of matrix [rows, cols] as f32 values into out[cols].
  using RowReader = std::function<void(int64_t r, float* out)>;
  virtual StatusOr<RowReader> RowsOf(const std::string& name, int64_t rows, int64_t cols) = 0;

  // The dtype matrix `name` is stored in when the checkpoint holds it int4-quantized, and its
  // upload: row r of t is the checkpoint's row row_order[r] (r when empty), its columns in the
  // returned input order (ReadInt4InputOrder; empty: as stored).
  virtual std::optional<DType> PreQuantizedDType(const std::string& /*name*/) const {
    return std::nullopt;
  }
  virtual StatusOr<std::vector<int32_t>> UploadPreQuantized(
      const std::string& name, const Tensor& /*t*/, std::span<const int32_t> /*row_order*/) {
    return Status::Internal("no pre-quantized tensor " + name);
  }

  // Keeps a non-empty input order of matrix `name` in backend memory as t's input_perm.
  Status AttachInputOrder(const std::string& name, const std::vector<int32_t>& order, Tensor* t) {
    if (order.empty()) return Status::Ok();
    if (!backend_->SupportsInputPermutation()) {
      return Status::Unimplemented("act-order int4 weights (GPTQ desc_act or actorder group, " +
                                   name + ") are not implemented on the " +
                                   std::string(backend_->name()) + " backend");
    }
    SY_ASSIGN_OR_RETURN(DeviceBuffer buf, backend_->Allocate(order.size() * sizeof(int32_t)));
    backend_->CopyToDevice(buf.data(), order.data(), buf.size());
    t->input_perm = static_cast<const int32_t*>(buf.data());
    out_->total_bytes += buf.size();
    out_->buffers.push_back(std::move(buf));
    return Status::Ok();
  }

  // Whether the source holds matrix `name` in FP8 already (then Matrix loads it as kF8 rows).
  virtual bool StoredQuantized(const std::string& /*name*/, int64_t /*rows*/, int64_t /*cols*/) {
    return false;
  }
  // Rows `pick` of such an FP8 matrix into the kF8 tensor t, exactly.
  virtual Status UploadStoredRows(const std::string& name, int64_t /*rows*/, int64_t /*cols*/,
                                  const std::vector<int64_t>& /*pick*/, const Tensor& /*t*/) {
    return Status::Internal("no FP8 tensor " + name);
  }

  // Routed expert names.fused_expert of a layer whose experts are stored fused (ExpertLayout).
  virtual StatusOr<FfnWeights> FusedFfn(const FfnNames& names, int64_t /*inter*/,
                                        int64_t /*hidden*/) {
    return Status::Internal("no fused expert tensor " + names.gate);
  }

  // The dtype a float matrix stored as `name` is kept in (f32 for an FP8 one).
  virtual StatusOr<DType> StoredDType(const std::string& name, int64_t rows, int64_t cols) = 0;

  // The dtype of matrix `name` as a matmul reads it, for the loads that rearrange its rows.
  StatusOr<DType> LinearDType(const std::string& name, int64_t rows, int64_t cols) {
    if (PreQuantizedDType(name)) {
      return Status::Unimplemented("tensor " + name +
                                   " is stored int4-quantized; MLA projections must not be");
    }
    if (quantization_ != Quantization::kNone) return QuantizedWeightDType(quantization_);
    return StoredDType(name, rows, cols);
  }

  // Quantizes matrix `name` row by row into the int8, int4 or fp8 tensor t.
  Status UploadQuantized(const std::string& name, const Tensor& t) {
    SY_ASSIGN_OR_RETURN(RowReader read_row, RowsOf(name, t.rows, t.cols));
    return UploadValues(read_row, t);
  }

  // Writes the rows `read_row` gives into t (f32, bf16, f16, or int8 / int4 / fp8 rows),
  // converting or quantizing each.
  Status UploadValues(const RowReader& read_row, const Tensor& t) {
    std::vector<float> values(t.cols);
    return UploadRows(t, [&](int64_t r, uint8_t* row) {
      read_row(r, values.data());
      switch (t.dtype) {
        case DType::kI8:
          quantize_i8_row(values.data(), t.cols, row);
          break;
        case DType::kI4G32:
        case DType::kI4G64:
        case DType::kI4G128:
          quantize_i4_row(t.dtype, values.data(), t.cols, row);
          break;
        case DType::kF8:
          quantize_f8_row(values.data(), t.cols, row);
          break;
        case DType::kBF16:
        case DType::kF16:
          for (int64_t c = 0; c < t.cols; ++c) {
            const uint16_t v =
                t.dtype == DType::kBF16 ? f32_to_bf16(values[c]) : f32_to_f16(values[c]);
            std::memcpy(row + 2 * c, &v, 2);
          }
          break;
        default:
          std::memcpy(row, values.data(), t.cols * sizeof(float));
      }
      return Status::Ok();
    });
  }

  // Fills tensor t row by row (write_row(r, bytes of row r)) through a host staging buffer.
  Status UploadRows(const Tensor& t, const std::function<Status(int64_t, uint8_t*)>& write_row) {
    constexpr size_t kStagingBytes = size_t{4} << 20;
    const size_t row_bytes = t.row_bytes();
    const int64_t rows_per_copy =
        std::max<int64_t>(1, static_cast<int64_t>(kStagingBytes / row_bytes));
    std::vector<uint8_t> staging(std::min<int64_t>(rows_per_copy, t.rows) * row_bytes);
    for (int64_t r0 = 0; r0 < t.rows; r0 += rows_per_copy) {
      const int64_t n = std::min(rows_per_copy, t.rows - r0);
      for (int64_t r = 0; r < n; ++r) {
        SY_RETURN_IF_ERROR(write_row(r0 + r, staging.data() + r * row_bytes));
      }
      backend_->CopyToDevice(t.Rows(r0, n).data, staging.data(), n * row_bytes);
    }
    return Status::Ok();
  }

  StatusOr<Tensor> NewTensor(DType dtype, int64_t rows, int64_t cols) {
    Tensor t{nullptr, dtype, rows, cols};
    SY_ASSIGN_OR_RETURN(DeviceBuffer buf, backend_->Allocate(t.nbytes()));
    t.data = buf.data();
    out_->total_bytes += t.nbytes();
    out_->buffers.push_back(std::move(buf));
    return t;
  }

  Backend* backend_;
  ModelWeights* out_;
  Quantization quantization_;
};

// Copies checkpoint tensors into backend memory; FP8 ones (F8_E4M3 with scales, per the
// config's quantization_config) become DType::kF8 rows.
class WeightUploader final : public WeightSource {
 public:
  WeightUploader(const Checkpoint& ckpt, const ModelConfig& config, Backend* backend,
                 ModelWeights* out, Quantization quantization,
                 std::optional<Int4CheckpointFormat> int4 = {})
      : WeightSource(backend, out, quantization),
        ckpt_(ckpt),
        stored_(config.quantization_config),
        num_experts_(config.num_experts),
        int4_(int4) {}

  // A matrix [rows, cols] in its stored dtype.
  StatusOr<Tensor> Matrix(const std::string& name, int64_t rows, int64_t cols) override {
    if (StoredQuantized(name, rows, cols)) {
      SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(DType::kF8, rows, cols));
      SY_RETURN_IF_ERROR(UploadFp8(name, t));
      return t;
    }
    const int64_t shape[] = {rows, cols};
    SY_ASSIGN_OR_RETURN(TensorView v, ckpt_.Get(name, shape));
    SY_RETURN_IF_ERROR(CheckFloat(v));
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(v.dtype, rows, cols));
    backend_->CopyToDevice(t.data, v.data, t.nbytes());
    return t;
  }

  // Two matrices with the same columns stacked as [rows_a + rows_b, cols].
  StatusOr<Tensor> Stacked(const std::string& a, const std::string& b, int64_t rows,
                           int64_t cols) override {
    if (StoredQuantized(a, rows, cols) && StoredQuantized(b, rows, cols)) {
      SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(DType::kF8, 2 * rows, cols));
      SY_RETURN_IF_ERROR(UploadFp8(a, t.Rows(0, rows)));
      SY_RETURN_IF_ERROR(UploadFp8(b, t.Rows(rows, rows)));
      return t;
    }
    const int64_t shape[] = {rows, cols};
    SY_ASSIGN_OR_RETURN(TensorView va, ckpt_.Get(a, shape));
    SY_ASSIGN_OR_RETURN(TensorView vb, ckpt_.Get(b, shape));
    SY_RETURN_IF_ERROR(CheckFloat(va));
    if (va.dtype != vb.dtype) {
      return Status::Unimplemented("tensors " + a + " and " + b + " have different dtypes");
    }
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(va.dtype, 2 * rows, cols));
    backend_->CopyToDevice(t.data, va.data, va.nbytes);
    backend_->CopyToDevice(t.Rows(rows, rows).data, vb.data, vb.nbytes);
    return t;
  }

  // A vector of `n` values (any float dtype) converted to f32.
  StatusOr<Tensor> VectorF32(const std::string& name, int64_t n) override {
    const int64_t shape[] = {n};
    SY_ASSIGN_OR_RETURN(TensorView v, ckpt_.Get(name, shape));
    SY_RETURN_IF_ERROR(CheckFloat(v));
    std::vector<float> host(n);
    for (int64_t i = 0; i < n; ++i) host[i] = load_as_f32(v.data, v.dtype, i);
    return FromHost(host);
  }

  // An FP8 matrix that is rearranged at load beyond picking rows (MLA's transposed W_UK) is
  // kept in f32: its values fp8 * scale are exact there, and no longer in bf16 (other servers
  // round them to bf16); for DeepSeek-V3 that is 2 GB beside 671 GB of FP8.
  StatusOr<DType> StoredDType(const std::string& name, int64_t rows, int64_t cols) override {
    if (StoredQuantized(name, rows, cols)) return DType::kF32;
    const int64_t shape[] = {rows, cols};
    SY_ASSIGN_OR_RETURN(TensorView v, ckpt_.Get(name, shape));
    SY_RETURN_IF_ERROR(CheckFloat(v));
    return v.dtype;
  }

  StatusOr<RowReader> RowsOf(const std::string& name, int64_t rows, int64_t cols) override {
    if (StoredQuantized(name, rows, cols)) {
      SY_ASSIGN_OR_RETURN(Fp8CheckpointMatrix m, FindFp8Matrix(ckpt_, stored_, name, rows, cols));
      return RowReader([m](int64_t r, float* out) { m.DequantizeRow(r, out); });
    }
    const int64_t shape[] = {rows, cols};
    SY_ASSIGN_OR_RETURN(TensorView v, ckpt_.Get(name, shape));
    SY_RETURN_IF_ERROR(CheckFloat(v));
    return RowReader([v, cols](int64_t r, float* out) {
      for (int64_t c = 0; c < cols; ++c) out[c] = load_as_f32(v.data, v.dtype, r * cols + c);
    });
  }

  std::optional<DType> PreQuantizedDType(const std::string& name) const override {
    if (!int4_ || !HasInt4Linear(ckpt_, name)) return std::nullopt;
    return int4_->dtype;
  }

  // Converts on the host (ReadInt4Linear), then one copy.
  StatusOr<std::vector<int32_t>> UploadPreQuantized(const std::string& name, const Tensor& t,
                                                    std::span<const int32_t> row_order) override {
    SY_ASSIGN_OR_RETURN(std::vector<int32_t> order,
                        ReadInt4InputOrder(ckpt_, *int4_, name, t.cols));
    std::vector<uint8_t> host(t.nbytes());
    SY_RETURN_IF_ERROR(ReadInt4Linear(ckpt_, *int4_, name, t.rows, t.cols, host.data(), order));
    if (!row_order.empty()) {
      if (static_cast<int64_t>(row_order.size()) != t.rows) {
        return Status::Internal("row order of " + name + " has the wrong length");
      }
      std::vector<uint8_t> in_order(host.size());
      const size_t row_bytes = t.row_bytes();
      for (int64_t r = 0; r < t.rows; ++r) {
        std::memcpy(in_order.data() + r * row_bytes, host.data() + row_order[r] * row_bytes,
                    row_bytes);
      }
      host.swap(in_order);
    }
    backend_->CopyToDevice(t.data, host.data(), host.size());
    return order;
  }

  bool StoredQuantized(const std::string& name, int64_t rows, int64_t cols) override {
    const int64_t shape[] = {rows, cols};
    const StatusOr<TensorView> v = ckpt_.Get(name, shape);
    return v.ok() && v->dtype == DType::kE4M3;
  }

  Status UploadStoredRows(const std::string& name, int64_t rows, int64_t cols,
                          const std::vector<int64_t>& pick, const Tensor& t) override {
    SY_ASSIGN_OR_RETURN(Fp8CheckpointMatrix m, FindFp8Matrix(ckpt_, stored_, name, rows, cols));
    return UploadRows(t, [&](int64_t r, uint8_t* out) { return m.ConvertRow(pick[r], out); });
  }

  // gate_up_proj's rows of an expert are already its gate rows then its up rows: the stacked
  // gate_up a matmul reads. Quantization is per row, so it gives the bytes the per-expert
  // tensors would.
  StatusOr<FfnWeights> FusedFfn(const FfnNames& names, int64_t inter, int64_t hidden) override {
    FfnWeights f;
    SY_ASSIGN_OR_RETURN(f.gate_up, ExpertMatrix(names.gate, names.fused_expert, 2 * inter, hidden));
    SY_ASSIGN_OR_RETURN(f.down, ExpertMatrix(names.down, names.fused_expert, hidden, inter));
    return f;
  }

 private:
  // Converts the checkpoint's FP8 matrix `name` into the kF8 tensor t through a host staging
  // buffer.
  Status UploadFp8(const std::string& name, const Tensor& t) {
    if (!backend_->SupportsWeightDType(DType::kF8)) {
      return Status::Unimplemented("FP8 weights (tensor " + name + ") are not implemented on the " +
                                   std::string(backend_->name()) + " backend");
    }
    SY_ASSIGN_OR_RETURN(Fp8CheckpointMatrix m, FindFp8Matrix(ckpt_, stored_, name, t.rows, t.cols));
    return UploadRows(t, [&](int64_t r, uint8_t* out) { return m.ConvertRow(r, out); });
  }

  static Status CheckFloat(const TensorView& v) {
    if (v.dtype == DType::kF32 || v.dtype == DType::kBF16 || v.dtype == DType::kF16) {
      return Status::Ok();
    }
    return Status::Unimplemented("tensor " + v.name + " has dtype " +
                                 std::string(dtype_name(v.dtype)) + "; expected f32, bf16 or f16");
  }

  // Expert `expert`'s [rows, cols] matrix of the fused tensor `name` [experts, rows, cols].
  StatusOr<Tensor> ExpertMatrix(const std::string& name, int64_t expert, int64_t rows,
                                int64_t cols) {
    const int64_t shape[] = {num_experts_, rows, cols};
    SY_ASSIGN_OR_RETURN(TensorView v, ckpt_.Get(name, shape));
    if (v.dtype != DType::kF32 && v.dtype != DType::kBF16 && v.dtype != DType::kF16) {
      return Status::Unimplemented("fused expert tensor " + name + " has dtype " +
                                   std::string(dtype_name(v.dtype)) +
                                   "; fused experts load from f32, bf16 or f16 only");
    }
    const int64_t first = expert * rows * cols;
    if (quantization_ == Quantization::kNone) {
      SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(v.dtype, rows, cols));
      backend_->CopyToDevice(
          t.data, static_cast<const uint8_t*>(v.data) + first * dtype_size(v.dtype), t.nbytes());
      return t;
    }
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(QuantizedWeightDType(quantization_), rows, cols));
    SY_RETURN_IF_ERROR(UploadValues(
        [&](int64_t r, float* out) {
          for (int64_t c = 0; c < cols; ++c) {
            out[c] = load_as_f32(v.data, v.dtype, first + r * cols + c);
          }
        },
        t));
    return t;
  }

  const Checkpoint& ckpt_;
  const QuantizationConfig& stored_;
  int64_t num_experts_;
  std::optional<Int4CheckpointFormat> int4_;
};

// Random weights made in backend memory by the backend itself (no files, no host copies):
// uniform with the standard deviation of make-model's N(0, 0.02), norms 1, biases small.
class RandomWeights final : public WeightSource {
 public:
  RandomWeights(uint64_t seed, DType dtype, Backend* backend, ModelWeights* out,
                Quantization quantization)
      : WeightSource(backend, out, quantization), seed_(seed), dtype_(dtype) {}

  StatusOr<Tensor> Matrix(const std::string& name, int64_t rows, int64_t cols) override {
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(dtype_, rows, cols));
    backend_->FillRandom(t, SeedFor(name), kUniformScale);
    return t;
  }

  StatusOr<Tensor> Stacked(const std::string& a, const std::string& b, int64_t rows,
                           int64_t cols) override {
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(dtype_, 2 * rows, cols));
    backend_->FillRandom(t.Rows(0, rows), SeedFor(a), kUniformScale);
    backend_->FillRandom(t.Rows(rows, rows), SeedFor(b), kUniformScale);
    return t;
  }

  StatusOr<Tensor> VectorF32(const std::string& name, int64_t n) override {
    if (name.find("norm") != std::string::npos) return FromHost(std::vector<float>(n, 1.0f));
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(DType::kF32, 1, n));
    backend_->FillRandom(t, SeedFor(name), kUniformScale);
    return t;
  }

  StatusOr<DType> StoredDType(const std::string&, int64_t, int64_t) override { return dtype_; }

  // The values FillRandom would store in dtype_ (cpu::fill_random's), read back as f32.
  StatusOr<RowReader> RowsOf(const std::string& name, int64_t /*rows*/, int64_t cols) override {
    return RowReader([seed = SeedFor(name), dtype = dtype_, cols](int64_t r, float* out) {
      for (int64_t c = 0; c < cols; ++c) {
        const float v = cpu::random_uniform_at(seed, r * cols + c, kUniformScale);
        out[c] = dtype == DType::kBF16  ? bf16_to_f32(f32_to_bf16(v))
                 : dtype == DType::kF16 ? f16_to_f32(f32_to_f16(v))
                                        : v;
      }
    });
  }

 private:
  static constexpr float kUniformScale = 0.02f * 1.7320508f;  // std 0.02

  uint64_t SeedFor(const std::string& name) const {
    uint64_t h = 1469598103934665603ull ^ seed_;  // FNV-1a
    for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
    return h;
  }

  uint64_t seed_;
  DType dtype_;
};

Status LoadMlp(const ModelConfig& c, const LayerWeightNames& n, bool load_routed_experts,
               WeightSource& up, LayerWeights& l);

// MLA's projections, rearranged for the absorbed form (see LayerWeights).
Status LoadMla(const ModelConfig& c, const LayerWeightNames& n, WeightSource& up, LayerWeights& l) {
  const MlaConfig& m = c.mla;
  const int64_t h = c.hidden_size;
  const int64_t heads = c.num_heads;
  const int64_t latent = m.kv_lora_rank;
  const int64_t nope = m.qk_nope_head_dim;
  const int64_t rope = m.qk_rope_head_dim;
  const int64_t qk = nope + rope;
  int64_t q_in = h;
  std::string q_name = n.q;
  if (!n.q_a.empty()) {
    q_in = m.q_lora_rank;
    q_name = n.q_b;
    SY_ASSIGN_OR_RETURN(l.wq_a, up.Linear(n.q_a, q_in, h));
    SY_ASSIGN_OR_RETURN(l.q_a_norm, up.VectorF32(n.q_a_norm, q_in));
  }
  std::vector<int64_t> q_nope, q_rope, latent_rows, rope_rows, uv_rows;
  const int64_t kvb = nope + m.v_head_dim;
  for (int64_t head = 0; head < heads; ++head) {
    for (int64_t i = 0; i < nope; ++i) q_nope.push_back(head * qk + i);
    for (int64_t i = 0; i < rope; ++i) q_rope.push_back(head * qk + nope + i);
    for (int64_t i = 0; i < m.v_head_dim; ++i) uv_rows.push_back(head * kvb + nope + i);
  }
  for (int64_t i = 0; i < latent; ++i) latent_rows.push_back(i);
  for (int64_t i = 0; i < rope; ++i) rope_rows.push_back(latent + i);
  SY_ASSIGN_OR_RETURN(l.wq_nope, up.LinearRows(q_name, heads * qk, q_in, q_nope));
  SY_ASSIGN_OR_RETURN(l.wq_rope, up.LinearRows(q_name, heads * qk, q_in, q_rope));
  SY_ASSIGN_OR_RETURN(l.wkv_latent, up.LinearRows(n.kv_a, latent + rope, h, latent_rows));
  SY_ASSIGN_OR_RETURN(l.wkv_rope, up.LinearRows(n.kv_a, latent + rope, h, rope_rows));
  SY_ASSIGN_OR_RETURN(l.kv_a_norm, up.VectorF32(n.kv_a_norm, latent));
  SY_ASSIGN_OR_RETURN(l.w_uk_t,
                      up.LinearTransposedBlocks(n.kv_b, heads * kvb, latent, heads, kvb, 0, nope));
  SY_ASSIGN_OR_RETURN(l.w_uv, up.LinearRows(n.kv_b, heads * kvb, latent, uv_rows));
  SY_ASSIGN_OR_RETURN(l.wo, up.Linear(n.o, h, heads * m.v_head_dim));
  return Status::Ok();
}

Status LoadLayer(const ModelConfig& c, const LayerWeightNames& n, bool load_routed_experts,
                 WeightSource& up, LayerWeights& l) {
  const int64_t h = c.hidden_size;
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  SY_ASSIGN_OR_RETURN(l.input_norm, up.VectorF32(n.input_norm, h));
  SY_ASSIGN_OR_RETURN(l.post_attn_norm, up.VectorF32(n.post_attn_norm, h));
  if (IsMla(c)) {
    SY_RETURN_IF_ERROR(LoadMla(c, n, up, l));
    return LoadMlp(c, n, load_routed_experts, up, l);
  }
  SY_ASSIGN_OR_RETURN(l.wq, up.Linear(n.q, q_dim, h));
  SY_ASSIGN_OR_RETURN(l.wk, up.Linear(n.k, kv_dim, h));
  SY_ASSIGN_OR_RETURN(l.wv, up.Linear(n.v, kv_dim, h));
  SY_ASSIGN_OR_RETURN(l.wo, up.Linear(n.o, h, q_dim));
  if (!n.q_bias.empty()) {
    SY_ASSIGN_OR_RETURN(l.bq, up.VectorF32(n.q_bias, q_dim));
    SY_ASSIGN_OR_RETURN(l.bk, up.VectorF32(n.k_bias, kv_dim));
    SY_ASSIGN_OR_RETURN(l.bv, up.VectorF32(n.v_bias, kv_dim));
  }
  if (!n.o_bias.empty()) {
    SY_ASSIGN_OR_RETURN(l.bo, up.VectorF32(n.o_bias, h));
  }
  if (!n.q_norm.empty()) {
    const bool full = c.qk_norm == QkNorm::kFull;
    SY_ASSIGN_OR_RETURN(l.q_norm, up.VectorF32(n.q_norm, full ? q_dim : c.head_dim));
    SY_ASSIGN_OR_RETURN(l.k_norm, up.VectorF32(n.k_norm, full ? kv_dim : c.head_dim));
  }
  return LoadMlp(c, n, load_routed_experts, up, l);
}

Status LoadMlp(const ModelConfig& c, const LayerWeightNames& n, bool load_routed_experts,
               WeightSource& up, LayerWeights& l) {
  const int64_t h = c.hidden_size;
  l.is_moe = !n.router.empty();
  if (!l.is_moe) {
    SY_ASSIGN_OR_RETURN(l.dense, up.Ffn(n.dense, c.dense_intermediate_size, h));
    return Status::Ok();
  }
  SY_ASSIGN_OR_RETURN(l.router, up.Matrix(n.router, c.num_experts, h));
  if (!n.router_bias.empty()) {
    SY_ASSIGN_OR_RETURN(l.router_bias, up.VectorF32(n.router_bias, c.num_experts));
  }
  l.experts.resize(n.experts.size());
  for (size_t e = 0; load_routed_experts && e < n.experts.size(); ++e) {
    SY_ASSIGN_OR_RETURN(l.experts[e], up.Ffn(n.experts[e], c.moe_intermediate_size, h));
  }
  if (!n.shared_expert.gate.empty()) {
    SY_ASSIGN_OR_RETURN(l.shared_expert,
                        up.Ffn(n.shared_expert, c.shared_expert_intermediate_size, h));
  }
  if (!n.shared_expert_gate.empty()) {
    SY_ASSIGN_OR_RETURN(l.shared_expert_gate, up.Matrix(n.shared_expert_gate, 1, h));
  }
  return Status::Ok();
}

Status CheckQuantization(Quantization q, const Backend& backend) {
  if (q != Quantization::kNone && !backend.SupportsWeightDType(QuantizedWeightDType(q))) {
    return Status::Unimplemented("--quantization " + std::string(QuantizationName(q)) +
                                 " is not implemented on the " + std::string(backend.name()) +
                                 " backend");
  }
  if (q == Quantization::kFp8 && !backend.SupportsWeightDType(DType::kF8)) {
    return Status::Unimplemented("--quantization fp8 is not implemented on the " +
                                 std::string(backend.name()) + " backend");
  }
  return Status::Ok();
}

Status LoadAll(const ModelConfig& c, const ModelWeightNames& names, bool load_routed_experts,
               WeightSource& up, ModelWeights& w) {
  if (c.clip_qkv) {
    return Status::Unimplemented("clip_qkv is not supported yet");
  }
  SY_ASSIGN_OR_RETURN(w.embed, up.Matrix(names.embed, c.vocab_size, c.hidden_size));
  if (w.embed.dtype == DType::kF8) {
    return Status::Unimplemented("the embedding table " + names.embed +
                                 " is stored in FP8; only matmul weights may be");
  }
  if (names.lm_head.empty()) {
    w.lm_head = w.embed;
  } else {
    SY_ASSIGN_OR_RETURN(w.lm_head, up.Linear(names.lm_head, c.vocab_size, c.hidden_size));
  }
  SY_ASSIGN_OR_RETURN(w.final_norm, up.VectorF32(names.final_norm, c.hidden_size));
  SY_ASSIGN_OR_RETURN(RopeTables rope, ComputeRopeTables(c));
  SY_ASSIGN_OR_RETURN(w.inv_freq, up.FromHost(rope.inv_freq));
  w.rotary_dim = rope.rotary_dim;
  w.rope_attention_scale = rope.attention_scale;
  w.layers.resize(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    SY_RETURN_IF_ERROR(LoadLayer(c, names.layers[i], load_routed_experts, up, w.layers[i]));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<Quantization> ParseQuantization(std::string_view name) {
  if (name == "none") return Quantization::kNone;
  if (name == "int8") return Quantization::kInt8;
  if (name == "int4") return Quantization::kInt4;
  if (name == "fp8") return Quantization::kFp8;
  return Status::InvalidArgument("unknown --quantization '" + std::string(name) +
                                 "' (expected none, int8, int4 or fp8)");
}

std::string_view QuantizationName(Quantization q) {
  switch (q) {
    case Quantization::kNone:
      return "none";
    case Quantization::kInt8:
      return "int8";
    case Quantization::kInt4:
      return "int4";
    case Quantization::kFp8:
      return "fp8";
  }
  return "?";
}

DType QuantizedWeightDType(Quantization q) {
  switch (q) {
    case Quantization::kInt8:
      return DType::kI8;
    case Quantization::kInt4:
      return DType::kI4G128;
    case Quantization::kFp8:
      return DType::kF8;
    default:
      return DType::kF32;
  }
}

StatusOr<ModelWeights> LoadModelWeights(const ModelConfig& c, const Checkpoint& ckpt,
                                        Backend* backend, bool load_routed_experts,
                                        Quantization quantization) {
  SY_RETURN_IF_ERROR(CheckQuantization(quantization, *backend));
  SY_ASSIGN_OR_RETURN(std::optional<Int4CheckpointFormat> int4,
                      ReadInt4CheckpointFormat(ckpt.dir()));
  if (int4 && !backend->SupportsWeightDType(int4->dtype)) {
    return Status::Unimplemented("int4 (GPTQ/AWQ) checkpoints are not implemented on the " +
                                 std::string(backend->name()) + " backend");
  }
  SY_ASSIGN_OR_RETURN(const ModelWeightNames names, CheckpointWeightNames(c, ckpt));
  ModelWeights w;
  WeightUploader up(ckpt, c, backend, &w, quantization, int4);
  SY_RETURN_IF_ERROR(LoadAll(c, names, load_routed_experts, up, w));
  for (const LayerWeights& l : w.layers) {
    for (const Tensor* t : {&l.w_uk_t, &l.w_uv}) {
      if (t->data != nullptr && !backend->SupportsHeadMatMulDType(t->dtype)) {
        return Status::Unimplemented(
            "MLA absorption (kv_b_proj) with " + std::string(dtype_name(t->dtype)) +
            " weights is not implemented on the " + std::string(backend->name()) + " backend");
      }
    }
  }
  return w;
}

size_t WeightBytes(const ModelConfig& c, DType dtype, Quantization quantization) {
  const int64_t h = c.hidden_size;
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  // A matrix kept in `dtype`, and one a matmul reads (rows with scales when the checkpoint
  // stores it in FP8 or it is quantized at load).
  const bool stored_fp8 = c.quantization_config.method == QuantMethod::kFp8;
  auto plain = [&](int64_t rows, int64_t cols) { return rows * dtype_row_bytes(dtype, cols); };
  auto linear = [&](int64_t rows, int64_t cols) {
    if (stored_fp8) return rows * dtype_row_bytes(DType::kF8, cols);
    return quantization != Quantization::kNone
               ? rows * dtype_row_bytes(QuantizedWeightDType(quantization), cols)
               : plain(rows, cols);
  };
  auto ffn = [&](int64_t inter) { return inter > 0 ? linear(2 * inter, h) + linear(h, inter) : 0; };
  // Checkpoints usually keep the LM head unquantized (modules_to_not_convert).
  const bool lm_head_linear =
      quantization != Quantization::kNone || c.quantization_config.Quantizes("lm_head");
  size_t bytes = plain(c.vocab_size, h);
  if (!c.tie_word_embeddings) {
    bytes += lm_head_linear ? linear(c.vocab_size, h) : plain(c.vocab_size, h);
  }
  int64_t vector = h;
  const MlaConfig& m = c.mla;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    if (IsMla(c)) {
      const int64_t heads = c.num_heads;
      const int64_t q_in = m.q_lora_rank > 0 ? m.q_lora_rank : h;
      bytes += (m.q_lora_rank > 0 ? linear(q_in, h) : 0) + linear(heads * c.head_dim, q_in) +
               linear(m.kv_lora_rank + m.qk_rope_head_dim, h) +
               linear(heads * m.kv_lora_rank, m.qk_nope_head_dim) +
               linear(heads * m.v_head_dim, m.kv_lora_rank) + linear(h, heads * m.v_head_dim);
      vector += 2 * h + m.q_lora_rank + m.kv_lora_rank;
    } else {
      bytes += linear(q_dim, h) + 2 * linear(kv_dim, h) + linear(h, q_dim);
      vector += 2 * h + 2 * c.head_dim;
    }
    if (c.layer_is_moe[i]) {
      bytes += plain(c.num_experts, h) + c.num_experts * ffn(c.moe_intermediate_size) +
               ffn(c.shared_expert_intermediate_size) + (c.shared_expert_gated ? plain(1, h) : 0);
      if (c.router.correction_bias) vector += c.num_experts;
    } else {
      bytes += ffn(c.dense_intermediate_size);
    }
  }
  return bytes + static_cast<size_t>(vector) * sizeof(float);
}

StatusOr<ModelWeights> RandomModelWeights(const ModelConfig& c, Backend* backend, uint64_t seed,
                                          DType dtype, Quantization quantization) {
  if (dtype != DType::kF32 && dtype != DType::kBF16 && dtype != DType::kF16) {
    return Status::InvalidArgument("random weights need dtype f32, bf16 or f16");
  }
  SY_RETURN_IF_ERROR(CheckQuantization(quantization, *backend));
  ModelWeights w;
  RandomWeights up(seed, dtype, backend, &w, quantization);
  SY_RETURN_IF_ERROR(LoadAll(c, WeightNamesFor(c), /*load_routed_experts=*/true, up, w));
  return w;
}

StatusOr<FfnWeights> LoadExpertWeights(const ModelConfig& c, const Checkpoint& ckpt,
                                       Backend* backend, const FfnNames& names,
                                       std::vector<DeviceBuffer>* buffers) {
  ModelWeights owner;
  WeightUploader up(ckpt, c, backend, &owner, Quantization::kNone);
  SY_ASSIGN_OR_RETURN(FfnWeights f, up.Ffn(names, c.moe_intermediate_size, c.hidden_size));
  for (DeviceBuffer& b : owner.buffers) buffers->push_back(std::move(b));
  return f;
}

}  // namespace sy
