// stream_bench: the serving engine under many concurrent streams with detokenization and stop
// strings on, on a tiny random-weight preset, so that the per-token output work weighs as much
// as it can next to the model. Prints the mean engine step time, the engine thread's and the
// consumers' CPU time, tokens/s and one JSON line. Not a test.
//
//   stream_bench [--preset tiny-olmoe] [--streams 1000] [--max-tokens 64] [--consumers 1]
//                [--plain]
#include <time.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "engine/sched/engine.h"

namespace sy {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// CPU time of the calling thread, in seconds.
double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Sums the engine's step times, and the engine thread's CPU time between its first and last
// step (the observer runs on the engine thread): with --threads 1 the model runs on that thread
// too, so this is all the engine thread's work, unaffected by other processes taking the cores.
class StepTimer : public EngineObserver {
 public:
  void OnStep(const StepStats& step) override {
    const double cpu = ThreadCpuSeconds();
    std::lock_guard<std::mutex> lock(mu_);
    if (steps_ == 0) first_cpu_ = cpu;
    last_cpu_ = cpu;
    ++steps_;
    seconds_ += step.step_seconds;
    if (step.num_prefill_tokens == 0) {
      ++decode_steps_;
      decode_seconds_ += step.step_seconds;
    }
  }
  void OnRequestFinished(const RequestStats&) override {}
  void OnPreemption(int32_t) override {}
  void OnRejected(StatusCode) override {}

  // Engine-thread CPU seconds per step after the first (the loop around it included).
  double CpuPerStep() {
    std::lock_guard<std::mutex> lock(mu_);
    return steps_ > 1 ? (last_cpu_ - first_cpu_) / static_cast<double>(steps_ - 1) : 0;
  }

  void Read(int64_t* steps, double* seconds, int64_t* decode_steps, double* decode_seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    *steps = steps_;
    *seconds = seconds_;
    *decode_steps = decode_steps_;
    *decode_seconds = decode_seconds_;
  }

 private:
  std::mutex mu_;
  int64_t steps_ = 0;
  double seconds_ = 0;
  int64_t decode_steps_ = 0;
  double decode_seconds_ = 0;
  double first_cpu_ = 0;
  double last_cpu_ = 0;
};

// Streams whose ready callback fired, for the consumer threads to pop (event-driven, as the
// HTTP front door does). A stream is queued at most once at a time.
class ReadyQueue {
 public:
  void Put(size_t i) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(i);
    }
    cv_.notify_one();
  }
  // Returns false once Close was called and the queue is empty.
  bool Take(size_t* i) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
    if (queue_.empty()) return false;
    *i = queue_.front();
    queue_.pop_front();
    return true;
  }
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> queue_;
  bool closed_ = false;
};

struct StreamState {
  std::shared_ptr<RequestStream> stream;
  std::mutex mu;                    // one consumer pops a stream at a time
  std::atomic<bool> queued{false};  // in the ReadyQueue now
  bool finished = false;
  int32_t completion_tokens = 0;
  int64_t text_bytes = 0;
  bool stopped_by_string = false;
};

