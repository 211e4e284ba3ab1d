// A DeepSeek-V3 checkpoint that carries its multi-token-prediction layer (model.layers.<N>.*
// after the decoder's N layers, num_nextn_predict_layers in config.json) loads, leaves that
// layer unread, and computes the same logits as the checkpoint without it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "engine/model/checkpoint.h"
#include "engine/model/config.h"
#include "engine/model/safetensors_writer.h"
#include "engine/model/weight_names.h"
#include "engine/runner/generator.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

using nlohmann::json;

// The golden deepseek_v3 checkpoint rewritten in shards, with the tensors of an MTP layer (the
// names DeepSeek-V3 publishes for its layer 61, at this model's sizes) in the last shard.
Status WriteWithMtpLayer(const std::filesystem::path& src, const std::filesystem::path& dst) {
  for (const auto& f : std::filesystem::directory_iterator(src)) {
    if (f.path().extension() != ".safetensors" && f.path().filename() != "config.json") {
      std::filesystem::copy(f.path(), dst / f.path().filename());
    }
  }
  SY_ASSIGN_OR_RETURN(ModelConfig c, LoadModelConfig(src.string()));
  json config = json::parse(std::ifstream(src / "config.json"));
  config["num_nextn_predict_layers"] = 1;
  std::ofstream(dst / "config.json") << config.dump(2);

  SY_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(src.string()));
  std::vector<WeightSpec> specs = ListWeights(c);
  const std::string mtp = "model.layers." + std::to_string(c.num_layers) + ".";
  const int64_t h = c.hidden_size;
  const std::vector<WeightSpec> extra = {{mtp + "enorm.weight", {h}},
                                         {mtp + "hnorm.weight", {h}},
                                         {mtp + "eh_proj.weight", {h, 2 * h}},
                                         {mtp + "shared_head.norm.weight", {h}},
                                         {mtp + "mlp.gate.weight", {c.num_experts, h}}};
  ShardedSafetensorsWriter w(dst.string(), /*max_shard_bytes=*/200 << 10);
  for (const WeightSpec& s : specs) {
    SY_ASSIGN_OR_RETURN(TensorView v, ckpt->Get(s.name, s.shape));
    SY_RETURN_IF_ERROR(w.Declare(s.name, v.dtype, s.shape));
  }
  for (const WeightSpec& s : extra) SY_RETURN_IF_ERROR(w.Declare(s.name, DType::kF32, s.shape));
  for (const WeightSpec& s : specs) {
    SY_ASSIGN_OR_RETURN(TensorView v, ckpt->Get(s.name, s.shape));
    SY_RETURN_IF_ERROR(w.Write(s.name, v.data));
  }
  for (const WeightSpec& s : extra) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    const std::vector<float> values(n, 0.5f);
    SY_RETURN_IF_ERROR(w.Write(s.name, values.data()));
  }
  return w.Finish();
}

TEST(MtpLayer, IsSkippedAndChangesNothing) {
  const auto src = std::filesystem::path(testing::GoldenDir()) / "models" / "deepseek_v3";
  testing::ScratchDir dir("mtp");
  ASSERT_TRUE(WriteWithMtpLayer(src, dir.path()).ok());
  ASSERT_TRUE(std::filesystem::exists(dir.path() / "model.safetensors.index.json"));
  testing::LoadedModel plain = testing::LoadForTest(src.string());
  testing::LoadedModel with_mtp = testing::LoadForTest(dir.path().string());
  ASSERT_NE(plain.runner, nullptr);
  ASSERT_NE(with_mtp.runner, nullptr);
  EXPECT_EQ(with_mtp.model->config().num_nextn_predict_layers, 1);
  EXPECT_EQ(with_mtp.model->config().num_layers, plain.model->config().num_layers);
  Generator a(plain.runner.get()), b(with_mtp.runner.get());
  for (const std::vector<int32_t>& ids : testing::GoldenPrompts(src)) {
    auto la = a.PromptLogits({&ids, 1});
    auto lb = b.PromptLogits({&ids, 1});
    ASSERT_TRUE(la.ok() && lb.ok());
    EXPECT_EQ((*la)[0], (*lb)[0]);
  }
}

}  // namespace
}  // namespace sy
