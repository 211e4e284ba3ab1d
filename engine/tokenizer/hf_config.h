// HfTokenizerConfig: what the Hugging Face side files of a model directory say about special
// tokens (tokenizer_config.json, special_tokens_map.json, generation_config.json, config.json),
// resolved the way transformers' AutoTokenizer resolves them. A plain value; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sy::tokenizer {

// One entry of tokenizer_config.json's "added_tokens_decoder".
struct AddedTokenDecl {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

struct HfTokenizerConfig {
  std::string tokenizer_class;  // "" if not given
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> sep_token;
  std::optional<std::string> pad_token;
  std::optional<std::string> cls_token;
  std::optional<std::string> mask_token;
  std::vector<std::string> additional_special_tokens;
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::optional<bool> legacy;
  bool clean_up_tokenization_spaces = false;
  std::vector<AddedTokenDecl> added_tokens_decoder;
  // eos_token_id of generation_config.json then config.json (an int or a list), in order.
  std::vector<int32_t> extra_eos_ids;

  // Whether transformers rebuilds the post-processor from add_bos_token/add_eos_token (the
  // Llama-family fast tokenizers do), and the defaults it then uses.
  bool OverridesPostProcessor() const;
  bool AddBos() const;
  bool AddEos() const;
  // Every special token the config names, in transformers' order (bos, eos, unk, sep, pad, cls,
  // mask, additional); unset ones are nullopt.
  std::vector<std::optional<std::string>> NamedSpecialTokens() const;
};

// Parses the text of a tokenizer_config.json (empty: defaults).
StatusOr<HfTokenizerConfig> ParseTokenizerConfig(std::string_view text);

// Reads and resolves every side file of a model directory; missing files are fine.
StatusOr<HfTokenizerConfig> ReadHfTokenizerConfig(const std::string& model_dir);

// transformers' clean_up_tokenization: removes spaces before punctuation and contractions.
std::string CleanUpTokenization(std::string text);

}  // namespace sy::tokenizer
