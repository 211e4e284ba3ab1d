#include "tests/common/engine_harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "engine/dist/inprocess_communicator.h"
#include "tests/common/test_model.h"

namespace sy::testing {
namespace {

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

}  // namespace

Fixture LoadFixture(const std::string& model) {
  Fixture f;
  f.dir = GoldenDir() + "/models/" + model;
  std::ifstream in(f.dir + "/golden.json");
  const nlohmann::json golden = nlohmann::json::parse(in);
  for (const auto& p : golden["prompts"]) {
    f.prompts.push_back({p["ids"].get<std::vector<int32_t>>(),
                         p["logits"].get<std::vector<std::vector<float>>>(),
                         p["greedy"].get<std::vector<int32_t>>()});
  }
  return f;
}

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

void StepRecorder::OnStep(const StepStats& s) {
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

void StepRecorder::OnPreemption(int32_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  t_.preempted += n;
}

StepRecorder::Totals StepRecorder::totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return t_;
}

void StepRecorder::HoldNextStep() {
  std::lock_guard<std::mutex> lock(mu_);
  ++wanted_;
}

bool StepRecorder::WaitHeld() {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return holds_ == wanted_; });
}

void StepRecorder::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  released_ = holds_;
  cv_.notify_all();
}

Serving::Serving(EngineOptions o, int ranks) : worker_status_(ranks) {
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

void Serving::Stop() {
  engine_.reset();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  for (size_t r = 1; r < worker_status_.size(); ++r) {
    EXPECT_TRUE(worker_status_[r].ok()) << "rank " << r << ": " << worker_status_[r].ToString();
  }
  worker_status_.resize(1);
}

Pending::Pending(Engine& engine, RequestSpec spec) : spec_(std::move(spec)) {
  auto s = engine.Submit(spec_);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (s.ok()) stream_ = *s;
}

bool Pending::Pump() {
  if (stream_ == nullptr || finished_) return false;
  RequestUpdate u;
  if (!stream_->Next(&u, std::chrono::milliseconds(30000))) {
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

void Pending::Finish() {
  while (Pump()) {
  }
}

std::vector<int32_t> Pending::tokens(int32_t choice) {
  std::vector<int32_t> out;
  for (const SampledToken& t : choices_[choice]) out.push_back(t.token);
  return out;
}

void Pending::ExpectRanToLength() {
  EXPECT_TRUE(finished_);
  ASSERT_EQ(choices_.size(), static_cast<size_t>(spec_.n));
  for (const auto& [i, c] : choices_) {
    EXPECT_EQ(c.size(), static_cast<size_t>(spec_.stop.max_tokens)) << "choice " << i;
    EXPECT_EQ(finish_[i], FinishReason::kLength) << "choice " << i;
  }
}

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

RequestSpec Unrelated(uint32_t seed, int len, int32_t max_tokens, float temperature, int32_t n) {
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

void ExpectFixtureOutput(const GoldenPrompt& p, Pending& r, const std::string& where) {
  EXPECT_EQ(r.tokens(), p.greedy) << where;
  r.ExpectRanToLength();
  if (!r.samples().empty()) ExpectLogprobsMatch(p.logits.back(), r.samples()[0], where);
}

}  // namespace sy::testing
