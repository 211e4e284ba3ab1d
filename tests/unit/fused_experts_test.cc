// Routed experts stored fused (transformers 5's mlp.experts.gate_up_proj / down_proj): make-model
// writes them, the loader and expert parallelism read them to the bit, mixed layers are refused.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <thread>

#include "engine/backend/cpu_backend.h"
#include "engine/dist/inprocess_communicator.h"
#include "engine/model/checkpoint.h"
#include "engine/model/expert_layout.h"
#include "engine/model/make_model.h"
#include "engine/model/safetensors.h"
#include "engine/model/safetensors_writer.h"
#include "engine/runner/ep_step_executor.h"
#include "engine/runner/expert_parallel.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

constexpr int kBlockSize = 16;
constexpr int kBlocksPerSeq = 8;

const std::vector<std::vector<int32_t>> kPrompts = {{1, 5, 9, 200, 17, 3}, {42, 7, 7, 100}};

// Writes tiny-<arch> with seed 5 into `dir`, fused or per expert.
void Make(const std::string& arch, const std::filesystem::path& dir, bool fused) {
  MakeModelOptions o;
  o.arch = arch;
  o.out_dir = dir.string();
  o.seed = 5;
  o.fused_experts = fused;
  const Status st = MakeModel(o);
  ASSERT_TRUE(st.ok()) << st.ToString();
}

std::vector<std::vector<float>> Logits(const std::string& dir, Quantization q) {
  testing::LoadedModel m = testing::LoadForTest(dir, 16, 256, 2, "cpu", q);
  EXPECT_NE(m.runner, nullptr);
  if (m.runner == nullptr) return {};
  Generator g(m.runner.get());
  auto logits = g.PromptLogits(kPrompts);
  EXPECT_TRUE(logits.ok()) << logits.status().ToString();
  return logits.ok() ? *logits : std::vector<std::vector<float>>{};
}

bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct Case {
  std::string arch;
  Quantization quantization;
};

class FusedExpertsLogits : public ::testing::TestWithParam<Case> {};

TEST_P(FusedExpertsLogits, BitIdenticalToTheSameWeightsPerExpert) {
  testing::ScratchDir per("per-expert"), fused("fused");
  Make(GetParam().arch, per.path(), false);
  Make(GetParam().arch, fused.path(), true);
  auto ckpt = Checkpoint::Open(fused.path().string());
  ASSERT_TRUE(ckpt.ok());
  bool has_fused = false;
  for (const std::string& name : (*ckpt)->names()) {
    EXPECT_EQ(name.find("experts.0."), std::string::npos) << name;
    has_fused = has_fused || name.ends_with("mlp.experts.gate_up_proj");
  }
  EXPECT_TRUE(has_fused);
  const auto a = Logits(per.path().string(), GetParam().quantization);
  const auto b = Logits(fused.path().string(), GetParam().quantization);
  ASSERT_EQ(a.size(), kPrompts.size());
  ASSERT_EQ(b.size(), kPrompts.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(BitIdentical(a[i], b[i])) << "prompt " << i;
}

INSTANTIATE_TEST_SUITE_P(
    Archs, FusedExpertsLogits,
    ::testing::Values(Case{"mixtral", Quantization::kNone}, Case{"qwen3_moe", Quantization::kNone},
                      Case{"deepseek_v3", Quantization::kNone},
                      Case{"mixtral", Quantization::kInt8}, Case{"qwen3_moe", Quantization::kInt8},
                      Case{"deepseek_v3", Quantization::kInt8}, Case{"olmoe", Quantization::kNone},
                      Case{"qwen2_moe", Quantization::kNone}, Case{"glm4_moe", Quantization::kNone},
                      Case{"deepseek_v2", Quantization::kNone},
                      Case{"qwen3_moe", Quantization::kInt4},
                      Case{"qwen3_moe", Quantization::kFp8}),
    [](const ::testing::TestParamInfo<Case>& info) {
      return info.param.arch + "_" + std::string(QuantizationName(info.param.quantization));
    });

TEST(FusedExperts, ListWeightsGivesTransformers5NamesAndShapes) {
  MakeModelOptions o;
  o.arch = "mixtral";
  auto text = MakeModelConfigText(o);
  ASSERT_TRUE(text.ok());
  auto c = ParseModelConfig(*text);
  ASSERT_TRUE(c.ok());
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const WeightSpec& s : ListWeights(*c, ExpertLayout::kFused)) shapes[s.name] = s.shape;
  const int64_t e = c->num_experts, inter = c->moe_intermediate_size, h = c->hidden_size;
  EXPECT_EQ(shapes["model.layers.0.mlp.experts.gate_up_proj"],
            (std::vector<int64_t>{e, 2 * inter, h}));
  EXPECT_EQ(shapes["model.layers.0.mlp.experts.down_proj"], (std::vector<int64_t>{e, h, inter}));
  EXPECT_EQ(shapes["model.layers.0.mlp.gate.weight"], (std::vector<int64_t>{e, h}));
  EXPECT_EQ(shapes.count("model.layers.0.block_sparse_moe.gate.weight"), 0u);
  EXPECT_EQ(shapes.count("model.layers.0.block_sparse_moe.experts.0.w1.weight"), 0u);
}

