// Fuzzes loading arbitrary tokenizer.model bytes through libsentencepiece and the checks in front
// of it (sp_model_scan.h): loading must give a Status, never crash or read out of bounds; a
// model it accepts must encode to in-vocabulary ids, decode to valid UTF-8 (also for arbitrary
// ids), and stream the same text that Decode gives. (libsentencepiece itself is not instrumented.)
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/check.h"
#include "engine/tokenizer/sp_tokenizer.h"
#include "engine/tokenizer/unicode.h"
#include "tests/fuzz/stream_check.h"

namespace {

constexpr std::string_view kSample =
    "Hello  world! It's 2025: caf\xC3\xA9, \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80 <s>\t\n "
    "\xFF\xC3 end ";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto loaded = sy::tokenizer::SentencePieceTokenizer::FromModelBytes(
      bytes, sy::tokenizer::HfTokenizerConfig{});
  if (!loaded.ok()) return 0;
  const sy::Tokenizer& tok = *loaded.value();
  for (bool special : {false, true}) {
    const std::vector<int32_t> ids = tok.Encode(kSample, special);
    for (int32_t id : ids) SY_CHECK(id >= 0 && id < tok.vocab_size());
    SY_CHECK(sy::tokenizer::IsValidUtf8(tok.Decode(ids, false)));
    sy::fuzz::CheckStream(tok, ids, special, false);
  }
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size && ids.size() < 64; i += 2) {
    ids.push_back(static_cast<int32_t>(data[i] | (data[i + 1] << 8)) - 8);
  }
  sy::fuzz::CheckStream(tok, ids, false, false);
  return 0;
}
