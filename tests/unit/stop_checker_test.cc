// StopChecker: stop strings across token boundaries (held back, never streamed then cut), EOS
// and stop token ids with min_tokens, max_tokens and the context limit. Expectations are worked
// out by hand from a toy vocabulary of byte strings.
#include "engine/sched/stop_checker.h"

#include <gtest/gtest.h>

#include "tests/common/toy_tokenizer.h"

namespace sy {
namespace {

// Feeds tokens one by one; records the text streamed after each and the final update.
struct Fed {
  std::vector<std::string> texts;
  StopUpdate last;
  size_t consumed = 0;  // tokens fed until the choice finished (or all)
};

Fed Feed(const StopConditions& stop, const std::vector<int32_t>& tokens,
         int64_t max_model_len = 1000, int64_t prompt_len = 0) {
  StopChecker checker(stop, {kEos}, max_model_len);
  IncrementalDetokenizer detok(Toy(), /*skip_special=*/true);
  Fed fed;
  for (size_t i = 0; i < tokens.size(); ++i) {
    fed.last = checker.Append(tokens[i], static_cast<int32_t>(i + 1),
                              prompt_len + static_cast<int64_t>(i + 1), &detok);
    fed.texts.push_back(fed.last.text);
    fed.consumed = i + 1;
    if (fed.last.finish) break;
  }
  return fed;
}

std::string Joined(const Fed& f) {
  std::string s;
  for (const std::string& t : f.texts) s += t;
  return s;
}

StopConditions Stops(std::vector<std::string> strings, int32_t max_tokens = 100) {
  StopConditions s;
  s.max_tokens = max_tokens;
  s.stop_strings = std::move(strings);
  return s;
}

TEST(StopChecker, StopStringSplitOverThreeTokens) {
  // "Hel" "lo" " wo" "r": the stop string "o wor" spans "lo", " wo" and "r".
  const Fed f = Feed(Stops({"o wor"}), {kHel, kLo, kWo, kR, kLd});
  EXPECT_EQ(f.consumed, 4u);
  EXPECT_EQ(f.texts, (std::vector<std::string>{"Hel", "l", "", ""}));
  EXPECT_EQ(f.last.finish, FinishReason::kStop);
  EXPECT_EQ(f.last.stop_string, "o wor");
}

TEST(StopChecker, IncludedStopStringIsStreamed) {
  StopConditions s = Stops({"o wor"});
  s.include_stop_str_in_output = true;
  const Fed f = Feed(s, {kHel, kLo, kWo, kR, kLd});
  EXPECT_EQ(Joined(f), "Hello wor");
  EXPECT_EQ(f.last.finish, FinishReason::kStop);
}

TEST(StopChecker, OverlappingPrefixesAreHeldUntilResolved) {
  // "xab" "cab" "cabd" = "xabcabcabd": "abcab" is held as a prefix of "abcabd", and the real
  // match starts at the second "abc".
  const Fed f = Feed(Stops({"abcabd"}), {kXab, kCab, kCabd});
  EXPECT_EQ(f.texts, (std::vector<std::string>{"x", "", "abc"}));
  EXPECT_EQ(f.last.finish, FinishReason::kStop);
}

TEST(StopChecker, HeldTextIsReleasedWhenItStopsMatching) {
  // "Hel" "lo" " wo" "ld": "o wo" is held for "o wor", then released with "ld".
  const Fed f = Feed(Stops({"o wor"}), {kHel, kLo, kWo, kLd});
  EXPECT_EQ(f.texts, (std::vector<std::string>{"Hel", "l", "", "o wold"}));
  EXPECT_FALSE(f.last.finish.has_value());
}

TEST(StopChecker, EarliestOfSeveralStopStringsWins) {
  const Fed f = Feed(Stops({"world", "lo w"}), {kHel, kLo, kWo, kR, kLd});
  EXPECT_EQ(Joined(f), "Hel");
  EXPECT_EQ(f.last.stop_string, "lo w");
  EXPECT_EQ(f.consumed, 3u);
}

TEST(StopChecker, MultibyteCharacterSplitAcrossTokens) {
  // "caf" "\xC3" "\xA9" "!": é arrives in two tokens; the stop string is "é!".
  const Fed f = Feed(Stops({"\xC3\xA9!"}), {kCaf, kE1, kE2, kBang});
  EXPECT_EQ(f.texts, (std::vector<std::string>{"caf", "", "", ""}));
  EXPECT_EQ(f.last.finish, FinishReason::kStop);
  // Without a match the whole character comes out at once, never half of it.
  const Fed g = Feed(Stops({"\xC3\xA9!"}), {kCaf, kE1, kE2, kX});
  EXPECT_EQ(g.texts, (std::vector<std::string>{"caf", "", "", "\xC3\xA9x"}));
}

TEST(StopChecker, EosStopsWithoutItsText) {
  StopConditions s = Stops({});
  const Fed f = Feed(s, {kHel, kEos, kLo});
  EXPECT_EQ(f.consumed, 2u);
  EXPECT_EQ(f.last.finish, FinishReason::kStop);
  EXPECT_FALSE(f.last.stop_token.has_value());  // EOS is not a stop_token_ids entry
  EXPECT_EQ(Joined(f), "Hel");
  s.ignore_eos = true;
  EXPECT_FALSE(Feed(s, {kHel, kEos, kLo}).last.finish.has_value());
}

TEST(StopChecker, EosBeforeMinTokensIsIgnored) {
  StopConditions s = Stops({});
  s.min_tokens = 2;
  StopChecker checker(s, {kEos}, 1000);
  EXPECT_FALSE(checker.IsStopToken(kEos, 1));
  EXPECT_FALSE(checker.IsStopToken(kEos, 2));
  EXPECT_TRUE(checker.IsStopToken(kEos, 3));
  const Fed f = Feed(s, {kEos, kHel, kEos});
  EXPECT_EQ(f.consumed, 3u);
  EXPECT_EQ(f.last.finish, FinishReason::kStop);
}

TEST(StopChecker, StopTokenIdEndsTheChoice) {
  StopConditions s = Stops({});
  s.stop_token_ids = {kStopTok};
  const Fed f = Feed(s, {kHel, kStopTok, kLo});
  EXPECT_EQ(f.consumed, 2u);
  EXPECT_EQ(f.last.finish, FinishReason::kStop);
  EXPECT_EQ(f.last.stop_token, kStopTok);
  EXPECT_EQ(Joined(f), "Hel");
  s.include_stop_str_in_output = true;
  EXPECT_EQ(Joined(Feed(s, {kHel, kStopTok})), "HelSTOP");
}

TEST(StopChecker, StopTokenReleasesHeldText) {
  StopConditions s = Stops({"o wor"});
  s.stop_token_ids = {kStopTok};
  const Fed f = Feed(s, {kHel, kLo, kWo, kStopTok});
  EXPECT_EQ(f.texts, (std::vector<std::string>{"Hel", "l", "", "o wo"}));
  EXPECT_EQ(f.last.stop_token, kStopTok);
}

TEST(StopChecker, MaxTokensFlushesHeldText) {
  const Fed f = Feed(Stops({"o wor"}, /*max_tokens=*/3), {kHel, kLo, kWo, kR});
  EXPECT_EQ(f.consumed, 3u);
  EXPECT_EQ(f.texts, (std::vector<std::string>{"Hel", "l", "o wo"}));
  EXPECT_EQ(f.last.finish, FinishReason::kLength);
  // A character cut in half by the limit still comes out (as the tokenizer decodes it).
  const Fed g = Feed(Stops({}, 2), {kCaf, kE1});
  EXPECT_EQ(Joined(g), "caf\xEF\xBF\xBD");
}

TEST(StopChecker, ContextLimitEndsWithLength) {
  const Fed f = Feed(Stops({}), {kHel, kLo, kWo}, /*max_model_len=*/12, /*prompt_len=*/10);
  EXPECT_EQ(f.consumed, 2u);
  EXPECT_EQ(f.last.finish, FinishReason::kLength);
  EXPECT_EQ(Joined(f), "Hello");
}

TEST(StopChecker, WithoutDetokenizerOnlyTokensCount) {
  StopChecker checker(Stops({"Hel"}, 2), {kEos}, 1000);
  EXPECT_FALSE(checker.Append(kHel, 1, 1, nullptr).finish.has_value());
  const StopUpdate u = checker.Append(kLo, 2, 2, nullptr);
  EXPECT_EQ(u.finish, FinishReason::kLength);
  EXPECT_EQ(u.text, "");
}

}  // namespace
}  // namespace sy
