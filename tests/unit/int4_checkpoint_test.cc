// Pre-quantized int4 checkpoints (engine/model/int4_checkpoint.h): the GPTQ, AWQ and
// compressed-tensors pack-quantized fixtures of
// tests/golden/int4 (scripts/golden/gen_int4_checkpoints.py) load into int4 rows whose
// dequantized values match the weights dequantized there with the libraries' own unpacking; a
// permuted g_idx (act-order) read without its input order and unsupported quantization_config
// fields fail naming the field (int4_act_order_test loads act-order checkpoints).
#include "engine/model/int4_checkpoint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "engine/backend/cpu_backend.h"
#include "engine/model/checkpoint.h"
#include "engine/model/config.h"
#include "engine/model/make_model.h"
#include "engine/model/model_weights.h"
#include "engine/model/safetensors.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

std::string FixtureDir(const std::string& format) {
  return testing::GoldenDir() + "/int4/" + format;
}

struct Linear {
  std::string name;
  int64_t rows, cols;
};

void ExpectMatchesExpected(const std::string& format, Int4CheckpointFormat::Method method,
                           int64_t group) {
  const std::string dir = FixtureDir(format);
  auto f = ReadInt4CheckpointFormat(dir);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE(f->has_value());
  EXPECT_EQ((*f)->method, method);
  EXPECT_EQ((*f)->group_size, group);
  EXPECT_EQ(int4_group_size((*f)->dtype), group);
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  auto expected = SafetensorsFile::Open(dir + "/expected.safetensors");
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  for (const Linear& l : {Linear{"layer.a", 40, 192}, Linear{"layer.b", 16, 320}}) {
    const std::string weight = l.name + ".weight";
    EXPECT_TRUE(HasInt4Linear(**ckpt, weight));
    const DType t = (*f)->dtype;
    std::vector<uint8_t> rows(l.rows * dtype_row_bytes(t, l.cols));
    ASSERT_TRUE(ReadInt4Linear(**ckpt, **f, weight, l.rows, l.cols, rows.data()).ok());
    auto want = (*expected)->Get(weight);
    auto want_scale = (*expected)->Get(l.name + ".scale");
    ASSERT_TRUE(want.ok() && want_scale.ok());
    const auto* w = static_cast<const float*>(want->data);
    const auto* s = static_cast<const float*>(want_scale->data);
    for (int64_t j = 0; j < l.rows; ++j) {
      const uint8_t* row = rows.data() + j * dtype_row_bytes(t, l.cols);
      for (int64_t g = 0; g < int4_groups(t, l.cols); ++g) {
        ASSERT_EQ(int4_row_scale(row, g), s[g * l.rows + j]) << format << " " << l.name;
      }
      for (int64_t c = 0; c < l.cols; ++c) {
        // The min (-scale * zero) is rounded to f16: at most 2^-11 of 16 scales.
        const float scale = s[c / group * l.rows + j];
        ASSERT_NEAR(int4_row_value(t, row, l.cols, c), w[j * l.cols + c], scale * 16 / 2048)
            << format << " " << l.name << " row " << j << " col " << c;
      }
    }
  }
}

TEST(Int4Checkpoint, GptqMatchesTheLibraryDequantization) {
  ExpectMatchesExpected("gptq", Int4CheckpointFormat::Method::kGptq, 128);
}

TEST(Int4Checkpoint, AwqMatchesTheLibraryDequantization) {
  ExpectMatchesExpected("awq", Int4CheckpointFormat::Method::kAwq, 64);
}

TEST(Int4Checkpoint, PackQuantizedMatchesTheLibraryDequantization) {
  ExpectMatchesExpected("pack_quantized", Int4CheckpointFormat::Method::kPackQuantized, 32);
  ExpectMatchesExpected("pack_quantized_sym", Int4CheckpointFormat::Method::kPackQuantized, 128);
  auto sym = ReadInt4CheckpointFormat(FixtureDir("pack_quantized_sym"));
  ASSERT_TRUE(sym.ok() && sym->has_value());
  EXPECT_TRUE((*sym)->symmetric);
}

