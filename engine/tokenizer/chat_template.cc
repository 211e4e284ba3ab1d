#include "engine/tokenizer/chat_template.h"

#include <filesystem>

#include "engine/core/file_util.h"
#include "engine/tokenizer/hf_config.h"
#include "engine/tokenizer/jinja/template.h"

namespace sy {
namespace {

using nlohmann::json;

// tokenizer_config.json's chat_template: a string, or a list of {name, template} from which
// transformers uses "default". Empty when there is none.
StatusOr<std::string> TemplateFromConfig(const json& config, const std::string& path) {
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    for (const json& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
    return Status::NotFound(path + ": chat_template has no \"default\" entry");
  }
  return Status::DataLoss(path + ": chat_template is neither a string nor a list");
}

StatusOr<json> ReadJson(const std::string& path) {
  SY_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::DataLoss(path + ": not a JSON object");
  return j;
}

StatusOr<std::string> FindTemplateSource(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  const std::string config_path = (dir / "tokenizer_config.json").string();
  if (std::filesystem::exists(config_path)) {
    SY_ASSIGN_OR_RETURN(const json config, ReadJson(config_path));
    SY_ASSIGN_OR_RETURN(std::string source, TemplateFromConfig(config, config_path));
    if (!source.empty()) return source;
  }
  const std::string jinja_path = (dir / "chat_template.jinja").string();
  if (std::filesystem::exists(jinja_path)) return ReadFileToString(jinja_path);
  const std::string json_path = (dir / "chat_template.json").string();
  if (std::filesystem::exists(json_path)) {
    SY_ASSIGN_OR_RETURN(const json config, ReadJson(json_path));
    SY_ASSIGN_OR_RETURN(std::string source, TemplateFromConfig(config, json_path));
    if (!source.empty()) return source;
  }
  return Status::NotFound(model_dir +
                          " has no chat template (tokenizer_config.json "
                          "chat_template, chat_template.jinja or chat_template.json)");
}

// OpenAI content parts: the text parts joined by newlines (as vLLM does for string-format
// templates); other part types are not supported by a text-only server.
template <typename Json>
StatusOr<Json> NormalizeMessages(const Json& messages) {
  if (!messages.is_array()) return Status::InvalidArgument("messages must be an array");
  Json out = messages;
  for (size_t i = 0; i < out.size(); ++i) {
    Json& m = out[i];
    if (!m.is_object()) {
      return Status::InvalidArgument("messages[" + std::to_string(i) + "] must be an object");
    }
    auto content = m.find("content");
    if (content == m.end() || !content->is_array()) continue;
    std::string text;
    bool first = true;
    for (const Json& part : *content) {
      const auto type = part.is_object() ? part.find("type") : part.end();
      const auto part_text = part.is_object() ? part.find("text") : part.end();
      if (!part.is_object() || type == part.end() || *type != "text" || part_text == part.end() ||
          !part_text->is_string()) {
        return Status::InvalidArgument("messages[" + std::to_string(i) +
                                       "].content: only text parts are supported");
      }
      if (!first) text += "\n";
      text += part_text->template get<std::string>();
      first = false;
    }
    *content = text;
  }
  return out;
}

}  // namespace

ChatTemplate::ChatTemplate(std::unique_ptr<jinja::Template> tmpl, std::string bos, std::string eos)
    : template_(std::move(tmpl)), bos_token_(std::move(bos)), eos_token_(std::move(eos)) {}

ChatTemplate::~ChatTemplate() = default;

StatusOr<std::shared_ptr<const ChatTemplate>> ChatTemplate::Load(const std::string& model_dir) {
  SY_ASSIGN_OR_RETURN(const std::string source, FindTemplateSource(model_dir));
  SY_ASSIGN_OR_RETURN(const tokenizer::HfTokenizerConfig config,
                      tokenizer::ReadHfTokenizerConfig(model_dir));
  return FromSource(source, config.bos_token.value_or(""), config.eos_token.value_or(""));
}

StatusOr<std::shared_ptr<const ChatTemplate>> ChatTemplate::FromSource(
    const std::string& source, const std::string& bos_token, const std::string& eos_token) {
  SY_ASSIGN_OR_RETURN(std::unique_ptr<jinja::Template> tmpl, jinja::Template::Parse(source));
  return std::shared_ptr<const ChatTemplate>(
      new ChatTemplate(std::move(tmpl), bos_token, eos_token));
}

template <typename Json>
StatusOr<std::string> ChatTemplate::RenderJson(const Json& messages, bool add_generation_prompt,
                                               const Json& extra) const {
  if (!extra.is_null() && !extra.is_object()) {
    return Status::InvalidArgument("chat template variables must be an object");
  }
  SY_ASSIGN_OR_RETURN(const Json normalized, NormalizeMessages(messages));
  // The variables transformers' apply_chat_template passes: the special tokens the tokenizer
  // has (unset ones stay undefined), tools and documents (None unless given), then kwargs.
  auto context = std::make_shared<jinja::Dict>();
  context->Set("messages", jinja::Value::FromJson(normalized));
  context->Set("tools", jinja::Value::None());
  context->Set("documents", jinja::Value::None());
  context->Set("add_generation_prompt", jinja::Value(add_generation_prompt));
  if (!bos_token_.empty()) context->Set("bos_token", jinja::Value(bos_token_));
  if (!eos_token_.empty()) context->Set("eos_token", jinja::Value(eos_token_));
  if (extra.is_object()) {
    for (auto it = extra.begin(); it != extra.end(); ++it) {
      context->Set(it.key(), jinja::Value::FromJson(it.value()));
    }
  }
  return template_->Render(jinja::Value(std::move(context)));
}

StatusOr<std::string> ChatTemplate::Render(const nlohmann::json& messages,
                                           bool add_generation_prompt,
                                           const nlohmann::json& extra) const {
  return RenderJson(messages, add_generation_prompt, extra);
}

StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages,
                                           bool add_generation_prompt,
                                           const nlohmann::ordered_json& extra) const {
  return RenderJson(messages, add_generation_prompt, extra);
}

}  // namespace sy
