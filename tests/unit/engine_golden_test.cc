// The serving engine (Engine: scheduler, prefix-caching block manager, chunked prefill,
// preemption) against Hugging Face transformers: for every golden fixture, each prompt's greedy
// continuation must be transformers' token for token, and the logprobs of its first new token
// must be the log-softmax of transformers' last prompt logits, under continuous batching with
// unrelated requests, chunked prefill, prefix-cache hits, and preemption with resume. The same
// on one rank and over 2 and 4 expert-parallel ranks (threads with the in-process communicator).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "engine/sched/engine.h"
#include "tests/common/engine_harness.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

using testing::ExpectFixtureOutput;
using testing::ExpectLogprobsMatch;
using testing::Fixture;
using testing::GoldenModels;
using testing::GoldenPrompt;
using testing::GreedySpec;
using testing::kLogitTolerance;
using testing::LoadFixture;
using testing::Pending;
using testing::Serving;
using testing::StepRecorder;
using testing::Unrelated;

constexpr int kBlockSize = 4;

std::string Where(const std::string& model, int ranks, size_t prompt) {
  return model + " on " + std::to_string(ranks) + " rank(s), prompt " + std::to_string(prompt);
}

using Param = std::tuple<std::string, int>;  // model, ranks

class EngineGoldenTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    fixture_ = LoadFixture(model());
    ASSERT_EQ(fixture_.prompts.size(), 3u);
  }
  const std::string& model() const { return std::get<0>(GetParam()); }
  int ranks() const { return std::get<1>(GetParam()); }

  EngineOptions Options() {
    EngineOptions o;
    o.model_dir = fixture_.dir;
    o.threads = 1;
    o.block_size = kBlockSize;
    o.num_kv_blocks = 256;  // per rank
    o.max_num_batched_tokens = 256;
    o.max_num_seqs = 32;
    o.observer = &recorder_;
    return o;
  }

  // Submits `specs[0]`, holds the engine at the end of the step that runs it, and submits the
  // rest, which the engine then takes all at once into its next step. With `hold_after`, the
  // engine is held again at the end of that next step (the caller releases it).
  std::vector<std::unique_ptr<Pending>> SubmitTogether(Engine& e,
                                                       const std::vector<RequestSpec>& specs,
                                                       bool hold_after = false) {
    std::vector<std::unique_ptr<Pending>> out;
    recorder_.HoldNextStep();
    out.push_back(std::make_unique<Pending>(e, specs[0]));
    EXPECT_TRUE(recorder_.WaitHeld()) << "the engine ran no step";
    for (size_t i = 1; i < specs.size(); ++i) out.push_back(std::make_unique<Pending>(e, specs[i]));
    if (hold_after) recorder_.HoldNextStep();
    recorder_.Release();
    return out;
  }

  RequestSpec FixtureSpec(size_t i) const {
    const GoldenPrompt& p = fixture_.prompts[i];
    return GreedySpec(p.ids, static_cast<int32_t>(p.greedy.size()));
  }

  std::vector<std::unique_ptr<Pending>> SubmitFixturePrompts(Engine& e) {
    std::vector<std::unique_ptr<Pending>> out;
    for (size_t i = 0; i < fixture_.prompts.size(); ++i) {
      out.push_back(std::make_unique<Pending>(e, FixtureSpec(i)));
    }
    return out;
  }

  void ExpectFixtureOutputs(std::vector<std::unique_ptr<Pending>>& fixtures) {
    for (size_t i = 0; i < fixtures.size(); ++i) {
      fixtures[i]->Finish();
      ExpectFixtureOutput(fixture_.prompts[i], *fixtures[i], Where(model(), ranks(), i));
    }
  }

  // Runs the fixture prompts right after `before` (unrelated requests; the first one alone
  // for a step), and checks the fixtures and that every request ran to the end.
  void RunAfter(Engine& e, const std::vector<RequestSpec>& before) {
    std::vector<RequestSpec> specs = before;
    for (size_t i = 0; i < fixture_.prompts.size(); ++i) specs.push_back(FixtureSpec(i));
    std::vector<std::unique_ptr<Pending>> others = SubmitTogether(e, specs);
    std::vector<std::unique_ptr<Pending>> fixtures;
    for (size_t i = before.size(); i < specs.size(); ++i) fixtures.push_back(std::move(others[i]));
    others.resize(before.size());
    ExpectFixtureOutputs(fixtures);
    for (auto& r : others) {
      r->Finish();
      r->ExpectRanToLength();
    }
  }

  // A KV pool of 16 blocks of 4 tokens per rank, far below what the requests need together:
  // sequences are preempted (recomputed) and resumed, with the prefix cache on or off, with
  // the given step budget.
  void RunUnderPreemption(bool prefix_caching, int64_t budget = 256) {
    EngineOptions o = Options();
    o.num_kv_blocks = 16;
    o.enable_prefix_caching = prefix_caching;
    o.max_num_batched_tokens = budget;
    Serving s(o, ranks());
    ASSERT_NE(s.engine(), nullptr);
    // Two long requests per rank queued first, so that every rank runs out of blocks; the
    // fixtures, admitted last, are the scheduler's first victims (latest admitted first).
    std::vector<RequestSpec> before;
    for (int i = 0; i < 2 * ranks(); ++i) {
      before.push_back(Unrelated(20 + i, 16, 28, i % 2 == 1 ? 0.8f : 0.0f));
    }
    RunAfter(*s.engine(), before);
    const EngineSnapshot snap = s.engine()->Snapshot();
    EXPECT_GT(snap.num_preemptions, 0);
    EXPECT_EQ(recorder_.totals().preempted, snap.num_preemptions);
    EXPECT_EQ(snap.kv_blocks_used, 0);
    s.Stop();
  }

  Fixture fixture_;
  StepRecorder recorder_;
};

