// Test helpers shared by the model tests: paths of golden fixtures, a scratch directory, and a
// loaded model with its runner, ready to generate.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend/backend_factory.h"
#include "engine/model/moe_model.h"
#include "engine/runner/generator.h"
#include "engine/runner/model_runner.h"
#include "tests/common/source_dir.h"

namespace sy::testing {

// The golden fixtures (tests/golden of the repository, see source_dir.h).
inline std::string GoldenDir() { return SourceDir() + "/tests/golden"; }

// The names of the golden models (directories of tests/golden/models with a golden.json), sorted.
std::vector<std::string> GoldenModels();

// The prompt token ids of a golden model directory's golden.json.
std::vector<std::vector<int32_t>> GoldenPrompts(const std::filesystem::path& model_dir);

// A fresh directory under the system temp dir, removed when the object dies.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag);
  ~ScratchDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A model loaded on a device (the CPU unless told) with a runner sized for tests.
struct LoadedModel {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<MoeModel> model;
  std::unique_ptr<ModelRunner> runner;
};

// Fails the current test (and returns an empty LoadedModel) on error.
// kv_cache_dtype kAuto keeps the KV cache in f32 on every device.
LoadedModel LoadForTest(const std::string& dir, int block_size = 16, int64_t max_batch_tokens = 256,
                        int threads = 2, const std::string& device = "cpu",
                        Quantization quantization = Quantization::kNone,
                        KvCacheDType kv_cache_dtype = KvCacheDType::kAuto);

}  // namespace sy::testing
