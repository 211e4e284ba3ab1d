// A toy tokenizer for stop-string and detokenization tests: each id decodes to a fixed byte
// string (ids below), so expectations can be worked out by hand.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace sy {

// Each id decodes to a fixed byte string; a decoded text ending in an incomplete UTF-8
// character ends in U+FFFD instead, as real tokenizers decode partial byte sequences.
class ToyTokenizer final : public Tokenizer {
 public:
  explicit ToyTokenizer(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}

  std::vector<int32_t> Encode(std::string_view, bool) const override { return {}; }
  std::string Decode(std::span<const int32_t> ids, bool) const override {
    std::string s;
    for (int32_t id : ids) s += pieces_[id];
    // Find where the last character starts and whether it is complete.
    size_t start = s.size();
    while (start > 0 && (static_cast<unsigned char>(s[start - 1]) & 0xC0) == 0x80) --start;
    if (start == 0) return s;
    const unsigned char lead = static_cast<unsigned char>(s[start - 1]);
    const size_t len = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (s.size() - (start - 1) < len) s.replace(start - 1, std::string::npos, "\xEF\xBF\xBD");
    return s;
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  std::optional<int32_t> bos_id() const override { return std::nullopt; }
  std::vector<int32_t> eos_ids() const override { return {0}; }
  bool is_special(int32_t id) const override { return id == 0; }
  std::optional<int32_t> token_to_id(std::string_view) const override { return std::nullopt; }
  std::string id_to_token(int32_t id) const override { return pieces_[id]; }

 private:
  std::vector<std::string> pieces_;
};

// id 0 is EOS ("</s>").
inline const ToyTokenizer& Toy() {
  static const ToyTokenizer tok({"</s>", "Hel", "lo", " wo", "r", "ld", "!", "xab", "cab", "cabd",
                                 "caf", "\xC3", "\xA9", "x", "STOP"});
  return tok;
}

enum : int32_t {
  kEos = 0,
  kHel,
  kLo,
  kWo,
  kR,
  kLd,
  kBang,
  kXab,
  kCab,
  kCabd,
  kCaf,
  kE1,
  kE2,
  kX,
  kStopTok
};

}  // namespace sy
