// Act-order int4 checkpoints (GPTQ desc_act, compressed-tensors pack-quantized actorder "group")
// load exactly (engine/model/int4_checkpoint.h): each group's columns are stored together in
// ReadInt4InputOrder's order and the CPU backend's MatMul reads x in that order
// (Tensor::input_perm). Checked against the weights dequantized in torch with g_idx
// (tests/golden/int4/gptq's layer.act_order, tests/golden/int4/pack_quantized_act_order), against
// the same product without the permutation, on whole models written by make-model --desc-act,
// and on g_idx that act-order never writes, which are refused naming g_idx (weight_g_idx).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "engine/backend/cpu_backend.h"
#include "engine/model/checkpoint.h"
#include "engine/model/config.h"
#include "engine/model/int4_checkpoint.h"
#include "engine/model/make_model.h"
#include "engine/model/model_weights.h"
#include "engine/model/safetensors.h"
#include "engine/model/safetensors_writer.h"
#include "engine/runner/generator.h"
#include "kernels/cpu/testing.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

constexpr int64_t kRows = 8, kCols = 256;  // layer.act_order of the GPTQ fixture, group 128

struct Fixture {
  std::unique_ptr<Checkpoint> ckpt;
  Int4CheckpointFormat format;
};

Fixture OpenGptqFixture() {
  const std::string dir = testing::GoldenDir() + "/int4/gptq";
  auto f = ReadInt4CheckpointFormat(dir);
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_TRUE(f.ok() && f->has_value() && ckpt.ok());
  return {std::move(*ckpt), **f};
}

// `order` is a permutation of the cols columns that puts them in groups of `group` by the
// checkpoint's g_idx tensor `g_idx_name`.
void ExpectGroupOrder(const Checkpoint& ckpt, const std::string& g_idx_name,
                      const std::vector<int32_t>& order, int64_t cols, int64_t group) {
  ASSERT_EQ(static_cast<int64_t>(order.size()), cols);
  std::vector<int32_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < cols; ++i) ASSERT_EQ(sorted[i], i) << "not a permutation";
  auto g_idx = ckpt.Get(g_idx_name, {cols});
  ASSERT_TRUE(g_idx.ok());
  for (int64_t c = 0; c < cols; ++c) {
    EXPECT_EQ(static_cast<const int32_t*>(g_idx->data)[order[c]], c / group);
  }
}

// ReadInt4Linear of `weight` in `order` gives, row by row, the scales and the weights (column
// order[c] at c) that torch dequantized into dir/expected.safetensors.
void ExpectRowsMatchTorch(const Checkpoint& ckpt, const Int4CheckpointFormat& format,
                          const std::string& dir, const std::string& weight, int64_t rows,
                          int64_t cols, int64_t group, const std::vector<int32_t>& order) {
  const DType t = format.dtype;
  const size_t row_bytes = dtype_row_bytes(t, cols);
  std::vector<uint8_t> got(rows * row_bytes);
  const Status read = ReadInt4Linear(ckpt, format, weight, rows, cols, got.data(), order);
  ASSERT_TRUE(read.ok()) << read.ToString();
  auto expected = SafetensorsFile::Open(dir + "/expected.safetensors");
  ASSERT_TRUE(expected.ok());
  auto want = (*expected)->Get(weight);
  auto want_scale = (*expected)->Get("layer.act_order.scale");
  ASSERT_TRUE(want.ok() && want_scale.ok());
  const auto* w = static_cast<const float*>(want->data);
  const auto* s = static_cast<const float*>(want_scale->data);
  const int64_t groups = (cols + group - 1) / group;
  for (int64_t j = 0; j < rows; ++j) {
    const uint8_t* row = got.data() + j * row_bytes;
    for (int64_t g = 0; g < groups; ++g) ASSERT_EQ(int4_row_scale(row, g), s[g * rows + j]);
    for (int64_t c = 0; c < cols; ++c) {
      // The min (-scale * zero) is rounded to f16: at most 2^-11 of 16 scales.
      const float scale = s[c / group * rows + j];
      ASSERT_NEAR(int4_row_value(t, row, cols, c), w[j * cols + order[c]], scale * 16 / 2048)
          << "row " << j << " col " << c;
    }
  }
}

