// The serving engine (Engine: scheduler, prefix-caching block manager, chunked prefill,
// preemption) against Hugging Face transformers: for every golden fixture, each prompt's greedy
// continuation must be transformers' token for token, and the logprobs of its first new token
// must be the log-softmax of transformers' last prompt logits, under continuous batching with
// unrelated requests, chunked prefill, prefix-cache hits, and preemption with resume. The same
// on one rank and over 2 and 4 expert-parallel ranks (threads with the in-process communicator).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "engine/dist/inprocess_communicator.h"
#include "engine/sched/engine.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

using std::chrono::milliseconds;

// model_golden_test's bound on logits (f32 arithmetic over the same weights). A log-softmax
// subtracts log-sum-exp, which moves by at most the largest logit difference, so logprobs
// agree within twice that.
constexpr float kLogitTolerance = 1e-4f;
constexpr float kLogprobTolerance = 2 * kLogitTolerance;
constexpr int32_t kTopLogprobs = 20;  // the most the engine reports
constexpr int kBlockSize = 4;

// One prompt of a golden.json: its ids, transformers' logits at every prompt position and the
// greedy continuation.
struct GoldenPrompt {
  std::vector<int32_t> ids;
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> greedy;
};

struct Fixture {
  std::string dir;
  std::vector<GoldenPrompt> prompts;
};

Fixture LoadFixture(const std::string& model) {
  Fixture f;
  f.dir = testing::GoldenDir() + "/models/" + model;
  std::ifstream in(f.dir + "/golden.json");
  const nlohmann::json golden = nlohmann::json::parse(in);
  for (const auto& p : golden["prompts"]) {
    f.prompts.push_back({p["ids"].get<std::vector<int32_t>>(),
                         p["logits"].get<std::vector<std::vector<float>>>(),
                         p["greedy"].get<std::vector<int32_t>>()});
  }
  return f;
}

std::vector<std::string> GoldenModels() {
  std::vector<std::string> names;
  const auto root = std::filesystem::path(testing::GoldenDir()) / "models";
  if (!std::filesystem::exists(root)) return names;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    if (std::filesystem::exists(entry.path() / "golden.json")) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

// log_softmax of transformers' logits, in double.
std::vector<double> LogSoftmax(const std::vector<float>& logits) {
  const double m = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float v : logits) sum += std::exp(v - m);
  const double lse = m + std::log(sum);
  std::vector<double> out(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] - lse;
  return out;
}

// The engine's logprobs of one sampled token against transformers' logits of that position:
// the chosen token's logprob and each of the top kTopLogprobs, and that those are the top ones.
void ExpectLogprobsMatch(const std::vector<float>& logits, const SampledToken& t,
                         const std::string& where) {
  const std::vector<double> want = LogSoftmax(logits);
  ASSERT_GE(t.token, 0);
  ASSERT_LT(static_cast<size_t>(t.token), want.size());
  EXPECT_NEAR(t.logprob, want[t.token], kLogprobTolerance) << where << " chosen token";
  ASSERT_EQ(t.top.size(), static_cast<size_t>(kTopLogprobs)) << where;
  std::vector<double> sorted = want;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  std::set<int32_t> seen;
  for (size_t i = 0; i < t.top.size(); ++i) {
    const TokenLogprob& e = t.top[i];
    ASSERT_GE(e.token, 0);
    ASSERT_LT(static_cast<size_t>(e.token), want.size());
    EXPECT_TRUE(seen.insert(e.token).second) << where << " top " << i << " repeats a token";
    EXPECT_NEAR(e.logprob, want[e.token], kLogprobTolerance) << where << " top " << i;
    // The i-th best of transformers' distribution (a near-tie may swap the tokens).
    EXPECT_NEAR(e.logprob, sorted[i], kLogprobTolerance) << where << " top " << i;
  }
}

