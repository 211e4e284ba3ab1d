// SpModel: the parts of a sentencepiece tokenizer.model (a serialized ModelProto, see
// sentencepiece_model.proto) that encoding and decoding need, read by a small protobuf wire-format
// parser of our own instead of libprotobuf. A plain value; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sy::tokenizer {

// ModelProto.SentencePiece.Type.
enum class SpPieceType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// TrainerSpec.ModelType.
enum class SpModelType : int32_t {
  kUnigram = 1,
  kBpe = 2,
  kWord = 3,
  kChar = 4,
};

struct SpPiece {
  std::string piece;
  float score = 0.0f;
  SpPieceType type = SpPieceType::kNormal;
};

// Field defaults are the proto2 defaults of sentencepiece_model.proto.
struct SpModel {
  std::vector<SpPiece> pieces;  // ModelProto.pieces (1); the index is the id
  // TrainerSpec (2).
  SpModelType model_type = SpModelType::kUnigram;  // 3
  bool treat_whitespace_as_suffix = false;         // 24
  bool split_digits = false;                       // 25 (training only: the encoder ignores it)
  bool byte_fallback = false;                      // 35
  int32_t unk_id = 0;                              // 40
  int32_t bos_id = 1;                              // 41
  int32_t eos_id = 2;                              // 42
  int32_t pad_id = -1;                             // 43
  // NormalizerSpec (3).
  std::string normalizer_name;           // 1
  std::string precompiled_charsmap;      // 2
  bool add_dummy_prefix = true;          // 3
  bool remove_extra_whitespaces = true;  // 4
  bool escape_whitespaces = true;        // 5
};

// Parses a serialized ModelProto. Unknown fields (and fields of messages we do not read, such as
// self_test_data) are skipped. Truncated or malformed wire data, a known field with the wrong wire
// type, or an out-of-range enum value give DataLoss. Only the wire format is checked here; what
// the pieces mean is checked by SpEncoder::Create.
StatusOr<SpModel> ParseSpModel(std::string_view bytes);

}  // namespace sy::tokenizer