TEST(Int4ActOrder, LoadsTheTorchDequantizedWeightsInGroupOrder) {
  Fixture fx = OpenGptqFixture();
  const std::string weight = "layer.act_order.weight";
  auto order = ReadInt4InputOrder(*fx.ckpt, fx.format, weight, kCols);
  ASSERT_TRUE(order.ok()) << order.status().ToString();
  ExpectGroupOrder(*fx.ckpt, "layer.act_order.g_idx", *order, kCols, 128);
  // Stable: within a group, the checkpoint's column order.
  for (int64_t c = 1; c < kCols; ++c) {
    if (c % 128 != 0) {
      EXPECT_LT((*order)[c - 1], (*order)[c]);
    }
  }
  ExpectRowsMatchTorch(*fx.ckpt, fx.format, testing::GoldenDir() + "/int4/gptq", weight, kRows,
                       kCols, 128, *order);
  std::vector<uint8_t> rows(kRows * dtype_row_bytes(fx.format.dtype, kCols));
  // Without its order the act-order linear is refused, naming desc_act.
  const Status st = ReadInt4Linear(*fx.ckpt, fx.format, weight, kRows, kCols, rows.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("desc_act"), std::string::npos) << st.message();
  // Linears in order need none.
  auto plain = ReadInt4InputOrder(*fx.ckpt, fx.format, "layer.a.weight", 192);
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->empty());
}

// compressed-tensors' actorder "group": [16, 80] in groups of 32 (the last of 16), asymmetric,
// weight_packed in the original column order.
TEST(Int4ActOrder, PackQuantizedLoadsTheTorchDequantizedWeightsInGroupOrder) {
  constexpr int64_t rows_n = 16, cols_n = 80, group = 32;
  const std::string dir = testing::GoldenDir() + "/int4/pack_quantized_act_order";
  auto f = ReadInt4CheckpointFormat(dir);
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(f.ok() && f->has_value() && ckpt.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->method, Int4CheckpointFormat::Method::kPackQuantized);
  EXPECT_TRUE((*f)->act_order);
  EXPECT_FALSE((*f)->symmetric);
  const std::string weight = "layer.act_order.weight";
  EXPECT_TRUE(HasInt4Linear(**ckpt, weight));
  auto order = ReadInt4InputOrder(**ckpt, **f, weight, cols_n);
  ASSERT_TRUE(order.ok()) << order.status().ToString();
  ExpectGroupOrder(**ckpt, "layer.act_order.weight_g_idx", *order, cols_n, group);
  ExpectRowsMatchTorch(**ckpt, **f, dir, weight, rows_n, cols_n, group, *order);
  std::vector<uint8_t> rows(rows_n * dtype_row_bytes((*f)->dtype, cols_n));
  // Without its order the act-order linear is refused, naming weight_g_idx and actorder.
  const Status st = ReadInt4Linear(**ckpt, **f, weight, rows_n, cols_n, rows.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("layer.act_order.weight_g_idx is not i / group_size (act-order, "
                              "actorder group)"),
            std::string::npos)
      << st.message();
}

