// Unit tests for the byte-level BPE tokenizer built from hand-made tokenizer.json documents:
// merging, added tokens, post-processing, malformed input, out-of-vocabulary ids and streaming.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"

namespace sy {
namespace {

using nlohmann::json;

constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A byte-level BPE: ids 0..255 are the bytes in byte order, then the merges' results.
json TinyTokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[tokenizer::ByteToChar(static_cast<uint8_t>(b))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"},          {"he", "ll"}, {"hell", "o"},        {"\xC4\xA0", "w"},
      {"o", "r"}, {"\xC4\xA0w", "or"}, {"l", "d"},   {"\xC4\xA0wor", "ld"}};
  json merge_list = json::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = next++;
    merge_list.push_back(a + " " + b);
  }
  return {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 300}, {"content", "<|end|>"}, {"special", true}, {"normalized", false}},
        {{"id", 301},
         {"content", "<tool>"},
         {"special", false},
         {"normalized", false},
         {"lstrip", true},
         {"rstrip", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", kQwen2Regex}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}},
  };
}

std::unique_ptr<Tokenizer> Build(const json& j, const json& config = json()) {
  auto tok = Tokenizer::FromTokenizerJson(j.dump(), config.is_null() ? "" : config.dump());
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

Status BuildStatus(const std::string& text) { return Tokenizer::FromTokenizerJson(text).status(); }

TEST(TokenizerBpeTest, MergesByRank) {
  auto tok = Build(TinyTokenizer());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->Encode("hello world", false), (std::vector<int32_t>{259, 264}));
  EXPECT_EQ(tok->Encode("hello", false), (std::vector<int32_t>{259}));
  EXPECT_EQ(tok->Encode("held", false), (std::vector<int32_t>{256, 263}));
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{259, 264}, false), "hello world");
  EXPECT_EQ(tok->vocab_size(), 302);
  EXPECT_EQ(tok->token_to_id("hello"), 259);
  EXPECT_EQ(tok->id_to_token(264), "\xC4\xA0world");
  EXPECT_TRUE(tok->Encode("", true).empty());
}

TEST(TokenizerBpeTest, MergePairsEqualMergeStrings) {
  json j = TinyTokenizer();
  json pairs = json::array();
  for (const json& m : j["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = pairs;
  auto tok = Build(j);
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->Encode("hello world", false), (std::vector<int32_t>{259, 264}));
}

TEST(TokenizerBpeTest, IgnoreMergesUsesWholeWords) {
  json j = TinyTokenizer();
  j["model"]["vocab"]["xyz"] = 299;
  EXPECT_EQ(Build(j)->Encode("xyz", false), (std::vector<int32_t>{'x', 'y', 'z'}));
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(Build(j)->Encode("xyz", false), (std::vector<int32_t>{299}));
}

TEST(TokenizerBpeTest, AddedTokensAreSplitOutWithStrip) {
  auto tok = Build(TinyTokenizer());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->Encode("hello<|end|>hello", false), (std::vector<int32_t>{259, 300, 259}));
  // <tool> strips the whitespace on both sides.
  EXPECT_EQ(tok->Encode("hello  <tool>  hello", false), (std::vector<int32_t>{259, 301, 259}));
  EXPECT_TRUE(tok->is_special(300));
  EXPECT_FALSE(tok->is_special(301));
  EXPECT_FALSE(tok->is_special(259));
  const std::vector<int32_t> ids = {259, 300, 301};
  EXPECT_EQ(tok->Decode(ids, false), "hello<|end|><tool>");
  EXPECT_EQ(tok->Decode(ids, true), "hello<tool>");
}

TEST(TokenizerBpeTest, TemplatePostProcessorAndLlamaOverride) {
  json j = TinyTokenizer();
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<|end|>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens",
       {{"<|end|>", {{"id", "<|end|>"}, {"ids", {300}}, {"tokens", {"<|end|>"}}}}}}};
  EXPECT_EQ(Build(j)->Encode("hello", true), (std::vector<int32_t>{300, 259}));
  // transformers' Llama-family tokenizers rebuild the template from add_bos/add_eos_token.
  const json config = {{"tokenizer_class", "LlamaTokenizerFast"},
                       {"bos_token", "hello"},
                       {"eos_token", "<|end|>"},
                       {"add_bos_token", false},
                       {"add_eos_token", true}};
  auto tok = Build(j, config);
  EXPECT_EQ(tok->Encode("hello", true), (std::vector<int32_t>{259, 300}));
  EXPECT_EQ(tok->bos_id(), 259);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{300});
}

TEST(TokenizerBpeTest, OutOfVocabularyIdsDecodeToNothing) {
  auto tok = Build(TinyTokenizer());
  ASSERT_TRUE(tok);
  const std::vector<int32_t> ids = {-1, 259, 1 << 30, 280, 302, INT32_MAX, 264, INT32_MIN};
  EXPECT_EQ(tok->Decode(ids, false), "hello world");
  EXPECT_EQ(tok->id_to_token(-5), "");
  EXPECT_EQ(tok->id_to_token(100000), "");
  EXPECT_FALSE(tok->is_special(-1));
  IncrementalDetokenizer detok(*tok, false);
  std::string out;
  for (int32_t id : ids) out += detok.Push(id);
  EXPECT_EQ(out + detok.Flush(), "hello world");
}

