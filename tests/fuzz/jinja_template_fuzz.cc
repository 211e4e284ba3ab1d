// Fuzzes the Jinja chat-template engine: the input is a template, optionally followed by a NUL
// byte and a JSON object whose members become the template's variables (otherwise it renders a
// fixed tool-calling conversation, as apply_chat_template would). Parse and Render must return a
// Status, never crash, and stay within the render budget (jinja::RenderLimits).
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "engine/core/bounded_json.h"
#include "engine/core/check.h"
#include "engine/tokenizer/jinja/template.h"
#include "engine/tokenizer/jinja/value.h"

namespace {

using nlohmann::ordered_json;

// Smaller than the defaults, so that one input renders in well under libFuzzer's timeout.
constexpr int64_t kFuzzMaxOutputBytes = 1 << 20;
constexpr int64_t kFuzzMaxSteps = 1'000'000;

// The variables transformers passes, over a conversation that reaches most template branches:
// a system prompt, tools, tool calls with dict and string arguments, a tool answer, reasoning,
// content parts.
const ordered_json& FixedContext() {
  static const ordered_json* context = new ordered_json(ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": [{"type": "text", "text": "Weather in Z\u00fcrich?"}]},
      {"role": "assistant", "content": "", "reasoning_content": "Call the tool.",
       "tool_calls": [{"type": "function", "id": "call_1",
                       "function": {"name": "get_weather", "arguments": {"city": "Z"}}},
                      {"type": "function",
                       "function": {"name": "now", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
      {"role": "assistant", "content": "<think>ok</think>It is sunny."},
      {"role": "user", "content": "Thanks \ud83c\udf89"}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather",
               "description": "Weather.", "parameters": {"type": "object",
               "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "add_generation_prompt": true,
    "enable_thinking": false,
    "bos_token": "<s>",
    "eos_token": "</s>"
  })"));
  return *context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string source(input.substr(0, split));
  auto parsed = sy::jinja::Template::Parse(source);
  if (!parsed.ok()) {
    SY_CHECK(parsed.status().code() == sy::StatusCode::kInvalidArgument);
    return 0;
  }
  sy::jinja::Value context = sy::jinja::Value::FromJson(FixedContext());
  if (split != std::string_view::npos) {
    auto json = sy::ParseBoundedJson(input.substr(split + 1), "context");
    if (json.ok() && json->is_object()) context = sy::jinja::Value::FromJson(*json);
  }
  sy::jinja::RenderOptions options;
  options.now = std::tm{};
  options.now->tm_year = 125;
  options.now->tm_mday = 2;
  options.limits.max_output_bytes = kFuzzMaxOutputBytes;
  options.limits.max_steps = kFuzzMaxSteps;
  auto rendered = (*parsed)->Render(context, options);
  if (rendered.ok()) {
    SY_CHECK(static_cast<int64_t>(rendered->size()) <= kFuzzMaxOutputBytes);
  } else {
    SY_CHECK(rendered.status().code() == sy::StatusCode::kInvalidArgument);
  }
  return 0;
}