TEST(Int4ActOrder, MatMulReadsXInTheWeightsInputOrder) {
  Fixture fx = OpenGptqFixture();
  auto order = ReadInt4InputOrder(*fx.ckpt, fx.format, "layer.act_order.weight", kCols);
  ASSERT_TRUE(order.ok() && !order->empty());
  CpuBackend backend(2);
  const DType t = fx.format.dtype;
  auto w_buf = backend.Allocate(kRows * dtype_row_bytes(t, kCols));
  ASSERT_TRUE(w_buf.ok());
  ASSERT_TRUE(ReadInt4Linear(*fx.ckpt, fx.format, "layer.act_order.weight", kRows, kCols,
                             static_cast<uint8_t*>(w_buf->data()), *order)
                  .ok());
  constexpr int64_t kTokens = 3;
  std::vector<float> x(kTokens * kCols), x_gathered(kTokens * kCols);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) + 0.1f;
  for (int64_t m = 0; m < kTokens; ++m) {
    for (int64_t c = 0; c < kCols; ++c) x_gathered[m * kCols + c] = x[m * kCols + (*order)[c]];
  }
  const Tensor w{w_buf->data(), t, kRows, kCols, order->data()};
  const Tensor w_plain{w_buf->data(), t, kRows, kCols};
  std::vector<float> y(kTokens * kRows), y_gathered(kTokens * kRows);
  backend.MatMul(Tensor{x.data(), DType::kF32, kTokens, kCols}, w, nullptr,
                 Tensor{y.data(), DType::kF32, kTokens, kRows});
  backend.MatMul(Tensor{x_gathered.data(), DType::kF32, kTokens, kCols}, w_plain, nullptr,
                 Tensor{y_gathered.data(), DType::kF32, kTokens, kRows});
  EXPECT_EQ(y, y_gathered);  // the same kernel on the same values

  // And the product with the torch-dequantized weight in the checkpoint's column order.
  auto expected = SafetensorsFile::Open(testing::GoldenDir() + "/int4/gptq/expected.safetensors");
  ASSERT_TRUE(expected.ok());
  auto want = (*expected)->Get("layer.act_order.weight");
  ASSERT_TRUE(want.ok());
  const auto* wd = static_cast<const float*>(want->data);
  double max_ref = 0, max_err = 0;
  for (int64_t m = 0; m < kTokens; ++m) {
    for (int64_t n = 0; n < kRows; ++n) {
      double ref = 0;
      for (int64_t i = 0; i < kCols; ++i) ref += double{wd[n * kCols + i]} * x[m * kCols + i];
      max_ref = std::max(max_ref, std::fabs(ref));
      max_err = std::max(max_err, std::fabs(ref - y[m * kRows + n]));
    }
  }
  // x is rounded to int8 per group by the fast kernels: well under 2% of the outputs' size.
  EXPECT_LT(max_err, 0.02 * max_ref) << "max error " << max_err << " of " << max_ref;
}

// A one-linear GPTQ checkpoint [8, 256] in groups of 128 whose g_idx is `g_idx`.
std::string WriteGptq(const std::filesystem::path& dir, const std::vector<int32_t>& g_idx,
                      bool desc_act) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json")
      << R"({"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128,
            "desc_act": )"
      << (desc_act ? "true" : "false") << "}}";
  ShardedSafetensorsWriter writer(dir.string(), 1 << 20);
  const std::vector<int32_t> qweight(kCols / 8 * kRows, 0x76543210), qzeros(2 * kRows / 8, 0);
  const std::vector<uint16_t> scales(2 * kRows, f32_to_f16(0.01f));
  EXPECT_TRUE(writer.Declare("l.qweight", DType::kI32, {kCols / 8, kRows}).ok());
  EXPECT_TRUE(writer.Declare("l.qzeros", DType::kI32, {2, kRows / 8}).ok());
  EXPECT_TRUE(writer.Declare("l.scales", DType::kF16, {2, kRows}).ok());
  if (!g_idx.empty()) {
    EXPECT_TRUE(writer.Declare("l.g_idx", DType::kI32, {kCols}).ok());
  }
  EXPECT_TRUE(writer.Write("l.qweight", qweight.data()).ok());
  EXPECT_TRUE(writer.Write("l.qzeros", qzeros.data()).ok());
  EXPECT_TRUE(writer.Write("l.scales", scales.data()).ok());
  if (!g_idx.empty()) {
    EXPECT_TRUE(writer.Write("l.g_idx", g_idx.data()).ok());
  }
  EXPECT_TRUE(writer.Finish().ok());
  return dir.string();
}