TEST(TokenizerBpeTest, MalformedJsonGivesStatus) {
  EXPECT_EQ(BuildStatus("not json").code(), StatusCode::kDataLoss);
  EXPECT_EQ(BuildStatus("[1, 2]").code(), StatusCode::kDataLoss);
  EXPECT_EQ(BuildStatus("{}").code(), StatusCode::kDataLoss);
  EXPECT_EQ(BuildStatus(R"({"model": 5})").code(), StatusCode::kDataLoss);

  json j = TinyTokenizer();
  j["model"]["type"] = "WordPiece";
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kUnimplemented);

  j = TinyTokenizer();
  j["model"]["merges"].push_back("he nosuchtoken");
  Status s = BuildStatus(j.dump());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("nosuchtoken"), std::string::npos) << s.message();

  j = TinyTokenizer();
  j["model"]["merges"].push_back("nospace");
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kDataLoss);
  j["model"]["merges"] = {{"h", "e", "l"}};
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kDataLoss);
  j["model"]["merges"] = "h e";
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kDataLoss);

  j = TinyTokenizer();
  j["model"]["vocab"]["bad"] = -4;
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kDataLoss);
  j["model"]["vocab"]["bad"] = "x";
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kDataLoss);
  j["model"]["vocab"]["bad"] = 2000000000;
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kDataLoss);

  j = TinyTokenizer();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+|\\d";
  s = BuildStatus(j.dump());
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("\\w+|\\d"), std::string::npos) << s.message();

  j = TinyTokenizer();
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kUnimplemented);
  j = TinyTokenizer();
  j["normalizer"] = {{"type", "NFKC"}};
  s = BuildStatus(j.dump());
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("NFKC"), std::string::npos) << s.message();
  j = TinyTokenizer();
  j["decoder"] = nullptr;
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kUnimplemented);
  j = TinyTokenizer();
  j["added_tokens"] = {{{"content", "<x>"}}};
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kDataLoss);
  j = TinyTokenizer();
  j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", 3}};
  EXPECT_EQ(BuildStatus(j.dump()).code(), StatusCode::kDataLoss);
  EXPECT_EQ(Tokenizer::FromTokenizerJson(TinyTokenizer().dump(), "{oops").status().code(),
            StatusCode::kDataLoss);
}

TEST(TokenizerBpeTest, LoadReportsMissingFiles) {
  EXPECT_EQ(Tokenizer::Load("/nonexistent/model/dir").status().code(), StatusCode::kNotFound);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sy_tok_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  EXPECT_EQ(Tokenizer::Load(dir.string()).status().code(), StatusCode::kNotFound);
  std::ofstream(dir / "tokenizer.json") << "{\"model\": {}}";
  EXPECT_EQ(Tokenizer::Load(dir.string()).status().code(), StatusCode::kDataLoss);
  std::ofstream(dir / "tokenizer.json") << TinyTokenizer().dump();
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "<|end|>"})";
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [300, 259]})";
  auto tok = Tokenizer::Load(dir.string());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->eos_ids(), (std::vector<int32_t>{300, 259}));
  std::filesystem::remove_all(dir);
}

TEST(TokenizerBpeTest, StreamingNeverSplitsCharacters) {
  auto tok = Build(TinyTokenizer());
  ASSERT_TRUE(tok);
  // "é" is two byte tokens, "中" three: nothing comes out until a character is complete.
  IncrementalDetokenizer detok(*tok, false);
  EXPECT_EQ(detok.Push(0xC3), "");
  EXPECT_EQ(detok.Push(0xA9), "\xC3\xA9");
  EXPECT_EQ(detok.Push(0xE4), "");
  EXPECT_EQ(detok.Push(0xB8), "");
  EXPECT_EQ(detok.Push(0xAD), "\xE4\xB8\xAD");
  EXPECT_EQ(detok.Push(0xE4), "");
  EXPECT_EQ(detok.Flush(), "\xEF\xBF\xBD");

  // Stray lead bytes: held back while a character may still complete, then emitted as
  // U+FFFD; text before the held run comes out at once.
  IncrementalDetokenizer stray(*tok, false);
  const std::string kFffd = "\xEF\xBF\xBD";
  EXPECT_EQ(stray.Push('a'), "a");
  EXPECT_EQ(stray.Push(0xE4), "");
  EXPECT_EQ(stray.Push(0xE4), "");
  EXPECT_EQ(stray.Push(0xB8), "");
  EXPECT_EQ(stray.Push(0xAD), kFffd + "\xE4\xB8\xAD");
  // A model that emits only stray bytes is not held back forever: after 16 tokens the
  // run comes out.
  std::string out;
  for (int i = 0; i < 16; ++i) out += stray.Push(0xE4);
  EXPECT_EQ(out.size(), 16 * kFffd.size());

  // Random ids, including broken byte sequences: every delta is valid UTF-8 and the deltas add
  // up to Decode of all the ids.
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    std::vector<int32_t> ids;
    IncrementalDetokenizer stream(*tok, round % 2 == 0);
    std::string out;
    for (int i = 0; i < 40; ++i) {
      ids.push_back(static_cast<int32_t>(rng() % 320) - 5);
      const std::string delta = stream.Push(ids.back());
      EXPECT_TRUE(tokenizer::IsValidUtf8(delta));
      out += delta;
    }
    out += stream.Flush();
    EXPECT_EQ(out, tok->Decode(ids, round % 2 == 0));
  }
}

TEST(TokenizerBpeTest, ConcurrentEncodeIsConsistent) {
  auto tok = Build(TinyTokenizer());
  ASSERT_TRUE(tok);
  const std::string text = "hello world held hello<|end|> ünïcödé 123 hello world";
  const std::vector<int32_t> expected = tok->Encode(text, false);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        if (tok->Encode(text, false) != expected) ++mismatches;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(tok->Decode(expected, false), text);
}

}  // namespace
}  // namespace sy
