// Published FP8 checkpoints (make-model --quantization fp8 writes them as transformers reads
// them): the matmul weights load as kF8 rows holding exactly the checkpoint's bytes and scales,
// the modules left unconverted load as before, blocks narrower than 128 columns are quantized
// again within half a step, the memory plan predicts the bytes, and broken checkpoints fail
// naming what is wrong; compressed-tensors' per-channel and per-tensor scales load too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/backend/cpu_backend.h"
#include "engine/model/checkpoint.h"
#include "engine/model/config.h"
#include "engine/model/fp8_checkpoint.h"
#include "engine/model/make_model.h"
#include "engine/model/model_weights.h"
#include "engine/model/safetensors_writer.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

using nlohmann::json;

struct Loaded {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
  StatusOr<ModelWeights> weights = Status::Internal("not loaded");
};

Loaded Load(const std::string& dir, CpuBackend* backend) {
  Loaded l;
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  if (!config.ok()) return l;
  l.config = *config;
  auto ckpt = Checkpoint::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  if (!ckpt.ok()) return l;
  l.checkpoint = std::move(*ckpt);
  l.weights = LoadModelWeights(l.config, *l.checkpoint, backend);
  return l;
}

std::string MakeFp8(const testing::ScratchDir& dir, const std::string& arch, int64_t block,
                    std::vector<std::string> overrides = {}) {
  MakeModelOptions o;
  o.overrides = std::move(overrides);
  o.arch = arch;
  o.out_dir = dir.path().string();
  o.seed = 5;
  o.fp8 = true;
  o.fp8_block = block;
  const Status st = MakeModel(o);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return o.out_dir;
}

