// Parsing and validation of /v1/completions, /v1/chat/completions, /tokenize and /detokenize
// bodies. Field names, defaults and bounds follow the OpenAI API and vLLM's extensions; unknown
// fields are ignored as both do.
#include <cfloat>
#include <cmath>
#include <limits>
#include <string>

#include "server/http/field_reader.h"
#include "server/http/openai_protocol.h"

namespace sy::http {
namespace {

using nlohmann::json;

// The sampling fields both endpoints share, into spec->sampling / spec->stop.
bool ReadSamplingFields(FieldReader& r, RequestSpec* spec) {
  SamplingParams& s = spec->sampling;
  double d = s.temperature;
  if (!r.Float("temperature", 0.0, FLT_MAX, &d)) return false;
  s.temperature = static_cast<float>(d);
  d = s.top_p;
  if (!r.Float("top_p", 0.0, 1.0, &d)) return false;
  if (d <= 0.0) return r.Fail("`top_p` must be in (0, 1], got " + std::to_string(d), "top_p");
  s.top_p = static_cast<float>(d);
  int64_t i = s.top_k;
  if (!r.Int("top_k", -1, std::numeric_limits<int32_t>::max(), &i)) return false;
  s.top_k = static_cast<int32_t>(i);
  d = s.min_p;
  if (!r.Float("min_p", 0.0, 1.0, &d)) return false;
  s.min_p = static_cast<float>(d);
  d = s.presence_penalty;
  if (!r.Float("presence_penalty", -2.0, 2.0, &d)) return false;
  s.presence_penalty = static_cast<float>(d);
  d = s.frequency_penalty;
  if (!r.Float("frequency_penalty", -2.0, 2.0, &d)) return false;
  s.frequency_penalty = static_cast<float>(d);
  d = s.repetition_penalty;
  if (!r.Float("repetition_penalty", 0.0, FLT_MAX, &d)) return false;
  if (d <= 0.0) return r.Fail("`repetition_penalty` must be > 0", "repetition_penalty");
  s.repetition_penalty = static_cast<float>(d);
  if (r.Has("seed")) {
    int64_t seed = 0;
    if (!r.Int("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
               &seed)) {
      return false;
    }
    s.seed = static_cast<uint64_t>(seed);
  }
  return true;
}

bool ReadStopFields(FieldReader& r, const ProtocolContext& ctx, RequestSpec* spec) {
  StopConditions& stop = spec->stop;
  if (const json* v = r.Get("stop")) {
    if (v->is_string()) {
      stop.stop_strings.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      for (const json& e : *v) {
        if (!e.is_string()) return r.Fail("`stop` must be a string or a list of strings", "stop");
        stop.stop_strings.push_back(e.get<std::string>());
      }
    } else {
      return r.Fail("`stop` must be a string or a list of strings", "stop");
    }
    if (Status st = CheckStopStrings(stop.stop_strings); !st.ok()) {
      return r.Fail(st.message(), "stop");
    }
  }
  if (const json* v = r.Get("stop_token_ids")) {
    if (!v->is_array())
      return r.Fail("`stop_token_ids` must be a list of token ids", "stop_token_ids");
    for (const json& e : *v) {
      if (!e.is_number_integer()) {
        return r.Fail("`stop_token_ids` must be a list of token ids", "stop_token_ids");
      }
      // Beyond int32 is outside any vocabulary; -1 makes the shared check say so.
      const bool fits = !e.is_number_unsigned() || e.get<uint64_t>() <= INT32_MAX;
      const int64_t id = fits ? e.get<int64_t>() : -1;
      stop.stop_token_ids.push_back(id >= INT32_MIN && id <= INT32_MAX ? static_cast<int32_t>(id)
                                                                       : -1);
    }
    if (Status st = CheckStopTokenIds(stop.stop_token_ids, ctx.tokenizer->vocab_size()); !st.ok()) {
      return r.Fail(st.message(), "stop_token_ids");
    }
  }
  return r.Bool("ignore_eos", &stop.ignore_eos) &&
         r.Bool("include_stop_str_in_output", &stop.include_stop_str_in_output) &&
         r.Bool("skip_special_tokens", &spec->skip_special_tokens);
}

// `model` is optional (vLLM serves its one model); another name is a 404.
bool CheckModel(FieldReader& r, const ProtocolContext& ctx) {
  if (const json* v = r.Get("model")) {
    if (!v->is_string()) return r.Fail("`model` must be a string", "model");
    if (v->get<std::string>() != ctx.model_name) {
      ApiError e;
      e.http_status = 404;
      e.message = "The model `" + v->get<std::string>() + "` does not exist.";
      e.param = "model";
      e.code = "model_not_found";
      return r.Fail(std::move(e));
    }
  }
  return true;
}

// Fields that change how the request is served rather than what is sampled.
bool ReadServingFields(FieldReader& r, const ProtocolContext& ctx, GenerationRequest* req) {
  req->model = ctx.model_name;
  if (!CheckModel(r, ctx)) return false;
  int64_t n = 1;
  if (!r.Int("n", 1, kMaxChoices, &n)) return false;
  req->n = static_cast<int32_t>(n);
  int64_t best_of = n;
  if (!r.Int("best_of", 1, kMaxChoices, &best_of)) return false;
  if (best_of != n) return r.Fail("`best_of` other than `n` is not supported", "best_of");
  if (!r.Bool("stream", &req->stream)) return false;
  if (const json* v = r.Get("stream_options")) {
    if (!req->stream) {
      return r.Fail("`stream_options` can only be set when `stream` is true", "stream_options");
    }
    if (!v->is_object()) return r.Fail("`stream_options` must be an object", "stream_options");
    FieldReader options(*v, r.error(), "stream_options");
    if (!options.Bool("include_usage", &req->include_usage)) return false;
  }
  if (const json* v = r.Get("logit_bias"); v && !(v->is_object() && v->empty())) {
    return r.Fail("`logit_bias` is not supported", "logit_bias");
  }
  if (const json* v = r.Get("response_format")) {
    const auto type = v->is_object() ? v->find("type") : v->end();
    if (!v->is_object() || type == v->end() || *type != "text") {
      return r.Fail("only `response_format` {\"type\": \"text\"} is supported", "response_format");
    }
  }
  return true;
}

// max_tokens / max_completion_tokens / min_tokens against each prompt's room in the context.
bool ApplyTokenLimits(FieldReader& r, const ProtocolContext& ctx, const char* prompt_param,
                      GenerationRequest* req) {
  const int64_t kUnset = -1;
  int64_t max_tokens = kUnset;
  int64_t max_completion_tokens = kUnset;
  const int64_t kHuge = std::numeric_limits<int64_t>::max();
  if (!r.Int("max_tokens", 1, kHuge, &max_tokens)) return false;
  if (!r.Int("max_completion_tokens", 1, kHuge, &max_completion_tokens)) return false;
  const char* param = max_completion_tokens != kUnset ? "max_completion_tokens" : "max_tokens";
  const int64_t asked = max_completion_tokens != kUnset ? max_completion_tokens : max_tokens;
  int64_t min_tokens = 0;
  if (!r.Int("min_tokens", 0, kHuge, &min_tokens)) return false;
  for (RequestSpec& spec : req->specs) {
    const int64_t prompt_len = static_cast<int64_t>(spec.prompt.size());
    const int64_t room = ctx.max_model_len - prompt_len;
    if (room < 1 || (asked != kUnset && asked > room)) {
      const int64_t total = prompt_len + (asked == kUnset ? 1 : asked);
      return r.Fail("This model's maximum context length is " + std::to_string(ctx.max_model_len) +
                        " tokens. However, you requested " + std::to_string(total) + " tokens (" +
                        std::to_string(prompt_len) + " in the prompt, " +
                        std::to_string(total - prompt_len) +
                        " in the completion). Please reduce the length of the prompt or "
                        "completion.",
                    // A prompt that leaves no room at all is at fault whatever was asked for.
                    asked == kUnset || room < 1 ? prompt_param : param);
    }
    spec.stop.max_tokens = static_cast<int32_t>(asked == kUnset ? room : asked);
    if (min_tokens > spec.stop.max_tokens) {
      return r.Fail("`min_tokens` must be at most the maximum number of tokens", "min_tokens");
    }
    spec.stop.min_tokens = static_cast<int32_t>(min_tokens);
  }
  return true;
}

// The deadline: `timeout` seconds (> 0) or the server's request timeout, the shorter one.
bool ReadDeadline(FieldReader& r, const ProtocolContext& ctx, RequestSpec* base) {
  double timeout = 0;
  if (!r.Float("timeout", 0, kMaxRequestTimeoutSeconds, &timeout)) return false;
  if (r.Has("timeout") && !(timeout > 0)) {
    return r.Fail("`timeout` must be a positive number of seconds", "timeout");
  }
  double seconds = ctx.request_timeout_s;
  if (timeout > 0 && (seconds <= 0 || timeout < seconds)) seconds = timeout;
  if (seconds > 0) {
    base->deadline = base->arrival + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(seconds));
  }
  return true;
}

// Reads what both endpoints share into a template spec, and validates it as the engine would.
bool ReadCommon(FieldReader& r, const ProtocolContext& ctx, GenerationRequest* req,
                RequestSpec* base) {
  if (!ReadServingFields(r, ctx, req) || !ReadSamplingFields(r, base) ||
      !ReadStopFields(r, ctx, base) || !ReadDeadline(r, ctx, base)) {
    return false;
  }
  base->n = req->n;
  base->sampling.logprobs = req->logprobs;
  Status valid = base->sampling.Validate();
  if (!valid.ok()) return r.Fail(valid.message(), "");
  return true;
}

bool IsTokenArray(const json& v) {
  if (!v.is_array() || v.empty()) return false;
  for (const json& e : v) {
    if (!e.is_number_integer()) return false;
  }
  return true;
}

bool ToTokenIds(FieldReader& r, const json& v, const ProtocolContext& ctx, const char* param,
                std::vector<int32_t>* out) {
  for (const json& e : v) {
    const int64_t id =
        e.is_number_unsigned() && e.get<uint64_t>() > INT64_MAX ? -1 : e.get<int64_t>();
    if (id < 0 || id >= ctx.tokenizer->vocab_size()) {
      return r.Fail("token id " + e.dump() + " is outside the vocabulary", param);
    }
    out->push_back(static_cast<int32_t>(id));
  }
  return true;
}

// The completions `prompt`: a string, a list of strings, a list of ids, or a list of id lists.
bool ReadPrompts(FieldReader& r, const ProtocolContext& ctx, bool add_special,
                 std::vector<std::vector<int32_t>>* prompts) {
  const json* v = r.Get("prompt");
  if (!v) return r.Fail("`prompt` is required", "prompt");
  auto encode = [&](const json& text) {
    const std::string& s = text.get_ref<const std::string&>();
    if (s.empty()) return r.Fail("`prompt` must not be empty", "prompt");
    prompts->push_back(ctx.tokenizer->Encode(s, add_special));
    return true;
  };
  const char* kShape =
      "`prompt` must be a string, a list of strings, a list of token ids, or a "
      "list of lists of token ids";
  if (v->is_string()) return encode(*v);
  if (!v->is_array()) return r.Fail(kShape, "prompt");
  if (v->empty()) return r.Fail("`prompt` must not be empty", "prompt");
  if (IsTokenArray(*v)) {
    prompts->emplace_back();
    return ToTokenIds(r, *v, ctx, "prompt", &prompts->back());
  }
  if (v->size() > kMaxPrompts) {
    return r.Fail("`prompt` may hold at most " + std::to_string(kMaxPrompts) + " prompts",
                  "prompt");
  }
  for (const json& e : *v) {
    if (e.is_string()) {
      if (!encode(e)) return false;
    } else if (e.is_array()) {
      if (e.empty()) return r.Fail("`prompt` must not be empty", "prompt");
      if (!IsTokenArray(e)) return r.Fail(kShape, "prompt");
      prompts->emplace_back();
      if (!ToTokenIds(r, e, ctx, "prompt", &prompts->back())) return false;
    } else {
      return r.Fail(kShape, "prompt");
    }
  }
  return true;
}

// Chat messages through the model's template, tokenized without special tokens (the template
// writes them), as vLLM does.
bool RenderMessages(FieldReader& r, const ProtocolContext& ctx, bool add_special_default,
                    std::vector<int32_t>* prompt) {
  const json* messages = r.Get("messages");
  if (!messages) return r.Fail("`messages` is required", "messages");
  if (!messages->is_array() || messages->empty()) {
    return r.Fail("`messages` must be a non-empty list of messages", "messages");
  }
  for (const json& m : *messages) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return r.Fail("each message must be an object with a string `role`", "messages");
    }
  }
  if (!ctx.chat_template) {
    return r.Fail("This model has no chat template; use /v1/completions instead.", "messages");
  }
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  bool add_special = add_special_default;
  if (!r.Bool("add_generation_prompt", &add_generation_prompt) ||
      !r.Bool("continue_final_message", &continue_final_message) ||
      !r.Bool("add_special_tokens", &add_special)) {
    return false;
  }
  if (continue_final_message) {
    return r.Fail("`continue_final_message` is not supported", "continue_final_message");
  }
  json extra = json::object();
  if (const json* kwargs = r.Get("chat_template_kwargs")) {
    if (!kwargs->is_object()) {
      return r.Fail("`chat_template_kwargs` must be an object", "chat_template_kwargs");
    }
    extra = *kwargs;
  }
  if (const json* tools = r.Get("tools")) extra["tools"] = *tools;
  StatusOr<std::string> text = ctx.chat_template->Render(*messages, add_generation_prompt, extra);
  if (!text.ok()) return r.Fail(text.status().message(), "messages");
  *prompt = ctx.tokenizer->Encode(*text, add_special);
  if (prompt->empty()) return r.Fail("the rendered prompt is empty", "messages");
  return true;
}

}  // namespace

