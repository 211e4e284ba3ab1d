// Engine: continuous batching gives the same greedy tokens as one request at a time (also under
// preemption), prefix caching, n > 1, abort, the bounded queue, validation, stop strings, drain.
#include "engine/sched/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <numeric>
#include <random>
#include <stdexcept>
#include <thread>

#include "tests/common/test_model.h"

namespace sy {
namespace {

using std::chrono::milliseconds;

std::string ModelDir() { return testing::GoldenDir() + "/models/olmoe"; }

EngineOptions Options() {
  EngineOptions o;
  o.model_dir = ModelDir();
  o.threads = 1;
  o.block_size = 4;
  o.num_kv_blocks = 512;
  o.max_num_batched_tokens = 64;
  o.max_num_seqs = 16;
  return o;
}

std::unique_ptr<Engine> MakeEngine(const EngineOptions& o) {
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

struct Choice {
  std::vector<int32_t> tokens;
  std::string text;
  std::optional<FinishReason> finish;
  std::optional<std::string> stop_string;
};

struct Result {
  std::map<int32_t, Choice> choices;
  Status status;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;
  int updates = 0;
};

// Reads a stream to its end (fails the test after 30 s without an update).
Result Collect(RequestStream& stream) {
  Result r;
  RequestUpdate u;
  for (;;) {
    if (!stream.Next(&u, milliseconds(30000))) {
      ADD_FAILURE() << "stream " << stream.id() << " stalled";
      return r;
    }
    ++r.updates;
    for (const CompletionDelta& d : u.deltas) {
      Choice& c = r.choices[d.index];
      EXPECT_FALSE(c.finish.has_value()) << "output after the finish of choice " << d.index;
      EXPECT_EQ(d.token_ids.size(), d.samples.size());
      c.tokens.insert(c.tokens.end(), d.token_ids.begin(), d.token_ids.end());
      c.text += d.text;
      if (d.finish_reason) c.finish = d.finish_reason;
      if (d.stop_string) c.stop_string = d.stop_string;
    }
    r.completion_tokens = u.completion_tokens;
    r.cached_prompt_tokens = u.cached_prompt_tokens;
    if (u.finished) {
      r.status = u.status;
      return r;
    }
  }
}

RequestSpec Greedy(std::vector<int32_t> prompt, int32_t max_tokens) {
  RequestSpec s;
  s.prompt = std::move(prompt);
  s.sampling.temperature = 0.0f;
  s.stop.max_tokens = max_tokens;
  s.stop.ignore_eos = true;
  return s;
}

// 64 prompts of 1..40 random tokens with 1..24 new tokens each (fixed seed).
std::vector<RequestSpec> MixedRequests() {
  std::mt19937 rng(1234);
  std::vector<RequestSpec> specs;
  for (int i = 0; i < 64; ++i) {
    std::vector<int32_t> prompt(1 + rng() % 40);
    for (int32_t& t : prompt) t = 1 + static_cast<int32_t>(rng() % 500);
    specs.push_back(Greedy(std::move(prompt), 1 + static_cast<int32_t>(rng() % 24)));
  }
  return specs;
}

Result RunOne(Engine& e, RequestSpec spec) {
  auto stream = e.Submit(std::move(spec));
  EXPECT_TRUE(stream.ok()) << stream.status().ToString();
  if (!stream.ok()) return {};
  return Collect(**stream);
}

// Submits every request from 4 threads at once and collects all streams.
std::vector<Result> RunConcurrently(Engine& e, const std::vector<RequestSpec>& specs) {
  std::vector<Result> results(specs.size());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::pair<size_t, std::shared_ptr<RequestStream>>> streams;
      for (size_t i = t; i < specs.size(); i += 4) {
        auto s = e.Submit(specs[i]);
        EXPECT_TRUE(s.ok()) << s.status().ToString();
        if (s.ok()) streams.emplace_back(i, *s);
      }
      for (auto& [i, s] : streams) results[i] = Collect(*s);
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

// Tokens of each request run alone, computed once for the suite.
const std::vector<std::vector<int32_t>>& ReferenceTokens() {
  static const std::vector<std::vector<int32_t>> ref = [] {
    std::vector<std::vector<int32_t>> out;
    auto e = MakeEngine(Options());
    if (e == nullptr) return out;
    for (const RequestSpec& spec : MixedRequests()) {
      Result r = RunOne(*e, spec);
      out.push_back(r.choices[0].tokens);
    }
    return out;
  }();
  return ref;
}

bool WaitIdle(Engine& e) {
  for (int i = 0; i < 3000 && !e.Idle(); ++i) std::this_thread::sleep_for(milliseconds(1));
  return e.Idle();
}

TEST(Engine, ConcurrentRequestsMatchOneAtATime) {
  const auto specs = MixedRequests();
  const auto& ref = ReferenceTokens();
  ASSERT_EQ(ref.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(static_cast<int32_t>(ref[i].size()), specs[i].stop.max_tokens);
  }
  auto e = MakeEngine(Options());
  ASSERT_NE(e, nullptr);
  const std::vector<Result> got = RunConcurrently(*e, specs);
  for (size_t i = 0; i < specs.size(); ++i) {
    const Choice& c = got[i].choices.at(0);
    EXPECT_EQ(c.tokens, ref[i]) << "request " << i;
    EXPECT_EQ(c.finish, FinishReason::kLength);
    EXPECT_TRUE(got[i].status.ok());
  }
  ASSERT_TRUE(WaitIdle(*e));
  const EngineSnapshot s = e->Snapshot();
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_waiting, 0);
  // Far fewer steps than requests * tokens: requests really shared steps.
  int64_t total_tokens = 0;
  for (const auto& r : ref) total_tokens += static_cast<int64_t>(r.size());
  EXPECT_LT(s.steps, total_tokens / 2);
}

TEST(Engine, PreemptionKeepsOutputsExact) {
  const auto specs = MixedRequests();
  const auto& ref = ReferenceTokens();
  ASSERT_EQ(ref.size(), specs.size());
  EngineOptions o = Options();
  o.num_kv_blocks = 20;  // one request needs at most 16 blocks of 4 tokens
  auto e = MakeEngine(o);
  ASSERT_NE(e, nullptr);
  const std::vector<Result> got = RunConcurrently(*e, specs);
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(got[i].choices.at(0).tokens, ref[i]) << "request " << i;
    EXPECT_EQ(got[i].completion_tokens, specs[i].stop.max_tokens);
  }
  ASSERT_TRUE(WaitIdle(*e));
  const EngineSnapshot s = e->Snapshot();
  EXPECT_GT(s.num_preemptions, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
}

TEST(Engine, RepeatedPromptHitsThePrefixCache) {
  auto e = MakeEngine(Options());
  ASSERT_NE(e, nullptr);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 30; ++i) prompt.push_back(7 + 13 * i % 400);
  const Result first = RunOne(*e, Greedy(prompt, 8));
  EXPECT_EQ(first.cached_prompt_tokens, 0);
  const Result second = RunOne(*e, Greedy(prompt, 8));
  // All full blocks but the one holding the last prompt token: (30 - 1) / 4 blocks of 4.
  EXPECT_EQ(second.cached_prompt_tokens, 28);
  EXPECT_EQ(second.choices.at(0).tokens, first.choices.at(0).tokens);
  const EngineSnapshot s = e->Snapshot();
  EXPECT_EQ(s.prefix_cache_queries, 60);
  EXPECT_EQ(s.prefix_cache_hits, 28);
}

TEST(Engine, ParallelSamplingIsSeededPerChoice) {
  auto e = MakeEngine(Options());
  ASSERT_NE(e, nullptr);
  RequestSpec spec;
  spec.prompt = {11, 22, 33, 44, 55, 66, 77, 88, 99};
  spec.sampling.temperature = 1.0f;
  spec.sampling.seed = 42;
  spec.stop.max_tokens = 12;
  spec.stop.ignore_eos = true;
  spec.n = 3;
  const Result a = RunOne(*e, spec);
  const Result b = RunOne(*e, spec);
  ASSERT_EQ(a.choices.size(), 3u);
  EXPECT_EQ(a.completion_tokens, 36);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a.choices.at(i).tokens.size(), 12u);
    EXPECT_EQ(a.choices.at(i).tokens, b.choices.at(i).tokens) << "choice " << i;
    // Choice i draws as a single-choice request seeded with seed + i.
    RequestSpec single = spec;
    single.n = 1;
    single.sampling.seed = 42 + i;
    EXPECT_EQ(RunOne(*e, single).choices.at(0).tokens, a.choices.at(i).tokens) << "choice " << i;
  }
  EXPECT_FALSE(a.choices.at(0).tokens == a.choices.at(1).tokens &&
               a.choices.at(1).tokens == a.choices.at(2).tokens);
}