// All fixture prompts in flight together with unrelated requests (greedy and seeded sampling,
// n = 2, other lengths) queued between them, next to one already decoding, and more that
// arrive while they decode.
TEST_P(EngineGoldenTest, ContinuousBatching) {
  Serving s(Options(), ranks());
  ASSERT_NE(s.engine(), nullptr);
  Engine& e = *s.engine();
  const std::vector<RequestSpec> unrelated = {
      Unrelated(1, 3, 40),       Unrelated(2, 17, 12, 0.8f), Unrelated(3, 9, 8, 1.0f, 2),
      Unrelated(4, 30, 5, 0.0f), Unrelated(5, 1, 20, 1.2f),
  };
  std::vector<RequestSpec> specs;
  std::vector<bool> is_fixture;
  for (size_t i = 0; i < fixture_.prompts.size() || i < unrelated.size(); ++i) {
    if (i < unrelated.size()) {
      specs.push_back(unrelated[i]);
      is_fixture.push_back(false);
    }
    if (i < fixture_.prompts.size()) {
      specs.push_back(FixtureSpec(i));
      is_fixture.push_back(true);
    }
  }
  std::vector<std::unique_ptr<Pending>> others, fixtures;
  std::vector<std::unique_ptr<Pending>> all = SubmitTogether(e, specs, /*hold_after=*/true);
  for (size_t i = 0; i < all.size(); ++i) {
    (is_fixture[i] ? fixtures : others).push_back(std::move(all[i]));
  }
  // Late arrivals, prefilled next to the fixtures' first decode step.
  EXPECT_TRUE(recorder_.WaitHeld());
  others.push_back(std::make_unique<Pending>(e, Unrelated(6, 12, 10)));
  others.push_back(std::make_unique<Pending>(e, Unrelated(7, 25, 10, 0.7f)));
  recorder_.Release();

  ExpectFixtureOutputs(fixtures);
  for (auto& r : others) {
    r->Finish();
    r->ExpectRanToLength();
  }
  const StepRecorder::Totals t = recorder_.totals();
  EXPECT_GT(t.max_running, static_cast<int32_t>(fixtures.size()));
  EXPECT_GE(t.mixed_steps, 2);
  EXPECT_EQ(t.preempted, 0);
  s.Stop();
}

