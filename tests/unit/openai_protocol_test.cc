// The OpenAI wire protocol: request validation (every error class with its status and param),
// prompt forms, token limits, and the JSON of responses, chunks and logprobs. Expected values
// are worked out by hand from the OpenAI API reference, with a byte-level fake tokenizer whose
// ids are easy to write down (byte b -> id b, <s> = 256, </s> = 257).
#include "server/http/openai_protocol.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace sy::http {
namespace {

using nlohmann::json;

class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int32_t> ids;
    if (add_special_tokens) ids.push_back(kBos);
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id >= 0 && id < 256) out.push_back(static_cast<char>(id));
      if (id == kBos && !skip_special_tokens) out += "<s>";
      if (id == kEos && !skip_special_tokens) out += "</s>";
    }
    return out;
  }
  int32_t vocab_size() const override { return 258; }
  std::optional<int32_t> bos_id() const override { return kBos; }
  std::vector<int32_t> eos_ids() const override { return {kEos}; }
  bool is_special(int32_t id) const override { return id >= 256; }
  std::optional<int32_t> token_to_id(std::string_view) const override { return std::nullopt; }
  std::string id_to_token(int32_t id) const override {
    return Decode(std::span<const int32_t>(&id, 1), false);
  }

  static constexpr int32_t kBos = 256;
  static constexpr int32_t kEos = 257;
};

class ProtocolTest : public ::testing::Test {
 protected:
  ProtocolTest() {
    ctx_.tokenizer = &tok_;
    ctx_.model_name = "tiny";
    ctx_.max_model_len = 32;
  }

  GenerationRequest Completion(const json& body) {
    ApiError error;
    std::optional<GenerationRequest> r = ParseCompletionRequest(body, ctx_, &error);
    EXPECT_TRUE(r.has_value()) << body.dump() << " -> " << error.message;
    return r ? *r : GenerationRequest{};
  }
  ApiError CompletionError(const json& body) {
    ApiError error;
    std::optional<GenerationRequest> r = ParseCompletionRequest(body, ctx_, &error);
    EXPECT_FALSE(r.has_value()) << body.dump();
    return error;
  }

  ByteTokenizer tok_;
  ProtocolContext ctx_;
};

TEST(BodyTest, RejectsBodiesThatAreNotJsonObjects) {
  for (const std::string body :
       {"", "{", "not json", "[1, 2]", "\"text\"", "42", "null", "{\"prompt\": \"\xFF\"}"}) {
    ApiError error;
    EXPECT_FALSE(ParseJsonObject(body, &error).has_value()) << body;
    EXPECT_EQ(error.http_status, 400) << body;
    EXPECT_EQ(error.type, "invalid_request_error");
    EXPECT_FALSE(error.message.empty());
  }
  ApiError error;
  std::optional<json> ok = ParseJsonObject("{\"prompt\": \"h\xC3\xA9\"}", &error);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ((*ok)["prompt"], "h\xC3\xA9");
}

// `levels` arrays or objects nested around 0: "[[0]]" or {"a": {"a": 0}} for 2.
std::string Nested(size_t levels, bool objects) {
  std::string text;
  text.reserve(levels * 6 + 1);
  for (size_t i = 0; i < levels; ++i) text += objects ? "{\"a\":" : "[";
  text += "0";
  text.append(levels, objects ? '}' : ']');
  return text;
}

TEST(BodyTest, NestingIsBoundedAt64Levels) {
  // The body object is level 1, so "prompt" may hold 63 more levels and no more.
  for (bool objects : {false, true}) {
    ApiError error;
    EXPECT_TRUE(ParseJsonObject("{\"prompt\": " + Nested(63, objects) + "}", &error).has_value());
    EXPECT_FALSE(ParseJsonObject("{\"prompt\": " + Nested(64, objects) + "}", &error).has_value());
    EXPECT_EQ(error.http_status, 400);
    EXPECT_EQ(error.type, "invalid_request_error");
    EXPECT_EQ(error.message, "The request body nests arrays and objects deeper than 64 levels.");
  }
  ApiError error;
  EXPECT_TRUE(ParseJsonObject(Nested(64, true), &error).has_value());
  EXPECT_FALSE(ParseJsonObject(Nested(65, true), &error).has_value());
  EXPECT_EQ(error.http_status, 400);
}

TEST(BodyTest, HostileNestingIsRejectedWithoutCrashing) {
  // Deep enough to overflow any recursive walk of the value; the bound stops it at parse time.
  constexpr size_t kLevels = 300000;
  for (bool objects : {false, true}) {
    const std::string deep = Nested(kLevels, objects);
    const std::string message = R"({"role": "user", "content": "hi")";
    for (const std::string& body : {
             deep,
             R"({"messages": [)" + message + R"(}], "tools": [)" + deep + "]}",
             R"({"messages": [)" + message + R"(}], "chat_template_kwargs": {"x": )" + deep + "}}",
             R"({"messages": [)" + message + R"(, "extra": )" + deep + "}]}",
             R"({"prompt": )" + deep + "}",
         }) {
      ApiError error;
      EXPECT_FALSE(ParseJsonObject(body, &error).has_value());
      EXPECT_EQ(error.http_status, 400);
      EXPECT_NE(error.message.find("deeper than 64 levels"), std::string::npos) << error.message;
    }
  }
}