// Sleeps in every step, so a request is still running when the test acts on it.
class StepDelay : public EngineObserver {
 public:
  void OnStep(const StepStats&) override { std::this_thread::sleep_for(milliseconds(5)); }
  void OnRequestFinished(const RequestStats&) override {}
  void OnPreemption(int32_t) override {}
  void OnRejected(StatusCode) override {}
};

TEST(Engine, AbortFreesBlocksAndEndsTheStream) {
  StepDelay delay;
  EngineOptions options = Options();
  options.observer = &delay;
  auto e = MakeEngine(options);
  ASSERT_NE(e, nullptr);
  auto stream = e->Submit(Greedy({5, 6, 7, 8, 9, 10}, 100));
  ASSERT_TRUE(stream.ok());
  RequestUpdate u;
  ASSERT_TRUE((*stream)->Next(&u, milliseconds(30000)));
  ASSERT_FALSE(u.finished);
  e->Abort((*stream)->id());
  const Result rest = Collect(**stream);
  EXPECT_TRUE(rest.status.ok());
  EXPECT_EQ(rest.choices.at(0).finish, FinishReason::kAbort);
  EXPECT_LT(rest.completion_tokens, 100);
  ASSERT_TRUE(WaitIdle(*e));
  const EngineSnapshot s = e->Snapshot();
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.num_running, 0);
  e->Abort((*stream)->id());  // finished ids are ignored
  EXPECT_EQ(RunOne(*e, Greedy({1, 2, 3}, 2)).choices.at(0).tokens.size(), 2u);
}