TEST(Fp8Checkpoint, MatmulWeightsLoadAsPublishedAndTheRestAsBefore) {
  for (const char* arch : {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe"}) {
    testing::ScratchDir dir("fp8-ckpt");
    const std::string path = MakeFp8(dir, arch, 128);
    CpuBackend backend(1);
    Loaded l = Load(path, &backend);
    ASSERT_TRUE(l.weights.ok()) << arch << ": " << l.weights.status().ToString();
    EXPECT_EQ(l.config.quantization_config.method, QuantMethod::kFp8);
    const ModelWeights& w = *l.weights;
    EXPECT_EQ(w.embed.dtype, DType::kBF16) << arch;
    EXPECT_NE(w.lm_head.dtype, DType::kF8) << arch;
    const LayerWeights& layer = w.layers.back();
    EXPECT_EQ(layer.wq.dtype, DType::kF8) << arch;
    EXPECT_EQ(layer.wo.dtype, DType::kF8) << arch;
    ASSERT_TRUE(layer.is_moe);
    EXPECT_EQ(layer.router.dtype, DType::kBF16) << arch;
    EXPECT_EQ(layer.experts[0].gate_up.dtype, DType::kF8) << arch;
    EXPECT_EQ(layer.experts[0].down.dtype, DType::kF8) << arch;
    if (layer.shared_expert_gate.data != nullptr) {
      EXPECT_EQ(layer.shared_expert_gate.dtype, DType::kBF16) << arch;
      EXPECT_EQ(layer.shared_expert.down.dtype, DType::kF8) << arch;
    }
    // The memory plan counts the matrices as allocated; the vectors (norms, biases, rope's
    // table) only roughly, as in model_source_test.
    const ModelConfig& c = l.config;
    EXPECT_NEAR(static_cast<double>(WeightBytes(c, DType::kBF16)),
                static_cast<double>(w.total_bytes),
                static_cast<double>(c.num_layers * (c.hidden_size + c.head_dim) * 16))
        << arch;
  }
}

// Each kF8 row is the checkpoint's row of e4m3 bytes behind its blocks' scales (exact for
// make-model's 128 x 128 blocks; experts of 320 rows or columns span three, the last partial).
TEST(Fp8Checkpoint, RowsHoldTheCheckpointsBytesAndScales) {
  testing::ScratchDir dir("fp8-rows");
  const std::string path = MakeFp8(dir, "qwen3_moe", 128, {"moe_intermediate_size=320"});
  CpuBackend backend(1);
  Loaded l = Load(path, &backend);
  ASSERT_TRUE(l.weights.ok()) << l.weights.status().ToString();
  const LayerWeights& layer = l.weights->layers[0];
  const std::string prefix = "model.layers.0.mlp.experts.1.";
  struct Case {
    Tensor t;
    std::string name;
  };
  const int64_t inter = l.config.moe_intermediate_size;
  for (const Case& c :
       {Case{layer.experts[1].gate_up.Rows(0, inter), prefix + "gate_proj.weight"},
        Case{layer.experts[1].gate_up.Rows(inter, inter), prefix + "up_proj.weight"},
        Case{layer.experts[1].down, prefix + "down_proj.weight"},
        Case{layer.wq, "model.layers.0.self_attn.q_proj.weight"}}) {
    auto values = l.checkpoint->Get(c.name, {c.t.rows, c.t.cols});
    ASSERT_TRUE(values.ok()) << values.status().ToString();
    ASSERT_EQ(values->dtype, DType::kE4M3);
    const int64_t col_blocks = (c.t.cols + 127) / 128;
    auto scales = l.checkpoint->Get(c.name + "_scale_inv", {(c.t.rows + 127) / 128, col_blocks});
    ASSERT_TRUE(scales.ok()) << scales.status().ToString();
    for (int64_t r = 0; r < c.t.rows; ++r) {
      const void* row = c.t.Rows(r, 1).data;
      for (int64_t b = 0; b < col_blocks; ++b) {
        ASSERT_EQ(f8_row_scale(row, b),
                  static_cast<const float*>(scales->data)[r / 128 * col_blocks + b])
            << c.name << " row " << r;
      }
      ASSERT_EQ(std::memcmp(f8_row_values(row, c.t.cols),
                            static_cast<const uint8_t*>(values->data) + r * c.t.cols, c.t.cols),
                0)
          << c.name << " row " << r;
    }
  }
}

// Blocks narrower than 128 columns cannot keep one scale per 128 columns: those rows are
// dequantized and quantized again, each value within half an e4m3 step of the checkpoint's.
TEST(Fp8Checkpoint, NarrowBlocksAreQuantizedAgainWithinHalfAStep) {
  testing::ScratchDir dir("fp8-narrow");
  const std::string path = MakeFp8(dir, "mixtral", 16);
  CpuBackend backend(1);
  Loaded l = Load(path, &backend);
  ASSERT_TRUE(l.weights.ok()) << l.weights.status().ToString();
  const Tensor& wq = l.weights->layers[0].wq;
  ASSERT_EQ(wq.dtype, DType::kF8);
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  auto values = l.checkpoint->Get(name, {wq.rows, wq.cols});
  const int64_t col_blocks = (wq.cols + 15) / 16;
  auto scales = l.checkpoint->Get(name + "_scale_inv", {(wq.rows + 15) / 16, col_blocks});
  ASSERT_TRUE(values.ok() && scales.ok());
  for (int64_t r = 0; r < wq.rows; ++r) {
    const void* row = wq.Rows(r, 1).data;
    for (int64_t c = 0; c < wq.cols; ++c) {
      const float want = e4m3_to_f32(static_cast<const uint8_t*>(values->data)[r * wq.cols + c]) *
                         static_cast<const float*>(scales->data)[r / 16 * col_blocks + c / 16];
      const float got = f8_row_scale(row, c / 128) * e4m3_to_f32(f8_row_values(row, wq.cols)[c]);
      ASSERT_LE(std::fabs(got - want), std::fabs(want) / 16 + f8_row_scale(row, c / 128) / 512)
          << "row " << r << " col " << c;
    }
  }
}

// compressed-tensors checkpoints: per-channel scales ([rows, 1] f32) and a per-tensor bf16
// scale ([1]) expand into every 128-column block of every row; the values are the checkpoint's.
TEST(Fp8Checkpoint, CompressedTensorsChannelAndTensorScales) {
  testing::ScratchDir dir("fp8-compressed");
  constexpr int64_t kRows = 3, kCols = 300;
  std::vector<uint8_t> values(kRows * kCols);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<uint8_t>(i * 37 % 256);
    if ((values[i] & 0x7f) == 0x7f) values[i] = 0x11;  // no NaN codes
  }
  const std::vector<float> channel = {0.5f, 0.25f, 3.0f};
  const uint16_t tensor_bf16 = f32_to_bf16(0.125f);
  {
    ShardedSafetensorsWriter w(dir.path().string(), uint64_t{1} << 30);
    ASSERT_TRUE(w.Declare("a.weight", DType::kE4M3, {kRows, kCols}).ok());
    ASSERT_TRUE(w.Declare("a.weight_scale", DType::kF32, {kRows, 1}).ok());
    ASSERT_TRUE(w.Declare("b.weight", DType::kE4M3, {kRows, kCols}).ok());
    ASSERT_TRUE(w.Declare("b.weight_scale", DType::kBF16, {1}).ok());
    ASSERT_TRUE(w.Write("a.weight", values.data()).ok());
    ASSERT_TRUE(w.Write("a.weight_scale", channel.data()).ok());
    ASSERT_TRUE(w.Write("b.weight", values.data()).ok());
    ASSERT_TRUE(w.Write("b.weight_scale", &tensor_bf16).ok());
    ASSERT_TRUE(w.Finish().ok());
  }
  auto ckpt = Checkpoint::Open(dir.path().string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  for (const char* strategy : {"channel", "tensor"}) {
    auto config = ParseQuantizationConfig(
        json{{"quant_method", "compressed-tensors"},
             {"config_groups",
              {{"group_0",
                {{"weights", {{"num_bits", 8}, {"type", "float"}, {"strategy", strategy}}}}}}}});
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    const std::string name = std::string(strategy) == "channel" ? "a.weight" : "b.weight";
    auto m = FindFp8Matrix(**ckpt, *config, name, kRows, kCols);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    ASSERT_TRUE(m->Exact());
    std::vector<uint8_t> row(dtype_row_bytes(DType::kF8, kCols));
    for (int64_t r = 0; r < kRows; ++r) {
      ASSERT_TRUE(m->ConvertRow(r, row.data()).ok());
      const float want = std::string(strategy) == "channel" ? channel[r] : 0.125f;
      for (int64_t b = 0; b < 3; ++b) EXPECT_EQ(f8_row_scale(row.data(), b), want) << name << r;
      EXPECT_EQ(std::memcmp(f8_row_values(row.data(), kCols), values.data() + r * kCols, kCols), 0)
          << name << " row " << r;
    }
  }
  // A NaN code in the checkpoint fails the row, naming the tensor and the place.
  values[kCols + 7] = 0xff;
  testing::ScratchDir nan_dir("fp8-nan");
  {
    ShardedSafetensorsWriter w(nan_dir.path().string(), uint64_t{1} << 30);
    ASSERT_TRUE(w.Declare("a.weight", DType::kE4M3, {kRows, kCols}).ok());
    ASSERT_TRUE(w.Declare("a.weight_scale", DType::kF32, {kRows, 1}).ok());
    ASSERT_TRUE(w.Write("a.weight", values.data()).ok());
    ASSERT_TRUE(w.Write("a.weight_scale", channel.data()).ok());
    ASSERT_TRUE(w.Finish().ok());
  }
  auto nan_ckpt = Checkpoint::Open(nan_dir.path().string());
  ASSERT_TRUE(nan_ckpt.ok());
  auto config = ParseQuantizationConfig(json{
      {"quant_method", "compressed-tensors"},
      {"config_groups",
       {{"g", {{"weights", {{"num_bits", 8}, {"type", "float"}, {"strategy", "channel"}}}}}}}});
  auto m = FindFp8Matrix(**nan_ckpt, *config, "a.weight", kRows, kCols);
  ASSERT_TRUE(m.ok());
  std::vector<uint8_t> row(dtype_row_bytes(DType::kF8, kCols));
  EXPECT_TRUE(m->ConvertRow(0, row.data()).ok());
  const Status st = m->ConvertRow(1, row.data());
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("a.weight holds an FP8 NaN at row 1, column 7"), std::string::npos)
      << st.ToString();
}

