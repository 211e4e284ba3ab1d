// Engine request deadlines: a request whose deadline passes ends, whether queued or running, as
// an abort with status DeadlineExceeded, and its KV blocks come back; one already past its
// deadline is refused at Submit.
#include <gtest/gtest.h>

#include <thread>

#include "engine/sched/engine.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

using std::chrono::milliseconds;

// Slows every step down so that a long request cannot finish before its deadline.
class StepDelay : public EngineObserver {
 public:
  void OnStep(const StepStats&) override { std::this_thread::sleep_for(milliseconds(5)); }
  void OnRequestFinished(const RequestStats&) override {}
  void OnPreemption(int32_t) override {}
  void OnRejected(StatusCode code) override { rejected.push_back(code); }
  std::vector<StatusCode> rejected;  // written on the submitting thread here
};

std::unique_ptr<Engine> MakeEngine(EngineObserver* observer) {
  EngineOptions o;
  o.model_dir = testing::GoldenDir() + "/models/olmoe";
  o.threads = 1;
  o.block_size = 4;
  o.num_kv_blocks = 512;
  o.max_num_batched_tokens = 64;
  o.max_num_seqs = 1;  // a second request waits in the queue
  o.observer = observer;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

RequestSpec Greedy(std::vector<int32_t> prompt, int32_t max_tokens) {
  RequestSpec s;
  s.prompt = std::move(prompt);
  s.sampling.temperature = 0.0f;
  s.stop.max_tokens = max_tokens;
  s.stop.ignore_eos = true;
  return s;
}

struct Ending {
  int32_t tokens = 0;
  std::optional<FinishReason> finish;
  Status status;
  bool ended = false;
};

// Reads a stream to its end (gives up after 30 s).
Ending Drain(RequestStream& stream) {
  Ending end;
  RequestUpdate u;
  while (stream.Next(&u, milliseconds(30000))) {
    for (const CompletionDelta& d : u.deltas) {
      end.tokens += static_cast<int32_t>(d.token_ids.size());
      if (d.finish_reason) end.finish = d.finish_reason;
    }
    if (u.finished) {
      end.status = u.status;
      end.ended = true;
      break;
    }
  }
  return end;
}

bool WaitIdle(Engine& e) {
  for (int i = 0; i < 3000 && !e.Idle(); ++i) std::this_thread::sleep_for(milliseconds(1));
  return e.Idle();
}

TEST(EngineDeadline, QueuedAndRunningRequestsEndWhenTheirDeadlinePasses) {
  StepDelay delay;
  auto e = MakeEngine(&delay);
  ASSERT_NE(e, nullptr);
  // 100 tokens take at least 0.5 s; the deadline comes after about 0.1 s.
  RequestSpec running = Greedy({5, 6, 7, 8}, 100);
  running.deadline = Clock::now() + milliseconds(100);
  auto first = e->Submit(running);
  ASSERT_TRUE(first.ok());
  // Behind it (one sequence per step), never scheduled before its own deadline.
  RequestSpec queued = Greedy({9, 10, 11}, 10);
  queued.deadline = Clock::now() + milliseconds(50);
  auto second = e->Submit(queued);
  ASSERT_TRUE(second.ok());

  const Ending q = Drain(**second);
  ASSERT_TRUE(q.ended);
  EXPECT_EQ(q.status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(q.finish, FinishReason::kAbort);
  EXPECT_EQ(q.tokens, 0);
  const Ending r = Drain(**first);
  ASSERT_TRUE(r.ended);
  EXPECT_EQ(r.status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(r.finish, FinishReason::kAbort);
  EXPECT_GT(r.tokens, 0);
  EXPECT_LT(r.tokens, 100);
  ASSERT_TRUE(WaitIdle(*e));
  const EngineSnapshot s = e->Snapshot();
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.num_running + s.num_waiting, 0);
  // A deadline far enough away changes nothing.
  RequestSpec relaxed = Greedy({1, 2, 3}, 3);
  relaxed.deadline = Clock::now() + std::chrono::seconds(60);
  auto third = e->Submit(relaxed);
  ASSERT_TRUE(third.ok());
  const Ending ok = Drain(**third);
  EXPECT_TRUE(ok.status.ok());
  EXPECT_EQ(ok.finish, FinishReason::kLength);
  EXPECT_EQ(ok.tokens, 3);
}

TEST(EngineDeadline, APassedDeadlineIsRefusedAtSubmit) {
  StepDelay delay;
  auto e = MakeEngine(&delay);
  ASSERT_NE(e, nullptr);
  RequestSpec late = Greedy({1, 2}, 4);
  late.deadline = Clock::now() - milliseconds(1);
  auto s = e->Submit(late);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(delay.rejected, std::vector<StatusCode>{StatusCode::kDeadlineExceeded});
  EXPECT_TRUE(e->Idle());
}

}  // namespace
}  // namespace sy