// Slows every step down and counts rejections.
class SlowObserver : public EngineObserver {
 public:
  void OnStep(const StepStats& step) override { std::this_thread::sleep_for(milliseconds(20)); }
  void OnRequestFinished(const RequestStats& r) override { finished++; }
  void OnPreemption(int32_t) override {}
  void OnRejected(StatusCode code) override {
    if (code == StatusCode::kResourceExhausted) rejected_full++;
  }
  std::atomic<int> finished{0}, rejected_full{0};
};

TEST(Engine, QueueCountsSequencesNotRequests) {
  SlowObserver observer;
  EngineOptions o = Options();
  o.max_queued_requests = 3;
  o.observer = &observer;
  auto e = MakeEngine(o);
  ASSERT_NE(e, nullptr);
  // Four sequences never fit a queue of three, even an empty one: an invalid request, not a
  // full queue to retry later.
  RequestSpec four = Greedy({1, 2, 3, 4}, 2);
  four.n = 4;
  auto s = e->Submit(four);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << s.status().ToString();
  EXPECT_EQ(observer.rejected_full.load(), 0);
  // Three do.
  RequestSpec three = Greedy({1, 2, 3, 4}, 2);
  three.n = 3;
  auto ok = e->Submit(three);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(Collect(**ok).choices.size(), 3u);
  ASSERT_TRUE(WaitIdle(*e));
}

TEST(Engine, FullQueueRejectsAtOnce) {
  SlowObserver observer;
  EngineOptions o = Options();
  o.max_queued_requests = 2;
  o.max_num_seqs = 1;
  o.observer = &observer;
  auto e = MakeEngine(o);
  ASSERT_NE(e, nullptr);
  std::vector<std::shared_ptr<RequestStream>> accepted;
  int full = 0;
  for (int i = 0; i < 6; ++i) {
    auto s = e->Submit(Greedy({1, 2, 3, 4}, 50));
    if (s.ok()) {
      accepted.push_back(*s);
    } else {
      EXPECT_EQ(s.status().code(), StatusCode::kResourceExhausted) << s.status().ToString();
      ++full;
    }
  }
  // One may have left the queue for the running slot; never more than that plus two queued.
  EXPECT_GE(full, 3);
  EXPECT_LE(accepted.size(), 3u);
  EXPECT_EQ(observer.rejected_full.load(), full);
  for (auto& s : accepted) e->Abort(s->id());
  for (auto& s : accepted) EXPECT_EQ(Collect(*s).choices.at(0).finish, FinishReason::kAbort);
  ASSERT_TRUE(WaitIdle(*e));
  EXPECT_EQ(observer.finished.load(), static_cast<int>(accepted.size()));
}

