// Loading a broken model directory gives a clear Status naming what is wrong, never a crash.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/backend/cpu_backend.h"
#include "engine/model/make_model.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

class ModelLoadErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeModelOptions o;
    o.arch = "qwen3_moe";
    o.out_dir = dir_.path().string();
    o.dtype = DType::kF32;
    ASSERT_TRUE(MakeModel(o).ok());
  }
  Status Load() {
    CpuBackend backend(1);
    return MoeModel::Load(dir_.path().string(), &backend).status();
  }
  void EditConfig(const std::function<void(nlohmann::json&)>& edit) {
    std::ifstream in(dir_.path() / "config.json");
    nlohmann::json cfg = nlohmann::json::parse(in);
    edit(cfg);
    std::ofstream(dir_.path() / "config.json") << cfg.dump();
  }
  testing::ScratchDir dir_{"load-errors"};
};

TEST_F(ModelLoadErrors, TheUnbrokenModelLoads) { EXPECT_TRUE(Load().ok()) << Load().ToString(); }

TEST_F(ModelLoadErrors, MissingDirectory) {
  CpuBackend backend(1);
  const Status st = MoeModel::Load((dir_.path() / "nope").string(), &backend).status();
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("nope"), std::string::npos) << st.ToString();
}

TEST_F(ModelLoadErrors, MissingConfig) {
  fs::remove(dir_.path() / "config.json");
  const Status st = Load();
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("config.json"), std::string::npos) << st.ToString();
}

TEST_F(ModelLoadErrors, MissingWeights) {
  fs::remove(dir_.path() / "model.safetensors");
  const Status st = Load();
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("model.safetensors"), std::string::npos) << st.ToString();
}

TEST_F(ModelLoadErrors, UnknownArchitecture) {
  EditConfig([](nlohmann::json& c) {
    c["architectures"] = {"LlamaForCausalLM"};
    c["model_type"] = "llama";
  });
  const Status st = Load();
  EXPECT_EQ(st.code(), StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("LlamaForCausalLM"), std::string::npos) << st.ToString();
}

TEST_F(ModelLoadErrors, MisShapedTensorNamesTensorAndBothShapes) {
  EditConfig([](nlohmann::json& c) { c["moe_intermediate_size"] = 96; });
  const Status st = Load();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("model.layers.0.mlp.experts.0.gate_proj.weight"), std::string::npos)
      << st.ToString();
  EXPECT_NE(st.message().find("[64, 64]"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("[96, 64]"), std::string::npos) << st.ToString();
}

TEST_F(ModelLoadErrors, MissingTensorIsNamed) {
  // One more layer than the checkpoint has.
  EditConfig([](nlohmann::json& c) { c["num_hidden_layers"] = 3; });
  const Status st = Load();
  EXPECT_EQ(st.code(), StatusCode::kNotFound);
  EXPECT_NE(st.message().find("model.layers.2."), std::string::npos) << st.ToString();
}

TEST_F(ModelLoadErrors, TruncatedSafetensors) {
  const fs::path p = dir_.path() / "model.safetensors";
  fs::resize_file(p, fs::file_size(p) / 2);
  const Status st = Load();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
}

TEST_F(ModelLoadErrors, CorruptHeader) {
  {
    std::fstream f(dir_.path() / "model.safetensors",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    f.write("#garbage", 8);
  }
  const Status st = Load();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
}

}  // namespace
}  // namespace sy
