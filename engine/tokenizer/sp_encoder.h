// SpEncoder: sentencepiece's encoder reimplemented natively over an SpModel, so that Encode gives
// exactly SentencePieceProcessor::EncodeAsIds' ids: the normalizer (identity rules, whitespace
// escaping to U+2581, dummy prefix, extra-whitespace removal), BPE or Unigram segmentation with
// user-defined pieces kept whole, then byte fallback or merged <unk>s for unknown pieces.
// Immutable after Create; all calls are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "engine/core/status.h"
#include "engine/tokenizer/sp_model.h"

namespace sy::tokenizer {

class SpEncoder {
 public:
  // Checks the pieces as sentencepiece does on load (non-empty, unique, exactly one <unk>, byte
  // pieces iff byte_fallback, all 256 of them), and that they are valid UTF-8; gives DataLoss if
  // they are not.
  // Normalization rules other than identity (a non-empty precompiled_charsmap, e.g. nmt_nfkc)
  // and the WORD/CHAR model types give Unimplemented.
  static StatusOr<std::unique_ptr<SpEncoder>> Create(SpModel model);

  std::vector<int32_t> Encode(std::string_view text) const;
  // The text segmentation runs on: spaces escaped, dummy prefix added, invalid UTF-8 -> U+FFFD.
  std::string Normalize(std::string_view text) const;

  const SpModel& model() const { return model_; }
  int32_t size() const { return static_cast<int32_t>(model_.pieces.size()); }
  int32_t unk_id() const { return unk_id_; }
  // The id of any piece, control/unknown/byte pieces included; nullopt if there is none.
  std::optional<int32_t> PieceToId(std::string_view piece) const;
  // Requires 0 <= id < size().
  const std::string& IdToPiece(int32_t id) const { return model_.pieces[id].piece; }

 private:
  // A piece of the normalized text and its id (unk_id_ if it is no piece of the vocabulary).
  using Segment = std::pair<std::string_view, int32_t>;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  using PieceMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  explicit SpEncoder(SpModel model) : model_(std::move(model)) {}
  Status Init();
  // sentencepiece's PieceToId: reserved pieces first, then the others, else unk_id_.
  int32_t Lookup(std::string_view piece) const;
  // Byte length of the longest user-defined piece at the start of `text` (*user_defined set),
  // else of its first UTF-8 character as sentencepiece measures it.
  size_t PrefixMatch(std::string_view text, bool* user_defined) const;
  std::vector<Segment> SegmentBpe(std::string_view normalized) const;
  std::vector<Segment> SegmentUnigram(std::string_view normalized) const;

  SpModel model_;
  PieceMap normal_;    // NORMAL, USER_DEFINED and UNUSED pieces: what segmentation may produce
  PieceMap reserved_;  // UNKNOWN, CONTROL and BYTE pieces
  std::unordered_set<std::string_view> user_defined_;  // views into model_.pieces
  size_t max_user_defined_len_ = 0;
  size_t max_piece_len_ = 0;
  int32_t unk_id_ = -1;
  std::array<int32_t, 256> byte_ids_{};
  float min_score_ = 0.0f;  // over NORMAL pieces (Unigram's unknown penalty is relative to it)
  float max_score_ = 0.0f;  // over NORMAL pieces (Unigram's bonus for user-defined pieces)
};

}  // namespace sy::tokenizer