// Records what the engine reports.
class RecordingObserver : public EngineObserver {
 public:
  void OnStep(const StepStats& step) override { steps.push_back(step); }
  void OnRequestFinished(const RequestStats& r) override { requests.push_back(r); }
  void OnPreemption(int32_t n) override { preempted += n; }
  void OnRejected(StatusCode code) override { rejected.push_back(code); }
  // Written on the engine thread; read after the engine is idle.
  std::vector<StepStats> steps;
  std::vector<RequestStats> requests;
  std::vector<StatusCode> rejected;
  int preempted = 0;
};

TEST(Engine, ObserverSeesStepsRequestsAndExpertLoad) {
  RecordingObserver observer;
  EngineOptions o = Options();
  o.observer = &observer;
  auto e = MakeEngine(o);
  ASSERT_NE(e, nullptr);
  const std::vector<int32_t> prompt(10, 17);
  RunOne(*e, Greedy(prompt, 5));
  ASSERT_TRUE(WaitIdle(*e));
  EXPECT_FALSE(e->Submit(Greedy({}, 1)).ok());
  EXPECT_EQ(observer.rejected, std::vector<StatusCode>{StatusCode::kInvalidArgument});
  // One prefill step (10 tokens), then one decode step per further token.
  ASSERT_EQ(observer.steps.size(), 5u);
  EXPECT_EQ(observer.steps[0].num_prefill_tokens, 10);
  EXPECT_EQ(observer.steps[0].num_decode_tokens, 0);
  int64_t fed = 0;
  for (const StepStats& s : observer.steps) {
    const int64_t tokens = s.num_prefill_tokens + s.num_decode_tokens;
    fed += tokens;
    EXPECT_EQ(s.num_running, 1);
    ASSERT_EQ(s.expert_tokens.size(), 2u);  // two MoE layers, 8 experts, top-2
    for (const auto& layer : s.expert_tokens) {
      ASSERT_EQ(layer.size(), 8u);
      EXPECT_EQ(std::accumulate(layer.begin(), layer.end(), int64_t{0}), 2 * tokens);
    }
  }
  EXPECT_EQ(fed, 14);
  ASSERT_EQ(observer.requests.size(), 1u);
  const RequestStats& r = observer.requests[0];
  EXPECT_EQ(r.finish_reason, FinishReason::kLength);
  EXPECT_EQ(r.prompt_tokens, 10);
  EXPECT_EQ(r.generation_tokens, 5);
  EXPECT_EQ(r.inter_token_seconds.size(), 4u);
  EXPECT_GT(r.ttft_seconds, 0);
  EXPECT_GE(r.e2e_seconds, r.ttft_seconds);
  EXPECT_LE(r.queue_seconds + r.prefill_seconds, r.ttft_seconds + 1e-9);
}

TEST(Engine, InvalidRequestsAreRejected) {
  EngineOptions o = Options();
  o.num_kv_blocks = 8;  // 32 tokens
  auto e = MakeEngine(o);
  ASSERT_NE(e, nullptr);
  auto expect_invalid = [&](RequestSpec spec, const char* what) {
    auto s = e->Submit(std::move(spec));
    ASSERT_FALSE(s.ok()) << what;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << what;
    EXPECT_FALSE(s.status().message().empty());
  };
  expect_invalid(Greedy({}, 4), "empty prompt");
  RequestSpec n0 = Greedy({1, 2}, 4);
  n0.n = 0;
  expect_invalid(n0, "n = 0");
  n0.n = 1000000;
  expect_invalid(n0, "n = 10^6");
  expect_invalid(Greedy({1, 2}, 0), "max_tokens = 0");
  RequestSpec temp = Greedy({1, 2}, 4);
  temp.sampling.temperature = -1.0f;
  expect_invalid(temp, "negative temperature");
  expect_invalid(Greedy({1, 513}, 4), "token outside the vocabulary");
  expect_invalid(Greedy({1, -1}, 4), "negative token");
  expect_invalid(Greedy(std::vector<int32_t>(100, 1), 29), "beyond the context of 128");
  expect_invalid(Greedy(std::vector<int32_t>(20, 1), 20), "more than the 8-block KV pool");
  RequestSpec empty_stop = Greedy({1, 2}, 4);
  empty_stop.stop.stop_strings = {""};
  expect_invalid(empty_stop, "empty stop string");
  // The shared request bounds hold at Submit too, whatever the frontend checked.
  RequestSpec many_stops = Greedy({1, 2}, 4);
  many_stops.stop.stop_strings = std::vector<std::string>(17, "x");
  expect_invalid(many_stops, "17 stop strings");
  RequestSpec long_stop = Greedy({1, 2}, 4);
  long_stop.stop.stop_strings = {std::string(5000, 'x')};
  expect_invalid(long_stop, "a 5000-byte stop string");
  RequestSpec many_ids = Greedy({1, 2}, 4);
  many_ids.stop.stop_token_ids = std::vector<int32_t>(65, 3);
  expect_invalid(many_ids, "65 stop token ids");
  RequestSpec outside_id = Greedy({1, 2}, 4);
  outside_id.stop.stop_token_ids = {1 << 20};
  expect_invalid(outside_id, "stop token id outside the vocabulary");
  // The largest request the pool holds is accepted.
  EXPECT_EQ(RunOne(*e, Greedy(std::vector<int32_t>(20, 1), 12)).completion_tokens, 12);
}

