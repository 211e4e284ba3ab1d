#include "engine/tokenizer/sp_model.h"

#include <cstring>

namespace sy::tokenizer {
namespace {

enum WireType : uint32_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

// One field of a message: its number, wire type and payload (a varint or fixed value in
// `number_value`, the bytes of a length-delimited field in `bytes`).
struct Field {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  uint64_t number_value = 0;
  std::string_view bytes;
};

// Reads the fields of one serialized message in order. Every read is bounds-checked against the
// message, so corrupt input ends in DataLoss, never in a read past the buffer.
class WireReader {
 public:
  WireReader(std::string_view data, const char* message) : data_(data), message_(message) {}

  bool done() const { return pos_ >= data_.size(); }

  Status Next(Field* field) {
    uint64_t key;
    SY_RETURN_IF_ERROR(ReadVarint(&key));
    field->number = static_cast<uint32_t>(key >> 3);
    field->wire_type = static_cast<uint32_t>(key & 7);
    if (field->number == 0 || (key >> 3) > 0x1FFFFFFF) return Corrupt("invalid field number");
    switch (field->wire_type) {
      case kVarint:
        return ReadVarint(&field->number_value);
      case kFixed64:
        return ReadFixed(8, &field->number_value);
      case kFixed32:
        return ReadFixed(4, &field->number_value);
      case kLengthDelimited: {
        uint64_t length;
        SY_RETURN_IF_ERROR(ReadVarint(&length));
        if (length > data_.size() - pos_) return Corrupt("truncated length-delimited field");
        field->bytes = data_.substr(pos_, length);
        pos_ += length;
        return Status::Ok();
      }
      default:
        // Groups are deprecated and sentencepiece never writes them.
        return Corrupt("unsupported wire type " + std::to_string(field->wire_type));
    }
  }

  Status Corrupt(const std::string& what) const {
    return Status::DataLoss("sentencepiece model: " + std::string(message_) + ": " + what +
                            " at byte " + std::to_string(pos_));
  }

 private:
  Status ReadVarint(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return Corrupt("truncated varint");
      const uint8_t byte = static_cast<uint8_t>(data_[pos_++]);
      *value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return Status::Ok();
    }
    return Corrupt("varint longer than 10 bytes");
  }

  Status ReadFixed(size_t size, uint64_t* value) {
    if (size > data_.size() - pos_) return Corrupt("truncated fixed-size field");
    *value = 0;
    for (size_t i = 0; i < size; ++i) {
      *value |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    }
    pos_ += size;
    return Status::Ok();
  }

