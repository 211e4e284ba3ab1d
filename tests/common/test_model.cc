#include "tests/common/test_model.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>

namespace sy::testing {

std::vector<std::string> GoldenModels() {
  std::vector<std::string> names;
  const auto root = std::filesystem::path(GoldenDir()) / "models";
  if (!std::filesystem::exists(root)) return names;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    if (std::filesystem::exists(entry.path() / "golden.json")) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::vector<int32_t>> GoldenPrompts(const std::filesystem::path& model_dir) {
  std::ifstream f(model_dir / "golden.json");
  const nlohmann::json golden = nlohmann::json::parse(f);
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : golden["prompts"]) prompts.push_back(p["ids"].get<std::vector<int32_t>>());
  return prompts;
}

ScratchDir::ScratchDir(const std::string& tag) {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          ("switchyard-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

LoadedModel LoadForTest(const std::string& dir, int block_size, int64_t max_batch_tokens,
                        int threads, const std::string& device, Quantization quantization,
                        KvCacheDType kv_cache_dtype) {
  LoadedModel m;
  auto spec = ParseDevice(device);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  if (!spec.ok()) return {};
  BackendOptions bo;
  bo.cpu_threads = threads;
  // Golden fixtures are compared at f32 precision: keep the GPU's KV cache in f32 too.
  bo.kv_dtype = DType::kF32;
  bo.kv_cache_dtype = kv_cache_dtype;
  auto backend = CreateBackend(*spec, bo);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  if (!backend.ok()) return {};
  m.backend = std::move(backend).value();
  auto model = MoeModel::Load(dir, m.backend.get(), /*load_routed_experts=*/true, quantization);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return {};
  m.model = std::move(model).value();
  RunnerOptions o;
  o.block_size = block_size;
  o.max_batch_tokens = max_batch_tokens;
  o.max_seqs = 64;
  o.num_kv_blocks = 4096 / block_size + 64;
  auto runner = ModelRunner::Create(m.model.get(), o);
  EXPECT_TRUE(runner.ok()) << runner.status().ToString();
  if (!runner.ok()) return {};
  m.runner = std::move(runner).value();
  return m;
}

}  // namespace sy::testing
