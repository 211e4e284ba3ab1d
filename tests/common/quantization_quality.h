// How much a quantized model's outputs move from the unquantized model's on the golden
// fixtures: max |logit diff|, KL divergence of the next-token distributions, top-1 agreement
// over every prompt position, and the greedy tokens before the first split. For the
// quantization quality tests (model_fp8_quality_test; model_int8_quality_test keeps its own
// copy of these measures for now).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/common/test_model.h"

namespace sy::testing {

struct QualityComparison {
  double max_logit_diff = 0;
  double max_kl = 0;
  double mean_kl = 0;  // over all prompt positions
  int64_t positions = 0;
  int64_t top1_same = 0;
  int64_t greedy_same = 0;  // greedy tokens equal before the first split, over all prompts
  int64_t greedy_total = 0;

  double top1() const { return static_cast<double>(top1_same) / static_cast<double>(positions); }
  double greedy() const {
    return static_cast<double>(greedy_same) / static_cast<double>(greedy_total);
  }
};

// KL(p || q) of the softmaxes of two logit rows, in nats (double precision).
inline double KlDivergence(const float* p_logits, const float* q_logits, int64_t n) {
  auto log_softmax = [n](const float* x) {
    const double max = *std::max_element(x, x + n);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - max);
    std::vector<double> out(n);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] - max - std::log(sum);
    return out;
  };
  const std::vector<double> lp = log_softmax(p_logits);
  const std::vector<double> lq = log_softmax(q_logits);
  double kl = 0;
  for (int64_t i = 0; i < n; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  return kl;
}

// Runs the golden model in `dir` unquantized and with `quantization` over its prompts: logits
// at every prompt position, then 32 greedy tokens per prompt. Fails the test on load errors.
inline QualityComparison CompareQuantized(const std::filesystem::path& dir,
                                          Quantization quantization) {
  QualityComparison c;
  LoadedModel ref = LoadForTest(dir.string());
  LoadedModel q = LoadForTest(dir.string(), 16, 256, 2, "cpu", quantization);
  if (ref.runner == nullptr || q.runner == nullptr) return c;
  const int64_t vocab = ref.model->config().vocab_size;
  const std::vector<std::vector<int32_t>> prompts = GoldenPrompts(dir);
  Generator ref_gen(ref.runner.get());
  Generator q_gen(q.runner.get());
  for (const std::vector<int32_t>& ids : prompts) {
    auto want = ref_gen.PromptLogits({&ids, 1});
    auto got = q_gen.PromptLogits({&ids, 1});
    EXPECT_TRUE(want.ok() && got.ok());
    if (!want.ok() || !got.ok()) return c;
    const std::vector<float>& w_all = (*want)[0];
    const std::vector<float>& g_all = (*got)[0];
    for (int64_t pos = 0; pos < static_cast<int64_t>(w_all.size()) / vocab; ++pos) {
      const float* w = w_all.data() + pos * vocab;
      const float* g = g_all.data() + pos * vocab;
      for (int64_t v = 0; v < vocab; ++v) {
        c.max_logit_diff = std::max(c.max_logit_diff, static_cast<double>(std::fabs(w[v] - g[v])));
      }
      const double kl = KlDivergence(w, g, vocab);
      c.max_kl = std::max(c.max_kl, kl);
      c.mean_kl += kl;
      c.top1_same += std::max_element(w, w + vocab) - w == std::max_element(g, g + vocab) - g;
      ++c.positions;
    }
  }
  if (c.positions > 0) c.mean_kl /= static_cast<double>(c.positions);
  // Greedy continuations: tokens equal up to the first divergence (after it the contexts differ).
  std::vector<GenerationRequest> reqs;
  for (const std::vector<int32_t>& ids : prompts) {
    GenerationRequest r;
    r.prompt = ids;
    r.sampling.temperature = 0.0f;
    r.max_new_tokens = 32;
    reqs.push_back(r);
  }
  auto want = ref_gen.Generate(reqs);
  auto got = q_gen.Generate(reqs);
  EXPECT_TRUE(want.ok() && got.ok());
  if (!want.ok() || !got.ok()) return c;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const std::vector<int32_t>& a = (*want)[i].tokens;
    const std::vector<int32_t>& b = (*got)[i].tokens;
    c.greedy_total += static_cast<int64_t>(a.size());
    c.greedy_same += std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin();
  }
  return c;
}

}  // namespace sy::testing