// A step budget of 5 tokens: every prompt longer than that is prefilled in several chunks,
// next to other sequences' decode tokens.
TEST_P(EngineGoldenTest, ChunkedPrefill) {
  constexpr int64_t kBudget = 5;
  EngineOptions o = Options();
  o.max_num_batched_tokens = kBudget;
  Serving s(o, ranks());
  ASSERT_NE(s.engine(), nullptr);
  RunAfter(*s.engine(), {Unrelated(11, 7, 6), Unrelated(12, 13, 6, 0.9f)});
  size_t longest = 0;
  int64_t prompt_tokens = 7 + 13;
  for (const GoldenPrompt& p : fixture_.prompts) {
    longest = std::max(longest, p.ids.size());
    prompt_tokens += static_cast<int64_t>(p.ids.size());
  }
  ASSERT_GT(static_cast<int64_t>(longest), 2 * kBudget);
  const StepRecorder::Totals t = recorder_.totals();
  EXPECT_LE(t.max_step_tokens, kBudget * ranks());
  EXPECT_GE(t.steps_with_prefill, prompt_tokens / (kBudget * ranks()));
  EXPECT_GT(t.mixed_steps, 0);
  s.Stop();
}

// The fixture prompts after requests sharing their prefixes: every prefix ids[:k] first (each
// checked against transformers' logits at position k - 1), then the whole prompts, which find
// their full blocks cached, then prompt + 16 greedy tokens, which find blocks written by decode.
TEST_P(EngineGoldenTest, PrefixCacheHits) {
  EngineOptions o = Options();
  o.max_num_batched_tokens = 512;
  Serving s(o, ranks());
  ASSERT_NE(s.engine(), nullptr);
  Engine& e = *s.engine();
  std::vector<RequestSpec> specs;
  std::vector<size_t> prompt_of;
  for (size_t i = 0; i < fixture_.prompts.size(); ++i) {
    const std::vector<int32_t>& ids = fixture_.prompts[i].ids;
    for (size_t k = 1; k <= ids.size(); ++k) {
      specs.push_back(GreedySpec(std::vector<int32_t>(ids.begin(), ids.begin() + k), 1));
      prompt_of.push_back(i);
    }
  }
  // Together, so that with several ranks every rank gets prefixes of every prompt.
  std::vector<std::unique_ptr<Pending>> prefixes = SubmitTogether(e, specs);
  for (size_t j = 0; j < prefixes.size(); ++j) {
    const size_t i = prompt_of[j];
    Pending* r = prefixes[j].get();
    r->Finish();
    r->ExpectRanToLength();
    const size_t k = r->spec().prompt.size();
    const std::string where = Where(model(), ranks(), i) + " prefix of " + std::to_string(k);
    ASSERT_EQ(r->samples().size(), 1u) << where;
    const std::vector<float>& logits = fixture_.prompts[i].logits[k - 1];
    ExpectLogprobsMatch(logits, r->samples()[0], where);
    // Greedy: the token transformers rates best, up to a near-tie within tolerance.
    const double best = *std::max_element(logits.begin(), logits.end());
    EXPECT_GE(logits[r->samples()[0].token], best - 2 * kLogitTolerance) << where;
  }
  const int64_t hits_before = e.Snapshot().prefix_cache_hits;

  auto fixtures = SubmitFixturePrompts(e);
  ExpectFixtureOutputs(fixtures);
  int64_t cached = 0;
  for (size_t i = 0; i < fixtures.size(); ++i) {
    const int64_t len = static_cast<int64_t>(fixture_.prompts[i].ids.size());
    // One rank holds every prefix: all full blocks before the last prompt token are cached.
    if (ranks() == 1) {
      EXPECT_EQ(fixtures[i]->cached_prompt_tokens(), (len - 1) / kBlockSize * kBlockSize)
          << Where(model(), ranks(), i);
    }
    cached += fixtures[i]->cached_prompt_tokens();
  }
  EXPECT_GT(cached, 0);
  EXPECT_GE(e.Snapshot().prefix_cache_hits - hits_before, cached);

  constexpr size_t kKnown = 16;
  std::vector<std::unique_ptr<Pending>> extended;
  for (const GoldenPrompt& p : fixture_.prompts) {
    std::vector<int32_t> prompt = p.ids;
    prompt.insert(prompt.end(), p.greedy.begin(), p.greedy.begin() + kKnown);
    extended.push_back(std::make_unique<Pending>(
        e, GreedySpec(prompt, static_cast<int32_t>(p.greedy.size() - kKnown))));
  }
  int64_t extended_cached = 0;
  for (size_t i = 0; i < extended.size(); ++i) {
    const GoldenPrompt& p = fixture_.prompts[i];
    extended[i]->Finish();
    extended[i]->ExpectRanToLength();
    EXPECT_EQ(extended[i]->tokens(),
              std::vector<int32_t>(p.greedy.begin() + kKnown, p.greedy.end()))
        << Where(model(), ranks(), i) << " after " << kKnown << " known tokens";
    const int64_t len = static_cast<int64_t>(p.ids.size() + kKnown);
    if (ranks() == 1) {
      EXPECT_EQ(extended[i]->cached_prompt_tokens(), (len - 1) / kBlockSize * kBlockSize)
          << Where(model(), ranks(), i);
    }
    extended_cached += extended[i]->cached_prompt_tokens();
  }
  EXPECT_GT(extended_cached, 0);

  // Three greedy choices of each prompt: the later ones share the first's prompt blocks while
  // it runs, and all three are transformers' continuation.
  const int64_t hits_before_choices = e.Snapshot().prefix_cache_hits;
  std::vector<std::unique_ptr<Pending>> choices;
  for (const GoldenPrompt& p : fixture_.prompts) {
    RequestSpec spec = GreedySpec(p.ids, static_cast<int32_t>(p.greedy.size()));
    spec.n = 3;
    choices.push_back(std::make_unique<Pending>(e, spec));
  }
  for (size_t i = 0; i < choices.size(); ++i) {
    choices[i]->Finish();
    choices[i]->ExpectRanToLength();
    for (int32_t c = 0; c < 3; ++c) {
      EXPECT_EQ(choices[i]->tokens(c), fixture_.prompts[i].greedy)
          << Where(model(), ranks(), i) << " choice " << c;
      if (!choices[i]->samples(c).empty()) {
        ExpectLogprobsMatch(fixture_.prompts[i].logits.back(), choices[i]->samples(c)[0],
                            Where(model(), ranks(), i));
      }
    }
  }
  EXPECT_GT(e.Snapshot().prefix_cache_hits, hits_before_choices);
  EXPECT_EQ(recorder_.totals().preempted, 0);
  s.Stop();
}

TEST_P(EngineGoldenTest, PreemptionAndResume) { RunUnderPreemption(/*prefix_caching=*/true); }

TEST_P(EngineGoldenTest, PreemptionAndRecomputeWithoutPrefixCache) {
  RunUnderPreemption(/*prefix_caching=*/false);
}

// Preempted sequences recompute prompt and output in chunks of 5 tokens.
TEST_P(EngineGoldenTest, PreemptionWithChunkedPrefill) {
  RunUnderPreemption(/*prefix_caching=*/true, /*budget=*/5);
}

std::string CaseName(const ::testing::TestParamInfo<Param>& info) {
  return std::get<0>(info.param) + "_" + std::to_string(std::get<1>(info.param)) + "rank";
}

INSTANTIATE_TEST_SUITE_P(OneRank, EngineGoldenTest,
                         ::testing::Combine(::testing::ValuesIn(GoldenModels()),
                                            ::testing::Values(1)),
                         CaseName);
INSTANTIATE_TEST_SUITE_P(ExpertParallel, EngineGoldenTest,
                         ::testing::Combine(::testing::ValuesIn(GoldenModels()),
                                            ::testing::Values(2, 4)),
                         CaseName);

}  // namespace
}  // namespace sy
