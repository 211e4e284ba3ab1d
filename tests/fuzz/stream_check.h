// The streaming check both tokenizer fuzz targets run: an IncrementalDetokenizer fed `ids` one at
// a time emits only valid UTF-8, and its deltas add up to tok.Decode(ids).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"

namespace sy::fuzz {

// With `exact_for_invalid_bytes` false the sum is only checked when the decode holds no U+FFFD:
// sentencepiece decodes a byte-fallback run that is not valid UTF-8 to U+FFFD as a whole, which
// can change text already streamed (the documented exception of IncrementalDetokenizer).
inline void CheckStream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip,
                        bool exact_for_invalid_bytes) {
  IncrementalDetokenizer detok(tok, skip);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string delta = detok.Push(id);
    SY_CHECK(tokenizer::IsValidUtf8(delta));
    streamed += delta;
  }
  streamed += detok.Flush();
  const std::string decoded = tok.Decode(ids, skip);
  if (exact_for_invalid_bytes || decoded.find("\xEF\xBF\xBD") == std::string::npos) {
    SY_CHECK(streamed == decoded);
  }
}

}  // namespace sy::fuzz