TEST(Int4ActOrder, GIdxThatGptqNeverWritesIsRefused) {
  testing::ScratchDir scratch("int4_act_order_bad");
  std::vector<int32_t> interleaved(kCols);
  for (int64_t i = 0; i < kCols; ++i) interleaved[i] = static_cast<int32_t>(i % 2);
  std::vector<int32_t> uneven = interleaved;
  uneven[0] = 1;  // 127 columns in group 0, 129 in group 1
  std::vector<int32_t> out_of_range = interleaved;
  out_of_range[5] = 2;
  struct Case {
    std::string name;
    std::vector<int32_t> g_idx;
    bool desc_act;
    std::string message;
  };
  for (const Case& c : {Case{"uneven", uneven, true, "g_idx puts 127 columns in group 0"},
                        Case{"out_of_range", out_of_range, true, "g_idx[5] is 2"},
                        Case{"missing", {}, true, "g_idx is missing (desc_act is true)"}}) {
    const std::string dir = WriteGptq(scratch.path() / c.name, c.g_idx, c.desc_act);
    auto f = ReadInt4CheckpointFormat(dir);
    auto ckpt = Checkpoint::Open(dir);
    ASSERT_TRUE(f.ok() && f->has_value() && ckpt.ok()) << c.name;
    EXPECT_TRUE((*f)->act_order);
    auto order = ReadInt4InputOrder(**ckpt, **f, "l.weight", kCols);
    ASSERT_FALSE(order.ok()) << c.name;
    EXPECT_EQ(order.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(order.status().message().find("l." + c.message), std::string::npos)
        << order.status().message();
  }
  // The interleaved g_idx is a valid act-order: even columns first, then odd ones.
  const std::string dir = WriteGptq(scratch.path() / "interleaved", interleaved, false);
  auto f = ReadInt4CheckpointFormat(dir);
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(f.ok() && f->has_value() && ckpt.ok());
  auto order = ReadInt4InputOrder(**ckpt, **f, "l.weight", kCols);
  ASSERT_TRUE(order.ok()) << order.status().ToString();
  for (int64_t c = 0; c < kCols; ++c) {
    ASSERT_EQ((*order)[c], c < 128 ? 2 * c : 2 * (c - 128) + 1);
  }
  std::vector<uint8_t> rows(kRows * dtype_row_bytes((*f)->dtype, kCols));
  EXPECT_TRUE(ReadInt4Linear(**ckpt, **f, "l.weight", kRows, kCols, rows.data(), *order).ok());
  // An order that is not the g_idx's is refused.
  std::vector<int32_t> identity(kCols);
  std::iota(identity.begin(), identity.end(), 0);
  const Status st = ReadInt4Linear(**ckpt, **f, "l.weight", kRows, kCols, rows.data(), identity);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("g_idx does not match"), std::string::npos) << st.message();
}

// A one-linear pack-quantized checkpoint [8, 256] (symmetric) in groups of 128 with `actorder`
// (a JSON value) and weight_g_idx `g_idx` of dtype `g_idx_dtype` (none when empty).
std::string WritePackQuantized(const std::filesystem::path& dir, const std::vector<int32_t>& g_idx,
                               const std::string& actorder, DType g_idx_dtype = DType::kI32) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json")
      << R"({"quantization_config": {"quant_method": "compressed-tensors",
            "format": "pack-quantized", "config_groups": {"group_0": {"targets": ["Linear"],
            "weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group",
            "group_size": 128, "actorder": )"
      << actorder << "}}}}}";
  ShardedSafetensorsWriter writer(dir.string(), 1 << 20);
  const std::vector<int32_t> packed(kRows * kCols / 8, 0x76543210);
  const std::vector<uint16_t> scales(kRows * 2, f32_to_f16(0.01f));
  std::vector<int64_t> g_idx_i64(g_idx.begin(), g_idx.end());
  EXPECT_TRUE(writer.Declare("l.weight_packed", DType::kI32, {kRows, kCols / 8}).ok());
  EXPECT_TRUE(writer.Declare("l.weight_scale", DType::kF16, {kRows, 2}).ok());
  if (!g_idx.empty()) {
    EXPECT_TRUE(writer.Declare("l.weight_g_idx", g_idx_dtype, {kCols}).ok());
  }
  EXPECT_TRUE(writer.Write("l.weight_packed", packed.data()).ok());
  EXPECT_TRUE(writer.Write("l.weight_scale", scales.data()).ok());
  if (!g_idx.empty()) {
    const void* data =
        g_idx_dtype == DType::kI64 ? static_cast<const void*>(g_idx_i64.data()) : g_idx.data();
    EXPECT_TRUE(writer.Write("l.weight_g_idx", data).ok());
  }
  EXPECT_TRUE(writer.Finish().ok());
  return dir.string();
}