TEST(Engine, StopStringEndsTheChoiceAndIsCutFromTheText) {
  auto e = MakeEngine(Options());
  ASSERT_NE(e, nullptr);
  const std::vector<int32_t> prompt = {327, 411, 318, 323};
  const Result full = RunOne(*e, Greedy(prompt, 30));
  const std::string& text = full.choices.at(0).text;
  ASSERT_GE(text.size(), 12u) << text;
  // A stop string taken from the middle of the free-running text; the output must end just
  // before its first occurrence.
  const std::string stop = text.substr(text.size() / 2, 3);
  const size_t cut = text.find(stop);
  RequestSpec spec = Greedy(prompt, 30);
  spec.stop.stop_strings = {"never appears \x01", stop};
  const Result r = RunOne(*e, spec);
  const Choice& c = r.choices.at(0);
  EXPECT_EQ(c.finish, FinishReason::kStop);
  EXPECT_EQ(c.stop_string, stop);
  EXPECT_EQ(c.text, text.substr(0, cut));
  EXPECT_LT(c.tokens.size(), full.choices.at(0).tokens.size());
  // With include_stop_str_in_output the stop string stays.
  spec.stop.include_stop_str_in_output = true;
  EXPECT_EQ(RunOne(*e, spec).choices.at(0).text, text.substr(0, cut + stop.size()));
}

// Records what the engine reports, with every step slowed down so that a request's remaining
// tokens would take long enough for an early stop to show.
class SlowRecordingObserver : public RecordingObserver {
 public:
  void OnStep(const StepStats& step) override {
    std::this_thread::sleep_for(milliseconds(5));
    RecordingObserver::OnStep(step);
  }
};

TEST(Engine, StopStringMatchStopsTheChoiceInTheEngineAndFreesItsBlocks) {
  const std::vector<int32_t> prompt = {327, 411, 318, 323};
  std::string text;
  {
    auto free_run = MakeEngine(Options());
    ASSERT_NE(free_run, nullptr);
    text = RunOne(*free_run, Greedy(prompt, 100)).choices.at(0).text;
  }
  ASSERT_GE(text.size(), 40u) << text;
  SlowRecordingObserver observer;
  EngineOptions o = Options();
  o.observer = &observer;
  auto e = MakeEngine(o);
  ASSERT_NE(e, nullptr);
  RequestSpec spec = Greedy(prompt, 100);
  spec.stop.stop_strings = {text.substr(4, 3)};  // matched within the first few tokens
  const Result r = RunOne(*e, spec);
  EXPECT_EQ(r.choices.at(0).finish, FinishReason::kStop);
  ASSERT_TRUE(WaitIdle(*e));
  EXPECT_EQ(e->Snapshot().kv_blocks_used, 0);
  ASSERT_EQ(observer.requests.size(), 1u);
  const RequestStats& stats = observer.requests[0];
  EXPECT_EQ(stats.choice_finish_reasons, std::vector<FinishReason>{FinishReason::kStop});
  // The engine computed at most a few tokens beyond the match, never the 100 asked for.
  EXPECT_GE(stats.generation_tokens, r.completion_tokens);
  EXPECT_LT(stats.generation_tokens, 100);
}