  std::string_view data_;
  const char* message_;
  size_t pos_ = 0;
};

Status ExpectWireType(const WireReader& reader, const Field& field, WireType type) {
  if (field.wire_type == type) return Status::Ok();
  return reader.Corrupt("field " + std::to_string(field.number) + " has wire type " +
                        std::to_string(field.wire_type) + ", expected " + std::to_string(type));
}

Status ReadBool(const WireReader& reader, const Field& field, bool* out) {
  SY_RETURN_IF_ERROR(ExpectWireType(reader, field, kVarint));
  *out = field.number_value != 0;
  return Status::Ok();
}

// int32 fields are varints of the sign-extended 64-bit value; protobuf keeps the low 32 bits.
Status ReadInt32(const WireReader& reader, const Field& field, int32_t* out) {
  SY_RETURN_IF_ERROR(ExpectWireType(reader, field, kVarint));
  *out = static_cast<int32_t>(static_cast<uint32_t>(field.number_value));
  return Status::Ok();
}

Status ReadString(const WireReader& reader, const Field& field, std::string* out) {
  SY_RETURN_IF_ERROR(ExpectWireType(reader, field, kLengthDelimited));
  out->assign(field.bytes);
  return Status::Ok();
}

Status ReadEnum(const WireReader& reader, const Field& field, int32_t lo, int32_t hi,
                int32_t* out) {
  int32_t value;
  SY_RETURN_IF_ERROR(ReadInt32(reader, field, &value));
  if (value < lo || value > hi) {
    return reader.Corrupt("field " + std::to_string(field.number) + " has enum value " +
                          std::to_string(value) + " out of range");
  }
  *out = value;
  return Status::Ok();
}

Status ParsePiece(std::string_view bytes, SpPiece* piece) {
  WireReader reader(bytes, "SentencePiece");
  Field field;
  while (!reader.done()) {
    SY_RETURN_IF_ERROR(reader.Next(&field));
    if (field.number == 1) {
      SY_RETURN_IF_ERROR(ReadString(reader, field, &piece->piece));
    } else if (field.number == 2) {
      SY_RETURN_IF_ERROR(ExpectWireType(reader, field, kFixed32));
      const uint32_t bits = static_cast<uint32_t>(field.number_value);
      std::memcpy(&piece->score, &bits, sizeof(bits));
    } else if (field.number == 3) {
      int32_t type;
      SY_RETURN_IF_ERROR(ReadEnum(reader, field, 1, 6, &type));
      piece->type = static_cast<SpPieceType>(type);
    }
  }
  return Status::Ok();
}

Status ParseTrainerSpec(std::string_view bytes, SpModel* model) {
  WireReader reader(bytes, "TrainerSpec");
  Field field;
  while (!reader.done()) {
    SY_RETURN_IF_ERROR(reader.Next(&field));
    switch (field.number) {
      case 3: {
        int32_t type;
        SY_RETURN_IF_ERROR(ReadEnum(reader, field, 1, 4, &type));
        model->model_type = static_cast<SpModelType>(type);
        break;
      }
      case 24:
        SY_RETURN_IF_ERROR(ReadBool(reader, field, &model->treat_whitespace_as_suffix));
        break;
      case 25:
        SY_RETURN_IF_ERROR(ReadBool(reader, field, &model->split_digits));
        break;
      case 35:
        SY_RETURN_IF_ERROR(ReadBool(reader, field, &model->byte_fallback));
        break;
      case 40:
        SY_RETURN_IF_ERROR(ReadInt32(reader, field, &model->unk_id));
        break;
      case 41:
        SY_RETURN_IF_ERROR(ReadInt32(reader, field, &model->bos_id));
        break;
      case 42:
        SY_RETURN_IF_ERROR(ReadInt32(reader, field, &model->eos_id));
        break;
      case 43:
        SY_RETURN_IF_ERROR(ReadInt32(reader, field, &model->pad_id));
        break;
      default:
        break;  // training-only settings
    }
  }
  return Status::Ok();
}

Status ParseNormalizerSpec(std::string_view bytes, SpModel* model) {
  WireReader reader(bytes, "NormalizerSpec");
  Field field;
  while (!reader.done()) {
    SY_RETURN_IF_ERROR(reader.Next(&field));
    switch (field.number) {
      case 1:
        SY_RETURN_IF_ERROR(ReadString(reader, field, &model->normalizer_name));
        break;
      case 2:
        SY_RETURN_IF_ERROR(ReadString(reader, field, &model->precompiled_charsmap));
        break;
      case 3:
        SY_RETURN_IF_ERROR(ReadBool(reader, field, &model->add_dummy_prefix));
        break;
      case 4:
        SY_RETURN_IF_ERROR(ReadBool(reader, field, &model->remove_extra_whitespaces));
        break;
      case 5:
        SY_RETURN_IF_ERROR(ReadBool(reader, field, &model->escape_whitespaces));
        break;
      default:
        break;
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<SpModel> ParseSpModel(std::string_view bytes) {
  SpModel model;
  WireReader reader(bytes, "ModelProto");
  Field field;
  while (!reader.done()) {
    SY_RETURN_IF_ERROR(reader.Next(&field));
    if (field.number < 1 || field.number > 3) continue;  // self_test_data, denormalizer_spec, ...
    SY_RETURN_IF_ERROR(ExpectWireType(reader, field, kLengthDelimited));
    if (field.number == 1) {
      SY_RETURN_IF_ERROR(ParsePiece(field.bytes, &model.pieces.emplace_back()));
    } else if (field.number == 2) {
      // A repeated occurrence of a singular message merges into the earlier one, as in protobuf.
      SY_RETURN_IF_ERROR(ParseTrainerSpec(field.bytes, &model));
    } else {
      SY_RETURN_IF_ERROR(ParseNormalizerSpec(field.bytes, &model));
    }
  }
  return model;
}

}  // namespace sy::tokenizer
