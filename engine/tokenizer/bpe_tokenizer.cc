#include "engine/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <deque>

#include "engine/core/json_fields.h"
#include "engine/tokenizer/unicode.h"

namespace sy::tokenizer {
namespace {

using nlohmann::json;

std::string NfcString(std::string_view s) { return Nfc(s); }

// Hugging Face's ByteLevel decoder for one token: the bytes its characters stand for, or the
// token's own UTF-8 if some character is not in the byte alphabet.
void AppendTokenBytes(std::string_view token, std::string* out) {
  const size_t start = out->size();
  for (size_t pos = 0; pos < token.size();) {
    const int byte = CharToByte(DecodeUtf8(token, &pos));
    if (byte < 0) {
      out->resize(start);
      out->append(token);
      return;
    }
    out->push_back(static_cast<char>(byte));
  }
}

void MapToByteAlphabet(std::string_view piece, std::string* out) {
  out->clear();
  for (char ch : piece) out->append(ByteToChar(static_cast<uint8_t>(ch)));
}

}  // namespace

StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(std::string_view tokenizer_json,
                                                             const HfTokenizerConfig& config) {
  const json j = json::parse(tokenizer_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::DataLoss("tokenizer.json is not valid JSON");
  if (!j.is_object()) return Status::DataLoss("tokenizer.json is not a JSON object");
  auto tok = std::unique_ptr<BpeTokenizer>(new BpeTokenizer());
  try {
    SY_RETURN_IF_ERROR(tok->Build(j, config));
  } catch (const json::exception& e) {
    return Status::DataLoss(std::string("tokenizer.json: ") + e.what());
  }
  return tok;
}

Status BpeTokenizer::Build(const json& j, const HfTokenizerConfig& config) {
  const json* model = json_fields::FindMember(j, "model");
  if (model == nullptr || !model->is_object()) {
    return Status::DataLoss("tokenizer.json has no \"model\" object");
  }
  const std::optional<std::string> type = json_fields::LenientString(*model, "type");
  if (type.value_or("BPE") != "BPE") {
    return Status::Unimplemented("tokenizer.json model type " + *type + " is not supported");
  }
  if (!type && json_fields::FindMember(*model, "merges") == nullptr) {
    return Status::DataLoss("tokenizer.json model has neither \"type\" nor \"merges\"");
  }
  const json null_value;
  const auto field = [&](const char* key) -> const json& {
    const json* v = json_fields::FindMember(j, key);
    return v ? *v : null_value;
  };
  SY_RETURN_IF_ERROR(ParseNormalizer(field("normalizer")));
  SY_ASSIGN_OR_RETURN(pre_, PreTokenizer::FromJson(field("pre_tokenizer")));
  if (!pre_.byte_level()) {
    return Status::Unimplemented("tokenizer.json without a ByteLevel pre_tokenizer");
  }
  SY_RETURN_IF_ERROR(ParseDecoder(field("decoder")));
  SY_ASSIGN_OR_RETURN(model_, BpeModel::FromJson(*model));
  SY_RETURN_IF_ERROR(ParseAddedTokens(field("added_tokens")));
  vocab_size_ = model_->max_id() + 1;
  for (const AddedTokenDecl& t : config.added_tokens_decoder) {
    if (!added_.ById(t.id) && !added_.Find(t.content)) added_.Add(t);
  }
  ResolveSpecialTokens(config);
  added_.Build(nfc_ ? &NfcString : nullptr);
  SY_RETURN_IF_ERROR(ParsePostProcessor(field("post_processor")));
  if (config.OverridesPostProcessor()) {
    prefix_ids_.clear();
    suffix_ids_.clear();
    if (config.AddBos() && bos_id_) prefix_ids_.push_back(*bos_id_);
    if (config.AddEos() && config.eos_token) {
      if (const std::optional<int32_t> eos = token_to_id(*config.eos_token)) {
        suffix_ids_.push_back(*eos);
      }
    }
  }
  clean_up_spaces_ = config.clean_up_tokenization_spaces;
  return Status::Ok();
}

Status BpeTokenizer::ParseNormalizer(const json& j) {
  if (j.is_null()) return Status::Ok();
  const std::optional<std::string> type = json_fields::LenientString(j, "type");
  if (type == "NFC") {
    nfc_ = true;
    return Status::Ok();
  }
  if (type == "Sequence") {
    const json* list = json_fields::FindMember(j, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return Status::DataLoss("Sequence normalizer without a \"normalizers\" list");
    }
    for (const json& n : *list) SY_RETURN_IF_ERROR(ParseNormalizer(n));
    return Status::Ok();
  }
  return Status::Unimplemented("unsupported normalizer type: " + type.value_or("(none)") +
                               " (only NFC is implemented)");
}

Status BpeTokenizer::ParseDecoder(const json& j) {
  const std::optional<std::string> type = json_fields::LenientString(j, "type");
  if (type == "ByteLevel") return Status::Ok();
  if (type == "Sequence") {
    const json* list = json_fields::FindMember(j, "decoders");
    if (list != nullptr && list->is_array() && list->size() == 1) return ParseDecoder((*list)[0]);
  }
  return Status::Unimplemented("unsupported decoder type: " + type.value_or("(none)") +
                               " (only ByteLevel is implemented)");
}

Status BpeTokenizer::ParsePostProcessor(const json& j) {
  if (j.is_null()) return Status::Ok();
  const std::optional<std::string> type = json_fields::LenientString(j, "type");
  const auto id_of = [&](const std::string& token) -> StatusOr<int32_t> {
    const std::optional<int32_t> id = token_to_id(token);
    if (!id) return Status::DataLoss("post_processor token \"" + token + "\" is not in vocab");
    return *id;
  };
  if (type == "ByteLevel") return Status::Ok();
  if (type == "Sequence") {
    const json* list = json_fields::FindMember(j, "processors");
    if (list == nullptr || !list->is_array()) {
      return Status::DataLoss("Sequence post_processor without a \"processors\" list");
    }
    for (const json& p : *list) SY_RETURN_IF_ERROR(ParsePostProcessor(p));
    return Status::Ok();
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    const json* cls = json_fields::FindMember(j, "cls");
    const json* sep = json_fields::FindMember(j, "sep");
    if (!cls || !sep || !cls->is_array() || !sep->is_array() || cls->empty() || sep->empty() ||
        !(*cls)[0].is_string() || !(*sep)[0].is_string()) {
      return Status::DataLoss(*type + " post_processor needs \"cls\" and \"sep\"");
    }
    SY_ASSIGN_OR_RETURN(const int32_t cls_id, id_of((*cls)[0].get<std::string>()));
    SY_ASSIGN_OR_RETURN(const int32_t sep_id, id_of((*sep)[0].get<std::string>()));
    prefix_ids_.push_back(cls_id);
    suffix_ids_.insert(suffix_ids_.begin(), sep_id);
    return Status::Ok();
  }
  if (type != "TemplateProcessing") {
    return Status::Unimplemented("unsupported post_processor type: " + type.value_or("(none)"));
  }
  const json* single = json_fields::FindMember(j, "single");
  const json* specials = json_fields::FindMember(j, "special_tokens");
  if (single == nullptr || !single->is_array()) {
    return Status::DataLoss("TemplateProcessing without a \"single\" template");
  }
  bool seen_sequence = false;
  for (const json& item : *single) {
    if (json_fields::FindMember(item, "Sequence") != nullptr) {
      seen_sequence = true;
      continue;
    }
    const json* special = json_fields::FindMember(item, "SpecialToken");
    const std::optional<std::string> name =
        special ? json_fields::LenientString(*special, "id") : std::nullopt;
    if (!name) return Status::DataLoss("TemplateProcessing has a malformed \"single\" item");
    const json* entry = specials ? json_fields::FindMember(*specials, *name) : nullptr;
    const json* ids = entry ? json_fields::FindMember(*entry, "ids") : nullptr;
    if (ids == nullptr || !ids->is_array()) {
      return Status::DataLoss("TemplateProcessing special token \"" + *name + "\" has no ids");
    }
    for (const json& id : *ids) {
      const std::optional<int64_t> v = json_fields::AsInt(id);
      if (!v || *v < 0 || *v >= vocab_size_) {
        return Status::DataLoss("TemplateProcessing special token \"" + *name +
                                "\" has an id outside the vocabulary");
      }
      (seen_sequence ? suffix_ids_ : prefix_ids_).push_back(static_cast<int32_t>(*v));
    }
  }
  return Status::Ok();
}

Status BpeTokenizer::ParseAddedTokens(const json& j) {
  if (j.is_null()) return Status::Ok();
  if (!j.is_array()) return Status::DataLoss("tokenizer.json \"added_tokens\" is not a list");
  for (size_t index = 0; index < j.size(); ++index) {
    const json& t = j[index];
    AddedTokenDecl decl;
    const json* id = json_fields::FindMember(t, "id");
    const int64_t id_value = (id && id->is_number_integer()) ? id->get<int64_t>() : -1;
    const std::optional<std::string> content = json_fields::LenientString(t, "content");
    if (id_value < 0 || id_value > kMaxTokenId || !content || content->empty()) {
      return Status::DataLoss("tokenizer.json added token #" + std::to_string(index) +
                              " is malformed (needs an id and a non-empty content)");
    }
    decl.id = static_cast<int32_t>(id_value);
    decl.content = *content;
    decl.special = json_fields::LenientBool(t, "special", false);
    decl.lstrip = json_fields::LenientBool(t, "lstrip", false);
    decl.rstrip = json_fields::LenientBool(t, "rstrip", false);
    decl.single_word = json_fields::LenientBool(t, "single_word", false);
    decl.normalized = json_fields::LenientBool(t, "normalized", !decl.special);
    added_.Add(decl);
  }
  return Status::Ok();
}

void BpeTokenizer::ResolveSpecialTokens(const HfTokenizerConfig& config) {
  for (const AddedTokenDecl& t : added_.tokens()) vocab_size_ = std::max(vocab_size_, t.id + 1);
  // transformers registers the named special tokens as special added tokens; one that is in no
  // vocabulary gets the next free id.
  for (const std::optional<std::string>& name : config.NamedSpecialTokens()) {
    if (!name || name->empty() || added_.Find(*name)) continue;
    const std::optional<int32_t> id = model_->TokenToId(*name);
    added_.Add({.id = id.value_or(vocab_size_), .content = *name, .special = true});
    if (!id) ++vocab_size_;
  }
  if (config.bos_token) bos_id_ = token_to_id(*config.bos_token);
  if (config.eos_token) {
    if (const std::optional<int32_t> eos = token_to_id(*config.eos_token)) {
      eos_ids_.push_back(*eos);
    }
  }
  for (int32_t id : config.extra_eos_ids) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
  }
}

void BpeTokenizer::EncodeText(std::string_view text, std::vector<int32_t>* ids) const {
  std::deque<std::string> arena;
  std::vector<std::string_view> pieces;
  pre_.Run(text, &arena, &pieces);
  std::string mapped;
  for (std::string_view piece : pieces) {
    MapToByteAlphabet(piece, &mapped);
    model_->Encode(mapped, ids);
  }
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = prefix_ids_;
  std::vector<TextSegment> raw, normalized;
  added_.Split(text, /*normalized=*/false, &raw);
  for (const TextSegment& seg : raw) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    std::string_view chunk = text.substr(seg.begin, seg.end - seg.begin);
    std::string nfc;
    if (nfc_) {
      nfc = Nfc(chunk);
      chunk = nfc;
    }
    normalized.clear();
    added_.Split(chunk, /*normalized=*/true, &normalized);
    for (const TextSegment& part : normalized) {
      if (part.id >= 0) {
        ids.push_back(part.id);
      } else {
        EncodeText(chunk.substr(part.begin, part.end - part.begin), &ids);
      }
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

std::string BpeTokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (const AddedTokenDecl* added = added_.ById(id)) {
      if (!(skip_special_tokens && added->special)) AppendTokenBytes(added->content, &bytes);
    } else if (const std::string* token = model_->IdToToken(id)) {
      AppendTokenBytes(*token, &bytes);
    }
  }
  std::string text = Utf8Lossy(bytes);
  if (clean_up_spaces_) text = CleanUpTokenization(std::move(text));
  return text;
}

bool BpeTokenizer::is_special(int32_t id) const {
  const AddedTokenDecl* added = added_.ById(id);
  return added != nullptr && added->special;
}

std::optional<int32_t> BpeTokenizer::token_to_id(std::string_view token) const {
  if (const std::optional<int32_t> id = added_.Find(token)) return id;
  return model_->TokenToId(token);
}

std::string BpeTokenizer::id_to_token(int32_t id) const {
  if (const AddedTokenDecl* added = added_.ById(id)) return added->content;
  const std::string* token = model_->IdToToken(id);
  return token ? *token : std::string();
}

}  // namespace sy::tokenizer