TEST(Int4ActOrder, PackQuantizedGIdxThatActOrderNeverWritesIsRefused) {
  testing::ScratchDir scratch("int4_pack_act_order_bad");
  std::vector<int32_t> interleaved(kCols);
  for (int64_t i = 0; i < kCols; ++i) interleaved[i] = static_cast<int32_t>(i % 2);
  std::vector<int32_t> uneven = interleaved;
  uneven[0] = 1;
  std::vector<int32_t> out_of_range = interleaved;
  out_of_range[5] = -1;
  struct Case {
    std::string name;
    std::vector<int32_t> g_idx;
    DType dtype;
    std::string message;
  };
  for (const Case& c :
       {Case{"uneven", uneven, DType::kI32, "l.weight_g_idx puts 127 columns in group 0"},
        Case{"out_of_range", out_of_range, DType::kI32, "l.weight_g_idx[5] is -1"},
        Case{"i64", interleaved, DType::kI64, "l.weight_g_idx has dtype"},
        Case{"missing", {}, DType::kI32, "l.weight_g_idx is missing (actorder is group)"}}) {
    const std::string dir =
        WritePackQuantized(scratch.path() / c.name, c.g_idx, "\"group\"", c.dtype);
    auto f = ReadInt4CheckpointFormat(dir);
    auto ckpt = Checkpoint::Open(dir);
    ASSERT_TRUE(f.ok() && f->has_value() && ckpt.ok()) << c.name;
    EXPECT_TRUE((*f)->act_order);
    auto order = ReadInt4InputOrder(**ckpt, **f, "l.weight", kCols);
    ASSERT_FALSE(order.ok()) << c.name;
    EXPECT_EQ(order.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(order.status().message().find(c.message), std::string::npos)
        << order.status().message();
  }
  // actorder "weight" only changed the order GPTQ visited the columns: no weight_g_idx, groups
  // of consecutive columns, read as stored.
  const std::string weight_dir = WritePackQuantized(scratch.path() / "weight", {}, "\"weight\"");
  auto wf = ReadInt4CheckpointFormat(weight_dir);
  auto wckpt = Checkpoint::Open(weight_dir);
  ASSERT_TRUE(wf.ok() && wf->has_value() && wckpt.ok());
  EXPECT_FALSE((*wf)->act_order);
  auto none = ReadInt4InputOrder(**wckpt, **wf, "l.weight", kCols);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
  std::vector<uint8_t> rows(kRows * dtype_row_bytes((*wf)->dtype, kCols));
  EXPECT_TRUE(ReadInt4Linear(**wckpt, **wf, "l.weight", kRows, kCols, rows.data()).ok());

  // The interleaved weight_g_idx loads in its order (even columns, then odd ones); another order
  // is refused.
  const std::string dir = WritePackQuantized(scratch.path() / "interleaved", interleaved, "true");
  auto f = ReadInt4CheckpointFormat(dir);
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(f.ok() && f->has_value() && ckpt.ok());
  EXPECT_TRUE((*f)->act_order);
  auto order = ReadInt4InputOrder(**ckpt, **f, "l.weight", kCols);
  ASSERT_TRUE(order.ok()) << order.status().ToString();
  for (int64_t c = 0; c < kCols; ++c) {
    ASSERT_EQ((*order)[c], c < 128 ? 2 * c : 2 * (c - 128) + 1);
  }
  EXPECT_TRUE(ReadInt4Linear(**ckpt, **f, "l.weight", kRows, kCols, rows.data(), *order).ok());
  // Column c holds the stored column order[c]: value order[c] % 8 (0x76543210), scale 0.01.
  for (int64_t c = 0; c < kCols; ++c) {
    EXPECT_FLOAT_EQ(int4_row_value((*f)->dtype, rows.data(), kCols, c),
                    f16_to_f32(f32_to_f16(0.01f)) * static_cast<float>((*order)[c] % 8 - 8));
  }
  std::vector<int32_t> identity(kCols);
  std::iota(identity.begin(), identity.end(), 0);
  const Status st = ReadInt4Linear(**ckpt, **f, "l.weight", kRows, kCols, rows.data(), identity);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("l.weight_g_idx does not match"), std::string::npos) << st.message();
}

