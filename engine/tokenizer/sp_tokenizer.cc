#include "engine/tokenizer/sp_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <exception>

#include "engine/core/file_util.h"
#include "engine/tokenizer/sp_model_scan.h"
#include "engine/tokenizer/unicode.h"

namespace sy::tokenizer {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, sentencepiece's space
// Ordinary text a usable model must encode: words, spaces, digits, punctuation, non-ASCII.
constexpr std::string_view kEncodeProbe =
    "Hello world, 1 2 3! caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD\n";

// The byte a "<0xHH>" byte-fallback piece stands for, or -1.
int FallbackByte(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int value = 0;
  for (char ch : piece.substr(3, 2)) {
    int digit;
    if (ch >= '0' && ch <= '9') {
      digit = ch - '0';
    } else if (ch >= 'A' && ch <= 'F') {
      digit = ch - 'A' + 10;
    } else if (ch >= 'a' && ch <= 'f') {
      digit = ch - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

void AppendReplacingSpaceMarker(std::string_view token, std::string* out) {
  for (size_t pos = 0; pos < token.size();) {
    if (token.substr(pos, kSpaceMarker.size()) == kSpaceMarker) {
      out->push_back(' ');
      pos += kSpaceMarker.size();
    } else {
      out->push_back(token[pos++]);
    }
  }
}

// ByteFallback: a run of byte pieces becomes its text if valid UTF-8, else one U+FFFD per byte.
void FlushBytes(std::string* bytes, std::string* out) {
  if (bytes->empty()) return;
  if (IsValidUtf8(*bytes)) {
    out->append(*bytes);
  } else {
    for (size_t i = 0; i < bytes->size(); ++i) out->append("\xEF\xBF\xBD");
  }
  bytes->clear();
}

}  // namespace

StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Create(
    const std::string& model_path, const HfTokenizerConfig& config) {
  SY_ASSIGN_OR_RETURN(const std::string bytes, ReadFileToString(model_path));
  StatusOr<std::unique_ptr<SentencePieceTokenizer>> tok = FromModelBytes(bytes, config);
  if (!tok.ok()) return Status(tok.status().code(), model_path + ": " + tok.status().message());
  return tok;
}

SentencePieceTokenizer::SentencePieceTokenizer(
    std::unique_ptr<sentencepiece::SentencePieceProcessor> sp)
    : sp_(std::move(sp)) {}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::FromModelBytes(
    std::string_view model_bytes, const HfTokenizerConfig& config) {
  // Checked before loading: the library trusts a charsmap's trie and reads out of bounds on a
  // corrupt one, also while loading (it encodes the model's self-test samples). A denormalizer
  // spec's charsmap is walked only by the library's decoding, which this class never calls.
  const std::optional<SpModelScan> scan = ScanSpModel(model_bytes);
  if (!scan) return Status::DataLoss("sentencepiece model: not a serialized ModelProto");
  if (scan->has_precompiled_charsmap) {
    return Status::Unimplemented(
        "sentencepiece model: a precompiled normalization charsmap (e.g. nmt_nfkc) is not "
        "supported; only identity normalization is");
  }
  // transformers converts only these two (LlamaConverter); WORD and CHAR are refused there too.
  if (scan->model_type != static_cast<uint64_t>(SpModelType::kBpe) &&
      scan->model_type != static_cast<uint64_t>(SpModelType::kUnigram)) {
    return Status::Unimplemented("sentencepiece model type " + std::to_string(scan->model_type) +
                                 " is not supported (only BPE and UNIGRAM are)");
  }
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  sentencepiece::util::Status loaded;
  try {
    loaded = sp->LoadFromSerializedProto(model_bytes);
  } catch (const std::exception& e) {
    // The library's double-array trie builder (darts-clone) reports keys it cannot store by
    // throwing.
    return Status::DataLoss(std::string("sentencepiece model: ") + e.what());
  }
  if (!loaded.ok())
    return Status::DataLoss(std::string("sentencepiece model: ") + loaded.message());
  // Decoding copies pieces into the text, which must stay valid UTF-8 (HF rejects such too).
  for (int id = 0; id < sp->GetPieceSize(); ++id) {
    if (!IsValidUtf8(sp->IdToPiece(id))) {
      return Status::DataLoss("sentencepiece model: piece " + std::to_string(id) +
                              " is not valid UTF-8");
    }
  }
  // The library refuses to encode with some vocabularies it loads (e.g. the space marker as a
  // control piece): say so now rather than on the first request.
  std::vector<int> probe;
  if (const sentencepiece::util::Status encoded = sp->Encode(kEncodeProbe, &probe); !encoded.ok()) {
    return Status::DataLoss(std::string("sentencepiece model: cannot encode text: ") +
                            encoded.message());
  }
  auto tok = std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(std::move(sp)));
  SY_RETURN_IF_ERROR(tok->Init(config));
  return tok;
}

Status SentencePieceTokenizer::Init(const HfTokenizerConfig& config) {
  piece_count_ = sp_->GetPieceSize();
  vocab_size_ = piece_count_;
  for (const AddedTokenDecl& t : config.added_tokens_decoder) {
    AddedTokenDecl decl = t;
    decl.normalized = false;  // the slow and fast Llama tokenizers match them in raw text
    added_.Add(decl);
  }
  // transformers' converter makes every control piece (e.g. Mistral's [INST]) a special token
  // matched in raw text; tokenizer_config.json entries for the same id or text take precedence.
  for (int32_t id = 0; id < piece_count_; ++id) {
    if (!sp_->IsControl(id) || added_.ById(id) || added_.Find(sp_->IdToPiece(id))) continue;
    added_.Add({.id = id, .content = sp_->IdToPiece(id), .special = true});
  }
  // LlamaTokenizer's defaults for the named special tokens.
  HfTokenizerConfig named = config;
  if (!named.bos_token) named.bos_token = "<s>";
  if (!named.eos_token) named.eos_token = "</s>";
  if (!named.unk_token) named.unk_token = "<unk>";
  for (const std::optional<std::string>& name : named.NamedSpecialTokens()) {
    if (!name || name->empty() || added_.Find(*name)) continue;
    if (const std::optional<int32_t> id = PieceId(*name)) {
      added_.Add({.id = *id, .content = *name, .special = true});
    }
  }
  for (const AddedTokenDecl& t : added_.tokens()) vocab_size_ = std::max(vocab_size_, t.id + 1);
  added_.Build(nullptr);
  bos_id_ = token_to_id(*named.bos_token);
  if (const std::optional<int32_t> eos = token_to_id(*named.eos_token)) eos_ids_.push_back(*eos);
  for (int32_t id : config.extra_eos_ids) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
  }
  add_bos_ = config.AddBos() && bos_id_.has_value();
  legacy_ = config.legacy.value_or(true);
  if (!legacy_) {
    // transformers' non-legacy trick: encode "<unk>" + chunk and drop the pieces of "<unk>".
    unk_piece_ = *named.unk_token;
    unk_pieces_ = SpEncode(unk_piece_).size();
  }
  add_eos_ = config.AddEos() && !eos_ids_.empty();
  clean_up_spaces_ = config.clean_up_tokenization_spaces;
  return Status::Ok();
}

std::optional<int32_t> SentencePieceTokenizer::PieceId(std::string_view piece) const {
  // sentencepiece answers unk_id for text that is no piece.
  const int id = sp_->PieceToId(piece);
  if (id < 0 || id >= piece_count_ || sp_->IdToPiece(id) != piece) return std::nullopt;
  return id;
}

std::vector<int> SentencePieceTokenizer::SpEncode(std::string_view text) const {
  std::vector<int> ids;
  if (sp_->Encode(text, &ids).ok()) return ids;
  // A vocabulary that passed the load-time probe may still fail on other text: encode character
  // by character, and a character the library cannot encode alone becomes <unk>, so that a
  // request never takes the process down.
  ids.clear();
  for (size_t pos = 0; pos < text.size();) {
    const size_t begin = pos;
    DecodeUtf8(text, &pos);
    std::vector<int> one;
    if (sp_->Encode(text.substr(begin, pos - begin), &one).ok()) {
      ids.insert(ids.end(), one.begin(), one.end());
    } else {
      ids.push_back(sp_->unk_id());
    }
  }
  return ids;
}

std::vector<int32_t> SentencePieceTokenizer::Encode(std::string_view text,
                                                    bool add_special_tokens) const {
  std::vector<int32_t> ids;
  if (add_special_tokens && add_bos_) ids.push_back(*bos_id_);
  std::vector<TextSegment> segments;
  added_.Split(text, /*normalized=*/false, &segments);
  for (const TextSegment& seg : segments) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    const std::string_view chunk = text.substr(seg.begin, seg.end - seg.begin);
    // Non-legacy (Metaspace, prepend_scheme "first"): only the chunk at the start of the text
    // gets a leading space, and only if it does not start with one already.
    const bool starts_with_space = chunk.front() == ' ' || chunk.substr(0, 3) == kSpaceMarker;
    EncodeChunk(chunk, legacy_ || (seg.begin == 0 && !starts_with_space), &ids);
  }
  if (add_special_tokens && add_eos_) ids.push_back(eos_ids_.front());
  return ids;
}

