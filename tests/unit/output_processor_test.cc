// OutputProcessor, through the RequestStreamQueue that runs it: text from token deltas with
// partial UTF-8 held back, stop strings across tokens and updates, include_stop_str_in_output,
// what the engine produced after a match dropped (tokens, samples, usage), n > 1 with one choice
// stopping early, and engine finishes (abort) passed through. Expectations are worked out by
// hand from the toy vocabulary.
#include "engine/sched/output_processor.h"

#include <gtest/gtest.h>

#include "engine/sched/request_stream.h"
#include "tests/common/toy_tokenizer.h"

namespace sy {
namespace {

using std::chrono::milliseconds;

RequestSpec Spec(std::vector<std::string> stops, int32_t n = 1, int32_t max_tokens = 100) {
  RequestSpec s;
  s.prompt = {kX, kX};
  s.n = n;
  s.stop.max_tokens = max_tokens;
  s.stop.stop_strings = std::move(stops);
  return s;
}

// A stream as the engine hands it out, recording the choices it asks the engine to stop.
struct Harness {
  explicit Harness(const RequestSpec& spec)
      : stream(7, std::make_unique<OutputProcessor>(
                      spec, std::shared_ptr<const Tokenizer>(std::shared_ptr<void>(), &Toy()),
                      std::vector<int32_t>{kEos}, 1000,
                      [this](int32_t index) { stopped.push_back(index); })) {}

  // Pushes what the engine would: `tokens` for choice `index`, with running usage.
  void Push(int32_t index, std::vector<int32_t> tokens,
            std::optional<FinishReason> finish = std::nullopt, bool finished = false) {
    RequestUpdate u;
    CompletionDelta d;
    d.index = index;
    for (int32_t t : tokens) {
      d.token_ids.push_back(t);
      SampledToken s;
      s.token = t;
      d.samples.push_back(s);
    }
    d.finish_reason = finish;
    engine_tokens += static_cast<int32_t>(tokens.size());
    u.deltas.push_back(std::move(d));
    u.completion_tokens = engine_tokens;
    u.finished = finished;
    stream.Push(std::move(u));
  }