TEST(ErrorTest, StatusCodesMapToHttpStatuses) {
  EXPECT_EQ(ErrorFromStatus(Status::InvalidArgument("x")).http_status, 400);
  EXPECT_EQ(ErrorFromStatus(Status::OutOfRange("x")).http_status, 400);
  EXPECT_EQ(ErrorFromStatus(Status::NotFound("x")).http_status, 404);
  const ApiError full = ErrorFromStatus(Status::ResourceExhausted("queue full"));
  EXPECT_EQ(full.http_status, 429);
  EXPECT_GT(full.retry_after_s, 0);
  const ApiError down = ErrorFromStatus(Status::Unavailable("draining"));
  EXPECT_EQ(down.http_status, 503);
  EXPECT_GT(down.retry_after_s, 0);
  EXPECT_EQ(ErrorFromStatus(Status::Internal("bug")).http_status, 500);
  EXPECT_EQ(ErrorFromStatus(Status::DataLoss("bad file")).http_status, 500);
  EXPECT_EQ(ErrorFromStatus(Status::Internal("bug")).message, "bug");
}

TEST(ErrorTest, DeadlineExceededIs504RequestTimeout) {
  const ApiError e = ErrorFromStatus(Status::DeadlineExceeded("too slow"));
  EXPECT_EQ(e.http_status, 504);
  EXPECT_EQ(e.code, "request_timeout");
  EXPECT_EQ(e.message, "too slow");
  EXPECT_EQ(ErrorBody(e)["error"]["code"], "request_timeout");
}

TEST(ErrorTest, BodyIsOpenAiErrorObject) {
  EXPECT_EQ(ErrorBody(InvalidRequest("bad n", "n")),
            json::parse(R"({"error": {"message": "bad n", "type": "invalid_request_error",
                                      "param": "n", "code": null}})"));
  EXPECT_EQ(ErrorBody(InvalidRequest("bad body")),
            json::parse(R"({"error": {"message": "bad body", "type": "invalid_request_error",
                                      "param": null, "code": null}})"));
}

TEST_F(ProtocolTest, StringPromptIsTokenizedWithSpecialTokens) {
  GenerationRequest r = Completion({{"model", "tiny"}, {"prompt", "abc"}, {"max_tokens", 5}});
  EXPECT_EQ(r.endpoint, Endpoint::kCompletions);
  EXPECT_EQ(r.model, "tiny");
  ASSERT_EQ(r.specs.size(), 1u);
  EXPECT_EQ(r.specs[0].prompt, (std::vector<int32_t>{256, 97, 98, 99}));
  EXPECT_EQ(r.specs[0].stop.max_tokens, 5);
  EXPECT_EQ(r.n, 1);
  EXPECT_EQ(r.specs[0].n, 1);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_EQ(r.specs[0].sampling.logprobs, -1);
}

TEST_F(ProtocolTest, ModelIsOptionalAndUnknownFieldsAreIgnored) {
  GenerationRequest r = Completion({{"prompt", "a"}, {"user", "me"}, {"frobnicate", {1, 2}}});
  EXPECT_EQ(r.model, "tiny");
  ASSERT_EQ(r.specs.size(), 1u);
}

TEST_F(ProtocolTest, DefaultMaxTokensIsTheRestOfTheContext) {
  // 4 prompt tokens (bos + "abc") in a 32-token context leave 28.
  GenerationRequest r = Completion({{"prompt", "abc"}});
  EXPECT_EQ(r.specs[0].stop.max_tokens, 28);
  // Each prompt gets its own room: 2 tokens -> 30, 6 tokens -> 26.
  r = Completion({{"prompt", {"a", "abcde"}}});
  ASSERT_EQ(r.specs.size(), 2u);
  EXPECT_EQ(r.specs[0].stop.max_tokens, 30);
  EXPECT_EQ(r.specs[1].stop.max_tokens, 26);
}

TEST_F(ProtocolTest, MaxCompletionTokensWinsOverMaxTokens) {
  GenerationRequest r =
      Completion({{"prompt", "abc"}, {"max_tokens", 3}, {"max_completion_tokens", 7}});
  EXPECT_EQ(r.specs[0].stop.max_tokens, 7);
  r = Completion({{"prompt", "abc"}, {"max_tokens", 3}, {"max_completion_tokens", nullptr}});
  EXPECT_EQ(r.specs[0].stop.max_tokens, 3);
}