int Main(int argc, char** argv) {
  CLI::App app{"Engine throughput with many detokenized streams with stop strings"};
  std::string preset = "tiny-olmoe";
  int streams = 1000;
  int32_t max_tokens = 64;
  int32_t prompt_len = 8;
  int consumers = 1;
  int threads = 1;
  bool plain = false;
  app.add_option("--preset", preset, "random-weight preset (engine/model/presets.cc)");
  app.add_option("--streams", streams, "concurrent requests");
  app.add_option("--max-tokens", max_tokens);
  app.add_option("--prompt-len", prompt_len);
  app.add_option("--consumers", consumers, "frontend threads popping the streams");
  app.add_option("--threads", threads, "CPU threads of the model");
  app.add_flag("--plain", plain, "no detokenization and no stop strings (the model's share)");
  CLI11_PARSE(app, argc, argv);

  StepTimer timer;
  EngineOptions o;
  o.model_dir = "preset:" + preset;
  o.random_weights = true;
  o.random_seed = 1;
  o.threads = threads;
  o.block_size = 16;
  o.max_num_seqs = streams;
  o.max_num_batched_tokens = std::max<int64_t>(2048, streams);
  o.max_queued_requests = streams;
  o.num_kv_blocks = static_cast<int64_t>(streams) * ((prompt_len + max_tokens) / 16 + 2);
  o.observer = &timer;
  auto engine = Engine::Create(o);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }
  const int64_t vocab = (*engine)->model_config().vocab_size;

  std::vector<std::unique_ptr<StreamState>> states;
  ReadyQueue ready;
  std::atomic<int> open{streams};
  std::mutex cpu_mu;
  double consumer_cpu_s = 0;  // CPU time of the consumer threads, all together
  auto consume = [&] {
    const double cpu_start = ThreadCpuSeconds();
    size_t i = 0;
    while (ready.Take(&i)) {
      StreamState& s = *states[i];
      std::lock_guard<std::mutex> lock(s.mu);
      s.queued = false;
      RequestUpdate u;
      while (!s.finished && s.stream->Next(&u, std::chrono::milliseconds(0))) {
        for (const CompletionDelta& d : u.deltas) {
          s.text_bytes += static_cast<int64_t>(d.text.size());
          if (d.stop_string) s.stopped_by_string = true;
        }
        s.completion_tokens = u.completion_tokens;
        if (u.finished) {
          s.finished = true;
          if (--open == 0) ready.Close();
        }
      }
    }
    std::lock_guard<std::mutex> lock(cpu_mu);
    consumer_cpu_s += ThreadCpuSeconds() - cpu_start;
  };

  std::mt19937_64 rng(7);
  const auto t0 = Clock::now();
  for (int i = 0; i < streams; ++i) {
    RequestSpec spec;
    spec.prompt.resize(prompt_len);
    for (int32_t& t : spec.prompt) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
    spec.sampling.temperature = 1.0f;
    spec.sampling.seed = static_cast<uint64_t>(i);
    spec.stop.max_tokens = max_tokens;
    spec.stop.ignore_eos = true;
    // Stop strings that random text seldom completes, so that every stream does the full
    // per-token work (held-back prefixes included) for about max_tokens tokens.
    if (!plain) spec.stop.stop_strings = {"\nUser:", "</answer>", "###", "STOP"};
    spec.detokenize = !plain;
    auto stream = (*engine)->Submit(std::move(spec));
    if (!stream.ok()) {
      std::fprintf(stderr, "%s\n", stream.status().ToString().c_str());
      return 1;
    }
    auto state = std::make_unique<StreamState>();
    state->stream = std::move(stream).value();
    states.push_back(std::move(state));
  }
  for (int i = 0; i < streams; ++i) {
    StreamState* s = states[i].get();
    s->stream->SetReadyCallback([s, &ready, i] {
      if (!s->queued.exchange(true)) ready.Put(static_cast<size_t>(i));
    });
  }
  std::vector<std::thread> pool;
  for (int c = 0; c < consumers; ++c) pool.emplace_back(consume);
  for (std::thread& t : pool) t.join();
  const double wall = Seconds(Clock::now() - t0);

  int64_t tokens = 0, text_bytes = 0, stopped = 0;
  for (const auto& s : states) {
    tokens += s->completion_tokens;
    text_bytes += s->text_bytes;
    stopped += s->stopped_by_string ? 1 : 0;
  }
  int64_t steps = 0, decode_steps = 0;
  double step_s = 0, decode_s = 0;
  timer.Read(&steps, &step_s, &decode_steps, &decode_s);
  const double mean_step_ms = steps > 0 ? 1e3 * step_s / static_cast<double>(steps) : 0;
  const double mean_decode_ms =
      decode_steps > 0 ? 1e3 * decode_s / static_cast<double>(decode_steps) : 0;
  std::printf("preset %s, %d streams x %d tokens, %d consumer thread(s), %d model thread(s)%s\n",
              preset.c_str(), streams, max_tokens, consumers, threads,
              plain ? ", no detokenization or stop strings" : "");
  std::printf("engine steps             %8lld (%lld decode-only)\n", static_cast<long long>(steps),
              static_cast<long long>(decode_steps));
  std::printf("mean engine step         %8.2f ms (decode-only steps %.2f ms)\n", mean_step_ms,
              mean_decode_ms);
  const double cpu_step_ms = 1e3 * timer.CpuPerStep();
  std::printf("engine thread CPU / step %8.2f ms\n", cpu_step_ms);
  std::printf("consumer threads CPU     %8.2f s\n", consumer_cpu_s);
  const double engine_us_per_token = tokens > 0 ? 1e6 * step_s / static_cast<double>(tokens) : 0;
  std::printf("engine time per token    %8.2f us (all step time / tokens)\n", engine_us_per_token);
  std::printf("tokens/s (end to end)    %8.0f  (%lld tokens in %.2f s)\n",
              static_cast<double>(tokens) / wall, static_cast<long long>(tokens), wall);
  std::printf("streams stopped by a stop string: %lld; text bytes streamed: %lld\n",
              static_cast<long long>(stopped), static_cast<long long>(text_bytes));
  const nlohmann::json report = {{"preset", preset},
                                 {"streams", streams},
                                 {"max_tokens", max_tokens},
                                 {"consumers", consumers},
                                 {"threads", threads},
                                 {"plain", plain},
                                 {"steps", steps},
                                 {"mean_step_ms", mean_step_ms},
                                 {"mean_decode_step_ms", mean_decode_ms},
                                 {"engine_us_per_token", engine_us_per_token},
                                 {"engine_cpu_ms_per_step", cpu_step_ms},
                                 {"consumer_cpu_s", consumer_cpu_s},
                                 {"tokens", tokens},
                                 {"wall_s", wall},
                                 {"tokens_per_s", static_cast<double>(tokens) / wall},
                                 {"stopped_by_string", stopped},
                                 {"text_bytes", text_bytes}};
  std::printf("%s\n", report.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace sy

int main(int argc, char** argv) { return sy::Main(argc, argv); }