// Counts what the engine reports per step, to check that a condition really happened; and
// holds the engine thread at the end of a step on request, so that requests submitted
// meanwhile join one later step together however the threads are scheduled.
class StepRecorder : public EngineObserver {
 public:
  struct Totals {
    int64_t steps = 0;
    int64_t mixed_steps = 0;         // prefill and decode tokens in one step
    int64_t steps_with_prefill = 0;  // prompt (or recomputed) tokens fed
    int32_t max_step_tokens = 0;
    int32_t max_running = 0;
    int64_t preempted = 0;
  };
  void OnStep(const StepStats& s) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++t_.steps;
    t_.mixed_steps += s.num_prefill_tokens > 0 && s.num_decode_tokens > 0;
    t_.steps_with_prefill += s.num_prefill_tokens > 0;
    t_.max_step_tokens = std::max(t_.max_step_tokens, s.num_prefill_tokens + s.num_decode_tokens);
    t_.max_running = std::max(t_.max_running, s.num_running);
    if (holds_ < wanted_) {
      const int64_t hold = ++holds_;
      cv_.notify_all();
      // Bounded, so that a test that failed before releasing cannot hang the engine.
      cv_.wait_for(lock, std::chrono::seconds(30), [&] { return released_ >= hold; });
    }
  }
  void OnRequestFinished(const RequestStats&) override {}
  void OnPreemption(int32_t n) override {
    std::lock_guard<std::mutex> lock(mu_);
    t_.preempted += n;
  }
  void OnRejected(StatusCode) override {}
  Totals totals() const {
    std::lock_guard<std::mutex> lock(mu_);
    return t_;
  }

  // The engine thread will wait at the end of its next step not yet held, until Release().
  void HoldNextStep() {
    std::lock_guard<std::mutex> lock(mu_);
    ++wanted_;
  }
  // Waits until the engine thread reached every hold asked for; false after 30 s.
  bool WaitHeld() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return holds_ == wanted_; });
  }
  // Lets the engine thread go on from the holds it reached.
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = holds_;
    cv_.notify_all();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Totals t_;
  int64_t wanted_ = 0;    // holds asked for
  int64_t holds_ = 0;     // holds reached
  int64_t released_ = 0;  // holds released
};

// An engine on `ranks` ranks: with more than one, the other ranks are threads running
// Engine::RunWorker over an in-process group.
class Serving {
 public:
  Serving(EngineOptions o, int ranks) : worker_status_(ranks) {
    if (ranks > 1) {
      comms_ = InProcessGroup::Create(ranks, std::chrono::seconds(30));
      for (int r = 1; r < ranks; ++r) {
        workers_.emplace_back([this, o, r] {
          EngineOptions wo = o;
          wo.observer = nullptr;
          wo.communicator = comms_[r].get();
          worker_status_[r] = Engine::RunWorker(wo);
        });
      }
      o.communicator = comms_[0].get();
    }
    auto e = Engine::Create(o);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    if (e.ok()) engine_ = std::move(e).value();
  }
  ~Serving() { Stop(); }

  Engine* engine() { return engine_.get(); }

  // Stops the engine, which releases the workers; fails the test if a worker failed.
  void Stop() {
    engine_.reset();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    for (size_t r = 1; r < worker_status_.size(); ++r) {
      EXPECT_TRUE(worker_status_[r].ok()) << "rank " << r << ": " << worker_status_[r].ToString();
    }
    worker_status_.resize(1);
  }

 private:
  std::vector<std::unique_ptr<Communicator>> comms_;
  std::vector<std::thread> workers_;
  std::vector<Status> worker_status_;
  std::unique_ptr<Engine> engine_;
};