// make-model --quantization gptq / pack-quantized --desc-act: g_idx (weight_g_idx) shared by the
// linears reading one input, and models whose logits match an f32 model holding the checkpoint's
// weights dequantized here with g_idx (W[:, i] = (q[:, i] - z[g_idx[i]]) * s[g_idx[i]], the
// libraries' unpacking). The parameter is make-model's --quantization.
class Int4ActOrderModel : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    MakeModelOptions plain;
    plain.preset = "tiny-mixtral";
    plain.seed = 11;
    plain.dtype = DType::kF32;
    plain.out_dir = (scratch_.path() / "plain").string();
    ASSERT_TRUE(MakeModel(plain).ok());
    MakeModelOptions q = plain;
    q.int4_format = GetParam();
    q.int4_group_size = 32;
    q.int4_act_order = true;
    q.out_dir = (scratch_.path() / "act_order").string();
    ASSERT_TRUE(MakeModel(q).ok());
  }

  std::string dir(const std::string& name) const { return (scratch_.path() / name).string(); }

  testing::ScratchDir scratch_{"int4_act_order_model"};
};

// The GPTQ libraries' dequantization of linear `prefix` (v1 zero points: + 1) as [rows, cols].
std::vector<float> DequantizeGptq(const Checkpoint& ckpt, const std::string& prefix, int64_t rows,
                                  int64_t cols, int64_t groups) {
  auto qweight = ckpt.Get(prefix + ".qweight", {cols / 8, rows});
  auto qzeros = ckpt.Get(prefix + ".qzeros", {groups, rows / 8});
  auto scales = ckpt.Get(prefix + ".scales", {groups, rows});
  auto g_idx = ckpt.Get(prefix + ".g_idx", {cols});
  EXPECT_TRUE(qweight.ok() && qzeros.ok() && scales.ok() && g_idx.ok()) << prefix;
  const auto* qw = static_cast<const uint32_t*>(qweight->data);
  const auto* qz = static_cast<const uint32_t*>(qzeros->data);
  const auto* g = static_cast<const int32_t*>(g_idx->data);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t i = 0; i < cols; ++i) {
      const int64_t grp = g[i];
      const uint32_t q = (qw[i / 8 * rows + j] >> (4 * (i % 8))) & 15u;
      const uint32_t z = ((qz[grp * (rows / 8) + j / 8] >> (4 * (j % 8))) & 15u) + 1;
      const float s = load_as_f32(scales->data, DType::kF16, grp * rows + j);
      w[j * cols + i] = s * (static_cast<float>(q) - static_cast<float>(z));
    }
  }
  return w;
}

// compressed-tensors' dequantization of pack-quantized linear `prefix` (symmetric: values stored
// + 8 along rows, zero 0) as [rows, cols], each column scaled by its weight_g_idx group's scale.
std::vector<float> DequantizePackQuantized(const Checkpoint& ckpt, const std::string& prefix,
                                           int64_t rows, int64_t cols, int64_t groups) {
  auto packed = ckpt.Get(prefix + ".weight_packed", {rows, (cols + 7) / 8});
  auto scales = ckpt.Get(prefix + ".weight_scale", {rows, groups});
  auto g_idx = ckpt.Get(prefix + ".weight_g_idx", {cols});
  EXPECT_TRUE(packed.ok() && scales.ok() && g_idx.ok()) << prefix;
  EXPECT_FALSE(ckpt.Has(prefix + ".weight_zero_point")) << prefix;
  const auto* p = static_cast<const uint32_t*>(packed->data);
  const auto* g = static_cast<const int32_t*>(g_idx->data);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t i = 0; i < cols; ++i) {
      const int q = static_cast<int>((p[j * ((cols + 7) / 8) + i / 8] >> (4 * (i % 8))) & 15u) - 8;
      const float s = load_as_f32(scales->data, DType::kF16, j * groups + g[i]);
      w[j * cols + i] = s * static_cast<float>(q);
    }
  }
  return w;
}

