// The bounds every frontend and the engine share (engine/sched/request_limits.h): each is
// checked at its boundary, one inside and one past it, against the numbers the docs promise
// (docs/serving.md): n 1-128, prompts x n <= 256, 16 stop strings of 4096 bytes in all, none
// empty, and 64 stop token ids inside the vocabulary.
#include "engine/sched/request_limits.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sy {
namespace {

TEST(RequestLimits, SequencesPerRequest) {
  EXPECT_TRUE(CheckSequenceCount(1, 1).ok());
  EXPECT_TRUE(CheckSequenceCount(1, 128).ok());
  EXPECT_TRUE(CheckSequenceCount(256, 1).ok());
  EXPECT_TRUE(CheckSequenceCount(2, 128).ok());
  EXPECT_EQ(CheckSequenceCount(1, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckSequenceCount(1, 129).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckSequenceCount(257, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckSequenceCount(3, 128).code(), StatusCode::kInvalidArgument);
  const Status amplified = CheckSequenceCount(256, 128);
  EXPECT_EQ(amplified.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(amplified.message(),
            "prompts x n must be at most 256, got 256 x 128 = 32768 sequences");
}

TEST(RequestLimits, StopStrings) {
  EXPECT_TRUE(CheckStopStrings({}).ok());
  EXPECT_TRUE(CheckStopStrings(std::vector<std::string>(16, "x")).ok());
  const Status many = CheckStopStrings(std::vector<std::string>(17, "x"));
  EXPECT_EQ(many.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(many.message(), "stop may hold at most 16 strings, got 17");
  EXPECT_EQ(CheckStopStrings({"a", ""}).code(), StatusCode::kInvalidArgument);
  // 4096 bytes in all, however they are split.
  EXPECT_TRUE(CheckStopStrings({std::string(4096, 'a')}).ok());
  EXPECT_TRUE(CheckStopStrings({std::string(4000, 'a'), std::string(96, 'b')}).ok());
  EXPECT_EQ(CheckStopStrings({std::string(4097, 'a')}).code(), StatusCode::kInvalidArgument);
  const Status long_total = CheckStopStrings({std::string(4000, 'a'), std::string(97, 'b')});
  EXPECT_EQ(long_total.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(long_total.message(), "stop strings may hold at most 4096 bytes in all, got 4097");
}

TEST(RequestLimits, StopTokenIds) {
  const int64_t vocab = 100;
  EXPECT_TRUE(CheckStopTokenIds({}, vocab).ok());
  EXPECT_TRUE(CheckStopTokenIds({0, 99}, vocab).ok());
  EXPECT_TRUE(CheckStopTokenIds(std::vector<int32_t>(64, 5), vocab).ok());
  const Status many = CheckStopTokenIds(std::vector<int32_t>(65, 5), vocab);
  EXPECT_EQ(many.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(many.message(), "stop_token_ids may hold at most 64 ids, got 65");
  const Status outside = CheckStopTokenIds({3, 100}, vocab);
  EXPECT_EQ(outside.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(outside.message(), "stop_token_ids: id 100 is outside the vocabulary [0, 100)");
  EXPECT_EQ(CheckStopTokenIds({-1}, vocab).code(), StatusCode::kInvalidArgument);
}

TEST(RequestLimits, SpecChecksAllThree) {
  RequestSpec spec;
  spec.prompt = {1};
  EXPECT_TRUE(CheckRequestLimits(spec, 10).ok());
  RequestSpec n = spec;
  n.n = 129;
  EXPECT_EQ(CheckRequestLimits(n, 10).code(), StatusCode::kInvalidArgument);
  RequestSpec stop = spec;
  stop.stop.stop_strings = {""};
  EXPECT_EQ(CheckRequestLimits(stop, 10).code(), StatusCode::kInvalidArgument);
  RequestSpec ids = spec;
  ids.stop.stop_token_ids = {10};
  EXPECT_EQ(CheckRequestLimits(ids, 10).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sy
