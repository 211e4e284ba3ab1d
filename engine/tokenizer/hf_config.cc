#include "engine/tokenizer/hf_config.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/core/file_util.h"
#include "engine/core/json_fields.h"

namespace sy::tokenizer {
namespace {

using nlohmann::json;

// A special token entry: "text", null, or {"content": "text", ...}.
std::optional<std::string> TokenText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) return json_fields::LenientString(v, "content");
  return std::nullopt;
}

void ApplySpecialTokens(const json& j, HfTokenizerConfig* cfg) {
  const auto set = [&](const char* key, std::optional<std::string>* field) {
    if (const json* v = json_fields::FindMember(j, key)) *field = TokenText(*v);
  };
  set("bos_token", &cfg->bos_token);
  set("eos_token", &cfg->eos_token);
  set("unk_token", &cfg->unk_token);
  set("sep_token", &cfg->sep_token);
  set("pad_token", &cfg->pad_token);
  set("cls_token", &cfg->cls_token);
  set("mask_token", &cfg->mask_token);
  if (const json* extra = json_fields::FindMember(j, "additional_special_tokens");
      extra && extra->is_array()) {
    cfg->additional_special_tokens.clear();
    for (const json& v : *extra) {
      if (std::optional<std::string> text = TokenText(v)) {
        cfg->additional_special_tokens.push_back(std::move(*text));
      }
    }
  }
}

StatusOr<json> ParseJsonFile(const std::string& path, bool* found) {
  *found = false;
  if (!std::filesystem::exists(path)) return json();
  SY_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::DataLoss(path + ": not valid JSON");
  *found = true;
  return j;
}

void AppendEosIds(const json& j, std::vector<int32_t>* out) {
  const json* v = json_fields::FindMember(j, "eos_token_id");
  if (v == nullptr) return;
  const auto add = [&](const json& x) {
    const std::optional<int64_t> id = json_fields::AsInt(x);
    if (id && *id >= 0 && *id <= INT32_MAX) out->push_back(static_cast<int32_t>(*id));
  };
  if (v->is_array()) {
    for (const json& x : *v) add(x);
  } else {
    add(*v);
  }
}

bool IsLlamaFamily(const std::string& cls) {
  static const char* const kClasses[] = {"LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer",
                                         "CohereTokenizer"};
  for (const char* c : kClasses) {
    if (cls == c || cls == std::string(c) + "Fast") return true;
  }
  return false;
}

}  // namespace

bool HfTokenizerConfig::OverridesPostProcessor() const { return IsLlamaFamily(tokenizer_class); }
bool HfTokenizerConfig::AddBos() const { return add_bos_token.value_or(true); }
bool HfTokenizerConfig::AddEos() const { return add_eos_token.value_or(false); }

std::vector<std::optional<std::string>> HfTokenizerConfig::NamedSpecialTokens() const {
  std::vector<std::optional<std::string>> out = {bos_token, eos_token, unk_token, sep_token,
                                                 pad_token, cls_token, mask_token};
  out.insert(out.end(), additional_special_tokens.begin(), additional_special_tokens.end());
  return out;
}

StatusOr<HfTokenizerConfig> ParseTokenizerConfig(std::string_view text) {
  HfTokenizerConfig cfg;
  if (text.empty()) return cfg;
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::DataLoss("tokenizer_config.json: not a JSON object");
  }
  cfg.tokenizer_class = json_fields::LenientString(j, "tokenizer_class").value_or("");
  ApplySpecialTokens(j, &cfg);
  if (const json* v = json_fields::FindMember(j, "add_bos_token"); v && v->is_boolean()) {
    cfg.add_bos_token = v->get<bool>();
  }
  if (const json* v = json_fields::FindMember(j, "add_eos_token"); v && v->is_boolean()) {
    cfg.add_eos_token = v->get<bool>();
  }
  if (const json* v = json_fields::FindMember(j, "legacy"); v && v->is_boolean())
    cfg.legacy = v->get<bool>();
  cfg.clean_up_tokenization_spaces =
      json_fields::LenientBool(j, "clean_up_tokenization_spaces", false);
  if (const json* decoder = json_fields::FindMember(j, "added_tokens_decoder");
      decoder && decoder->is_object()) {
    for (const auto& [key, tok] : decoder->items()) {
      AddedTokenDecl decl;
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      const std::optional<std::string> content = json_fields::LenientString(tok, "content");
      if (end == key.c_str() || *end != '\0' || id < 0 || id > INT32_MAX || !content) {
        return Status::DataLoss("tokenizer_config.json: bad added_tokens_decoder entry " + key);
      }
      decl.id = static_cast<int32_t>(id);
      decl.content = *content;
      decl.special = json_fields::LenientBool(tok, "special", false);
      decl.lstrip = json_fields::LenientBool(tok, "lstrip", false);
      decl.rstrip = json_fields::LenientBool(tok, "rstrip", false);
      decl.single_word = json_fields::LenientBool(tok, "single_word", false);
      decl.normalized = json_fields::LenientBool(tok, "normalized", !decl.special);
      cfg.added_tokens_decoder.push_back(std::move(decl));
    }
  }
  return cfg;
}

StatusOr<HfTokenizerConfig> ReadHfTokenizerConfig(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  std::string config_text;
  if (std::filesystem::exists(dir / "tokenizer_config.json")) {
    SY_ASSIGN_OR_RETURN(config_text, ReadFileToString((dir / "tokenizer_config.json").string()));
  }
  SY_ASSIGN_OR_RETURN(HfTokenizerConfig cfg, ParseTokenizerConfig(config_text));
  bool found = false;
  // transformers lets special_tokens_map.json override tokenizer_config.json.
  SY_ASSIGN_OR_RETURN(const json map,
                      ParseJsonFile((dir / "special_tokens_map.json").string(), &found));
  if (found) ApplySpecialTokens(map, &cfg);
  for (const char* name : {"generation_config.json", "config.json"}) {
    SY_ASSIGN_OR_RETURN(const json j, ParseJsonFile((dir / name).string(), &found));
    if (found) AppendEosIds(j, &cfg.extra_eos_ids);
  }
  return cfg;
}

std::string CleanUpTokenization(std::string text) {
  static const std::pair<std::string_view, std::string_view> kReplacements[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : kReplacements) {
    std::string out;
    size_t pos = 0;
    while (true) {
      const size_t hit = text.find(from, pos);
      if (hit == std::string::npos) break;
      out.append(text, pos, hit - pos);
      out.append(to);
      pos = hit + from.size();
    }
    out.append(text, pos, std::string::npos);
    text = std::move(out);
  }
  return text;
}

}  // namespace sy::tokenizer
