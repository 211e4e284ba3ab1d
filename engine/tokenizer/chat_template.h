// ChatTemplate: renders chat messages into a prompt with the model's own Jinja chat template
// (tokenizer_config.json's "chat_template"), as Hugging Face's apply_chat_template does. The
// renderer implements the Jinja subset that real chat templates use. Immutable after loading;
// Render is thread-safe.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/core/status.h"

namespace sy {

namespace jinja {
class Template;
}

class ChatTemplate {
 public:
  // From a model directory: tokenizer_config.json's chat_template (a string, or a list of
  // {name, template} where "default" is used), else chat_template.jinja / chat_template.json.
  // NotFound when the model has no chat template; InvalidArgument on a template syntax error.
  static StatusOr<std::shared_ptr<const ChatTemplate>> Load(const std::string& model_dir);
  // bos_token / eos_token are the strings templates see under those names.
  static StatusOr<std::shared_ptr<const ChatTemplate>> FromSource(const std::string& source,
                                                                  const std::string& bos_token,
                                                                  const std::string& eos_token);
  ~ChatTemplate();

  // `messages`: an array of {"role", "content", ...} objects as in the OpenAI API (content may
  // be a string or a list of {"type": "text", "text"} parts, joined with "\n" as vLLM does).
  // `extra` adds variables (e.g. "tools", "enable_thinking"). InvalidArgument when the template
  // raises an exception (e.g. roles not alternating; the message is the template's own) or a
  // value has the wrong type.
  StatusOr<std::string> Render(const nlohmann::json& messages, bool add_generation_prompt,
                               const nlohmann::json& extra = nlohmann::json::object()) const;
  // The same with the caller's key order kept (nlohmann::json sorts object keys): templates
  // print tool schemas with |tojson, and the prompt should show them as the client sent them.
  StatusOr<std::string> Render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                               const nlohmann::ordered_json& extra) const;

 private:
  ChatTemplate(std::unique_ptr<jinja::Template> tmpl, std::string bos, std::string eos);
  template <typename Json>
  StatusOr<std::string> RenderJson(const Json& messages, bool add_generation_prompt,
                                   const Json& extra) const;
  std::unique_ptr<jinja::Template> template_;
  std::string bos_token_;
  std::string eos_token_;
};

}  // namespace sy
