// Tokenizer: text <-> token ids, equal to Hugging Face's for the same model directory.
// Implementations: byte-level BPE from tokenizer.json, and sentencepiece from tokenizer.model.
// A Tokenizer is immutable after loading; all const calls are thread-safe. An
// IncrementalDetokenizer belongs to one stream (one thread at a time) and borrows its Tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sy {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads from a Hugging Face model directory: tokenizer.json (byte-level BPE) if present and
  // supported, else tokenizer.model (sentencepiece). bos/eos ids and add_bos come from
  // tokenizer_config.json, special_tokens_map.json, generation_config.json and config.json as
  // Hugging Face resolves them.
  static StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_dir);

  // Builds a byte-level BPE tokenizer from the text of a tokenizer.json and, optionally, of the
  // matching tokenizer_config.json (empty: none). Malformed input gives DataLoss or
  // InvalidArgument; a valid but unsupported feature gives Unimplemented naming it.
  static StatusOr<std::unique_ptr<Tokenizer>> FromTokenizerJson(
      std::string_view tokenizer_json, std::string_view tokenizer_config_json = {});

  // Special/added tokens written in the text are recognised as Hugging Face does by default.
  // add_special_tokens adds what the model's post-processor adds (e.g. bos).
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const = 0;
  // Ids outside the vocabulary decode to nothing.
  virtual std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const = 0;

  virtual int32_t vocab_size() const = 0;  // including added tokens
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::vector<int32_t> eos_ids() const = 0;  // every id that ends generation
  virtual bool is_special(int32_t id) const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual std::string id_to_token(int32_t id) const = 0;  // raw vocab string; "" if out of range
};

// Turns a stream of ids into text deltas for streaming. Never emits half a UTF-8 character and
// handles tokenizers whose per-token text depends on neighbours (sentencepiece's leading space,
// byte fallback). The concatenation of every Push() and the final Flush() equals
// tok.Decode(all ids), except after byte runs that are not valid UTF-8 (sentencepiece decodes
// byte-fallback runs as a whole; an incomplete character is held back for at most 16 tokens),
// where it stays valid UTF-8 but may differ. Borrows `tok`, which must outlive it; not
// thread-safe.
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tok, bool skip_special);

  // Adds one id; returns the text that is now final (possibly empty).
  std::string Push(int32_t id);
  // Returns whatever text is still held back (e.g. an incomplete character at the end).
  std::string Flush();

 private:
  std::string DecodeRange(size_t begin, size_t end) const;

  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // ids from prefix_offset on; earlier ones are dropped
  size_t read_offset_ = 0;    // ids_[0, read_offset_) produced text already emitted
  std::string prefix_text_;   // DecodeRange(0, read_offset_)
  std::string held_text_;     // emitted beyond prefix_text_ while a character was held back
};

}  // namespace sy
