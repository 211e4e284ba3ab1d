// The JSON of completions and chat responses, their SSE chunks and logprobs, in the shapes the
// OpenAI API documents (plus vLLM's `stop_reason`).
#include <algorithm>
#include <cmath>
#include <random>

#include "engine/tokenizer/unicode.h"
#include "server/http/openai_protocol.h"

namespace sy::http {
namespace {

using nlohmann::json;

// JSON has no -inf; OpenAI and vLLM report impossible tokens as -9999.
double ClampLogprob(float logprob) {
  return std::isnan(logprob) ? -9999.0 : std::max(static_cast<double>(logprob), -9999.0);
}

json FinishReasonJson(const std::optional<FinishReason>& reason) {
  return reason ? json(FinishReasonName(*reason)) : json(nullptr);
}

// vLLM's stop_reason: the matched stop string, the stop token id, or null.
json StopReasonJson(const ChoiceOutput& choice) {
  if (choice.stop_string) return *choice.stop_string;
  if (choice.stop_token) return *choice.stop_token;
  return nullptr;
}

json TokenBytes(const std::string& token) {
  json bytes = json::array();
  for (unsigned char c : token) bytes.push_back(static_cast<int>(c));
  return bytes;
}

// Completions logprobs: parallel arrays; top_logprobs maps token text to logprob and holds the
// sampled token plus the `top` most likely ones.
json CompletionLogprobs(const std::vector<LogprobEntry>& entries, int32_t top, int32_t index,
                        TextOffsets* offsets) {
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(),
       text_offset = json::array();
  for (const LogprobEntry& e : entries) {
    tokens.push_back(e.token);
    token_logprobs.push_back(ClampLogprob(e.logprob));
    json alternatives = json::object();
    alternatives.emplace(e.token, ClampLogprob(e.logprob));
    for (size_t k = 0; k < e.top.size() && k < static_cast<size_t>(top); ++k) {
      alternatives.emplace(e.top[k].first, ClampLogprob(e.top[k].second));
    }
    top_logprobs.push_back(std::move(alternatives));
    text_offset.push_back(
        offsets->Take(index, static_cast<int64_t>(tokenizer::Utf8Length(e.token))));
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top_logprobs},
          {"text_offset", text_offset}};
}

// Chat logprobs: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
json ChatLogprobs(const std::vector<LogprobEntry>& entries, int32_t top) {
  json content = json::array();
  for (const LogprobEntry& e : entries) {
    json alternatives = json::array();
    for (size_t k = 0; k < e.top.size() && k < static_cast<size_t>(top); ++k) {
      alternatives.push_back({{"token", e.top[k].first},
                              {"logprob", ClampLogprob(e.top[k].second)},
                              {"bytes", TokenBytes(e.top[k].first)}});
    }
    content.push_back({{"token", e.token},
                       {"logprob", ClampLogprob(e.logprob)},
                       {"bytes", TokenBytes(e.token)},
                       {"top_logprobs", std::move(alternatives)}});
  }
  return {{"content", std::move(content)}};
}

json Envelope(const ResponseHeader& header, const char* object) {
  return {
      {"id", header.id}, {"object", object}, {"created", header.created}, {"model", header.model}};
}

}  // namespace

int64_t TextOffsets::Take(int32_t index, int64_t length) {
  if (index >= static_cast<int32_t>(next.size())) next.resize(index + 1, 0);
  const int64_t offset = next[index];
  next[index] += length;
  return offset;
}