TEST(Int4Checkpoint, ActOrderGIdxIsRefused) {
  const std::string dir = FixtureDir("gptq");
  auto f = ReadInt4CheckpointFormat(dir);
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(f.ok() && f->has_value() && ckpt.ok());
  std::vector<uint8_t> rows(8 * dtype_row_bytes((*f)->dtype, 256));
  const Status st = ReadInt4Linear(**ckpt, **f, "layer.act_order.weight", 8, 256, rows.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("desc_act"), std::string::npos) << st.message();
  EXPECT_FALSE(HasInt4Linear(**ckpt, "layer.missing.weight"));
}

// make-model --quantization gptq / awq / pack-quantized writes checkpoints that load (gate/up
// stacked, every expert) into int4 tensors within half a step of the plain checkpoint's weights of
// the same seed; the router and LM head stay plain.
TEST(Int4Checkpoint, MakeModelCheckpointsLoadAsInt4) {
  testing::ScratchDir scratch("int4_make_model");
  MakeModelOptions plain;
  plain.preset = "tiny-mixtral";
  plain.seed = 5;
  plain.dtype = DType::kF32;
  plain.out_dir = (scratch.path() / "plain").string();
  ASSERT_TRUE(MakeModel(plain).ok());
  auto plain_ckpt = Checkpoint::Open(plain.out_dir);
  ASSERT_TRUE(plain_ckpt.ok());
  for (const auto& [method, group] :
       {std::pair<std::string, int64_t>{"gptq", 128}, {"awq", 64}, {"pack-quantized", 32}}) {
    MakeModelOptions q = plain;
    q.int4_format = method;
    q.int4_group_size = group;
    q.out_dir = (scratch.path() / method).string();
    ASSERT_TRUE(MakeModel(q).ok());
    auto config = LoadModelConfig(q.out_dir);
    auto ckpt = Checkpoint::Open(q.out_dir);
    ASSERT_TRUE(config.ok() && ckpt.ok());
    EXPECT_FALSE((*ckpt)->Has("model.layers.0.self_attn.q_proj.weight"));
    CpuBackend backend(1);
    auto w = LoadModelWeights(*config, **ckpt, &backend);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    const LayerWeights& l = w->layers[1];
    EXPECT_EQ(l.router.dtype, DType::kF32);
    EXPECT_EQ(w->lm_head.dtype, DType::kF32);
    const ModelWeightNames names = WeightNamesFor(*config);
    const FfnNames& expert = names.layers[1].experts[2];
    struct Check {
      const Tensor* got;
      std::string name;
      int64_t first_row, rows;
    };
    const int64_t inter = config->moe_intermediate_size;
    for (const Check& c : {Check{&l.wq, names.layers[1].q, 0, l.wq.rows},
                           Check{&l.wo, names.layers[1].o, 0, l.wo.rows},
                           Check{&l.experts[2].gate_up, expert.gate, 0, inter},
                           Check{&l.experts[2].gate_up, expert.up, inter, inter},
                           Check{&l.experts[2].down, expert.down, 0, l.experts[2].down.rows}}) {
      ASSERT_EQ(int4_group_size(c.got->dtype), group) << c.name;
      const int64_t rows = c.rows, cols = c.got->cols;
      auto want = (*plain_ckpt)->Get(c.name, {rows, cols});
      ASSERT_TRUE(want.ok()) << want.status().ToString();
      for (int64_t j = 0; j < rows; ++j) {
        const void* row = c.got->Rows(c.first_row + j, 1).data;
        for (int64_t i = 0; i < cols; ++i) {
          const float step = int4_row_scale(row, i / group);
          ASSERT_NEAR(int4_row_value(c.got->dtype, row, cols, i),
                      static_cast<const float*>(want->data)[j * cols + i], step * 0.52f + 1e-6f)
              << method << " " << c.name << " [" << j << ", " << i << "]";
        }
      }
    }
  }
}