TEST_F(ProtocolTest, PromptForms) {
  GenerationRequest r = Completion({{"prompt", {1, 2, 3}}, {"max_tokens", 1}});
  ASSERT_EQ(r.specs.size(), 1u);
  EXPECT_EQ(r.specs[0].prompt, (std::vector<int32_t>{1, 2, 3}));  // ids are used as given

  r = Completion({{"prompt", {{5, 6}, {7}}}, {"max_tokens", 1}});
  ASSERT_EQ(r.specs.size(), 2u);
  EXPECT_EQ(r.specs[0].prompt, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(r.specs[1].prompt, (std::vector<int32_t>{7}));

  r = Completion({{"prompt", {"a", "b"}}, {"n", 3}, {"max_tokens", 1}});
  ASSERT_EQ(r.specs.size(), 2u);
  EXPECT_EQ(r.specs[1].prompt, (std::vector<int32_t>{256, 98}));
  EXPECT_EQ(r.n, 3);
  EXPECT_EQ(r.specs[0].n, 3);
  EXPECT_EQ(r.specs[1].n, 3);

  r = Completion({{"prompt", "a"}, {"add_special_tokens", false}, {"max_tokens", 1}});
  EXPECT_EQ(r.specs[0].prompt, (std::vector<int32_t>{97}));
}

TEST_F(ProtocolTest, BadPromptsAre400OnPrompt) {
  const json bad_prompts[] = {"",           json::array(), json::array({json::array()}),
                              {1, "a"},     {{1}, 2},      {-1},
                              {258},        {1.5},         42,
                              {{"k", "v"}}, {true},        {{1, 300}}};
  for (const json& prompt : bad_prompts) {
    ApiError e = CompletionError({{"prompt", prompt}, {"max_tokens", 1}});
    EXPECT_EQ(e.http_status, 400) << prompt.dump();
    EXPECT_EQ(e.param, "prompt") << prompt.dump();
  }
  ApiError e = CompletionError({{"max_tokens", 1}});
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.param, "prompt");
}

TEST_F(ProtocolTest, PromptPlusMaxTokensOverTheContextIs400) {
  // 4 prompt tokens + 28 = 32 fits exactly; 29 does not.
  EXPECT_EQ(Completion({{"prompt", "abc"}, {"max_tokens", 28}}).specs[0].stop.max_tokens, 28);
  ApiError e = CompletionError({{"prompt", "abc"}, {"max_tokens", 29}});
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.param, "max_tokens");
  EXPECT_NE(e.message.find("maximum context length is 32"), std::string::npos) << e.message;
  e = CompletionError({{"prompt", "abc"}, {"max_completion_tokens", 29}});
  EXPECT_EQ(e.param, "max_completion_tokens");
  // A prompt that fills the context leaves no room even for the default.
  e = CompletionError({{"prompt", std::string(31, 'x')}});
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.param, "prompt");
  // One prompt of a batch too long fails the whole request, and names the prompt even though
  // max_tokens was given: no max_tokens could make it fit.
  e = CompletionError({{"prompt", {"a", std::string(40, 'x')}}, {"max_tokens", 2}});
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.param, "prompt");
  e = CompletionError({{"prompt", std::string(31, 'x')}, {"max_completion_tokens", 1}});
  EXPECT_EQ(e.param, "prompt");
}

TEST_F(ProtocolTest, WrongTypesAndRangesAre400NamingTheField) {
  struct Case {
    const char* field;
    json value;
  };
  const Case cases[] = {
      {"max_tokens", "5"},
      {"max_tokens", 0},
      {"max_tokens", -1},
      {"max_tokens", 5.5},
      {"max_tokens", 1e30},
      {"max_tokens", json::parse("123456789012345678901234567890")},
      {"max_tokens", true},
      {"max_completion_tokens", "many"},
      {"temperature", "hot"},
      {"temperature", -0.5},
      {"top_p", 0},
      {"top_p", 1.5},
      {"top_k", -2},
      {"top_k", 2.5},
      {"min_p", 1.5},
      {"presence_penalty", 3},
      {"frequency_penalty", -2.5},
      {"repetition_penalty", 0},
      {"n", 0},
      {"n", 129},
      {"n", "2"},
      {"best_of", 3},
      {"logprobs", 21},
      {"logprobs", -1},
      {"logprobs", "5"},
      {"stop", 5},
      {"stop", {"a", 1}},
      {"stop", {""}},
      {"stop", json::array({"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13",
                            "14", "15", "16", "17"})},
      {"stop", std::string(5000, 'x')},
      {"stop", json::array({std::string(4000, 'x'), std::string(97, 'y')})},
      {"stop_token_ids", std::vector<int>(65, 3)},
      {"stop_token_ids", {int64_t{1} << 40}},
      {"stop_token_ids", {-1}},
      {"stop_token_ids", {258}},
      {"stop_token_ids", 5},
      {"seed", "abc"},
      {"ignore_eos", "yes"},
      {"stream", "yes"},
      {"stream", 1},
      {"min_tokens", -1},
      {"min_tokens", 6},  // more than max_tokens
      {"model", 5},
      {"echo", true},
      {"suffix", "x"},
      {"logit_bias", {{"5", 10}}},
      {"skip_special_tokens", "no"},
      {"response_format", {{"type", "json_object"}}},
      {"response_format", {{"type", 5}}},
      {"response_format", "text"},
  };
  for (const Case& c : cases) {
    json body = {{"prompt", "abc"}, {"max_tokens", 5}};
    body[c.field] = c.value;
    ApiError e = CompletionError(body);
    EXPECT_EQ(e.http_status, 400) << c.field << "=" << c.value.dump();
    EXPECT_EQ(e.param, c.field) << c.field << "=" << c.value.dump() << ": " << e.message;
    EXPECT_EQ(e.type, "invalid_request_error");
  }
}