void RewriteConfig(const std::string& dir, const std::function<void(json&)>& edit) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path);
  json cfg = json::parse(in);
  in.close();
  edit(cfg);
  std::ofstream(path) << cfg.dump(2);
}

TEST(Fp8Checkpoint, BrokenCheckpointsFailNamingTheProblem) {
  testing::ScratchDir dir("fp8-broken");
  const std::string path = MakeFp8(dir, "mixtral", 128);
  CpuBackend backend(1);
  const std::string q_proj = "model.layers.0.self_attn.q_proj";

  // FP8 tensors without a quantization_config.
  RewriteConfig(path, [](json& c) { c.erase("quantization_config"); });
  Loaded l = Load(path, &backend);
  ASSERT_FALSE(l.weights.ok());
  EXPECT_EQ(l.weights.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(l.weights.status().message().find("no FP8 quantization_config"), std::string::npos)
      << l.weights.status().ToString();

  // A module the config says is not converted, stored in FP8.
  RewriteConfig(path, [&](json& c) {
    c["quantization_config"] = {{"quant_method", "fp8"},
                                {"weight_block_size", {128, 128}},
                                {"modules_to_not_convert", {q_proj}}};
  });
  l = Load(path, &backend);
  ASSERT_FALSE(l.weights.ok());
  EXPECT_NE(l.weights.status().message().find("modules_to_not_convert lists " + q_proj),
            std::string::npos)
      << l.weights.status().ToString();

  // Scales of another block size than the config's.
  RewriteConfig(path, [](json& c) {
    c["quantization_config"] = {{"quant_method", "fp8"}, {"weight_block_size", {32, 32}}};
  });
  l = Load(path, &backend);
  ASSERT_FALSE(l.weights.ok());
  EXPECT_NE(l.weights.status().message().find("weight_scale_inv has shape"), std::string::npos)
      << l.weights.status().ToString();

  // Per-tensor scales named weight_scale, which this checkpoint lacks.
  RewriteConfig(path, [](json& c) { c["quantization_config"] = {{"quant_method", "fp8"}}; });
  l = Load(path, &backend);
  ASSERT_FALSE(l.weights.ok());
  EXPECT_EQ(l.weights.status().code(), StatusCode::kNotFound);
  EXPECT_NE(l.weights.status().message().find(q_proj + ".weight_scale"), std::string::npos)
      << l.weights.status().ToString();

  // Static activation scales cannot be honoured: the config itself is refused.
  RewriteConfig(path, [](json& c) {
    c["quantization_config"] = {{"quant_method", "fp8"}, {"activation_scheme", "static"}};
  });
  const Status st = LoadModelConfig(path).status();
  EXPECT_EQ(st.code(), StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("activation_scheme"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace sy