std::optional<GenerationRequest> ParseCompletionRequest(const json& body,
                                                        const ProtocolContext& ctx,
                                                        ApiError* error) {
  FieldReader r(body, error);
  GenerationRequest req;
  req.endpoint = Endpoint::kCompletions;
  int64_t logprobs = -1;
  if (!r.Int("logprobs", 0, kMaxLogprobs, &logprobs)) return std::nullopt;
  req.logprobs = static_cast<int32_t>(logprobs);
  bool echo = false;
  if (!r.Bool("echo", &echo)) return std::nullopt;
  if (echo) {
    r.Fail("`echo` is not supported", "echo");
    return std::nullopt;
  }
  if (r.Get("suffix")) {
    r.Fail("`suffix` is not supported", "suffix");
    return std::nullopt;
  }
  RequestSpec base;
  if (!ReadCommon(r, ctx, &req, &base)) return std::nullopt;
  bool add_special = true;
  if (!r.Bool("add_special_tokens", &add_special)) return std::nullopt;
  std::vector<std::vector<int32_t>> prompts;
  if (!ReadPrompts(r, ctx, add_special, &prompts)) return std::nullopt;
  if (Status st = CheckSequenceCount(static_cast<int64_t>(prompts.size()), req.n); !st.ok()) {
    r.Fail(st.message(), "n");
    return std::nullopt;
  }
  for (std::vector<int32_t>& p : prompts) {
    if (p.empty()) {
      r.Fail("`prompt` must not be empty", "prompt");
      return std::nullopt;
    }
    RequestSpec spec = base;
    spec.prompt = std::move(p);
    req.specs.push_back(std::move(spec));
  }
  if (!ApplyTokenLimits(r, ctx, "prompt", &req)) return std::nullopt;
  return req;
}

