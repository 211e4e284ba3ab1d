#include "engine/tokenizer/sp_model_scan.h"

#include <cstdint>

namespace sy::tokenizer {
namespace {

bool ReadVarint(std::string_view data, size_t* pos, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64 && *pos < data.size(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(data[(*pos)++]);
    *value |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

// Calls on_varint(field number, value) and on_bytes(field number, payload) for the varint and
// length-delimited fields of `message` and skips the fixed-size ones; false if `message` is not
// valid wire format or a callback returns false.
template <typename OnVarint, typename OnBytes>
bool ForEachField(std::string_view message, const OnVarint& on_varint, const OnBytes& on_bytes) {
  size_t pos = 0;
  while (pos < message.size()) {
    uint64_t key, value;
    if (!ReadVarint(message, &pos, &key)) return false;
    switch (key & 7) {
      case 0:
        if (!ReadVarint(message, &pos, &value)) return false;
        on_varint(key >> 3, value);
        break;
      case 1:  // fixed64
        if (message.size() - pos < 8) return false;
        pos += 8;
        break;
      case 5:  // fixed32
        if (message.size() - pos < 4) return false;
        pos += 4;
        break;
      case 2:
        if (!ReadVarint(message, &pos, &value) || value > message.size() - pos) return false;
        if (!on_bytes(key >> 3, message.substr(pos, value))) return false;
        pos += value;
        break;
      default:  // groups, which sentencepiece never writes
        return false;
    }
  }
  return true;
}

}  // namespace

std::optional<SpModelScan> ScanSpModel(std::string_view model_bytes) {
  SpModelScan scan;
  const auto ignore_varint = [](uint64_t, uint64_t) {};
  const auto ignore_bytes = [](uint64_t, std::string_view) { return true; };
  const bool valid =
      ForEachField(model_bytes, ignore_varint, [&](uint64_t field, std::string_view message) {
        if (field == 2) {  // ModelProto.trainer_spec
          return ForEachField(
              message,
              [&](uint64_t f, uint64_t value) {
                if (f == 3) scan.model_type = value;  // TrainerSpec.model_type
              },
              ignore_bytes);
        }
        if (field == 3) {  // ModelProto.normalizer_spec
          return ForEachField(message, ignore_varint, [&](uint64_t f, std::string_view bytes) {
            if (f == 2 && !bytes.empty()) scan.has_precompiled_charsmap = true;
            return true;
          });
        }
        return true;
      });
  if (!valid) return std::nullopt;
  return scan;
}

}  // namespace sy::tokenizer