TEST(FusedExperts, MakeModelRefusesFusedWithPreQuantizedExperts) {
  testing::ScratchDir dir("fused-refused");
  MakeModelOptions o;
  o.arch = "qwen3_moe";
  o.out_dir = dir.path().string();
  o.fused_experts = true;
  o.fp8 = true;
  EXPECT_EQ(MakeModel(o).code(), StatusCode::kInvalidArgument);
  o.fp8 = false;
  o.int4_format = "gptq";
  EXPECT_EQ(MakeModel(o).code(), StatusCode::kInvalidArgument);
}

// A tensor of a checkpoint being rewritten.
struct Stored {
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
Stored Read(const SafetensorsFile& file, const std::string& name) {
  const TensorView* v = file.Find(name);
  EXPECT_NE(v, nullptr) << name;
  if (v == nullptr) return {};
  const auto* data = static_cast<const uint8_t*>(v->data);
  return {v->dtype, v->shape, std::vector<uint8_t>(data, data + v->nbytes)};
}

// Copies the checkpoint in `from` (its JSON files and weights) to `to`, through `edit`, which may
// add tensors (declare) or change how one is stored (its dtype and bytes).
void Rewrite(const std::filesystem::path& from, const std::filesystem::path& to,
             const std::function<void(std::map<std::string, Stored>&)>& edit) {
  auto file = SafetensorsFile::Open((from / "model.safetensors").string());
  ASSERT_TRUE(file.ok());
  std::map<std::string, Stored> tensors;
  for (const std::string& name : (*file)->names()) tensors[name] = Read(**file, name);
  edit(tensors);
  std::filesystem::create_directories(to);
  for (const auto& entry : std::filesystem::directory_iterator(from)) {
    if (entry.path().extension() == ".json") {
      std::filesystem::copy_file(entry.path(), to / entry.path().filename());
    }
  }
  ShardedSafetensorsWriter writer(to.string(), uint64_t{1} << 40);
  for (const auto& [name, t] : tensors) ASSERT_TRUE(writer.Declare(name, t.dtype, t.shape).ok());
  for (const auto& [name, t] : tensors) ASSERT_TRUE(writer.Write(name, t.bytes.data()).ok());
  ASSERT_TRUE(writer.Finish().ok());
}

StatusOr<ModelConfig> ConfigOf(const std::filesystem::path& dir) {
  std::ifstream f(dir / "config.json");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return ParseModelConfig(text);
}

TEST(FusedExperts, ALayerWithBothLayoutsIsRefusedNamingTheTensors) {
  testing::ScratchDir fused("fused"), mixed("mixed");
  Make("qwen3_moe", fused.path(), true);
  Rewrite(fused.path(), mixed.path(), [](std::map<std::string, Stored>& t) {
    const Stored& gate_up = t.at("model.layers.1.mlp.experts.gate_up_proj");
    const int64_t inter = gate_up.shape[1] / 2, hidden = gate_up.shape[2];
    t["model.layers.1.mlp.experts.3.up_proj.weight"] = {
        gate_up.dtype, {inter, hidden}, std::vector<uint8_t>(inter * hidden * 2)};
  });
  auto c = ConfigOf(mixed.path());
  ASSERT_TRUE(c.ok());
  auto ckpt = Checkpoint::Open(mixed.path().string());
  ASSERT_TRUE(ckpt.ok());
  const auto names = CheckpointWeightNames(*c, **ckpt);
  EXPECT_EQ(names.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(names.status().message().find("model.layers.1.mlp.experts.gate_up_proj"),
            std::string::npos)
      << names.status().ToString();
  EXPECT_NE(names.status().message().find("model.layers.1.mlp.experts.3.up_proj.weight"),
            std::string::npos)
      << names.status().ToString();
  CpuBackend backend(1);
  EXPECT_EQ(MoeModel::Load(mixed.path().string(), &backend).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(FusedExperts, FusedExpertsInAnotherDtypeAreRefused) {
  testing::ScratchDir fused("fused"), fp8("fp8");
  Make("qwen3_moe", fused.path(), true);
  Rewrite(fused.path(), fp8.path(), [](std::map<std::string, Stored>& t) {
    Stored& gate_up = t.at("model.layers.0.mlp.experts.gate_up_proj");
    gate_up.dtype = DType::kE4M3;
    gate_up.bytes.resize(gate_up.bytes.size() / 2);
  });
  CpuBackend backend(1);
  const Status st = MoeModel::Load(fp8.path().string(), &backend).status();
  EXPECT_EQ(st.code(), StatusCode::kUnimplemented);
  EXPECT_NE(st.message().find("fused expert tensor model.layers.0.mlp.experts.gate_up_proj"),
            std::string::npos)
      << st.ToString();
}

TEST(FusedExperts, DetectionIsPerLayer) {
  testing::ScratchDir per("per-expert"), fused("fused"), both("both");
  Make("qwen3_moe", per.path(), false);
  Make("qwen3_moe", fused.path(), true);
  // Layer 0 fused, the others per expert.
  auto fused_file = SafetensorsFile::Open((fused.path() / "model.safetensors").string());
  ASSERT_TRUE(fused_file.ok());
  Rewrite(per.path(), both.path(), [&](std::map<std::string, Stored>& t) {
    for (auto it = t.begin(); it != t.end();) {
      it = it->first.starts_with("model.layers.0.mlp.experts.") ? t.erase(it) : std::next(it);
    }
    for (const std::string name :
         {"model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj"}) {
      t[name] = Read(**fused_file, name);
    }
  });
  auto c = ConfigOf(both.path());
  ASSERT_TRUE(c.ok());
  auto ckpt = Checkpoint::Open(both.path().string());
  ASSERT_TRUE(ckpt.ok());
  auto names = CheckpointWeightNames(*c, **ckpt);
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  EXPECT_EQ(names->layers[0].experts[2].fused_expert, 2);
  EXPECT_EQ(names->layers[1].experts[2].fused_expert, -1);
  const auto a = Logits(per.path().string(), Quantization::kNone);
  const auto b = Logits(both.path().string(), Quantization::kNone);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(BitIdentical(a[i], b[i])) << "prompt " << i;
}

// Expert parallelism: one rank's model without routed experts plus its ExpertParallel.
struct Rank {
  std::unique_ptr<CpuBackend> backend;
  std::unique_ptr<MoeModel> model;
  std::unique_ptr<ExpertParallel> ep;
  std::unique_ptr<ModelRunner> runner;
};

Status LoadRank(const std::string& dir, int ranks, Communicator* comm, Rank* out) {
  out->backend = std::make_unique<CpuBackend>(1);
  SY_ASSIGN_OR_RETURN(out->model, MoeModel::Load(dir, out->backend.get(), false));
  SY_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));
  const ModelConfig& c = out->model->config();
  const int32_t experts = static_cast<int32_t>(c.num_experts);
  const ExpertPlacement placement = ExpertPlacement::Contiguous(MoeLayerIndices(c), experts, ranks,
                                                                (experts + ranks - 1) / ranks);
  SY_ASSIGN_OR_RETURN(out->ep,
                      ExpertParallel::Create(c, *ckpt, out->backend.get(), placement, comm));
  out->model->SetExpertDispatch(out->ep.get());
  RunnerOptions ro;
  ro.max_batch_tokens = 512;
  ro.num_kv_blocks = kBlocksPerSeq;
  ro.block_size = kBlockSize;
  SY_ASSIGN_OR_RETURN(out->runner, ModelRunner::Create(out->model.get(), ro));
  return Status::Ok();
}

// Prefill of prompt i on rank i over two ranks; each rank's last-token logits.
std::vector<std::vector<float>> EpLogits(const std::string& dir) {
  constexpr int kRanks = 2;
  auto comms = InProcessGroup::Create(kRanks, std::chrono::seconds(30));
  std::vector<Rank> ranks(kRanks);
  Status worker_status;
  std::thread worker([&] {
    worker_status = LoadRank(dir, kRanks, comms[1].get(), &ranks[1]);
    if (worker_status.ok()) worker_status = RunEpWorker(ranks[1].runner.get(), ranks[1].ep.get());
  });
  std::vector<std::vector<float>> logits;
  const Status leader = LoadRank(dir, kRanks, comms[0].get(), &ranks[0]);
  EXPECT_TRUE(leader.ok()) << leader.ToString();
  if (leader.ok()) {
    EpStepExecutor executor(ranks[0].runner.get(), ranks[0].ep.get());
    std::vector<StepBatch> batches(kRanks);
    for (int r = 0; r < kRanks; ++r) {
      StepBatch& b = batches[r];
      b.max_blocks_per_seq = kBlocksPerSeq;
      for (int32_t k = 0; k < kBlocksPerSeq; ++k) b.block_tables.push_back(k);
      for (size_t pos = 0; pos < kPrompts[r].size(); ++pos) {
        b.tokens.push_back(kPrompts[r][pos]);
        b.positions.push_back(static_cast<int32_t>(pos));
        b.slots.push_back(static_cast<int64_t>(pos));
        b.token_seq.push_back(0);
      }
      b.logits_indices.push_back(static_cast<int32_t>(b.tokens.size()) - 1);
    }
    const Status st = executor.Step(batches, MigrationAction{}, &logits);
    EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(executor.Stop().ok());
  }
  worker.join();
  EXPECT_TRUE(worker_status.ok()) << worker_status.ToString();
  return logits;
}

TEST(FusedExperts, ExpertParallelRanksLoadFusedExperts) {
  for (const std::string arch : {"qwen3_moe", "deepseek_v3"}) {
    testing::ScratchDir per("per-expert"), fused("fused");
    Make(arch, per.path(), false);
    Make(arch, fused.path(), true);
    const auto a = EpLogits(per.path().string());
    const auto b = EpLogits(fused.path().string());
    ASSERT_EQ(a.size(), 2u) << arch;
    ASSERT_EQ(b.size(), 2u) << arch;
    for (size_t r = 0; r < a.size(); ++r) EXPECT_TRUE(BitIdentical(a[r], b[r])) << arch << r;
  }
}

}  // namespace
}  // namespace sy
