// A scripted fake Engine for frontend tests: a byte tokenizer (ids 0..255 are bytes, 256 BOS,
// 257 EOS) and streams that emit "t0 ", "t1 ", ... one token per FakeState::token_delay, with
// aborts, injected faults, and a ticker that fires every stream's ready callback each ms; and the
// ServingContext that serves it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/sched/engine.h"
#include "server/serving_context.h"

namespace sy::testing {

using namespace std::chrono_literals;

class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int32_t> ids;
    if (add_special_tokens) ids.push_back(256);
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string Decode(std::span<const int32_t> ids, bool) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id >= 0 && id < 256) out.push_back(static_cast<char>(id));
    }
    return out;
  }
  int32_t vocab_size() const override { return 258; }
  std::optional<int32_t> bos_id() const override { return 256; }
  std::vector<int32_t> eos_ids() const override { return {257}; }
  bool is_special(int32_t id) const override { return id >= 256; }
  std::optional<int32_t> token_to_id(std::string_view) const override { return std::nullopt; }
  std::string id_to_token(int32_t) const override { return ""; }
};

// Shared between the fake engine and its streams.
struct FakeState {
  std::mutex mu;
  std::condition_variable cv;
  std::set<uint64_t> aborted;
  std::chrono::milliseconds token_delay{0};
  int32_t fail_at = -1;  // >= 0: the request dies with an internal fault after this many tokens
};

// Emits tokens "t0 ", "t1 ", ... (one per delta) until max_tokens, then finishes with "length".
class FakeStream : public RequestStream {
 public:
  FakeStream(uint64_t id, RequestSpec spec, std::shared_ptr<FakeState> state)
      : id_(id), spec_(std::move(spec)), state_(std::move(state)), next_at_(Clock::now()) {}
  uint64_t id() const override { return id_; }
  void SetReadyCallback(std::function<void()> ready) override {
    std::lock_guard<std::mutex> lock(ready_mu_);
    ready_ = std::move(ready);
  }
  // Called by the engine's ticker: tells the server to look (Next says whether a token is due).
  void Tick() {
    std::function<void()> ready;
    {
      std::lock_guard<std::mutex> lock(ready_mu_);
      ready = ready_;
    }
    if (ready) ready();
  }

  bool Next(RequestUpdate* update, std::chrono::milliseconds timeout) override {
    if (done_) return false;
    std::unique_lock<std::mutex> lock(state_->mu);
    const auto deadline = Clock::now() + timeout;
    auto aborted = [&] { return state_->aborted.count(id_) > 0; };
    while (!aborted()) {
      const auto now = Clock::now();
      if (now >= next_at_) break;
      if (now >= deadline) return false;
      state_->cv.wait_until(lock, std::min(deadline, next_at_));
    }
    *update = RequestUpdate{};
    update->prompt_tokens = static_cast<int32_t>(spec_.prompt.size());
    if (aborted()) {
      for (int32_t c = 0; c < spec_.n; ++c) {
        CompletionDelta d;
        d.index = c;
        d.finish_reason = FinishReason::kAbort;
        update->deltas.push_back(d);
      }
      update->finished = done_ = true;
      update->completion_tokens = emitted_ * spec_.n;
      return true;
    }
    if (emitted_ == state_->fail_at) {
      update->finished = done_ = true;
      update->status = Status::Internal("kernel exploded");
      return true;
    }
    const bool last = emitted_ + 1 == spec_.stop.max_tokens;
    for (int32_t c = 0; c < spec_.n; ++c) {
      CompletionDelta d;
      d.index = c;
      d.token_ids = {65};
      SampledToken s;
      s.token = 65;
      s.logprob = -0.5f;
      d.samples = {s};
      d.text = "t" + std::to_string(emitted_) + " ";
      if (last) d.finish_reason = FinishReason::kLength;
      update->deltas.push_back(d);
    }
    ++emitted_;
    update->completion_tokens = emitted_ * spec_.n;
    update->finished = done_ = last;
    next_at_ = Clock::now() + state_->token_delay;
    return true;
  }

 private:
  uint64_t id_;
  RequestSpec spec_;
  std::shared_ptr<FakeState> state_;
  Clock::time_point next_at_;
  int32_t emitted_ = 0;
  bool done_ = false;
  std::mutex ready_mu_;
  std::function<void()> ready_;
};

// Its streams produce tokens on a clock; a ticker thread tells the server to look every ms.
class FakeEngine : public Engine {
 public:
  FakeEngine() : ticker_([this] { Ticker(); }) {}
  ~FakeEngine() override {
    stop_ = true;
    ticker_.join();
  }
  StatusOr<std::shared_ptr<RequestStream>> Submit(RequestSpec spec) override {
    if (!reject.ok()) return reject;
    if (!throw_from_submit.empty()) throw std::runtime_error(throw_from_submit);
    std::lock_guard<std::mutex> lock(mu_);
    submitted.push_back(spec);
    auto stream = std::make_shared<FakeStream>(++next_id_, std::move(spec), state);
    streams_.push_back(stream);
    return std::shared_ptr<RequestStream>(stream);
  }
  void Abort(uint64_t id) override {
    std::lock_guard<std::mutex> lock(state->mu);
    state->aborted.insert(id);
    state->cv.notify_all();
  }
  void Drain() override {}
  bool Idle() const override { return true; }
  bool Alive() const override { return alive; }
  EngineSnapshot Snapshot() const override { return {}; }
  const ModelConfig& model_config() const override { return config_; }
  const Tokenizer& tokenizer() const override { return tok_; }
  int64_t max_model_len() const override { return model_len; }
  const std::string& model_dir() const override { return dir_; }

  size_t NumAborted() {
    std::lock_guard<std::mutex> lock(state->mu);
    return state->aborted.size();
  }

  std::shared_ptr<FakeState> state = std::make_shared<FakeState>();
  Status reject;
  std::string throw_from_submit;  // non-empty: Submit throws this text
  std::atomic<bool> alive{true};
  int64_t model_len = 64;
  std::vector<RequestSpec> submitted;

 private:
  void Ticker() {
    while (!stop_) {
      std::vector<std::shared_ptr<FakeStream>> live;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& weak : streams_) {
          if (auto s = weak.lock()) live.push_back(std::move(s));
        }
      }
      for (const auto& s : live) s->Tick();
      std::this_thread::sleep_for(1ms);
    }
  }

  std::mutex mu_;
  uint64_t next_id_ = 0;
  std::vector<std::weak_ptr<FakeStream>> streams_;
  std::atomic<bool> stop_{false};
  std::thread ticker_;
  ModelConfig config_;
  ByteTokenizer tok_;
  std::string dir_ = "/models/tiny";
};

// Makes `ctx` a loaded, ready server of `engine` named "tiny", whose /metrics is "sy_up 1\n".
inline void ServeFake(FakeEngine* engine, ServingContext* ctx) {
  ctx->engine = engine;
  ctx->loaded = true;
  ctx->model_name = "tiny";
  ctx->ready = true;
  ctx->render_metrics = [] { return std::string("sy_up 1\n"); };
}

}  // namespace sy::testing
