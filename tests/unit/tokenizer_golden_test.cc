// Checks the native tokenizers against tests/golden/tokenizers/cases.json, which Hugging Face
// transformers computed (scripts/golden/golden_tokenizers.py): ids, ids with special tokens,
// decoded text, and streaming detokenization, for every case set (byte-level BPE, sentencepiece
// BPE and Unigram, and the sentencepiece BPE model loaded with legacy=false).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"
#include "tests/common/source_dir.h"

namespace sy {
namespace {

using nlohmann::json;

const std::string kRoot = sy::testing::SourceDir() + "/tests/golden/tokenizers";

const json& Cases() {
  static const json* cases = [] {
    std::ifstream in(kRoot + "/cases.json");
    std::stringstream ss;
    ss << in.rdbuf();
    return new json(json::parse(ss.str(), nullptr, /*allow_exceptions=*/false));
  }();
  return *cases;
}

std::string Streamed(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  IncrementalDetokenizer detok(tok, skip_special);
  std::string out;
  for (int32_t id : ids) {
    const std::string delta = detok.Push(id);
    EXPECT_TRUE(tokenizer::IsValidUtf8(delta)) << "after id " << id;
    out += delta;
  }
  const std::string rest = detok.Flush();
  EXPECT_TRUE(tokenizer::IsValidUtf8(rest));
  return out + rest;
}

// The directory a case set was recorded from. A set recorded with from_pretrained overrides
// ("load_kwargs", e.g. legacy=false) gets a temporary copy of its "dir" with the overrides merged
// into tokenizer_config.json, which is what from_pretrained does with them.
class CaseSetDir {
 public:
  CaseSetDir(const std::string& name, const json& entry) {
    if (!entry.contains("load_kwargs")) {
      path_ = kRoot + "/" + name;
      return;
    }
    temp_ = std::filesystem::temp_directory_path() /
            ("sy_tokenizer_golden_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(temp_);
    std::filesystem::copy(kRoot + "/" + entry["dir"].get<std::string>(), temp_);
    std::ifstream in(temp_ / "tokenizer_config.json");
    json config = json::parse(in);
    config.update(entry["load_kwargs"]);
    std::ofstream(temp_ / "tokenizer_config.json", std::ios::trunc) << config.dump();
    path_ = temp_.string();
  }
  ~CaseSetDir() {
    if (!temp_.empty()) std::filesystem::remove_all(temp_);
  }
  const std::string& path() const { return path_; }

 private:
  std::filesystem::path temp_;
  std::string path_;
};

class TokenizerGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerGoldenTest, MatchesTransformers) {
  const json& all = Cases();
  ASSERT_FALSE(all.is_discarded()) << "cannot read " << kRoot << "/cases.json";
  ASSERT_TRUE(all["tokenizers"].contains(GetParam()));
  const json& entry = all["tokenizers"][GetParam()];
  const CaseSetDir dir(GetParam(), entry);
  auto loaded = Tokenizer::Load(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const Tokenizer& tok = **loaded;
  EXPECT_EQ(tok.vocab_size(), entry["vocab_size"].get<int32_t>());
  ASSERT_GT(entry["cases"].size(), 0u);
  for (const json& c : entry["cases"]) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE("text: " + text);
    const std::vector<int32_t> ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.Encode(text, false), ids);
    EXPECT_EQ(tok.Encode(text, true), c["ids_with_special"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.Decode(ids, false), c["decoded"].get<std::string>());
    EXPECT_EQ(Streamed(tok, ids, false), tok.Decode(ids, false));
    const std::vector<int32_t> with_special = c["ids_with_special"].get<std::vector<int32_t>>();
    EXPECT_EQ(Streamed(tok, with_special, false), tok.Decode(with_special, false));
    EXPECT_EQ(Streamed(tok, with_special, true), tok.Decode(with_special, true));
  }
  // Strings the generator kept out of the cases because transformers and sentencepiece's own
  // encoder disagree; we follow transformers.
  if (entry.contains("dropped") && entry["dropped"].is_array()) {
    for (const json& d : entry["dropped"]) {
      EXPECT_EQ(tok.Encode(d["text"].get<std::string>(), false),
                d["hf_ids"].get<std::vector<int32_t>>())
          << d["text"];
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerGoldenTest,
                         ::testing::Values("bpe_qwen", "bpe_gpt2", "sp", "sp_unigram",
                                           "sp_legacy_false"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(TokenizerGoldenSpecialsTest, BosEosAndSpecialIds) {
  auto qwen = Tokenizer::Load(kRoot + "/bpe_qwen");
  ASSERT_TRUE(qwen.ok()) << qwen.status().ToString();
  EXPECT_FALSE((*qwen)->bos_id().has_value());
  const std::optional<int32_t> eot = (*qwen)->token_to_id("<|endoftext|>");
  ASSERT_TRUE(eot.has_value());
  EXPECT_EQ((*qwen)->eos_ids(), std::vector<int32_t>{*eot});
  EXPECT_TRUE((*qwen)->is_special(*eot));
  EXPECT_EQ((*qwen)->id_to_token(*eot), "<|endoftext|>");

  auto sp = Tokenizer::Load(kRoot + "/sp");
  ASSERT_TRUE(sp.ok()) << sp.status().ToString();
  EXPECT_EQ((*sp)->bos_id(), 1);
  EXPECT_EQ((*sp)->eos_ids(), std::vector<int32_t>{2});
  EXPECT_TRUE((*sp)->is_special(1));
  EXPECT_FALSE((*sp)->is_special(300));
  EXPECT_EQ((*sp)->Decode(std::vector<int32_t>{1, 5000, -3}, true), "");
}

}  // namespace
}  // namespace sy
