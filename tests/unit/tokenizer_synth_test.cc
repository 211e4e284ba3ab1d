// Tests for the synthetic byte-level BPE written by `switchyard make-model`: exact size,
// determinism, loading, and lossless round trips of multilingual text.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "engine/tokenizer/bpe_synthesizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace sy {
namespace {

const std::vector<std::string> kTexts = {
    "The yard sorts every car onto its own track.",
    "Le café du coin ouvre à sept heures.",
    "Die Straße über der Brücke ist größer.",
    "你好，世界！专家混合模型。",
    "日本語のテキストを分割します。",
    "Привет, мир! Ελληνικά. 한국어.",
    "emoji 😀👍🏽👨‍👩‍👧🇫🇷 and symbols ≤ ≥ € …",
    "def f(x):\n\treturn x ** 2  # square\r\n",
    "   leading and trailing   ",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "",
};

std::unique_ptr<Tokenizer> Synthesize(int32_t vocab_size, uint64_t seed) {
  const nlohmann::json j = SynthesizeByteLevelBpe(vocab_size, seed);
  auto tok = Tokenizer::FromTokenizerJson(j.dump(), SynthesizeTokenizerConfig(j).dump());
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

TEST(TokenizerSynthTest, ExactSizeAndSpecialTokens) {
  for (int32_t size : {kMinSynthesizedVocabSize, 300, 1000, 5000}) {
    SCOPED_TRACE(size);
    const nlohmann::json j = SynthesizeByteLevelBpe(size, 1);
    EXPECT_EQ(j["model"]["vocab"].size() + j["added_tokens"].size(), static_cast<size_t>(size));
    auto tok = Synthesize(size, 1);
    ASSERT_TRUE(tok);
    EXPECT_EQ(tok->vocab_size(), size);
    EXPECT_EQ(tok->token_to_id("<|endoftext|>"), size - 3);
    EXPECT_EQ(tok->token_to_id("<|im_start|>"), size - 2);
    EXPECT_EQ(tok->token_to_id("<|im_end|>"), size - 1);
    EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{size - 3});
    EXPECT_FALSE(tok->bos_id().has_value());
    EXPECT_TRUE(tok->is_special(size - 1));
    for (int32_t id = 0; id < size; ++id) ASSERT_FALSE(tok->id_to_token(id).empty()) << id;
  }
}

TEST(TokenizerSynthTest, RoundTripsMultilingualText) {
  for (int32_t size : {kMinSynthesizedVocabSize, 2000, 40000}) {
    auto tok = Synthesize(size, 3);
    ASSERT_TRUE(tok);
    for (const std::string& text : kTexts) {
      const std::vector<int32_t> ids = tok->Encode(text, true);
      EXPECT_EQ(tok->Decode(ids, false), text) << size;
      for (int32_t id : ids) EXPECT_LT(id, size);
    }
  }
}

TEST(TokenizerSynthTest, LearnedMergesCompressText) {
  auto tok = Synthesize(4000, 0);
  ASSERT_TRUE(tok);
  const std::string text = kTexts[0];
  EXPECT_LT(tok->Encode(text, false).size(), text.size() / 3);
  EXPECT_EQ(tok->Encode("<|im_end|>", false), std::vector<int32_t>{3999});
}

TEST(TokenizerSynthTest, Deterministic) {
  EXPECT_EQ(SynthesizeByteLevelBpe(3000, 11).dump(), SynthesizeByteLevelBpe(3000, 11).dump());
  EXPECT_NE(SynthesizeByteLevelBpe(30000, 11).dump(), SynthesizeByteLevelBpe(30000, 12).dump());
  const nlohmann::json config = SynthesizeTokenizerConfig(SynthesizeByteLevelBpe(3000, 11));
  EXPECT_EQ(config["added_tokens_decoder"]["2999"]["content"], "<|im_end|>");
  EXPECT_EQ(config["eos_token"], "<|endoftext|>");
  EXPECT_TRUE(config["bos_token"].is_null());
}

TEST(TokenizerSynthTest, QwenSizedVocabulary) {
  constexpr int32_t kSize = 152064;
  const auto start = std::chrono::steady_clock::now();
  const nlohmann::json j = SynthesizeByteLevelBpe(kSize, 5);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("SynthesizeByteLevelBpe(%d): %.3f s\n", kSize, seconds);
  auto tok = Tokenizer::FromTokenizerJson(j.dump(), SynthesizeTokenizerConfig(j).dump());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->vocab_size(), kSize);
  for (const std::string& text : kTexts) {
    EXPECT_EQ((*tok)->Decode((*tok)->Encode(text, false), false), text);
  }
}

}  // namespace
}  // namespace sy