TEST(Engine, EosStopsUnlessIgnored) {
  auto e = MakeEngine(Options());
  ASSERT_NE(e, nullptr);
  const std::vector<int32_t> prompt = {327, 411, 318, 323};
  const Result free_run = RunOne(*e, Greedy(prompt, 30));
  const std::vector<int32_t>& tokens = free_run.choices.at(0).tokens;
  // The third generated token becomes a stop token: generation ends right after it.
  RequestSpec spec = Greedy(prompt, 30);
  spec.stop.stop_token_ids = {tokens[2]};
  const size_t first = std::find(tokens.begin(), tokens.end(), tokens[2]) - tokens.begin();
  const Result r = RunOne(*e, spec);
  EXPECT_EQ(r.choices.at(0).finish, FinishReason::kStop);
  EXPECT_EQ(r.choices.at(0).tokens,
            std::vector<int32_t>(tokens.begin(), tokens.begin() + first + 1));
}

TEST(Engine, DrainRefusesNewRequestsAndFinishesRunningOnes) {
  auto e = MakeEngine(Options());
  ASSERT_NE(e, nullptr);
  auto stream = e->Submit(Greedy({3, 1, 4, 1, 5}, 20));
  ASSERT_TRUE(stream.ok());
  e->Drain();
  auto refused = e->Submit(Greedy({2, 7}, 2));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  const Result r = Collect(**stream);
  EXPECT_EQ(r.choices.at(0).tokens.size(), 20u);
  EXPECT_EQ(r.choices.at(0).finish, FinishReason::kLength);
  EXPECT_TRUE(WaitIdle(*e));
  EXPECT_TRUE(e->Alive());
}

// Throws from OnStep once armed (after Create, whose warm-up step it must let through): an
// exception escaping the engine loop, as a bug in any step code would raise.
class ThrowingObserver : public EngineObserver {
 public:
  void OnStep(const StepStats&) override {
    if (!armed.load()) return;
    if (throw_non_std) throw 42;
    throw std::runtime_error("secret detail of the failure");
  }
  void OnRequestFinished(const RequestStats&) override {}
  void OnPreemption(int32_t) override {}
  void OnRejected(StatusCode) override {}

  std::atomic<bool> armed{false};
  bool throw_non_std = false;
};

void ExpectExceptionStopsTheEngine(bool throw_non_std) {
  ThrowingObserver thrower;
  thrower.throw_non_std = throw_non_std;
  EngineOptions o = Options();
  o.observer = &thrower;
  auto e = MakeEngine(o);
  ASSERT_NE(e, nullptr);
  thrower.armed = true;
  auto stream = e->Submit(Greedy({4, 5, 6}, 20));
  ASSERT_TRUE(stream.ok());
  // The running request ends with an internal error that does not carry what was thrown.
  const Result r = Collect(**stream);
  EXPECT_EQ(r.choices.at(0).finish, FinishReason::kError);
  EXPECT_EQ(r.status.code(), StatusCode::kInternal);
  EXPECT_EQ(r.status.message().find("secret"), std::string::npos) << r.status.message();
  EXPECT_FALSE(e->Alive());
  auto refused = e->Submit(Greedy({2, 7}, 2));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
}

TEST(Engine, StdExceptionInTheLoopStopsTheEngineAndEndsRequests) {
  ExpectExceptionStopsTheEngine(false);
}

TEST(Engine, NonStdExceptionInTheLoopStopsTheEngineAndEndsRequests) {
  ExpectExceptionStopsTheEngine(true);
}

TEST(Engine, DestructionAbortsOpenStreams) {
  std::shared_ptr<RequestStream> stream;
  StepDelay delay;  // 100 tokens take at least 0.5 s, so the request cannot finish first
  {
    EngineOptions o = Options();
    o.observer = &delay;
    auto e = MakeEngine(o);
    ASSERT_NE(e, nullptr);
    auto s = e->Submit(Greedy({9, 8, 7}, 100));
    ASSERT_TRUE(s.ok());
    stream = *s;
  }
  EXPECT_EQ(Collect(*stream).choices.at(0).finish, FinishReason::kAbort);
}

}  // namespace
}  // namespace sy
