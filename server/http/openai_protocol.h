// The OpenAI-compatible wire protocol as pure functions: request bodies of /v1/completions and
// /v1/chat/completions parsed and validated into engine RequestSpecs, errors as OpenAI's error
// object, and the JSON of responses and SSE chunks. No server state; every function is
// thread-safe (the Tokenizer and ChatTemplate they borrow are immutable).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "engine/sched/request.h"
#include "engine/sched/request_limits.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace sy::http {

// An error as the client sees it: the HTTP status and the fields of OpenAI's error object.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;      // empty: null
  std::string code;       // empty: null
  int retry_after_s = 0;  // > 0: sent as Retry-After
};

ApiError InvalidRequest(std::string message, std::string param = "");
// InvalidArgument/OutOfRange 400, NotFound 404, ResourceExhausted 429 and Unavailable 503 (both
// with Retry-After), DeadlineExceeded 504 (code "request_timeout"), anything else 500.
ApiError ErrorFromStatus(const Status& status);
// {"error": {"message", "type", "param", "code"}}
nlohmann::json ErrorBody(const ApiError& error);

// Parses a request body that must be a JSON object; the error says why not.
std::optional<nlohmann::json> ParseJsonObject(const std::string& body, ApiError* error);

enum class Endpoint { kCompletions, kChat };

// What request parsing needs to know about the served model.
struct ProtocolContext {
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // null: the model has none
  std::string model_name;
  int64_t max_model_len = 0;
  double request_timeout_s = 0;  // the server's --request-timeout; 0: none
};

// Bounds on what one request may ask for, beyond those every frontend shares
// (engine/sched/request_limits.h: n, prompts x n, stop strings, stop_token_ids).
inline constexpr int32_t kMaxLogprobs = 20;
inline constexpr size_t kMaxPrompts = 256;

// The longest `timeout` a request body may ask for, in seconds (about 115 days).
inline constexpr double kMaxRequestTimeoutSeconds = 1e7;

// A validated generation request: one RequestSpec per prompt, each asking for `n` choices. Each
// spec's deadline is its arrival plus the body's `timeout` or the server's request timeout,
// whichever is shorter.
// Choice j of prompt i is reported with index i * n + j, as OpenAI does.
struct GenerationRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;  // echoed in responses
  std::vector<RequestSpec> specs;
  int32_t n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Completions: the `logprobs` count; chat: `top_logprobs` when `logprobs` is true; -1: none.
  int32_t logprobs = -1;
};

// Validates a parsed body. Errors: 400 with the offending `param`, 404 for an unknown model.
std::optional<GenerationRequest> ParseCompletionRequest(const nlohmann::json& body,
                                                        const ProtocolContext& ctx,
                                                        ApiError* error);
std::optional<GenerationRequest> ParseChatRequest(const nlohmann::json& body,
                                                  const ProtocolContext& ctx, ApiError* error);

// The prompt of a /tokenize body ({prompt | messages, add_special_tokens, ...}).
std::optional<std::vector<int32_t>> ParseTokenizeRequest(const nlohmann::json& body,
                                                         const ProtocolContext& ctx,
                                                         ApiError* error);
// The ids of a /detokenize body ({tokens}).
std::optional<std::vector<int32_t>> ParseDetokenizeRequest(const nlohmann::json& body,
                                                           const ProtocolContext& ctx,
                                                           ApiError* error);

// ---- responses ----

// One generated token with its logprobs, its text already decoded.
struct LogprobEntry {
  std::string token;
  float logprob = 0.0f;
  std::vector<std::pair<std::string, float>> top;  // most likely first
};
std::vector<LogprobEntry> DecodeLogprobs(const Tokenizer& tok,
                                         const std::vector<SampledToken>& samples);

// The output of one choice: everything so far (non-streaming) or one delta (streaming).
struct ChoiceOutput {
  int32_t index = 0;
  int32_t num_tokens = 0;  // tokens this delta carries (their text may still be held back)
  std::string text;
  std::vector<LogprobEntry> logprobs;
  std::optional<FinishReason> finish_reason;
  std::optional<std::string> stop_string;
  std::optional<int32_t> stop_token;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// Shared by every chunk of one response.
struct ResponseHeader {
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};

// A fresh id with the endpoint's prefix.
std::string NewResponseId(Endpoint endpoint);

// Completions logprobs track each token's character offset across a choice's chunks.
struct TextOffsets {
  std::vector<int64_t> next;  // per choice index
  int64_t Take(int32_t index, int64_t length);
};

nlohmann::json UsageJson(const Usage& usage);
// The whole non-streaming response; `request.logprobs` decides whether logprobs are shown.
nlohmann::json CompletionResponse(const ResponseHeader& header, const GenerationRequest& request,
                                  const std::vector<ChoiceOutput>& choices, const Usage& usage);
nlohmann::json ChatResponse(const ResponseHeader& header, const GenerationRequest& request,
                            const std::vector<ChoiceOutput>& choices, const Usage& usage);
// One streamed delta of one choice.
nlohmann::json CompletionChunk(const ResponseHeader& header, const GenerationRequest& request,
                               const ChoiceOutput& delta, TextOffsets* offsets);
nlohmann::json ChatChunk(const ResponseHeader& header, const GenerationRequest& request,
                         const ChoiceOutput& delta);
// The first chat chunk of a choice: delta {"role": "assistant", "content": ""}.
nlohmann::json ChatRoleChunk(const ResponseHeader& header, const GenerationRequest& request,
                             int32_t index);
// The final chunk with include_usage: "choices": [] and the usage.
nlohmann::json UsageChunk(const ResponseHeader& header, const GenerationRequest& request,
                          const Usage& usage);

// "data: <json>\n\n" (invalid UTF-8 replaced), and the terminating "data: [DONE]\n\n".
std::string SseEvent(const nlohmann::json& payload);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";
// JSON text for a response body; invalid UTF-8 is replaced rather than thrown on.
std::string Dump(const nlohmann::json& value);

}  // namespace sy::http