// A submitted request and what its stream delivered so far.
class Pending {
 public:
  Pending(Engine& engine, RequestSpec spec) : spec_(std::move(spec)) {
    auto s = engine.Submit(spec_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (s.ok()) stream_ = *s;
  }

  // Reads one update; false when the stream ended or stalled (30 s, a test failure).
  bool Pump() {
    if (stream_ == nullptr || finished_) return false;
    RequestUpdate u;
    if (!stream_->Next(&u, milliseconds(30000))) {
      ADD_FAILURE() << "stream " << stream_->id() << " stalled";
      stream_ = nullptr;
      return false;
    }
    for (CompletionDelta& d : u.deltas) {
      std::vector<SampledToken>& c = choices_[d.index];
      EXPECT_EQ(d.token_ids.size(), d.samples.size());
      c.insert(c.end(), d.samples.begin(), d.samples.end());
      if (d.finish_reason) finish_[d.index] = *d.finish_reason;
    }
    cached_prompt_tokens_ = u.cached_prompt_tokens;
    if (u.finished) {
      finished_ = true;
      EXPECT_TRUE(u.status.ok()) << u.status.ToString();
    }
    return true;
  }
  void Finish() {
    while (Pump()) {
    }
  }

  const RequestSpec& spec() const { return spec_; }
  int32_t cached_prompt_tokens() const { return cached_prompt_tokens_; }
  const std::vector<SampledToken>& samples(int32_t choice = 0) { return choices_[choice]; }
  std::vector<int32_t> tokens(int32_t choice = 0) {
    std::vector<int32_t> out;
    for (const SampledToken& t : choices_[choice]) out.push_back(t.token);
    return out;
  }
  // Every choice ran to max_tokens (EOS is ignored by all requests here).
  void ExpectRanToLength() {
    EXPECT_TRUE(finished_);
    ASSERT_EQ(choices_.size(), static_cast<size_t>(spec_.n));
    for (const auto& [i, c] : choices_) {
      EXPECT_EQ(c.size(), static_cast<size_t>(spec_.stop.max_tokens)) << "choice " << i;
      EXPECT_EQ(finish_[i], FinishReason::kLength) << "choice " << i;
    }
  }

 private:
  RequestSpec spec_;
  std::shared_ptr<RequestStream> stream_;
  std::map<int32_t, std::vector<SampledToken>> choices_;
  std::map<int32_t, FinishReason> finish_;
  int32_t cached_prompt_tokens_ = 0;
  bool finished_ = false;
};

RequestSpec GreedySpec(std::vector<int32_t> prompt, int32_t max_tokens) {
  RequestSpec s;
  s.prompt = std::move(prompt);
  s.sampling.temperature = 0.0f;
  s.sampling.logprobs = kTopLogprobs;
  s.stop.max_tokens = max_tokens;
  s.stop.ignore_eos = true;
  s.detokenize = false;
  return s;
}

// A request unrelated to the fixtures: `len` random tokens (seeded), greedy or sampled.
RequestSpec Unrelated(uint32_t seed, int len, int32_t max_tokens, float temperature = 0.0f,
                      int32_t n = 1) {
  std::mt19937 rng(seed);
  std::vector<int32_t> prompt(len);
  // Ids 3..258 exist in every fixture's vocabulary and are no special token of any.
  for (int32_t& t : prompt) t = 3 + static_cast<int32_t>(rng() % 256);
  RequestSpec s = GreedySpec(std::move(prompt), max_tokens);
  s.sampling.temperature = temperature;
  if (temperature > 0) {
    s.sampling.seed = seed;
    s.sampling.top_k = 50;
    s.sampling.top_p = 0.9f;
  }
  s.n = n;
  s.detokenize = n == 1;  // some requests also run the detokenizer
  return s;
}

// The whole fixture prompt's greedy continuation, and its first token's logprobs.
void ExpectFixtureOutput(const GoldenPrompt& p, Pending& r, const std::string& where) {
  EXPECT_EQ(r.tokens(), p.greedy) << where;
  r.ExpectRanToLength();
  if (!r.samples().empty()) ExpectLogprobsMatch(p.logits.back(), r.samples()[0], where);
}

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