std::optional<GenerationRequest> ParseChatRequest(const json& body, const ProtocolContext& ctx,
                                                  ApiError* error) {
  FieldReader r(body, error);
  GenerationRequest req;
  req.endpoint = Endpoint::kChat;
  bool logprobs = false;
  if (!r.Bool("logprobs", &logprobs)) return std::nullopt;
  int64_t top_logprobs = -1;
  if (!r.Int("top_logprobs", 0, kMaxLogprobs, &top_logprobs)) return std::nullopt;
  if (top_logprobs >= 0 && !logprobs) {
    {
      r.Fail("`top_logprobs` needs `logprobs` set to true", "top_logprobs");
      return std::nullopt;
    }
  }
  req.logprobs = logprobs ? static_cast<int32_t>(std::max<int64_t>(top_logprobs, 0)) : -1;
  RequestSpec base;
  if (!ReadCommon(r, ctx, &req, &base)) return std::nullopt;
  std::vector<int32_t> prompt;
  if (!RenderMessages(r, ctx, /*add_special_default=*/false, &prompt)) return std::nullopt;
  base.prompt = std::move(prompt);
  req.specs.push_back(std::move(base));
  if (!ApplyTokenLimits(r, ctx, "messages", &req)) return std::nullopt;
  return req;
}

