// Tests for the tokenizer's Unicode layer and pre-tokenizer patterns.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/unicode.h"

namespace sy::tokenizer {
namespace {

std::vector<std::string> Split(const SplitRule& p, std::string_view text) {
  std::vector<std::string_view> pieces;
  SplitIsolated(p, text, &pieces);
  return std::vector<std::string>(pieces.begin(), pieces.end());
}

using Pieces = std::vector<std::string>;

TEST(TokenizerUnicodeTest, Categories) {
  EXPECT_EQ(CategoryOf('A'), GeneralCategory::kLu);
  EXPECT_EQ(CategoryOf('z'), GeneralCategory::kLl);
  EXPECT_EQ(CategoryOf('7'), GeneralCategory::kNd);
  EXPECT_EQ(CategoryOf(0x4E2D), GeneralCategory::kLo);  // 中
  EXPECT_EQ(CategoryOf(0x0301), GeneralCategory::kMn);
  EXPECT_EQ(CategoryOf(0x1F600), GeneralCategory::kSo);
  EXPECT_EQ(CategoryOf(0x10FFFF), GeneralCategory::kCn);
  EXPECT_TRUE(CharFlags(0x3000) & kFlagSpace);
  EXPECT_TRUE(CharFlags(0xA0) & kFlagSpace);
  EXPECT_FALSE(CharFlags(0x200B) & kFlagSpace);
  EXPECT_TRUE(CharFlags('\n') & kFlagCrLf);
}

TEST(TokenizerUnicodeTest, Utf8LossyReplacesMaximalSubparts) {
  EXPECT_EQ(Utf8Lossy("abc"), "abc");
  EXPECT_EQ(Utf8Lossy("\xE4\xB8"), "\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("\xE4\xB8"
                      "a"),
            "\xEF\xBF\xBD"
            "a");
  EXPECT_EQ(Utf8Lossy("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
  EXPECT_TRUE(IsValidUtf8("h\xC3\xA9llo"));
  EXPECT_FALSE(IsValidUtf8("\xC0\x80"));
}

TEST(TokenizerUnicodeTest, IsValidUtf8AcceptsWellFormedAndRejectsMalformed) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("h\xC3\xA9llo"));       // é
  EXPECT_TRUE(IsValidUtf8("\xE2\x82\xAC"));       // €
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x98\x80"));   // U+1F600
  EXPECT_FALSE(IsValidUtf8("\xFF"));              // never valid
  EXPECT_FALSE(IsValidUtf8("\x80"));              // lone continuation
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // U+110000
}

// Expected values: Python's len() and list() of bytes.decode("utf-8", "replace").
TEST(TokenizerUnicodeTest, Utf8LengthAndCharsCountAsPython) {
  EXPECT_EQ(Utf8Length(""), 0u);
  EXPECT_EQ(Utf8Length("h\xC3\xA9llo"), 5u);
  EXPECT_EQ(Utf8Length("\xE2\x82\xAC\xF0\x9F\x98\x80"), 2u);
  EXPECT_EQ(Utf8Length("a\xE2\x82"), 2u);     // a truncated sequence is one U+FFFD
  EXPECT_EQ(Utf8Length("\x80\x80"), 2u);      // each stray continuation byte is one
  EXPECT_EQ(Utf8Length("\xED\xA0\x80"), 3u);  // a surrogate is three
  EXPECT_EQ(Utf8Length("\xE2\x82z"), 2u);
  EXPECT_EQ(Utf8Chars("h\xC3\xA9\xF0\x9F\x98\x80"),
            (std::vector<std::string>{"h", "\xC3\xA9", "\xF0\x9F\x98\x80"}));
  EXPECT_EQ(Utf8Chars("\xE2\x82z"), (std::vector<std::string>{"\xE2\x82", "z"}));
}

TEST(TokenizerUnicodeTest, Nfc) {
  EXPECT_EQ(Nfc("cafe\xCC\x81"), "caf\xC3\xA9");  // e + U+0301 -> é
  EXPECT_EQ(Nfc("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(Nfc("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // Hangul L+V -> 가
  EXPECT_EQ(Nfc("\xE2\x84\xAB"), "\xC3\x85");                  // Angstrom sign -> Å
  // a + dot below (220) + acute (230) in either order -> ạ́ (U+1EA1 U+0301).
  EXPECT_EQ(Nfc("a\xCC\x81\xCC\xA3"), "\xE1\xBA\xA1\xCC\x81");
  EXPECT_EQ(Nfc("x\xFFy"), "x\xFFy");
}

TEST(TokenizerUnicodeTest, ByteLevelAlphabet) {
  EXPECT_EQ(ByteToChar('a'), "a");
  EXPECT_EQ(ByteToChar(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(ByteToChar('\n'), "\xC4\x8A");  // Ċ
  for (int b = 0; b < 256; ++b) {
    size_t pos = 0;
    const std::string& ch = ByteToChar(static_cast<uint8_t>(b));
    EXPECT_EQ(CharToByte(DecodeUtf8(ch, &pos)), b);
  }
  EXPECT_EQ(CharToByte(0x4E2D), -1);
}

TEST(TokenizerUnicodeTest, Gpt2Pattern) {
  EXPECT_EQ(Split(SplitPattern::kGpt2, "Hello world's  end 123!!\n"),
            (Pieces{"Hello", " world", "'s", " ", " end", " 123", "!!", "\n"}));
  EXPECT_EQ(Split(SplitPattern::kGpt2, "a   b"), (Pieces{"a", "  ", " b"}));
  EXPECT_EQ(Split(SplitPattern::kGpt2, "x \t"), (Pieces{"x", " \t"}));
}

TEST(TokenizerUnicodeTest, Qwen2Pattern) {
  EXPECT_EQ(Split(SplitPattern::kQwen2, "I'M 2024 ok,\n\n  next"),
            (Pieces{"I", "'M", " ", "2", "0", "2", "4", " ok", ",\n\n", " ", " next"}));
  EXPECT_EQ(Split(SplitPattern::kQwen2, "abc  \n\n  def   \t ghi"),
            (Pieces{"abc", "  \n\n", " ", " def", "   \t", " ghi"}));
  EXPECT_EQ(Split(SplitPattern::kQwen2, "it\xC5\xBF x'\xC5\xBF"),  // long s folds to s
            (Pieces{"it\xC5\xBF", " x", "'\xC5\xBF"}));
  EXPECT_EQ(Split(SplitPattern::kLlama3, "12345"), (Pieces{"123", "45"}));
}

TEST(TokenizerUnicodeTest, Gpt4oPattern) {
  EXPECT_EQ(Split(SplitPattern::kGpt4o, "HelloWorld JSONParser don't"),
            (Pieces{"Hello", "World", " JSONParser", " don't"}));
  EXPECT_EQ(Split(SplitPattern::kGpt4o, "a/b//\n"), (Pieces{"a", "/b", "//\n"}));
}

TEST(TokenizerUnicodeTest, DeepSeekV3Patterns) {
  EXPECT_EQ(Split(SplitPattern::kDeepSeekV3Digits, "ab12345c"), (Pieces{"ab", "123", "45", "c"}));
  EXPECT_EQ(Split(SplitPattern::kDeepSeekV3Cjk, "hi\xE4\xBD\xA0\xE5\xA5\xBD!"),
            (Pieces{"hi", "\xE4\xBD\xA0\xE5\xA5\xBD", "!"}));
  EXPECT_EQ(Split(SplitPattern::kDeepSeekV3Words, ".net is  ok!?\n"),
            (Pieces{".net", " is", " ", " ok", "!?\n"}));
}

TEST(TokenizerUnicodeTest, RecognisesPatternsAndRejectsUnknown) {
  EXPECT_TRUE(RuleFromRegex(R"(\p{N}{1,3})").ok());
  // Raw CR/LF characters in the regex are the same as their escapes.
  EXPECT_TRUE(RuleFromRegex("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                            "?[^\\s\\p{L}\\p{N}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")
                  .ok());
  const auto bad = RuleFromRegex("[^a-z]+");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(bad.status().message().find("[^a-z]+"), std::string::npos);
  for (const char* unsupported : {"\\w+", "[a-z]*", "[z-a]+", "[a-z", "\\p{Xx}+", "[\\d]+"}) {
    EXPECT_FALSE(RuleFromRegex(unsupported).ok()) << unsupported;
  }
}

// The one-class splits of DeepSeek LLM / V2 / Coder tokenizers.
TEST(TokenizerUnicodeTest, DeepSeekV2ClassPatterns) {
  const auto rule = [](std::string_view regex) {
    auto r = RuleFromRegex(regex);
    EXPECT_TRUE(r.ok()) << regex;
    return r.ok() ? r.value() : SplitRule();
  };
  EXPECT_EQ(Split(rule("[\r\n]"), "a\n\nb\r"), (Pieces{"a", "\n", "\n", "b", "\r"}));
  EXPECT_EQ(Split(rule("[\\r\\n]"), "a\nb"), (Pieces{"a", "\n", "b"}));
  EXPECT_EQ(Split(rule("\\s?[A-Za-z\u00b5\u00c0-\u00d6]+"), "  ab\u00c0 x1"),
            (Pieces{" ", " ab\u00c0", " x", "1"}));
  EXPECT_EQ(Split(rule("\\s?[!-/:-~\uff01-\uff0f]+"), "1, 2!!\uff013"),
            (Pieces{"1", ",", " 2", "!!\uff01", "3"}));
  EXPECT_EQ(Split(rule("\\s+$"), "a  b  "), (Pieces{"a  b", "  "}));
  EXPECT_EQ(Split(rule("\\p{N}+"), "ab123c4"), (Pieces{"ab", "123", "c", "4"}));
  EXPECT_EQ(Split(rule("\\s?\\p{L}+"), "hi there"), (Pieces{"hi", " there"}));
  EXPECT_EQ(Split(rule("[\\-\\]x]+"), "a-]xb"), (Pieces{"a", "-]x", "b"}));
  EXPECT_EQ(Split(rule("[\\x{4e00}-\\x{9fa5}]+"), "a\u4e2d\u6587b"),
            (Pieces{"a", "\u4e2d\u6587", "b"}));
}

}  // namespace
}  // namespace sy::tokenizer
