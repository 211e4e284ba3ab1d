// jinja::Template: a parsed Jinja template, rendered the way transformers' apply_chat_template
// renders chat templates (jinja2 sandbox, trim_blocks and lstrip_blocks, no autoescape, its
// tojson / raise_exception / strftime_now). Immutable after Parse; Render is thread-safe.
#pragma once

#include <ctime>
#include <memory>
#include <optional>
#include <string>

#include "engine/core/status.h"
#include "engine/tokenizer/jinja/ast.h"
#include "engine/tokenizer/jinja/eval.h"

namespace sy::jinja {

struct RenderOptions {
  // The time strftime_now() formats; nullopt: the local time when Render starts.
  std::optional<std::tm> now;
  RenderLimits limits;
};

class Template {
 public:
  // InvalidArgument (with the line) on a syntax error or an unknown filter, test or tag.
  static StatusOr<std::unique_ptr<Template>> Parse(const std::string& source);

  // `context` must be a dict; its entries are the template's variables. InvalidArgument when
  // the template raises (raise_exception's message verbatim) or an operation fails or exceeds
  // options.limits (message prefixed with "chat template error: ").
  StatusOr<std::string> Render(const Value& context, const RenderOptions& options = {}) const;

 private:
  explicit Template(Body body) : body_(std::move(body)) {}
  Body body_;
};

}  // namespace sy::jinja