void SentencePieceTokenizer::EncodeChunk(std::string_view chunk, bool dummy_prefix,
                                         std::vector<int32_t>* ids) const {
  if (dummy_prefix) {
    const std::vector<int> pieces = SpEncode(chunk);
    ids->insert(ids->end(), pieces.begin(), pieces.end());
    return;
  }
  std::string text = unk_piece_;
  text.append(chunk);
  const std::vector<int> pieces = SpEncode(text);
  if (pieces.size() >= unk_pieces_)
    ids->insert(ids->end(), pieces.begin() + unk_pieces_, pieces.end());
}

std::string SentencePieceTokenizer::Decode(std::span<const int32_t> ids,
                                           bool skip_special_tokens) const {
  std::string text, bytes;
  for (int32_t id : ids) {
    std::string token;
    if (const AddedTokenDecl* added = added_.ById(id)) {
      if (skip_special_tokens && added->special) continue;
      token = added->content;
    } else if (id >= 0 && id < piece_count_) {
      token = sp_->IdToPiece(id);
    } else {
      continue;
    }
    if (const int byte = FallbackByte(token); byte >= 0) {
      bytes.push_back(static_cast<char>(byte));
      continue;
    }
    FlushBytes(&bytes, &text);
    AppendReplacingSpaceMarker(token, &text);
  }
  FlushBytes(&bytes, &text);
  if (!text.empty() && text.front() == ' ') text.erase(0, 1);
  if (clean_up_spaces_) text = CleanUpTokenization(std::move(text));
  return text;
}

bool SentencePieceTokenizer::is_special(int32_t id) const {
  const AddedTokenDecl* added = added_.ById(id);
  return added != nullptr && added->special;
}

std::optional<int32_t> SentencePieceTokenizer::token_to_id(std::string_view token) const {
  if (const std::optional<int32_t> id = added_.Find(token)) return id;
  return PieceId(token);
}

std::string SentencePieceTokenizer::id_to_token(int32_t id) const {
  if (const AddedTokenDecl* added = added_.ById(id)) return added->content;
  if (id < 0 || id >= piece_count_) return std::string();
  return sp_->IdToPiece(id);
}

}  // namespace sy::tokenizer