  RequestStreamQueue stream;
  std::vector<int32_t> stopped;
  int32_t engine_tokens = 0;
};

TEST(OutputProcessor, PartialUtf8IsHeldUntilTheCharacterCompletes) {
  Harness h(Spec({}));
  RequestUpdate u;
  h.Push(0, {kCaf, kE1});
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  ASSERT_EQ(u.deltas.size(), 1u);
  EXPECT_EQ(u.deltas[0].text, "caf");
  EXPECT_EQ(u.deltas[0].token_ids, (std::vector<int32_t>{kCaf, kE1}));
  h.Push(0, {kE2});
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  EXPECT_EQ(u.deltas[0].text, "\xC3\xA9");
  EXPECT_EQ(u.completion_tokens, 3);
}

TEST(OutputProcessor, StopStringAcrossUpdatesCutsTheChoiceAndDropsLaterTokens) {
  Harness h(Spec({"o wor"}));
  RequestUpdate u;
  h.Push(0, {kHel, kLo});
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  EXPECT_EQ(u.deltas[0].text, "Hell");  // "o" may start "o wor": held back
  EXPECT_FALSE(u.finished);
  // The engine ran on past the match ("r" completes it) before it heard of it.
  h.Push(0, {kWo, kR, kLd, kBang});
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  ASSERT_EQ(u.deltas.size(), 1u);
  const CompletionDelta& d = u.deltas[0];
  EXPECT_EQ(d.token_ids, (std::vector<int32_t>{kWo, kR}));
  ASSERT_EQ(d.samples.size(), 2u);
  EXPECT_EQ(d.samples[1].token, kR);
  EXPECT_EQ(d.text, "");
  EXPECT_EQ(d.finish_reason, FinishReason::kStop);
  EXPECT_EQ(d.stop_string, "o wor");
  EXPECT_EQ(u.completion_tokens, 4);  // not the engine's 6
  EXPECT_TRUE(u.finished);
  EXPECT_TRUE(u.status.ok());
  EXPECT_EQ(h.stopped, std::vector<int32_t>{0});
  // The engine's own end of the choice comes later and is not delivered.
  h.Push(0, {kX}, FinishReason::kStop, /*finished=*/true);
  EXPECT_FALSE(h.stream.Next(&u, milliseconds(0)));
}

TEST(OutputProcessor, IncludedStopStringIsStreamed) {
  RequestSpec spec = Spec({"o wor"});
  spec.stop.include_stop_str_in_output = true;
  Harness h(spec);
  h.Push(0, {kHel, kLo, kWo, kR, kLd});
  RequestUpdate u;
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  EXPECT_EQ(u.deltas[0].text, "Hello wor");
  EXPECT_EQ(u.deltas[0].token_ids.size(), 4u);
  EXPECT_EQ(u.deltas[0].stop_string, "o wor");
}

TEST(OutputProcessor, MatchOnTheEnginesLastTokenNeedsNoStopRequest) {
  Harness h(Spec({"ld"}, 1, /*max_tokens=*/2));
  h.Push(0, {kR, kLd}, FinishReason::kLength, /*finished=*/true);
  RequestUpdate u;
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  // The stop string is checked before max_tokens, as on one thread.
  EXPECT_EQ(u.deltas[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(u.deltas[0].text, "r");
  EXPECT_TRUE(u.finished);
  EXPECT_TRUE(h.stopped.empty());  // the engine had ended the choice already
}

TEST(OutputProcessor, OneChoiceStopsEarlyWhileTheOtherGoesOn) {
  Harness h(Spec({"STOP"}, /*n=*/2, /*max_tokens=*/4));
  RequestUpdate u;
  h.Push(0, {kHel, kStopTok});
  h.Push(1, {kHel});
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  ASSERT_EQ(u.deltas.size(), 2u);
  EXPECT_EQ(u.deltas[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(u.deltas[0].text, "Hel");
  EXPECT_FALSE(u.deltas[1].finish_reason.has_value());
  EXPECT_EQ(u.completion_tokens, 3);
  EXPECT_FALSE(u.finished);
  EXPECT_EQ(h.stopped, std::vector<int32_t>{0});
  // Choice 0's extra token and late finish are dropped; choice 1 ends at max_tokens.
  h.Push(0, {kX}, FinishReason::kStop);
  h.Push(1, {kLo, kWo, kR}, FinishReason::kLength, /*finished=*/true);
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  ASSERT_EQ(u.deltas.size(), 1u);
  EXPECT_EQ(u.deltas[0].index, 1);
  EXPECT_EQ(u.deltas[0].text, "lo wor");
  EXPECT_EQ(u.deltas[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ(u.completion_tokens, 6);
  EXPECT_TRUE(u.finished);
}

TEST(OutputProcessor, AnUpdateWithOnlyDroppedOutputIsNotDelivered) {
  Harness h(Spec({"STOP"}, /*n=*/2));
  RequestUpdate u;
  h.Push(0, {kStopTok});
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  h.Push(0, {kX});  // after the match: nothing to deliver
  EXPECT_FALSE(h.stream.Next(&u, milliseconds(0)));
  h.Push(1, {kX});
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  ASSERT_EQ(u.deltas.size(), 1u);
  EXPECT_EQ(u.deltas[0].index, 1);
  EXPECT_EQ(u.deltas[0].text, "x");
}

TEST(OutputProcessor, AbortEndsWithoutReleasingHeldText) {
  Harness h(Spec({"o wor"}));
  h.Push(0, {kHel, kLo});
  h.Push(0, {}, FinishReason::kAbort, /*finished=*/true);
  RequestUpdate u;
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  EXPECT_EQ(u.deltas[0].text, "Hell");
  EXPECT_EQ(u.deltas[0].finish_reason, FinishReason::kAbort);
  EXPECT_TRUE(u.finished);
  EXPECT_TRUE(h.stopped.empty());
}

TEST(OutputProcessor, StopStringsWorkWithoutText) {
  RequestSpec spec = Spec({"lo"});
  spec.detokenize = false;
  Harness h(spec);
  h.Push(0, {kHel, kLo, kWo});
  RequestUpdate u;
  ASSERT_TRUE(h.stream.Next(&u, milliseconds(0)));
  EXPECT_EQ(u.deltas[0].text, "");
  EXPECT_EQ(u.deltas[0].token_ids.size(), 2u);
  EXPECT_EQ(u.deltas[0].stop_string, "lo");
}

}  // namespace
}  // namespace sy