// Linear `prefix` of an act-order checkpoint written as `format` ("gptq" or "pack-quantized"),
// dequantized with its g_idx.
std::vector<float> Dequantize(const std::string& format, const Checkpoint& ckpt,
                              const std::string& prefix, int64_t rows, int64_t cols,
                              int64_t groups) {
  return format == "gptq" ? DequantizeGptq(ckpt, prefix, rows, cols, groups)
                          : DequantizePackQuantized(ckpt, prefix, rows, cols, groups);
}

TEST_P(Int4ActOrderModel, SharesGIdxPerInputAndMovesDownsOrderIntoGateUp) {
  auto config = LoadModelConfig(dir("act_order"));
  auto ckpt = Checkpoint::Open(dir("act_order"));
  ASSERT_TRUE(config.ok() && ckpt.ok());
  auto f = ReadInt4CheckpointFormat(dir("act_order"));
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_TRUE((*f)->act_order);
  const ModelWeightNames names = WeightNamesFor(*config);
  const LayerWeightNames& n = names.layers[1];
  const int64_t h = config->hidden_size;
  auto order = [&](const std::string& weight, int64_t cols) {
    auto o = ReadInt4InputOrder(**ckpt, **f, weight, cols);
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    return o.ok() ? *o : std::vector<int32_t>();
  };
  const std::vector<int32_t> q_order = order(n.q, h);
  EXPECT_FALSE(q_order.empty());
  EXPECT_EQ(order(n.k, h), q_order);
  EXPECT_EQ(order(n.v, h), q_order);
  EXPECT_EQ(order(n.experts[0].up, h), order(n.experts[0].gate, h));
  EXPECT_NE(order(n.experts[0].gate, h), order(n.experts[1].gate, h));

  CpuBackend backend(2);
  auto w = LoadModelWeights(*config, **ckpt, &backend);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const LayerWeights& l = w->layers[1];
  ASSERT_NE(l.wq.input_perm, nullptr);
  EXPECT_TRUE(std::equal(q_order.begin(), q_order.end(), l.wq.input_perm));
  EXPECT_NE(l.wo.input_perm, nullptr);
  const int64_t inter = config->moe_intermediate_size;
  const FfnWeights& e2 = l.experts[2];
  EXPECT_NE(e2.gate_up.input_perm, nullptr);
  EXPECT_EQ(e2.down.input_perm, nullptr);
  // gate_up's row r is gate_proj's row down_order[r], its column c the input's gate_order[c].
  const std::vector<int32_t> down_order = order(n.experts[2].down, inter);
  const std::vector<int32_t> gate_order = order(n.experts[2].gate, h);
  const int64_t groups = (h + 31) / 32;
  const std::vector<float> gate =
      Dequantize(GetParam(), **ckpt, n.experts[2].gate.substr(0, n.experts[2].gate.size() - 7),
                 inter, h, groups);
  for (int64_t r = 0; r < inter; ++r) {
    const void* row = e2.gate_up.Rows(r, 1).data;
    for (int64_t c = 0; c < h; ++c) {
      const float scale = int4_row_scale(row, c / 32);
      ASSERT_NEAR(int4_row_value(e2.gate_up.dtype, row, h, c),
                  gate[down_order[r] * h + gate_order[c]], scale * 16 / 2048)
          << "row " << r << " col " << c;
    }
  }
}