TEST_F(ProtocolTest, BoundaryValuesAreAccepted) {
  GenerationRequest r =
      Completion({{"prompt", "a"},
                  {"max_tokens", 5.0},
                  {"n", 128},
                  {"best_of", 128},
                  {"logprobs", 20},
                  {"temperature", 0},
                  {"top_p", 1},
                  {"top_k", -1},
                  {"presence_penalty", -2},
                  {"frequency_penalty", 2},
                  {"stop", json::array({"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11",
                                        "12", "13", "14", "15", "16"})},
                  {"stop_token_ids", std::vector<int>(64, 257)},
                  {"min_tokens", 5}});
  EXPECT_EQ(r.specs[0].stop.max_tokens, 5);
  EXPECT_EQ(r.n, 128);
  EXPECT_EQ(r.logprobs, 20);
  EXPECT_EQ(r.specs[0].stop.stop_strings.size(), 16u);
  EXPECT_EQ(r.specs[0].stop.stop_token_ids.size(), 64u);
  EXPECT_EQ(r.specs[0].stop.min_tokens, 5);
  // 4096 bytes of stop strings in all.
  r = Completion({{"prompt", "a"},
                  {"max_tokens", 1},
                  {"stop", {std::string(4000, 'x'), std::string(96, 'y')}}});
  EXPECT_EQ(r.specs[0].stop.stop_strings.size(), 2u);
}

TEST_F(ProtocolTest, PromptsTimesNIsBoundedAt256Sequences) {
  EXPECT_EQ(
      Completion({{"prompt", std::vector<std::string>(256, "a")}, {"max_tokens", 1}}).specs.size(),
      256u);
  EXPECT_EQ(Completion({{"prompt", {"a", "b"}}, {"n", 128}, {"max_tokens", 1}}).specs.size(), 2u);
  const ApiError e = CompletionError({{"prompt", std::vector<std::string>(256, "a")}, {"n", 128}});
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.param, "n");
  EXPECT_EQ(e.message, "prompts x n must be at most 256, got 256 x 128 = 32768 sequences");
  EXPECT_EQ(CompletionError({{"prompt", {"a", "b", "c"}}, {"n", 128}}).param, "n");
}

// The same over-limit request on gRPC gets these messages too (grpc_service_test).
TEST_F(ProtocolTest, StopLimitsAre400WithTheSharedMessage) {
  std::vector<std::string> seventeen;
  for (int i = 0; i < 17; ++i) seventeen.push_back(std::to_string(i));
  ApiError e = CompletionError({{"prompt", "a"}, {"stop", seventeen}});
  EXPECT_EQ(e.param, "stop");
  EXPECT_EQ(e.message, "stop may hold at most 16 strings, got 17");
  e = CompletionError({{"prompt", "a"}, {"stop", std::string(5000, 'x')}});
  EXPECT_EQ(e.param, "stop");
  EXPECT_EQ(e.message, "stop strings may hold at most 4096 bytes in all, got 5000");
  e = CompletionError({{"prompt", "a"}, {"stop_token_ids", std::vector<int>(65, 3)}});
  EXPECT_EQ(e.param, "stop_token_ids");
  EXPECT_EQ(e.message, "stop_token_ids may hold at most 64 ids, got 65");
  e = CompletionError({{"prompt", "a"}, {"stop_token_ids", {258}}});
  EXPECT_EQ(e.param, "stop_token_ids");
  EXPECT_EQ(e.message, "stop_token_ids: id 258 is outside the vocabulary [0, 258)");
}

