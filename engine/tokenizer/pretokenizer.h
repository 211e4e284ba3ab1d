// PreTokenizer: splits normalised text into the pieces BPE encodes one by one, as the
// pre_tokenizer of a Hugging Face tokenizer.json does. Known split regexes (GPT-2, Qwen2/3,
// Llama-3/cl100k, GPT-4o/o200k, DeepSeek-V3) are recognised by their text and matched by hand
// with the same leftmost-first, backtracking semantics. Immutable after FromJson; thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sy::tokenizer {

enum class SplitPattern {
  kGpt2,              // 's|'t|...| ?\p{L}+| ?\p{N}+|...
  kQwen2,             // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|...
  kLlama3,            // as Qwen2 with \p{N}{1,3} (also cl100k)
  kGpt4o,             // o200k: case-aware letter runs
  kDeepSeekV3Digits,  // \p{N}{1,3}
  kDeepSeekV3Cjk,     // [一-龥぀-ゟ゠-ヿ]+
  kDeepSeekV3Words,   // the third DeepSeek-V3 split
  kDigits,            // Digits pre-tokenizer: runs of \p{N}
  kIndividualDigits,  // Digits pre-tokenizer with individual_digits
  kClass,             // (\s?)ATOM(+): one character class, see SplitRule
  kTrailingSpace,     // \s+$
};

// A set of code points: ranges plus general-category flags (CharFlag bits).
struct CharClass {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive, sorted
  uint16_t flags = 0;

  bool Contains(uint32_t cp, uint16_t cp_flags) const;
};

// One Split regex in the form the matcher runs.
struct SplitRule {
  SplitRule(SplitPattern p = SplitPattern::kGpt2) : pattern(p) {}  // NOLINT: implicit by design

  SplitPattern pattern;
  // For kClass: the class, whether one whitespace character may precede it (\s?), and whether
  // it repeats (+) or matches one character.
  std::shared_ptr<const CharClass> char_class;
  bool optional_space = false;
  bool repeat = false;
};

// The rule a tokenizer.json regex denotes, or Unimplemented naming the regex.
StatusOr<SplitRule> RuleFromRegex(std::string_view regex);

// Splits `text` into matches of `rule` and the gaps between them, each its own piece
// (Hugging Face's "Isolated" behaviour); appends the non-empty pieces to *out.
void SplitIsolated(const SplitRule& rule, std::string_view text,
                   std::vector<std::string_view>* out);

class PreTokenizer {
 public:
  // From the "pre_tokenizer" value of a tokenizer.json (null: no splitting).
  static StatusOr<PreTokenizer> FromJson(const nlohmann::json& j);

  // Appends the pieces of `text` to *out. Pieces point into `text` or into strings this call
  // adds to *arena (which must outlive them).
  void Run(std::string_view text, std::deque<std::string>* arena,
           std::vector<std::string_view>* out) const;

  // Whether a ByteLevel pre-tokenizer maps piece bytes to the GPT-2 byte alphabet.
  bool byte_level() const { return byte_level_; }

 private:
  struct Step {
    bool prefix_space = false;  // ByteLevel add_prefix_space: prepend ' ' unless present
    SplitRule rule;
  };

  Status AddJson(const nlohmann::json& j, bool last);

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace sy::tokenizer