std::optional<std::vector<int32_t>> ParseTokenizeRequest(const json& body,
                                                         const ProtocolContext& ctx,
                                                         ApiError* error) {
  FieldReader r(body, error);
  if (!CheckModel(r, ctx)) return std::nullopt;
  std::vector<int32_t> tokens;
  if (r.Has("messages")) {
    if (!RenderMessages(r, ctx, /*add_special_default=*/false, &tokens)) return std::nullopt;
    return tokens;
  }
  const json* prompt = r.Get("prompt");
  if (!prompt || !prompt->is_string()) {
    {
      r.Fail("`prompt` (a string) or `messages` is required", "prompt");
      return std::nullopt;
    }
  }
  bool add_special = true;
  if (!r.Bool("add_special_tokens", &add_special)) return std::nullopt;
  return ctx.tokenizer->Encode(prompt->get_ref<const std::string&>(), add_special);
}

std::optional<std::vector<int32_t>> ParseDetokenizeRequest(const json& body,
                                                           const ProtocolContext& ctx,
                                                           ApiError* error) {
  FieldReader r(body, error);
  if (!CheckModel(r, ctx)) return std::nullopt;
  const json* tokens = r.Get("tokens");
  if (!tokens || !tokens->is_array()) {
    {
      r.Fail("`tokens` (a list of token ids) is required", "tokens");
      return std::nullopt;
    }
  }
  for (const json& e : *tokens) {
    if (!e.is_number_integer()) {
      {
        r.Fail("`tokens` must be a list of token ids", "tokens");
        return std::nullopt;
      }
    }
  }
  std::vector<int32_t> ids;
  if (!ToTokenIds(r, *tokens, ctx, "tokens", &ids)) return std::nullopt;
  return ids;
}

}  // namespace sy::http