std::vector<LogprobEntry> DecodeLogprobs(const Tokenizer& tok,
                                         const std::vector<SampledToken>& samples) {
  std::vector<LogprobEntry> entries;
  entries.reserve(samples.size());
  for (const SampledToken& s : samples) {
    LogprobEntry e;
    const int32_t id = s.token;
    e.token = tok.Decode(std::span<const int32_t>(&id, 1), /*skip_special_tokens=*/false);
    e.logprob = s.logprob;
    for (const TokenLogprob& t : s.top) {
      const int32_t top_id = t.token;
      e.top.emplace_back(tok.Decode(std::span<const int32_t>(&top_id, 1), false), t.logprob);
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

std::string NewResponseId(Endpoint endpoint) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 32; ++i) id.push_back(kHex[rng() & 15]);
  return id;
}

json UsageJson(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

json CompletionResponse(const ResponseHeader& header, const GenerationRequest& request,
                        const std::vector<ChoiceOutput>& choices, const Usage& usage) {
  json out = Envelope(header, "text_completion");
  json list = json::array();
  TextOffsets offsets;
  for (const ChoiceOutput& c : choices) {
    json choice = {{"index", c.index}, {"text", c.text}};
    choice["logprobs"] = request.logprobs >= 0
                             ? CompletionLogprobs(c.logprobs, request.logprobs, c.index, &offsets)
                             : json(nullptr);
    choice["finish_reason"] = FinishReasonJson(c.finish_reason);
    choice["stop_reason"] = StopReasonJson(c);
    list.push_back(std::move(choice));
  }
  out["choices"] = std::move(list);
  out["usage"] = UsageJson(usage);
  return out;
}

json ChatResponse(const ResponseHeader& header, const GenerationRequest& request,
                  const std::vector<ChoiceOutput>& choices, const Usage& usage) {
  json out = Envelope(header, "chat.completion");
  json list = json::array();
  for (const ChoiceOutput& c : choices) {
    json choice = {{"index", c.index}, {"message", {{"role", "assistant"}, {"content", c.text}}}};
    choice["logprobs"] =
        request.logprobs >= 0 ? ChatLogprobs(c.logprobs, request.logprobs) : json(nullptr);
    choice["finish_reason"] = FinishReasonJson(c.finish_reason);
    choice["stop_reason"] = StopReasonJson(c);
    list.push_back(std::move(choice));
  }
  out["choices"] = std::move(list);
  out["usage"] = UsageJson(usage);
  return out;
}

json CompletionChunk(const ResponseHeader& header, const GenerationRequest& request,
                     const ChoiceOutput& delta, TextOffsets* offsets) {
  json out = Envelope(header, "text_completion");
  json choice = {{"index", delta.index}, {"text", delta.text}};
  choice["logprobs"] = request.logprobs >= 0 ? CompletionLogprobs(delta.logprobs, request.logprobs,
                                                                  delta.index, offsets)
                                             : json(nullptr);
  choice["finish_reason"] = FinishReasonJson(delta.finish_reason);
  choice["stop_reason"] = StopReasonJson(delta);
  out["choices"] = json::array({std::move(choice)});
  if (request.include_usage) out["usage"] = nullptr;
  return out;
}

json ChatChunk(const ResponseHeader& header, const GenerationRequest& request,
               const ChoiceOutput& delta) {
  json out = Envelope(header, "chat.completion.chunk");
  // The finishing chunk of OpenAI's streams has an empty delta unless text came with it.
  json delta_json = json::object();
  if (!delta.text.empty() || !delta.finish_reason) delta_json["content"] = delta.text;
  json choice = {{"index", delta.index}, {"delta", std::move(delta_json)}};
  choice["logprobs"] =
      request.logprobs >= 0 ? ChatLogprobs(delta.logprobs, request.logprobs) : json(nullptr);
  choice["finish_reason"] = FinishReasonJson(delta.finish_reason);
  choice["stop_reason"] = StopReasonJson(delta);
  out["choices"] = json::array({std::move(choice)});
  if (request.include_usage) out["usage"] = nullptr;
  return out;
}

json ChatRoleChunk(const ResponseHeader& header, const GenerationRequest& request, int32_t index) {
  json out = Envelope(header, "chat.completion.chunk");
  json choice = {{"index", index},
                 {"delta", {{"role", "assistant"}, {"content", ""}}},
                 {"logprobs", nullptr},
                 {"finish_reason", nullptr}};
  out["choices"] = json::array({std::move(choice)});
  if (request.include_usage) out["usage"] = nullptr;
  return out;
}

json UsageChunk(const ResponseHeader& header, const GenerationRequest& request,
                const Usage& usage) {
  json out = Envelope(
      header, request.endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = json::array();
  out["usage"] = UsageJson(usage);
  return out;
}

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string SseEvent(const json& payload) { return "data: " + Dump(payload) + "\n\n"; }

}  // namespace sy::http