TEST_F(ProtocolTest, TimeoutSetsTheDeadlineAndTheShorterOfBodyAndServerWins) {
  auto seconds = [](const RequestSpec& s) {
    EXPECT_TRUE(s.deadline.has_value());
    return s.deadline ? std::chrono::duration<double>(*s.deadline - s.arrival).count() : -1.0;
  };
  EXPECT_FALSE(Completion({{"prompt", "hi"}}).specs[0].deadline.has_value());
  EXPECT_NEAR(seconds(Completion({{"prompt", "hi"}, {"timeout", 2.5}}).specs[0]), 2.5, 1e-6);
  const GenerationRequest two = Completion({{"prompt", {"a", "b"}}, {"timeout", 1}});
  ASSERT_EQ(two.specs.size(), 2u);
  for (const RequestSpec& s : two.specs) EXPECT_NEAR(seconds(s), 1, 1e-6);
  ctx_.request_timeout_s = 10;  // --request-timeout
  EXPECT_NEAR(seconds(Completion({{"prompt", "hi"}}).specs[0]), 10, 1e-6);
  EXPECT_NEAR(seconds(Completion({{"prompt", "hi"}, {"timeout", 2}}).specs[0]), 2, 1e-6);
  EXPECT_NEAR(seconds(Completion({{"prompt", "hi"}, {"timeout", 60}}).specs[0]), 10, 1e-6);
  for (const json& bad : {json(0), json(-1), json("5"), json(true), json(1e30)}) {
    const ApiError e = CompletionError({{"prompt", "hi"}, {"timeout", bad}});
    EXPECT_EQ(e.http_status, 400) << bad.dump();
    EXPECT_EQ(e.param, "timeout") << bad.dump();
  }
}

TEST_F(ProtocolTest, UnknownModelIs404) {
  ApiError e = CompletionError({{"model", "gpt-4"}, {"prompt", "a"}});
  EXPECT_EQ(e.http_status, 404);
  EXPECT_EQ(e.code, "model_not_found");
  EXPECT_EQ(e.param, "model");
  EXPECT_NE(e.message.find("gpt-4"), std::string::npos);
}

TEST_F(ProtocolTest, FieldsReachTheSpec) {
  GenerationRequest r = Completion({{"prompt", "a"},
                                    {"max_tokens", 9},
                                    {"temperature", 0.5},
                                    {"top_p", 0.75},
                                    {"top_k", 10},
                                    {"min_p", 0.125},
                                    {"repetition_penalty", 1.25},
                                    {"presence_penalty", 0.5},
                                    {"frequency_penalty", -0.5},
                                    {"seed", 1234},
                                    {"stop", {"x", "yz"}},
                                    {"stop_token_ids", {5, 257}},
                                    {"ignore_eos", true},
                                    {"min_tokens", 2},
                                    {"include_stop_str_in_output", true},
                                    {"skip_special_tokens", false},
                                    {"logprobs", 3},
                                    {"stream", true},
                                    {"stream_options", {{"include_usage", true}}}});
  const RequestSpec& s = r.specs[0];
  EXPECT_EQ(s.sampling.temperature, 0.5f);
  EXPECT_EQ(s.sampling.top_p, 0.75f);
  EXPECT_EQ(s.sampling.top_k, 10);
  EXPECT_EQ(s.sampling.min_p, 0.125f);
  EXPECT_EQ(s.sampling.repetition_penalty, 1.25f);
  EXPECT_EQ(s.sampling.presence_penalty, 0.5f);
  EXPECT_EQ(s.sampling.frequency_penalty, -0.5f);
  ASSERT_TRUE(s.sampling.seed.has_value());
  EXPECT_EQ(*s.sampling.seed, 1234u);
  EXPECT_EQ(s.sampling.logprobs, 3);
  EXPECT_EQ(s.stop.stop_strings, (std::vector<std::string>{"x", "yz"}));
  EXPECT_EQ(s.stop.stop_token_ids, (std::vector<int32_t>{5, 257}));
  EXPECT_TRUE(s.stop.ignore_eos);
  EXPECT_EQ(s.stop.min_tokens, 2);
  EXPECT_EQ(s.stop.max_tokens, 9);
  EXPECT_TRUE(s.stop.include_stop_str_in_output);
  EXPECT_FALSE(s.skip_special_tokens);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.logprobs, 3);

  r = Completion({{"prompt", "a"}, {"stop", "end"}});
  EXPECT_EQ(r.specs[0].stop.stop_strings, (std::vector<std::string>{"end"}));
  EXPECT_FALSE(r.specs[0].sampling.seed.has_value());
}

TEST_F(ProtocolTest, StreamOptionsNeedStream) {
  ApiError e = CompletionError({{"prompt", "a"}, {"stream_options", {{"include_usage", true}}}});
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.param, "stream_options");
  e = CompletionError(
      {{"prompt", "a"}, {"stream", true}, {"stream_options", {{"include_usage", "yes"}}}});
  EXPECT_EQ(e.param, "stream_options.include_usage");
}

