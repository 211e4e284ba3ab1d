#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "engine/core/file_util.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/hf_config.h"
#include "engine/tokenizer/sp_tokenizer.h"
#include "engine/tokenizer/unicode.h"

namespace sy {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Length of the longest common prefix of a and b that ends on a UTF-8 character boundary of b.
size_t CommonPrefixAtCharBoundary(std::string_view a, std::string_view b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  while (n > 0 && n < b.size() && (static_cast<uint8_t>(b[n]) & 0xC0) == 0x80) --n;
  return n;
}

}  // namespace

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) {
    return Status::NotFound("model directory " + model_dir + " does not exist");
  }
  SY_ASSIGN_OR_RETURN(tokenizer::HfTokenizerConfig config,
                      tokenizer::ReadHfTokenizerConfig(model_dir));
  const fs::path json_path = fs::path(model_dir) / "tokenizer.json";
  const fs::path sp_path = fs::path(model_dir) / "tokenizer.model";
  const bool has_sp = fs::exists(sp_path, ec);
  if (fs::exists(json_path, ec)) {
    SY_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(json_path.string()));
    StatusOr<std::unique_ptr<tokenizer::BpeTokenizer>> bpe =
        tokenizer::BpeTokenizer::Create(text, config);
    if (bpe.ok()) return std::unique_ptr<Tokenizer>(std::move(bpe).value());
    // e.g. a Llama/Mixtral tokenizer.json (Metaspace + byte fallback) beside its tokenizer.model.
    if (bpe.status().code() != StatusCode::kUnimplemented || !has_sp) {
      return Status(bpe.status().code(), json_path.string() + ": " + bpe.status().message());
    }
  }
  if (has_sp) {
    SY_ASSIGN_OR_RETURN(auto sp,
                        tokenizer::SentencePieceTokenizer::Create(sp_path.string(), config));
    return std::unique_ptr<Tokenizer>(std::move(sp));
  }
  return Status::NotFound(model_dir + " has neither tokenizer.json nor tokenizer.model");
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromTokenizerJson(
    std::string_view tokenizer_json, std::string_view tokenizer_config_json) {
  SY_ASSIGN_OR_RETURN(const tokenizer::HfTokenizerConfig config,
                      tokenizer::ParseTokenizerConfig(tokenizer_config_json));
  SY_ASSIGN_OR_RETURN(auto bpe, tokenizer::BpeTokenizer::Create(tokenizer_json, config));
  return std::unique_ptr<Tokenizer>(std::move(bpe));
}

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special) {}

std::string IncrementalDetokenizer::DecodeRange(size_t begin, size_t end) const {
  return tok_.Decode(std::span<const int32_t>(ids_).subspan(begin, end - begin), skip_special_);
}

std::string IncrementalDetokenizer::Push(int32_t id) {
  ids_.push_back(id);
  std::string text = DecodeRange(0, ids_.size());
  const std::string emitted = prefix_text_ + held_text_;
  // An incomplete character at the end decodes to U+FFFD (sentencepiece: one per byte) and
  // may still change; the text before that run of U+FFFD is final, so emit it and hold back
  // only the run. A window that stays incomplete for many tokens (a model emitting stray byte
  // tokens) is let go, so the stream moves on and decoding stays cheap.
  constexpr size_t kMaxHeldTokens = 16;
  if (EndsWith(text, kReplacementChar) && ids_.size() - read_offset_ < kMaxHeldTokens) {
    while (EndsWith(text, kReplacementChar)) text.resize(text.size() - kReplacementChar.size());
    if (text.size() <= emitted.size() ||
        CommonPrefixAtCharBoundary(emitted, text) < emitted.size()) {
      return {};
    }
    std::string delta = text.substr(emitted.size());
    held_text_ += delta;
    return delta;
  }
  if (text.size() <= emitted.size()) return {};
  // Cut at a character boundary of `text`: normally all of `emitted`, less when a byte run
  // decoded differently once complete (the stream then stays valid UTF-8 but may differ).
  std::string delta = text.substr(CommonPrefixAtCharBoundary(emitted, text));
  // The decoded window restarts at the last emitted boundary, which keeps the context that
  // sentencepiece's leading-space rule needs.
  ids_.erase(ids_.begin(), ids_.begin() + read_offset_);
  read_offset_ = ids_.size();
  prefix_text_ = DecodeRange(0, read_offset_);
  held_text_.clear();
  return delta;
}

std::string IncrementalDetokenizer::Flush() {
  const std::string text = DecodeRange(0, ids_.size());
  const std::string emitted = prefix_text_ + held_text_;
  std::string delta = text.size() > emitted.size()
                          ? text.substr(CommonPrefixAtCharBoundary(emitted, text))
                          : std::string();
  ids_.clear();
  read_offset_ = 0;
  prefix_text_.clear();
  held_text_.clear();
  return delta;
}

}  // namespace sy
