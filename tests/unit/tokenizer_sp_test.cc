// The native sentencepiece reader and encoder on hand-built tokenizer.model bytes: the protobuf
// wire reader (every wire type, unknown fields, truncated and corrupt input), the load-time checks,
// the normalizer, and BPE / Unigram segmentation whose expected pieces are worked out by hand in
// the comments. (tokenizer_golden_test checks the real fixture against transformers.)
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/tokenizer/sp_encoder.h"
#include "engine/tokenizer/sp_model.h"
#include "engine/tokenizer/sp_tokenizer.h"

namespace sy::tokenizer {
namespace {

// --- a minimal protobuf writer for building model files by hand ---

std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
std::string Key(uint32_t field, uint32_t wire_type) { return Varint((field << 3) | wire_type); }
std::string VarintField(uint32_t field, uint64_t v) { return Key(field, 0) + Varint(v); }
std::string BytesField(uint32_t field, const std::string& bytes) {
  return Key(field, 2) + Varint(bytes.size()) + bytes;
}
std::string FloatField(uint32_t field, float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  std::string out = Key(field, 5);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
  return out;
}
std::string Fixed64Field(uint32_t field, uint64_t v) {
  std::string out = Key(field, 1);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return out;
}

std::string Piece(const std::string& piece, float score, int type) {
  return BytesField(1, BytesField(1, piece) + FloatField(2, score) + VarintField(3, type));
}

constexpr int kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;
const std::string kSp = "\xE2\x96\x81";  // U+2581

struct PieceDecl {
  std::string piece;
  float score;
  int type;
};

// <unk>=0, <s>=1, </s>=2, then (with byte_fallback) <0x00>..<0xFF> = 3..258, then `pieces`.
std::string ModelBytes(const std::vector<PieceDecl>& pieces, int model_type, bool byte_fallback,
                       const std::string& normalizer = "") {
  std::string out =
      Piece("<unk>", 0, kUnknown) + Piece("<s>", 0, kControl) + Piece("</s>", 0, kControl);
  if (byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      out += Piece(name, 0, kByte);
    }
  }
  for (const PieceDecl& p : pieces) out += Piece(p.piece, p.score, p.type);
  out += BytesField(2, VarintField(3, model_type) + VarintField(35, byte_fallback ? 1 : 0));
  out += BytesField(3, BytesField(1, "identity") + normalizer);
  return out;
}

std::unique_ptr<SpEncoder> MakeEncoder(const std::string& bytes) {
  StatusOr<SpModel> model = ParseSpModel(bytes);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return nullptr;
  StatusOr<std::unique_ptr<SpEncoder>> enc = SpEncoder::Create(std::move(model).value());
  EXPECT_TRUE(enc.ok()) << enc.status().ToString();
  return enc.ok() ? std::move(enc).value() : nullptr;
}

// --- wire format ---

TEST(SpModelParseTest, ReadsFieldsAndDefaults) {
  const std::string bytes = Piece("<unk>", 0, kUnknown) + Piece("a", -1.5f, kNormal) +
                            BytesField(1, BytesField(1, "b")) +  // score and type left out
                            BytesField(2, VarintField(3, 2) + VarintField(25, 1) +
                                              VarintField(43, static_cast<uint64_t>(-1)) +
                                              VarintField(40, 0) + VarintField(42, 7)) +
                            BytesField(3, BytesField(1, "identity") + VarintField(3, 0));
  StatusOr<SpModel> model = ParseSpModel(bytes);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_EQ(model->pieces.size(), 3u);
  EXPECT_EQ(model->pieces[0].type, SpPieceType::kUnknown);
  EXPECT_EQ(model->pieces[1].piece, "a");
  EXPECT_EQ(model->pieces[1].score, -1.5f);
  EXPECT_EQ(model->pieces[2].score, 0.0f);
  EXPECT_EQ(model->pieces[2].type, SpPieceType::kNormal);
  EXPECT_EQ(model->model_type, SpModelType::kBpe);
  EXPECT_TRUE(model->split_digits);
  EXPECT_EQ(model->pad_id, -1);  // a 10-byte varint
  EXPECT_EQ(model->eos_id, 7);
  EXPECT_EQ(model->bos_id, 1);  // default
  EXPECT_FALSE(model->byte_fallback);
  EXPECT_EQ(model->normalizer_name, "identity");
  EXPECT_FALSE(model->add_dummy_prefix);
  EXPECT_TRUE(model->remove_extra_whitespaces);  // default
  EXPECT_TRUE(model->escape_whitespaces);        // default
}

TEST(SpModelParseTest, SkipsUnknownFieldsOfEveryWireType) {
  const std::string unknown = VarintField(17, 300) + Fixed64Field(18, 0x0102030405060708) +
                              BytesField(19, "junk\x00\xFF") + FloatField(20, 1.0f);
  const std::string bytes =
      unknown + BytesField(1, unknown + BytesField(1, "x") + unknown + FloatField(2, -2.0f)) +
      BytesField(2, unknown + VarintField(35, 1) + VarintField(1000, 5)) +
      BytesField(3, unknown + VarintField(4, 0)) + BytesField(4, "self-test data") + unknown;
  StatusOr<SpModel> model = ParseSpModel(bytes);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_EQ(model->pieces.size(), 1u);
  EXPECT_EQ(model->pieces[0].piece, "x");
  EXPECT_EQ(model->pieces[0].score, -2.0f);
  EXPECT_TRUE(model->byte_fallback);
  EXPECT_FALSE(model->remove_extra_whitespaces);
}

TEST(SpModelParseTest, CorruptInputIsDataLoss) {
  const auto expect_data_loss = [](const std::string& bytes, const char* what) {
    StatusOr<SpModel> model = ParseSpModel(bytes);
    ASSERT_FALSE(model.ok()) << what;
    EXPECT_EQ(model.status().code(), StatusCode::kDataLoss) << what;
  };
  expect_data_loss("\x0A", "key without length");
  expect_data_loss(BytesField(1, "abcde").substr(0, 4), "length past the end");
  expect_data_loss("\x08\x80\x80", "truncated varint");
  std::string long_varint(12, '\x80');
  long_varint.front() = '\x08';
  long_varint.back() = '\x01';
  expect_data_loss(long_varint, "11-byte varint");
  expect_data_loss("\x0B", "start-group wire type");
  expect_data_loss("\x0F", "wire type 7");
  expect_data_loss(std::string("\x00\x01", 2), "field number 0");
  expect_data_loss("\x29\x01\x02", "truncated fixed64");
  expect_data_loss(BytesField(1, std::string("\x15\x00\x00", 3)), "truncated float in a piece");
  expect_data_loss(VarintField(1, 3), "pieces as a varint");
  expect_data_loss(BytesField(1, VarintField(1, 5)), "piece string as a varint");
  expect_data_loss(BytesField(1, VarintField(3, 9)), "piece type out of range");
  expect_data_loss(BytesField(2, VarintField(3, 0)), "model type out of range");
  expect_data_loss(BytesField(2, FloatField(35, 1.0f)), "bool as fixed32");
  expect_data_loss(BytesField(3, "\x0A\x09"), "normalizer name longer than its message");

  // Every strict prefix of a model cut inside a field fails cleanly; cuts at field boundaries
  // parse (protobuf has no end marker).
  const std::string full = ModelBytes({{"ab", -1, kNormal}}, 2, true);
  for (size_t n = 0; n < full.size(); ++n) {
    StatusOr<SpModel> model = ParseSpModel(full.substr(0, n));
    if (!model.ok()) {
      EXPECT_EQ(model.status().code(), StatusCode::kDataLoss) << n;
    }
  }
  expect_data_loss(full.substr(0, full.size() - 1), "last byte cut");
}

// --- load-time checks ---

TEST(SpEncoderCreateTest, RejectsInconsistentPieces) {
  const auto create = [](const std::string& bytes) {
    StatusOr<SpModel> model = ParseSpModel(bytes);
    EXPECT_TRUE(model.ok());
    return SpEncoder::Create(std::move(model).value()).status().code();
  };
  const std::string spec = BytesField(2, VarintField(3, 2));
  EXPECT_EQ(create(Piece("a", 0, kNormal) + spec), StatusCode::kDataLoss);  // no <unk>
  EXPECT_EQ(create(Piece("<unk>", 0, kUnknown) + Piece("<u>", 0, kUnknown) + spec),
            StatusCode::kDataLoss);
  EXPECT_EQ(
      create(Piece("<unk>", 0, kUnknown) + Piece("a", 0, kNormal) + Piece("a", 0, kNormal) + spec),
      StatusCode::kDataLoss);
  EXPECT_EQ(create(Piece("<unk>", 0, kUnknown) + Piece("", 0, kNormal) + spec),
            StatusCode::kDataLoss);
  EXPECT_EQ(create(Piece("<unk>", 0, kUnknown) + Piece("a\xC3", 0, kNormal) + spec),
            StatusCode::kDataLoss);
  EXPECT_EQ(create(Piece("<unk>", 0, kUnknown) + Piece("<0x41>", 0, kByte) + spec),
            StatusCode::kDataLoss);  // byte piece without byte_fallback
  EXPECT_EQ(create(Piece("<unk>", 0, kUnknown) + Piece("<0x41>", 0, kByte) +
                   BytesField(2, VarintField(3, 2) + VarintField(35, 1))),
            StatusCode::kDataLoss);  // byte_fallback with 1 of 256 byte pieces
  EXPECT_EQ(create(Piece("<unk>", 0, kUnknown) + spec), StatusCode::kOk);
  EXPECT_EQ(create(Piece("<unk>", 0, kUnknown) + BytesField(2, VarintField(3, 3))),
            StatusCode::kUnimplemented);  // WORD
  EXPECT_EQ(create(Piece("<unk>", 0, kUnknown) + spec +
                   BytesField(3, BytesField(1, "nmt_nfkc") + BytesField(2, "\x04\x00\x00\x00"))),
            StatusCode::kUnimplemented);
  EXPECT_EQ(create(ModelBytes({}, 2, true)), StatusCode::kOk);
}

// --- normalizer ---

TEST(SpEncoderNormalizeTest, WhitespaceRules) {
  const std::string base = Piece("<unk>", 0, kUnknown) + BytesField(2, VarintField(3, 2));
  // Defaults: dummy prefix, extra whitespace removed, spaces escaped.
  auto enc = MakeEncoder(base);
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ(enc->Normalize("  a   b  "), kSp + "a" + kSp + "b");
  EXPECT_EQ(enc->Normalize("   "), "");
  EXPECT_EQ(enc->Normalize("a\xFF"), kSp + "a\xEF\xBF\xBD");  // invalid byte -> U+FFFD

  enc = MakeEncoder(base + BytesField(3, VarintField(4, 0)));
  EXPECT_EQ(enc->Normalize(" a  b "), kSp + kSp + "a" + kSp + kSp + "b" + kSp);

  enc = MakeEncoder(base + BytesField(3, VarintField(3, 0) + VarintField(5, 0)));
  EXPECT_EQ(enc->Normalize(" a  b "), "a b");

  enc = MakeEncoder(Piece("<unk>", 0, kUnknown) +
                    BytesField(2, VarintField(3, 2) + VarintField(24, 1)));
  EXPECT_EQ(enc->Normalize("a b"), "a" + kSp + "b" + kSp);
}

// --- BPE ---

// Ids with byte_fallback: pieces listed in ModelBytes start at 259.
TEST(SpEncoderBpeTest, MergesHighestScoreFirst) {
  auto enc = MakeEncoder(ModelBytes({{kSp, -10, kNormal},         // 259
                                     {"a", -11, kNormal},         // 260
                                     {"b", -12, kNormal},         // 261
                                     {"c", -13, kNormal},         // 262
                                     {"bc", -0.5f, kNormal},      // 263
                                     {"ab", -1, kNormal},         // 264
                                     {kSp + "a", -2, kNormal},    // 265
                                     {"abc", -3, kNormal},        // 266
                                     {"aa", -1, kNormal},         // 267
                                     {"<sep>", 0, kUserDefined},  // 268
                                     {"b<", 5, kNormal}},         // 269
                                    2, true));
  ASSERT_NE(enc, nullptr);
  // "▁abc": candidates ▁a -2, ab -1, bc -0.5. bc merges first (best score), leaving ▁ a bc;
  // ab is now stale, then ▁a (-2) beats abc (-3): ▁a bc.
  EXPECT_EQ(enc->Encode("abc"), (std::vector<int32_t>{265, 263}));
  // "▁aaa": aa at positions 1 and 2 tie at -1; the leftmost merges: ▁ aa a. ▁a is then stale
  // and "▁aa" / "aaa" are no pieces.
  EXPECT_EQ(enc->Encode("aaa"), (std::vector<int32_t>{259, 267, 260}));
  // "d" and "é" are unknown: byte fallback, UTF-8 bytes <0x64>, <0xC3><0xA9> (id = byte + 3).
  EXPECT_EQ(enc->Encode("d"), (std::vector<int32_t>{259, 0x64 + 3}));
  EXPECT_EQ(enc->Encode("\xC3\xA9"
                        "a"),
            (std::vector<int32_t>{259, 0xC3 + 3, 0xA9 + 3, 260}));
  // A user-defined piece is one frozen symbol from the start: "b<" (score 5) would otherwise
  // merge first. "▁ a b <sep> c": ab (-1) merges, then ▁a is stale and ▁ab no piece.
  EXPECT_EQ(enc->Encode("ab<sep>c"), (std::vector<int32_t>{259, 264, 268, 262}));
  // Reserved pieces written in the text are plain characters to sentencepiece.
  EXPECT_EQ(enc->Encode("<s>"), (std::vector<int32_t>{259, '<' + 3, 's' + 3, '>' + 3}));
  EXPECT_EQ(enc->Encode(""), std::vector<int32_t>{});
  EXPECT_EQ(enc->PieceToId("<s>"), 1);
  EXPECT_EQ(enc->PieceToId("<0xA9>"), 0xA9 + 3);
  EXPECT_EQ(enc->PieceToId("abc"), 266);
  EXPECT_EQ(enc->PieceToId("zz"), std::nullopt);
}

TEST(SpEncoderBpeTest, UnknownRunsAndUnusedPieces) {
  auto enc = MakeEncoder(ModelBytes({{kSp, -10, kNormal},    // 3
                                     {"a", -11, kNormal},    // 4
                                     {"b", -12, kNormal},    // 5
                                     {"c", -13, kNormal},    // 6
                                     {"ab", -1, kUnused},    // 7
                                     {"abc", -2, kNormal}},  // 8
                                    2, false));
  ASSERT_NE(enc, nullptr);
  // No byte fallback: a run of unknown characters becomes one <unk> (0).
  EXPECT_EQ(enc->Encode("dd"), (std::vector<int32_t>{3, 0}));
  EXPECT_EQ(enc->Encode("d d"), (std::vector<int32_t>{3, 0, 3, 0}));
  // "ab" is UNUSED: it may be formed on the way to "abc" ...
  EXPECT_EQ(enc->Encode("abc"), (std::vector<int32_t>{3, 8}));
  // ... but where it would be final it is split back into a, b.
  EXPECT_EQ(enc->Encode("ab"), (std::vector<int32_t>{3, 4, 5}));
}

// --- Unigram ---

TEST(SpEncoderUnigramTest, ViterbiBestPath) {
  auto enc = MakeEncoder(ModelBytes({{kSp + "ab", -3, kNormal},  // 3
                                     {kSp + "a", -1, kNormal},   // 4
                                     {"b", -1.5f, kNormal},      // 5
                                     {"a", -2, kNormal},         // 6
                                     {kSp, -2.5f, kNormal},      // 7
                                     {"bb", -2.9f, kNormal}},    // 8
                                    1, false));
  ASSERT_NE(enc, nullptr);
  // "▁ab": ▁ab = -3, ▁a + b = -2.5, ▁ + a + b = -6: ▁a b.
  EXPECT_EQ(enc->Encode("ab"), (std::vector<int32_t>{4, 5}));
  // "▁abb": ▁a b b = -4, ▁ab b = -4.5, ▁a bb = -3.9: ▁a bb.
  EXPECT_EQ(enc->Encode("abb"), (std::vector<int32_t>{4, 8}));
  // Unknown characters score min (-3) - 10 each and merge into one <unk>: "▁zz" -> ▁ <unk>.
  EXPECT_EQ(enc->Encode("zz"), (std::vector<int32_t>{7, 0}));
  // "▁az": ▁a + z(unk) = -14 beats ▁ + a + z = -17.5.
  EXPECT_EQ(enc->Encode("az"), (std::vector<int32_t>{4, 0}));
}

// --- the tokenizer on top ---

TEST(SentencePieceTokenizerTest, FromModelBytes) {
  const std::string bytes = ModelBytes({{kSp, -10, kNormal},       // 259
                                        {"h", -11, kNormal},       // 260
                                        {"i", -12, kNormal},       // 261
                                        {kSp + "h", -1, kNormal},  // 262
                                        {"hi", -2, kNormal}},      // 263
                                       2, true);
  auto tok = SentencePieceTokenizer::FromModelBytes(bytes, HfTokenizerConfig{});
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  // "▁hi": ▁h (-1) merges before hi (-2), then ▁h + i is no piece.
  EXPECT_EQ((*tok)->Encode("hi", true), (std::vector<int32_t>{1, 262, 261}));
  EXPECT_EQ((*tok)->Decode(std::vector<int32_t>{1, 262, 261, 259, 0xC3 + 3, 0xA9 + 3}, true),
            "hi \xC3\xA9");
  EXPECT_EQ((*tok)->vocab_size(), 264);

  auto corrupt = SentencePieceTokenizer::FromModelBytes(bytes.substr(0, 100), {});
  EXPECT_EQ(corrupt.status().code(), StatusCode::kDataLoss);
  auto missing = SentencePieceTokenizer::Create("/nonexistent/tokenizer.model", {});
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace sy::tokenizer
