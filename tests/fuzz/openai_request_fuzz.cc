// Fuzzes the OpenAI request parsers with arbitrary bodies: ParseJsonObject, then the same object
// as a /v1/completions, /v1/chat/completions, /tokenize and /detokenize body, against the real
// tokenizer of a golden fixture (qwen3_moe) and the Qwen3 chat template (it renders tools).
// Nothing may crash; an accepted request must respect request_limits.h and the context length;
// a refused one must be a 400/404 whose error body serializes to valid JSON.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "engine/sched/request_limits.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"
#include "server/http/openai_protocol.h"
#include "tests/common/source_dir.h"

namespace {

using nlohmann::json;

// Room enough for prompts and completions to be accepted; small enough that long ones are not.
constexpr int64_t kMaxModelLen = 1024;

struct Served {
  std::unique_ptr<sy::Tokenizer> tokenizer;
  std::shared_ptr<const sy::ChatTemplate> chat_template;
  sy::http::ProtocolContext ctx;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SY_CHECK(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const Served& GetServed() {
  static const Served* served = [] {
    auto* s = new Served;
    const std::string root = sy::testing::SourceDir();
    auto tok = sy::Tokenizer::Load(root + "/tests/golden/models/qwen3_moe");
    SY_CHECK(tok.ok());
    s->tokenizer = std::move(tok).value();
    const json cases = json::parse(ReadFile(root + "/tests/golden/chat_templates/cases.json"));
    for (const json& t : cases["templates"]) {
      if (t["name"] != "qwen3_30b_a3b") continue;
      auto tmpl = sy::ChatTemplate::FromSource(t["template"].get<std::string>(),
                                               t["bos_token"].is_string() ? t["bos_token"] : "",
                                               t["eos_token"].get<std::string>());
      SY_CHECK(tmpl.ok());
      s->chat_template = std::move(tmpl).value();
    }
    SY_CHECK(s->chat_template != nullptr);
    s->ctx.tokenizer = s->tokenizer.get();
    s->ctx.chat_template = s->chat_template.get();
    s->ctx.model_name = "tiny";
    s->ctx.max_model_len = kMaxModelLen;
    return s;
  }();
  return *served;
}

void CheckError(const sy::http::ApiError& error) {
  SY_CHECK(error.http_status == 400 || error.http_status == 404);
  SY_CHECK(!error.message.empty());
  SY_CHECK(!error.type.empty());
  // The body the client gets is JSON even when the message quotes the client's bytes.
  const std::string body = sy::http::Dump(sy::http::ErrorBody(error));
  SY_CHECK(sy::tokenizer::IsValidUtf8(body));
  SY_CHECK(json::accept(body));
}

void CheckIds(const std::vector<int32_t>& ids, int32_t vocab_size) {
  for (int32_t id : ids) SY_CHECK(id >= 0 && id < vocab_size);
}

void CheckGeneration(const sy::http::GenerationRequest& req, sy::http::Endpoint endpoint,
                     int32_t vocab_size) {
  SY_CHECK(req.endpoint == endpoint);
  SY_CHECK(req.model == "tiny");
  SY_CHECK(!req.specs.empty());
  SY_CHECK(req.specs.size() <= sy::http::kMaxPrompts);
  if (endpoint == sy::http::Endpoint::kChat) SY_CHECK(req.specs.size() == 1);
  SY_CHECK(sy::CheckSequenceCount(static_cast<int64_t>(req.specs.size()), req.n).ok());
  SY_CHECK(req.logprobs >= -1 && req.logprobs <= sy::http::kMaxLogprobs);
  SY_CHECK(req.include_usage <= req.stream);
  for (const sy::RequestSpec& spec : req.specs) {
    SY_CHECK(spec.n == req.n);
    SY_CHECK(sy::CheckRequestLimits(spec, vocab_size).ok());
    SY_CHECK(spec.sampling.Validate().ok());
    SY_CHECK(spec.sampling.logprobs == req.logprobs);
    SY_CHECK(!spec.prompt.empty());
    CheckIds(spec.prompt, vocab_size);
    SY_CHECK(spec.stop.max_tokens >= 1);
    SY_CHECK(static_cast<int64_t>(spec.prompt.size()) + spec.stop.max_tokens <= kMaxModelLen);
    SY_CHECK(spec.stop.min_tokens >= 0 && spec.stop.min_tokens <= spec.stop.max_tokens);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Served& served = GetServed();
  const int32_t vocab_size = served.tokenizer->vocab_size();
  const std::string text(reinterpret_cast<const char*>(data), size);
  sy::http::ApiError error;
  const std::optional<json> body = sy::http::ParseJsonObject(text, &error);
  if (!body) {
    CheckError(error);
    return 0;
  }
  SY_CHECK(body->is_object());

  error = {};
  if (auto req = sy::http::ParseCompletionRequest(*body, served.ctx, &error)) {
    CheckGeneration(*req, sy::http::Endpoint::kCompletions, vocab_size);
  } else {
    CheckError(error);
  }
  error = {};
  if (auto req = sy::http::ParseChatRequest(*body, served.ctx, &error)) {
    CheckGeneration(*req, sy::http::Endpoint::kChat, vocab_size);
  } else {
    CheckError(error);
  }
  error = {};
  if (auto ids = sy::http::ParseTokenizeRequest(*body, served.ctx, &error)) {
    CheckIds(*ids, vocab_size);
  } else {
    CheckError(error);
  }
  error = {};
  if (auto ids = sy::http::ParseDetokenizeRequest(*body, served.ctx, &error)) {
    CheckIds(*ids, vocab_size);
    SY_CHECK(sy::tokenizer::IsValidUtf8(served.tokenizer->Decode(*ids, false)));
  } else {
    CheckError(error);
  }
  return 0;
}
