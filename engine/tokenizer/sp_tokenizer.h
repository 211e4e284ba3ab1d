// SentencePieceTokenizer: a Tokenizer over a sentencepiece tokenizer.model with the semantics of
// transformers' LlamaTokenizerFast. libsentencepiece loads the model and segments text; on top
// come what transformers does differently: added tokens (and the model's control pieces) split
// out of the text first; each remaining chunk encoded with its own dummy prefix in legacy mode,
// only the chunk at the start of the text otherwise; Replace/ByteFallback/Fuse/Strip decoding
// of the pieces instead of sentencepiece's own decoding. Immutable after Create; thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "engine/tokenizer/added_vocab.h"
#include "engine/tokenizer/hf_config.h"
#include "engine/tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace sy::tokenizer {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // `model_path` is a tokenizer.model file: NotFound if unreadable, DataLoss if corrupt or
  // rejected by libsentencepiece, Unimplemented for a precompiled normalization charsmap or a
  // WORD or CHAR model.
  static StatusOr<std::unique_ptr<SentencePieceTokenizer>> Create(const std::string& model_path,
                                                                  const HfTokenizerConfig& config);
  // The same from the bytes of a tokenizer.model.
  static StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromModelBytes(
      std::string_view model_bytes, const HfTokenizerConfig& config);

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  bool is_special(int32_t id) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;

  ~SentencePieceTokenizer() override;

 private:
  explicit SentencePieceTokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp);
  Status Init(const HfTokenizerConfig& config);
  std::optional<int32_t> PieceId(std::string_view piece) const;
  // sentencepiece's EncodeAsIds.
  std::vector<int> SpEncode(std::string_view text) const;
  void EncodeChunk(std::string_view chunk, bool dummy_prefix, std::vector<int32_t>* ids) const;

  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  AddedVocabulary added_;
  int32_t piece_count_ = 0;
  int32_t vocab_size_ = 0;
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
  bool add_bos_ = true;
  bool add_eos_ = false;
  bool legacy_ = true;
  std::string unk_piece_;  // non-legacy: encoded in front of a chunk to suppress its prefix
  size_t unk_pieces_ = 0;  // how many pieces unk_piece_ encodes to
  bool clean_up_spaces_ = false;
};

}  // namespace sy::tokenizer
