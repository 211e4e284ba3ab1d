#include "engine/tokenizer/jinja/template.h"

#include <exception>
#include <string>

#include "engine/tokenizer/jinja/builtins.h"
#include "engine/tokenizer/jinja/eval.h"
#include "engine/tokenizer/jinja/parser.h"

namespace sy::jinja {

StatusOr<std::unique_ptr<Template>> Template::Parse(const std::string& source) {
  try {
    return std::unique_ptr<Template>(new Template(ParseTemplate(source)));
  } catch (const Error& e) {
    return Status::InvalidArgument(e.what());
  } catch (const std::exception& e) {
    // A standard-library error the engine did not turn into its own (a bug, but not the
    // server's end: the template is refused).
    return Status::InvalidArgument(std::string("template syntax error: ") + e.what());
  }
}

StatusOr<std::string> Template::Render(const Value& context, const RenderOptions& options) const {
  if (!context.is_dict()) return Status::InvalidArgument("template context must be a dict");
  std::tm now{};
  if (options.now) {
    now = *options.now;
  } else {
    const std::time_t t = std::time(nullptr);
    localtime_r(&t, &now);
  }
  const Dict globals = MakeGlobals(now);
  std::string out;
  try {
    Renderer(context.dict(), globals, options.limits).Render(body_, &out);
  } catch (const Error& e) {
    if (e.raised()) return Status::InvalidArgument(e.what());
    return Status::InvalidArgument(std::string("chat template error: ") + e.what());
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("chat template error: ") + e.what());
  }
  return out;
}

}  // namespace sy::jinja