TEST_F(ProtocolTest, ChatWithoutTemplateOrMessagesIs400) {
  ApiError error;
  EXPECT_FALSE(
      ParseChatRequest({{"messages", {{{"role", "user"}, {"content", "hi"}}}}}, ctx_, &error));
  EXPECT_EQ(error.http_status, 400);
  EXPECT_EQ(error.param, "messages");
  for (const json& messages :
       {json(nullptr), json::array(), json("hi"), json({1}), json({{{"content", "no role"}}})}) {
    json body = {{"messages", messages}};
    EXPECT_FALSE(ParseChatRequest(body, ctx_, &error)) << messages.dump();
    EXPECT_EQ(error.http_status, 400);
    EXPECT_EQ(error.param, "messages");
  }
  EXPECT_FALSE(ParseChatRequest(
      {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"top_logprobs", 2}}, ctx_, &error));
  EXPECT_EQ(error.param, "top_logprobs");
}

TEST_F(ProtocolTest, ChatMessagesAreRenderedThenTokenizedWithoutSpecialTokens) {
  auto tmpl = ChatTemplate::FromSource(
      "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}{% if think %}T{% endif %}",
      "<s>", "</s>");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status().ToString();
  ctx_.chat_template = tmpl->get();
  const json messages = json::parse(R"([{"role": "user", "content": "hi"}])");
  auto bytes = [](const std::string& s) { return std::vector<int32_t>(s.begin(), s.end()); };
  ApiError error;
  std::optional<GenerationRequest> r = ParseChatRequest(
      {{"model", "tiny"}, {"messages", messages}, {"logprobs", true}, {"top_logprobs", 2}}, ctx_,
      &error);
  ASSERT_TRUE(r.has_value()) << error.message;
  EXPECT_EQ(r->endpoint, Endpoint::kChat);
  ASSERT_EQ(r->specs.size(), 1u);
  EXPECT_EQ(r->specs[0].prompt, bytes("<user>hi<assistant>"));  // no <s>: the template owns it
  EXPECT_EQ(r->specs[0].stop.max_tokens, 32 - 19);
  EXPECT_EQ(r->logprobs, 2);
  EXPECT_EQ(r->specs[0].sampling.logprobs, 2);

  r = ParseChatRequest({{"messages", messages},
                        {"add_generation_prompt", false},
                        {"chat_template_kwargs", {{"think", true}}},
                        {"logprobs", true},
                        {"max_completion_tokens", 3}},
                       ctx_, &error);
  ASSERT_TRUE(r.has_value()) << error.message;
  EXPECT_EQ(r->specs[0].prompt, bytes("<user>hiT"));
  EXPECT_EQ(r->logprobs, 0);  // logprobs without top_logprobs: the sampled token only
  EXPECT_EQ(r->specs[0].stop.max_tokens, 3);

  r = ParseChatRequest({{"messages", messages}, {"max_tokens", 14}}, ctx_, &error);
  EXPECT_FALSE(r.has_value());  // 19 + 14 > 32
  EXPECT_EQ(error.param, "max_tokens");
  const json too_long = {{{"role", "user"}, {"content", std::string(40, 'x')}}};
  r = ParseChatRequest({{"messages", too_long}, {"max_tokens", 1}}, ctx_, &error);
  EXPECT_FALSE(r.has_value());  // the prompt alone overflows the context
  EXPECT_EQ(error.param, "messages");
}

TEST_F(ProtocolTest, ChatTemplateExceptionsAre400) {
  auto tmpl = ChatTemplate::FromSource(
      "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}x", "",
      "");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status().ToString();
  ctx_.chat_template = tmpl->get();
  ApiError error;
  EXPECT_FALSE(ParseChatRequest(
      {{"messages", json::parse(R"([{"role": "assistant", "content": "a"}])")}}, ctx_, &error));
  EXPECT_EQ(error.http_status, 400);
  EXPECT_EQ(error.param, "messages");
  EXPECT_NE(error.message.find("user first"), std::string::npos) << error.message;
}

TEST_F(ProtocolTest, TokenizeAndDetokenizeBodies) {
  ApiError error;
  auto tokens = ParseTokenizeRequest({{"prompt", "ab"}}, ctx_, &error);
  ASSERT_TRUE(tokens.has_value());
  EXPECT_EQ(*tokens, (std::vector<int32_t>{256, 97, 98}));
  tokens = ParseTokenizeRequest({{"prompt", "ab"}, {"add_special_tokens", false}}, ctx_, &error);
  EXPECT_EQ(*tokens, (std::vector<int32_t>{97, 98}));
  EXPECT_FALSE(ParseTokenizeRequest({{"prompt", 5}}, ctx_, &error));
  EXPECT_EQ(error.http_status, 400);
  EXPECT_FALSE(ParseTokenizeRequest({{"model", "other"}, {"prompt", "a"}}, ctx_, &error));
  EXPECT_EQ(error.http_status, 404);

  auto ids = ParseDetokenizeRequest({{"tokens", {104, 105}}}, ctx_, &error);
  ASSERT_TRUE(ids.has_value());
  EXPECT_EQ(*ids, (std::vector<int32_t>{104, 105}));
  EXPECT_FALSE(ParseDetokenizeRequest({{"tokens", {999}}}, ctx_, &error));
  EXPECT_EQ(error.param, "tokens");
  EXPECT_FALSE(ParseDetokenizeRequest({{"tokens", "hi"}}, ctx_, &error));
  EXPECT_FALSE(ParseDetokenizeRequest(json::object(), ctx_, &error));
}

