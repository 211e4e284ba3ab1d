#include "tests/common/quantized_quality.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "tests/common/test_model.h"

namespace sy::testing {
namespace {

// KL(p || q) of the softmaxes of two logit rows, in nats (double precision).
double KlDivergence(const float* p_logits, const float* q_logits, int64_t n) {
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

void Accumulate(const std::vector<float>& want, const std::vector<float>& got, int64_t vocab,
                QuantizedQuality* c) {
  const int64_t positions = static_cast<int64_t>(want.size()) / vocab;
  for (int64_t pos = 0; pos < positions; ++pos) {
    const float* w = want.data() + pos * vocab;
    const float* g = got.data() + pos * vocab;
    for (int64_t v = 0; v < vocab; ++v) {
      c->max_logit_diff = std::max(c->max_logit_diff, static_cast<double>(std::fabs(w[v] - g[v])));
    }
    const double kl = KlDivergence(w, g, vocab);
    c->max_kl = std::max(c->max_kl, kl);
    c->mean_kl += kl;
    c->top1_same += std::max_element(w, w + vocab) - w == std::max_element(g, g + vocab) - g;
    ++c->positions;
  }
}

// The measures of `quantized` against `ref` (golden model `name` in directory `dir`), printed
// under `label`.
QuantizedQuality Measure(const std::string& name, const std::filesystem::path& dir,
                         const LoadedModel& ref, const LoadedModel& quantized,
                         const std::string& label) {
  QuantizedQuality c;
  if (ref.runner == nullptr || quantized.runner == nullptr) {
    ADD_FAILURE() << "cannot load " << dir;
    return c;
  }
  const int64_t vocab = ref.model->config().vocab_size;
  const std::vector<std::vector<int32_t>> prompts = GoldenPrompts(dir);
  Generator ref_gen(ref.runner.get());
  Generator q_gen(quantized.runner.get());
  for (const std::vector<int32_t>& ids : prompts) {
    auto want = ref_gen.PromptLogits({&ids, 1});
    auto got = q_gen.PromptLogits({&ids, 1});
    if (!want.ok() || !got.ok()) {
      ADD_FAILURE() << "prompt logits failed";
      return c;
    }
    Accumulate((*want)[0], (*got)[0], vocab, &c);
  }
  c.mean_kl /= static_cast<double>(c.positions);
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
  if (!want.ok() || !got.ok()) {
    ADD_FAILURE() << "generation failed";
    return c;
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    const std::vector<int32_t>& a = (*want)[i].tokens;
    const std::vector<int32_t>& b = (*got)[i].tokens;
    c.greedy_total += static_cast<int64_t>(a.size());
    c.greedy_same += std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin();
  }
  std::printf(
      "%s vs none, %s: max|logit diff| %.5f, KL max %.3g mean %.3g nats, top-1 %lld/%lld, "
      "greedy prefix %lld/%lld\n",
      label.c_str(), name.c_str(), c.max_logit_diff, c.max_kl, c.mean_kl,
      static_cast<long long>(c.top1_same), static_cast<long long>(c.positions),
      static_cast<long long>(c.greedy_same), static_cast<long long>(c.greedy_total));
  ::testing::Test::RecordProperty("max_logit_diff", std::to_string(c.max_logit_diff));
  ::testing::Test::RecordProperty("max_kl", std::to_string(c.max_kl));
  ::testing::Test::RecordProperty("mean_kl", std::to_string(c.mean_kl));
  ::testing::Test::RecordProperty("top1_agreement", std::to_string(c.top1()));
  ::testing::Test::RecordProperty("greedy_agreement", std::to_string(c.greedy()));
  return c;
}

}  // namespace

QuantizedQuality MeasureQuantizedQuality(const std::string& name, Quantization q) {
  const auto dir = std::filesystem::path(GoldenDir()) / "models" / name;
  const LoadedModel ref = LoadForTest(dir.string());
  const LoadedModel quantized = LoadForTest(dir.string(), 16, 256, 2, "cpu", q);
  return Measure(name, dir, ref, quantized, std::string(QuantizationName(q)));
}

QuantizedQuality MeasureKvCacheQuality(const std::string& name, KvCacheDType kv) {
  const auto dir = std::filesystem::path(GoldenDir()) / "models" / name;
  const LoadedModel ref = LoadForTest(dir.string());
  const LoadedModel narrow = LoadForTest(dir.string(), 16, 256, 2, "cpu", Quantization::kNone, kv);
  return Measure(name, dir, ref, narrow, std::string(KvCacheDTypeName(kv)) + " KV cache");
}

}  // namespace sy::testing
