// AddedVocabulary: the added/special tokens of a tokenizer and how they are found in raw text
// (leftmost-longest, with Hugging Face's lstrip/rstrip/single_word rules). Built once, then
// immutable; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/hf_config.h"

namespace sy::tokenizer {

// A stretch of text: either an added token (id >= 0) or plain text to tokenize (id == -1).
struct TextSegment {
  int32_t id;
  size_t begin;
  size_t end;
};

class AddedVocabulary {
 public:
  // Adds a token; a later token with the same content or id replaces the earlier one.
  void Add(const AddedTokenDecl& token);
  // Builds the matchers; `normalize` maps token content to its form in normalised text.
  void Build(std::string (*normalize)(std::string_view));

  // Splits `text` at the tokens whose `normalized` flag equals `normalized`, appending the
  // segments (in order, covering all of text, none empty) to *out.
  void Split(std::string_view text, bool normalized, std::vector<TextSegment>* out) const;

  std::optional<int32_t> Find(std::string_view content) const;
  const AddedTokenDecl* ById(int32_t id) const;
  const std::vector<AddedTokenDecl>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

 private:
  // A byte trie over the contents of one group of tokens.
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
      int32_t token = -1;                                 // index into tokens_
    };
    std::vector<Node> nodes;
    bool first_byte[256] = {};

    void Insert(std::string_view key, int32_t token);
    // The longest token starting at text[pos]: (token index, length), or token index -1.
    std::pair<int32_t, size_t> LongestAt(std::string_view text, size_t pos) const;
  };

  std::vector<AddedTokenDecl> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  Trie raw_trie_;
  Trie normalized_trie_;
};

}  // namespace sy::tokenizer
