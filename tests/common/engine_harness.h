// Harness for testing the serving engine against transformers' golden fixtures: fixtures,
// logprob checks, a step observer, an engine on 1 or N EP ranks, a request-stream collector.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/sched/engine.h"

namespace sy::testing {

// model_golden_test's bound on logits (f32 arithmetic over the same weights). A log-softmax
// subtracts log-sum-exp, which moves by at most the largest logit difference, so logprobs
// agree within twice that.
constexpr float kLogitTolerance = 1e-4f;
constexpr float kLogprobTolerance = 2 * kLogitTolerance;
constexpr int32_t kTopLogprobs = 20;  // the most the engine reports

// One prompt of a golden.json: its ids, transformers' logits at every prompt position and the
// greedy continuation.
struct GoldenPrompt {
  std::vector<int32_t> ids;
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> greedy;
};

// A golden model directory and the prompts of its golden.json.
struct Fixture {
  std::string dir;
  std::vector<GoldenPrompt> prompts;
};

// The fixture of tests/golden/models/<model>.
Fixture LoadFixture(const std::string& model);

// The engine's logprobs of one sampled token against transformers' logits of that position:
// the chosen token's logprob and each of the top kTopLogprobs, and that those are the top ones.
void ExpectLogprobsMatch(const std::vector<float>& logits, const SampledToken& t,
                         const std::string& where);

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
  void OnStep(const StepStats& s) override;
  void OnRequestFinished(const RequestStats&) override {}
  void OnPreemption(int32_t n) override;
  void OnRejected(StatusCode) override {}
  Totals totals() const;

  // The engine thread will wait at the end of its next step not yet held, until Release().
  void HoldNextStep();
  // Waits until the engine thread reached every hold asked for; false after 30 s.
  bool WaitHeld();
  // Lets the engine thread go on from the holds it reached.
  void Release();

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
  Serving(EngineOptions o, int ranks);
  ~Serving() { Stop(); }

  Engine* engine() { return engine_.get(); }

  // Stops the engine, which releases the workers; fails the test if a worker failed.
  void Stop();

 private:
  std::vector<std::unique_ptr<Communicator>> comms_;
  std::vector<std::thread> workers_;
  std::vector<Status> worker_status_;
  std::unique_ptr<Engine> engine_;
};

// A submitted request and what its stream delivered so far.
class Pending {
 public:
  Pending(Engine& engine, RequestSpec spec);

  // Reads one update; false when the stream ended or stalled (30 s, a test failure).
  bool Pump();
  void Finish();

  const RequestSpec& spec() const { return spec_; }
  int32_t cached_prompt_tokens() const { return cached_prompt_tokens_; }
  const std::vector<SampledToken>& samples(int32_t choice = 0) { return choices_[choice]; }
  std::vector<int32_t> tokens(int32_t choice = 0);
  // Every choice ran to max_tokens (EOS is ignored by all requests here).
  void ExpectRanToLength();

 private:
  RequestSpec spec_;
  std::shared_ptr<RequestStream> stream_;
  std::map<int32_t, std::vector<SampledToken>> choices_;
  std::map<int32_t, FinishReason> finish_;
  int32_t cached_prompt_tokens_ = 0;
  bool finished_ = false;
};

// A greedy request for `max_tokens` tokens that ignores EOS and reports kTopLogprobs.
RequestSpec GreedySpec(std::vector<int32_t> prompt, int32_t max_tokens);

// A request unrelated to the fixtures: `len` random tokens (seeded), greedy or sampled.
RequestSpec Unrelated(uint32_t seed, int len, int32_t max_tokens, float temperature = 0.0f,
                      int32_t n = 1);

// The whole fixture prompt's greedy continuation, and its first token's logprobs.
void ExpectFixtureOutput(const GoldenPrompt& p, Pending& r, const std::string& where);

}  // namespace sy::testing
