// RequestStreamQueue: updates queued by the engine are merged on Next, and the ready callback
// fires on every push and at once for an update already waiting.
#include "engine/sched/request_stream.h"

#include <gtest/gtest.h>

#include <atomic>

namespace sy {
namespace {

using std::chrono::milliseconds;

RequestUpdate TokenUpdate(int32_t token, std::string text, bool finished = false) {
  RequestUpdate u;
  CompletionDelta d;
  d.token_ids = {token};
  d.text = std::move(text);
  u.deltas.push_back(d);
  u.finished = finished;
  u.completion_tokens = token;
  return u;
}

TEST(RequestStreamQueueTest, NextMergesQueuedUpdatesAndEndsAfterTheLast) {
  RequestStreamQueue q(7);
  q.Push(TokenUpdate(1, "a"));
  q.Push(TokenUpdate(2, "b", /*finished=*/true));
  RequestUpdate u;
  ASSERT_TRUE(q.Next(&u, milliseconds(0)));
  ASSERT_EQ(u.deltas.size(), 1u);
  EXPECT_EQ(u.deltas[0].token_ids, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(u.deltas[0].text, "ab");
  EXPECT_TRUE(u.finished);
  EXPECT_EQ(u.completion_tokens, 2);
  EXPECT_FALSE(q.Next(&u, milliseconds(0)));
}

TEST(RequestStreamQueueTest, ReadyCallbackFiresOnEveryPush) {
  RequestStreamQueue q(1);
  std::atomic<int> calls{0};
  q.SetReadyCallback([&] { ++calls; });
  EXPECT_EQ(calls.load(), 0);  // nothing waiting yet
  q.Push(TokenUpdate(1, "a"));
  q.Push(TokenUpdate(2, "b"));
  EXPECT_EQ(calls.load(), 2);
}

TEST(RequestStreamQueueTest, ReadyCallbackFiresAtOnceForAWaitingUpdate) {
  RequestStreamQueue q(1);
  q.Push(TokenUpdate(1, "a"));
  int calls = 0;
  q.SetReadyCallback([&] { ++calls; });
  EXPECT_EQ(calls, 1);
  RequestUpdate u;
  ASSERT_TRUE(q.Next(&u, milliseconds(0)));
  int replaced = 0;
  q.SetReadyCallback([&] { ++replaced; });  // nothing waiting: not called now
  EXPECT_EQ(replaced, 0);
  q.Push(TokenUpdate(2, "b"));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(replaced, 1);
}

}  // namespace
}  // namespace sy