// Replaces every int4 linear of checkpoint `packed` by its dequantization, as f32 tensors named
// <linear>.weight, beside the plain tensors of `plain`: the model in `out` is what the
// act-order checkpoint means.
void WriteDequantizedModel(const std::string& format, const std::string& plain,
                           const std::string& packed, const std::string& out) {
  std::filesystem::create_directories(out);
  for (const char* file :
       {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}) {
    std::filesystem::copy_file(plain + "/" + file, out + "/" + file);
  }
  auto plain_ckpt = Checkpoint::Open(plain);
  auto packed_ckpt = Checkpoint::Open(packed);
  auto f = ReadInt4CheckpointFormat(packed);
  ASSERT_TRUE(plain_ckpt.ok() && packed_ckpt.ok() && f.ok() && f->has_value());
  ShardedSafetensorsWriter writer(out, uint64_t{1} << 40);
  std::vector<std::unique_ptr<SafetensorsFile>> shards;
  std::vector<TensorView> views;
  for (const std::string& path : (*plain_ckpt)->shard_paths()) {
    auto shard = SafetensorsFile::Open(path);
    ASSERT_TRUE(shard.ok()) << shard.status().ToString();
    for (const std::string& name : (*shard)->names()) views.push_back(*(*shard)->Find(name));
    shards.push_back(std::move(*shard));
  }
  for (const TensorView& v : views) ASSERT_TRUE(writer.Declare(v.name, v.dtype, v.shape).ok());
  for (const TensorView& v : views) {
    const std::string prefix = v.name.substr(0, v.name.size() - 7);
    if (v.shape.size() == 2 && ((*packed_ckpt)->Has(prefix + ".qweight") ||
                                (*packed_ckpt)->Has(prefix + ".weight_packed"))) {
      const int64_t groups = (v.shape[1] + (*f)->group_size - 1) / (*f)->group_size;
      const std::vector<float> w =
          Dequantize(format, **packed_ckpt, prefix, v.shape[0], v.shape[1], groups);
      ASSERT_TRUE(writer.Write(v.name, w.data()).ok());
    } else {
      ASSERT_TRUE(writer.Write(v.name, v.data).ok());
    }
  }
  ASSERT_TRUE(writer.Finish().ok());
}

TEST_P(Int4ActOrderModel, LogitsMatchTheDequantizedModel) {
  WriteDequantizedModel(GetParam(), dir("plain"), dir("act_order"), dir("dequantized"));
  if (HasFatalFailure()) return;
  const std::vector<int32_t> prompt = {5, 17, 99, 3, 42, 250, 7, 8};
  auto logits = [&](const std::string& name) {
    testing::LoadedModel m = testing::LoadForTest(dir(name));
    EXPECT_NE(m.runner, nullptr) << name;
    if (m.runner == nullptr) return std::vector<float>();
    Generator gen(m.runner.get());
    auto out = gen.PromptLogits({&prompt, 1});
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out.ok() ? (*out)[0] : std::vector<float>();
  };
  double max_logit = 0, max_diff = 0;
  {
    // The reference kernels multiply exact f32 x; only the f16 rounding of each group's min
    // (-scale * zero) separates the two models.
    const cpu::IsaScope scalar(cpu::Isa::kScalar);
    const std::vector<float> want = logits("dequantized");
    const std::vector<float> got = logits("act_order");
    ASSERT_EQ(want.size(), got.size());
    ASSERT_FALSE(want.empty());
    for (size_t i = 0; i < want.size(); ++i) {
      max_logit = std::max(max_logit, std::fabs(double{want[i]}));
      max_diff = std::max(max_diff, std::fabs(double{want[i]} - got[i]));
    }
    EXPECT_LT(max_diff, 2e-3 * max_logit) << "max |diff| " << max_diff << " of " << max_logit;
  }
  // The fast kernels (x rounded to int8 per group, the grouped expert path) stay close too.
  const std::vector<float> want = logits("dequantized");
  const std::vector<float> got = logits("act_order");
  ASSERT_EQ(want.size(), got.size());
  max_diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(double{want[i]} - got[i]));
  }
  EXPECT_LT(max_diff, 0.02 * max_logit) << "max |diff| " << max_diff << " of " << max_logit;
}

INSTANTIATE_TEST_SUITE_P(Formats, Int4ActOrderModel,
                         ::testing::Values(std::string("gptq"), std::string("pack-quantized")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "gptq" ? std::string("Gptq")
                                                       : std::string("PackQuantized");
                         });

}  // namespace
}  // namespace sy
