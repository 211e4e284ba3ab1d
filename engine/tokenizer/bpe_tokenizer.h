// BpeTokenizer: a Tokenizer for Hugging Face tokenizer.json files with a byte-level BPE model
// (GPT-2, Qwen2/3, Llama-3, DeepSeek-V3 style). Owns its model, added tokens and pipeline;
// immutable after Create, so all calls are thread-safe.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>

#include "engine/tokenizer/added_vocab.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/hf_config.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace sy::tokenizer {

class BpeTokenizer final : public Tokenizer {
 public:
  static StatusOr<std::unique_ptr<BpeTokenizer>> Create(std::string_view tokenizer_json,
                                                        const HfTokenizerConfig& config);

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  bool is_special(int32_t id) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;

 private:
  BpeTokenizer() = default;
  Status Build(const nlohmann::json& j, const HfTokenizerConfig& config);
  Status ParseNormalizer(const nlohmann::json& j);
  Status ParseDecoder(const nlohmann::json& j);
  Status ParsePostProcessor(const nlohmann::json& j);
  Status ParseAddedTokens(const nlohmann::json& j);
  void ResolveSpecialTokens(const HfTokenizerConfig& config);
  void EncodeText(std::string_view text, std::vector<int32_t>* ids) const;

  std::unique_ptr<BpeModel> model_;
  AddedVocabulary added_;
  bool nfc_ = false;
  PreTokenizer pre_;
  std::vector<int32_t> prefix_ids_;  // added by add_special_tokens
  std::vector<int32_t> suffix_ids_;
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
  bool clean_up_spaces_ = false;
  int32_t vocab_size_ = 0;
};

}  // namespace sy::tokenizer
