// ScanSpModel: the two facts about a tokenizer.model the engine checks before libsentencepiece
// loads it (a precompiled charsmap, which the library walks unchecked; the model type).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sy::tokenizer {

// sentencepiece's TrainerSpec.ModelType values.
enum class SpModelType { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };

struct SpModelScan {
  // A non-empty NormalizerSpec.precompiled_charsmap in any occurrence of the spec.
  bool has_precompiled_charsmap = false;
  // TrainerSpec.model_type as protobuf merges it (the last occurrence wins); any varint value.
  uint64_t model_type = static_cast<uint64_t>(SpModelType::kUnigram);
};

// Reads only those fields from the protobuf wire format of a serialized ModelProto;
// libsentencepiece parses the model. nullopt if the bytes are not valid wire format.
std::optional<SpModelScan> ScanSpModel(std::string_view model_bytes);

}  // namespace sy::tokenizer