// config.json's quantization_config alone decides the format; what is not supported names its
// field.
TEST(Int4Checkpoint, QuantizationConfigFields) {
  testing::ScratchDir scratch("int4_config");
  auto read = [&](const std::string& config) {
    std::ofstream(scratch.path() / "config.json") << config;
    return ReadInt4CheckpointFormat(scratch.path().string());
  };
  auto none = read(R"({"hidden_size": 64})");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto fp8 = read(R"({"quantization_config": {"quant_method": "fp8"}})");
  ASSERT_TRUE(fp8.ok());
  EXPECT_FALSE(fp8->has_value());
  auto ct_fp8 = read(R"({"quantization_config": {"quant_method": "compressed-tensors",
                         "format": "float-quantized"}})");
  ASSERT_TRUE(ct_fp8.ok());
  EXPECT_FALSE(ct_fp8->has_value());
  auto v2 = read(R"({"quantization_config": {"quant_method": "gptq", "bits": 4,
                     "group_size": 32, "checkpoint_format": "gptq_v2"}})");
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  EXPECT_EQ((*v2)->dtype, DType::kI4G32);
  EXPECT_EQ((*v2)->zero_offset, 0);
  EXPECT_FALSE((*v2)->act_order);
  auto act_order = read(R"({"quantization_config": {"quant_method": "gptq", "bits": 4,
                           "group_size": 128, "desc_act": true}})");
  ASSERT_TRUE(act_order.ok()) << act_order.status().ToString();
  EXPECT_TRUE((*act_order)->act_order);
  // compressed-tensors' actorder: true, "group" and its alias "dynamic" (any case) store a
  // weight_g_idx; "weight" and its alias "static" keep groups of consecutive columns.
  for (const auto& [actorder, act_order] : {std::pair<std::string, bool>{"null", false},
                                            {"false", false},
                                            {"true", true},
                                            {R"("group")", true},
                                            {R"("Dynamic")", true},
                                            {R"("weight")", false},
                                            {R"("static")", false}}) {
    auto f = read(R"({"quantization_config": {"quant_method": "compressed-tensors",
                  "format": "pack-quantized", "config_groups": {"g": {"weights": {"num_bits": 4,
                  "strategy": "group", "group_size": 64, "actorder": )" +
                  actorder + "}}}}}");
    ASSERT_TRUE(f.ok()) << actorder << ": " << f.status().ToString();
    ASSERT_TRUE(f->has_value());
    EXPECT_EQ((*f)->act_order, act_order) << actorder;
  }
  struct Bad {
    const char* config;
    const char* field;
  };
  for (const Bad& bad : {
           Bad{R"({"quant_method": "gptq", "bits": 8, "group_size": 128})", "bits"},
           Bad{R"({"quant_method": "gptq", "bits": 4, "group_size": -1})", "group_size"},
           Bad{R"({"quant_method": "gptq", "bits": 4, "group_size": 128,
                   "checkpoint_format": "marlin"})",
               "checkpoint_format"},
           Bad{R"({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"})",
               "version"},
           Bad{R"({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": false})",
               "zero_point"},
           Bad{R"({"quant_method": "compressed-tensors", "format": "pack-quantized"})",
               "config_groups"},
           Bad{R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
                   "config_groups": {"g": {"weights": {"num_bits": 8, "strategy": "group",
                   "group_size": 128}}}})",
               "weights.num_bits"},
           Bad{R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
                   "config_groups": {"g": {"weights": {"num_bits": 4, "strategy": "channel"}}}})",
               "weights.strategy"},
           Bad{R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
                   "config_groups": {"g": {"weights": {"num_bits": 4, "strategy": "group",
                   "group_size": 128, "actorder": "random"}}}})",
               "weights.actorder"},
           Bad{R"({"quant_method": "compressed-tensors", "format": "pack-quantized",
                   "config_groups": {"g": {"weights": {"num_bits": 4, "strategy": "group",
                   "group_size": 128}, "input_activations": {"num_bits": 8}}}})",
               "config_groups.g.input_activations"},
           Bad{R"({"quant_method": "bitsandbytes"})", "quant_method"},
       }) {
    auto st = read(std::string(R"({"quantization_config": )") + bad.config + "}");
    ASSERT_FALSE(st.ok()) << bad.config;
    EXPECT_EQ(st.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.status().message().find(std::string("quantization_config.") + bad.field),
              std::string::npos)
        << st.status().message();
  }
}

}  // namespace
}  // namespace sy