// ---- responses ----

ResponseHeader Header(const char* id) { return {id, 1700000000, "tiny"}; }

TEST(ResponseTest, CompletionNonStreaming) {
  GenerationRequest req;
  std::vector<ChoiceOutput> choices(2);
  choices[0].index = 0;
  choices[0].text = "hello";
  choices[0].finish_reason = FinishReason::kLength;
  choices[1].index = 1;
  choices[1].text = "bye";
  choices[1].finish_reason = FinishReason::kStop;
  choices[1].stop_string = "\n";
  const json got = CompletionResponse(Header("cmpl-1"), req, choices, Usage{4, 7});
  const json want = json::parse(R"({
    "id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": "tiny",
    "choices": [
      {"index": 0, "text": "hello", "logprobs": null, "finish_reason": "length",
       "stop_reason": null},
      {"index": 1, "text": "bye", "logprobs": null, "finish_reason": "stop",
       "stop_reason": "\n"}],
    "usage": {"prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11}})");
  EXPECT_EQ(got, want) << got.dump(2);
}

TEST(ResponseTest, ChatNonStreaming) {
  GenerationRequest req;
  req.endpoint = Endpoint::kChat;
  std::vector<ChoiceOutput> choices(1);
  choices[0].text = "Hi there";
  choices[0].finish_reason = FinishReason::kStop;
  choices[0].stop_token = 257;
  const json got = ChatResponse(Header("chatcmpl-9"), req, choices, Usage{10, 2});
  const json want = json::parse(R"({
    "id": "chatcmpl-9", "object": "chat.completion", "created": 1700000000, "model": "tiny",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"},
                 "logprobs": null, "finish_reason": "stop", "stop_reason": 257}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})");
  EXPECT_EQ(got, want) << got.dump(2);
}

std::vector<LogprobEntry> TwoTokens() {
  LogprobEntry a{"a", -0.5f, {{"a", -0.5f}, {"b", -1.5f}}};
  LogprobEntry bc{"bc", -0.25f, {{"x", -0.125f}, {"bc", -0.25f}}};
  return {a, bc};
}

TEST(ResponseTest, CompletionLogprobsHoldSampledPlusTopN) {
  GenerationRequest req;
  req.logprobs = 1;
  std::vector<ChoiceOutput> choices(1);
  choices[0].text = "abc";
  choices[0].logprobs = TwoTokens();
  choices[0].finish_reason = FinishReason::kLength;
  const json got = CompletionResponse(Header("cmpl-2"), req, choices, Usage{1, 2});
  // Offsets: "a" starts at 0, "bc" at 0 + len("a") = 1. With logprobs=1 each position maps the
  // sampled token and the single most likely one.
  const json want = json::parse(R"({
    "tokens": ["a", "bc"], "token_logprobs": [-0.5, -0.25],
    "top_logprobs": [{"a": -0.5}, {"bc": -0.25, "x": -0.125}],
    "text_offset": [0, 1]})");
  EXPECT_EQ(got["choices"][0]["logprobs"], want) << got.dump(2);
}

TEST(ResponseTest, ChatLogprobsHaveBytesAndTopList) {
  GenerationRequest req;
  req.endpoint = Endpoint::kChat;
  req.logprobs = 2;
  std::vector<ChoiceOutput> choices(1);
  choices[0].text = "abc";
  choices[0].logprobs = TwoTokens();
  const json got = ChatResponse(Header("chatcmpl-2"), req, choices, Usage{1, 2});
  const json want = json::parse(R"({"content": [
    {"token": "a", "logprob": -0.5, "bytes": [97],
     "top_logprobs": [{"token": "a", "logprob": -0.5, "bytes": [97]},
                      {"token": "b", "logprob": -1.5, "bytes": [98]}]},
    {"token": "bc", "logprob": -0.25, "bytes": [98, 99],
     "top_logprobs": [{"token": "x", "logprob": -0.125, "bytes": [120]},
                      {"token": "bc", "logprob": -0.25, "bytes": [98, 99]}]}]})");
  EXPECT_EQ(got["choices"][0]["logprobs"], want) << got.dump(2);
}

