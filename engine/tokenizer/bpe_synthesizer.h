// Synthesises a working byte-level BPE tokenizer (tokenizer.json and tokenizer_config.json
// contents) of any vocabulary size, for random-weight checkpoints written by
// `switchyard make-model`. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

namespace sy {

// 256 byte tokens + <|endoftext|>, <|im_start|>, <|im_end|>.
inline constexpr int32_t kMinSynthesizedVocabSize = 259;

// A Qwen2-style tokenizer.json (NFC, Qwen2 split regex + ByteLevel) with exactly `vocab_size`
// tokens: the 256 byte tokens, merges learned by a small deterministic BPE trainer from a built-in
// multilingual text, then seeded extra merges of existing tokens until the vocabulary is full,
// and the three special tokens as the last ids. The same arguments give the same JSON.
// Requires kMinSynthesizedVocabSize <= vocab_size <= 16M (checked).
nlohmann::json SynthesizeByteLevelBpe(int32_t vocab_size, uint64_t seed);

// The tokenizer_config.json that goes with a SynthesizeByteLevelBpe result: its special tokens
// as added_tokens_decoder, eos and pad <|endoftext|>, no bos, a ChatML chat template.
// `tokenizer_json` must come from SynthesizeByteLevelBpe (checked).
nlohmann::json SynthesizeTokenizerConfig(const nlohmann::json& tokenizer_json);

}  // namespace sy