TEST(ResponseTest, InfiniteLogprobsAreClampedTo9999) {
  GenerationRequest req;
  req.endpoint = Endpoint::kChat;
  req.logprobs = 0;
  std::vector<ChoiceOutput> choices(1);
  choices[0].logprobs = {{"z", -std::numeric_limits<float>::infinity(), {}}};
  const json got = ChatResponse(Header("c"), req, choices, Usage{});
  EXPECT_EQ(got["choices"][0]["logprobs"]["content"][0]["logprob"], -9999.0);
  EXPECT_EQ(got["choices"][0]["logprobs"]["content"][0]["top_logprobs"], json::array());
}

TEST(ResponseTest, DecodeLogprobsUsesTokenText) {
  ByteTokenizer tok;
  SampledToken s;
  s.token = 104;
  s.logprob = -0.25f;
  s.top = {{104, -0.25f}, {257, -2.0f}};
  std::vector<LogprobEntry> e = DecodeLogprobs(tok, {s});
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].token, "h");
  EXPECT_EQ(e[0].logprob, -0.25f);
  ASSERT_EQ(e[0].top.size(), 2u);
  EXPECT_EQ(e[0].top[1].first, "</s>");
  EXPECT_EQ(e[0].top[1].second, -2.0f);
}

TEST(StreamTest, ChatChunks) {
  GenerationRequest req;
  req.endpoint = Endpoint::kChat;
  req.stream = true;
  const ResponseHeader h = Header("chatcmpl-s");
  EXPECT_EQ(ChatRoleChunk(h, req, 0), json::parse(R"({
    "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1700000000,
    "model": "tiny", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                  "logprobs": null, "finish_reason": null}]})"));
  ChoiceOutput d;
  d.text = "Hel";
  EXPECT_EQ(ChatChunk(h, req, d)["choices"], json::parse(R"([{"index": 0,
    "delta": {"content": "Hel"}, "logprobs": null, "finish_reason": null,
    "stop_reason": null}])"));
  ChoiceOutput last;
  last.index = 1;
  last.finish_reason = FinishReason::kLength;
  EXPECT_EQ(ChatChunk(h, req, last)["choices"], json::parse(R"([{"index": 1, "delta": {},
    "logprobs": null, "finish_reason": "length", "stop_reason": null}])"));
  EXPECT_FALSE(ChatChunk(h, req, last).contains("usage"));
  req.include_usage = true;
  // With include_usage every other chunk carries "usage": null, as OpenAI documents.
  EXPECT_TRUE(ChatChunk(h, req, last)["usage"].is_null());
  EXPECT_TRUE(ChatChunk(h, req, last).contains("usage"));
  EXPECT_EQ(UsageChunk(h, req, Usage{5, 3}), json::parse(R"({
    "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1700000000,
    "model": "tiny", "choices": [],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})"));
}

TEST(StreamTest, CompletionChunksContinueTextOffsets) {
  GenerationRequest req;
  req.stream = true;
  req.logprobs = 0;
  const ResponseHeader h = Header("cmpl-s");
  TextOffsets offsets;
  ChoiceOutput first;
  first.text = "ab";
  first.logprobs = {{"ab", -0.5f, {}}};
  ChoiceOutput second;
  second.text = "cde";
  second.logprobs = {{"cde", -1.0f, {}}};
  second.finish_reason = FinishReason::kStop;
  const json c1 = CompletionChunk(h, req, first, &offsets);
  const json c2 = CompletionChunk(h, req, second, &offsets);
  EXPECT_EQ(c1["object"], "text_completion");
  EXPECT_EQ(c1["id"], "cmpl-s");
  EXPECT_EQ(c1["choices"][0]["text"], "ab");
  EXPECT_EQ(c1["choices"][0]["finish_reason"], nullptr);
  EXPECT_EQ(c1["choices"][0]["logprobs"]["text_offset"], json::array({0}));
  EXPECT_EQ(c2["choices"][0]["logprobs"]["text_offset"], json::array({2}));
  EXPECT_EQ(c2["choices"][0]["logprobs"]["top_logprobs"], json::parse(R"([{"cde": -1.0}])"));
  EXPECT_EQ(c2["choices"][0]["finish_reason"], "stop");
}

TEST(StreamTest, SseFraming) {
  EXPECT_EQ(SseEvent(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(std::string(kSseDone), "data: [DONE]\n\n");
  // Text that is not valid UTF-8 (half a character in a token) is replaced, never thrown on.
  EXPECT_EQ(SseEvent(json{{"t", "\xE2\x82"}}), "data: {\"t\":\"\xEF\xBF\xBD\"}\n\n");
}

TEST(StreamTest, ResponseIdsArePrefixedAndFresh) {
  const std::string a = NewResponseId(Endpoint::kCompletions);
  const std::string b = NewResponseId(Endpoint::kCompletions);
  EXPECT_EQ(a.rfind("cmpl-", 0), 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(NewResponseId(Endpoint::kChat).rfind("chatcmpl-", 0), 0u);
}

}  // namespace
}  // namespace sy::http
