// GrpcServer against a scripted fake Engine (no model compute): request conversion, streaming,
// status mapping, abort on cancel and deadline, and the grpc.health.v1 service.
#include "server/grpc/grpc_service.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/model/config.h"
#include "switchyard/v1/switchyard.grpc.pb.h"
#include "tests/common/source_dir.h"
#include "tests/common/test_certs.h"

namespace sy {
namespace {

namespace pb = switchyard::v1;
using std::chrono::milliseconds;

const std::string kModelDir = sy::testing::SourceDir() + "/tests/golden/models/qwen3_moe";

class FakeStream : public RequestStream {
 public:
  explicit FakeStream(uint64_t id) : id_(id) {}
  uint64_t id() const override { return id_; }
  bool Next(RequestUpdate* update, milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (done_) return false;
    if (!cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); })) return false;
    *update = queue_.front();
    queue_.pop_front();
    done_ = update->finished;
    return true;
  }
  void SetReadyCallback(std::function<void()> ready) override {
    std::lock_guard<std::mutex> lock(mu_);
    ready_ = std::move(ready);
  }
  void Push(RequestUpdate update) {
    std::function<void()> ready;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(update));
      cv_.notify_all();
      ready = ready_;
    }
    if (ready) ready();
  }

 private:
  const uint64_t id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestUpdate> queue_;
  bool done_ = false;
  std::function<void()> ready_;
};

// Replays `script` to every submitted request and records submissions and aborts.
class FakeEngine : public Engine {
 public:
  FakeEngine() {
    auto tok = Tokenizer::Load(kModelDir);
    auto config = LoadModelConfig(kModelDir);
    EXPECT_TRUE(tok.ok() && config.ok());
    if (tok.ok()) tokenizer_ = std::move(tok).value();
    if (config.ok()) config_ = *config;
  }
  StatusOr<std::shared_ptr<RequestStream>> Submit(RequestSpec spec) override {
    std::lock_guard<std::mutex> lock(mu_);
    specs.push_back(spec);
    if (!submit_error.ok()) return submit_error;
    auto stream = std::make_shared<FakeStream>(next_id_++);
    for (const RequestUpdate& u : script) stream->Push(u);
    streams_[stream->id()] = stream;
    return std::shared_ptr<RequestStream>(stream);
  }
  void Abort(uint64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_.push_back(id);
    cv_.notify_all();
  }
  // Waits up to 2 s for an abort; returns the ids aborted so far.
  std::vector<uint64_t> WaitForAbort() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(2), [&] { return !aborted_.empty(); });
    return aborted_;
  }
  void Drain() override {}
  bool Idle() const override { return true; }
  bool Alive() const override { return alive.load(); }
  EngineSnapshot Snapshot() const override { return {}; }
  const ModelConfig& model_config() const override { return config_; }
  const Tokenizer& tokenizer() const override { return *tokenizer_; }
  int64_t max_model_len() const override { return 128; }
  const std::string& model_dir() const override { return kModelDir; }

  std::vector<RequestUpdate> script;
  Status submit_error;
  std::vector<RequestSpec> specs;
  std::atomic<bool> alive{true};

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
  ModelConfig config_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t next_id_ = 7;
  std::map<uint64_t, std::shared_ptr<FakeStream>> streams_;
  std::vector<uint64_t> aborted_;
};

// Two updates: tokens 5 and 6 ("ab"), then token 7 ending the choice on a stop token.
std::vector<RequestUpdate> TwoUpdates() {
  RequestUpdate a;
  CompletionDelta d;
  d.token_ids = {5, 6};
  d.samples = {{5, -0.5f, {{5, -0.5f}, {9, -1.25f}}}, {6, -0.25f, {}}};
  d.text = "ab";
  a.deltas = {d};
  a.prompt_tokens = 3;
  a.completion_tokens = 2;
  RequestUpdate b;
  CompletionDelta e;
  e.token_ids = {7};
  e.samples = {{7, -2.0f, {}}};
  e.text = "c";
  e.finish_reason = FinishReason::kStop;
  e.stop_token = 7;
  b.deltas = {e};
  b.finished = true;
  b.prompt_tokens = 3;
  b.completion_tokens = 3;
  b.cached_prompt_tokens = 1;
  return {a, b};
}

class GrpcServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_.engine = &engine_;
    ctx_.model_name = "tiny";
    ctx_.ready = true;
    server_ = std::make_unique<GrpcServer>(&ctx_, options_);
    ASSERT_TRUE(server_->Start().ok());
    channel_ = grpc::CreateChannel(target(), grpc::InsecureChannelCredentials());
    stub_ = pb::Switchyard::NewStub(channel_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(milliseconds(100));
  }

  std::string target() const { return "127.0.0.1:" + std::to_string(server_->port()); }

  // Runs Generate to the end; returns the responses and the final status.
  grpc::Status Generate(const pb::GenerateRequest& request,
                        std::vector<pb::GenerateResponse>* responses) {
    grpc::ClientContext context;
    auto reader = stub_->Generate(&context, request);
    pb::GenerateResponse response;
    while (reader->Read(&response)) responses->push_back(response);
    return reader->Finish();
  }

  // grpc.health.v1.Health/Check by hand-encoded protobuf (field 1: service name; reply field 1:
  // 1 SERVING, 2 NOT_SERVING), since the health proto's C++ code is not installed.
  int HealthStatus(const std::string& service) {
    std::string request = "\x0a" + std::string(1, static_cast<char>(service.size())) + service;
    grpc::Slice slice(request);
    grpc::ByteBuffer send(&slice, 1);
    grpc::ByteBuffer receive;
    grpc::GenericStub generic(channel_);
    grpc::ClientContext context;
    grpc::CompletionQueue cq;
    auto call = generic.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", send, &cq);
    call->StartCall();
    grpc::Status status;
    call->Finish(&receive, &status, reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&tag, &ok));
    if (!status.ok()) return -1;
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(receive.Dump(&slices).ok());
    std::string bytes;
    for (const grpc::Slice& s : slices)
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    // Proto3 leaves UNKNOWN (0) out of the encoding.
    return bytes.size() == 2 && bytes[0] == 0x08 ? bytes[1] : 0;
  }

  FakeEngine engine_;
  ServingContext ctx_;
  GrpcServerOptions options_{.address = "127.0.0.1:0"};
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Switchyard::Stub> stub_;
};

TEST_F(GrpcServiceTest, GenerateStreamsEveryUpdate) {
  engine_.script = TwoUpdates();
  pb::GenerateRequest request;
  request.set_text("Hello world");
  request.mutable_sampling()->set_temperature(0.5f);
  request.mutable_sampling()->set_top_k(4);
  request.mutable_sampling()->set_seed(11);
  request.mutable_stopping()->set_max_tokens(3);
  request.mutable_stopping()->add_stop("\n\n");
  request.mutable_stopping()->add_stop_token_ids(7);
  request.set_n(0);
  request.set_logprobs(1);
  std::vector<pb::GenerateResponse> responses;
  grpc::Status status = Generate(request, &responses);
  ASSERT_TRUE(status.ok()) << status.error_message();

  ASSERT_EQ(engine_.specs.size(), 1u);
  const RequestSpec& spec = engine_.specs[0];
  EXPECT_EQ(spec.prompt, engine_.tokenizer().Encode("Hello world", true));
  EXPECT_EQ(spec.sampling.temperature, 0.5f);
  EXPECT_EQ(spec.sampling.top_k, 4);
  EXPECT_EQ(spec.sampling.top_p, 1.0f);  // unset: the default
  EXPECT_EQ(spec.sampling.seed, 11u);
  EXPECT_EQ(spec.sampling.logprobs, 1);
  EXPECT_EQ(spec.stop.max_tokens, 3);
  EXPECT_EQ(spec.stop.stop_strings, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(spec.stop.stop_token_ids, std::vector<int32_t>{7});
  EXPECT_EQ(spec.n, 1);
  EXPECT_TRUE(spec.skip_special_tokens);

  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].request_id(), "7");
  ASSERT_EQ(responses[0].choices_size(), 1);
  const pb::ChoiceDelta& c0 = responses[0].choices(0);
  EXPECT_EQ(std::vector<int32_t>(c0.token_ids().begin(), c0.token_ids().end()),
            (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(c0.text(), "ab");
  ASSERT_EQ(c0.logprobs_size(), 2);
  EXPECT_EQ(c0.logprobs(0).logprob(), -0.5f);
  ASSERT_EQ(c0.logprobs(0).top_size(), 2);
  EXPECT_EQ(c0.logprobs(0).top(1).token_id(), 9);
  EXPECT_EQ(c0.logprobs(0).top(1).logprob(), -1.25f);
  EXPECT_EQ(c0.finish_reason(), "");
  EXPECT_FALSE(responses[0].finished());
  EXPECT_EQ(responses[0].usage().completion_tokens(), 2);

  const pb::ChoiceDelta& c1 = responses[1].choices(0);
  EXPECT_EQ(c1.text(), "c");
  EXPECT_EQ(c1.finish_reason(), "stop");
  EXPECT_EQ(c1.stop_reason(), "7");
  EXPECT_TRUE(responses[1].finished());
  EXPECT_EQ(responses[1].usage().prompt_tokens(), 3);
  EXPECT_EQ(responses[1].usage().completion_tokens(), 3);
  EXPECT_EQ(responses[1].usage().total_tokens(), 6);
  EXPECT_EQ(responses[1].usage().cached_prompt_tokens(), 1);
}

TEST_F(GrpcServiceTest, TokenIdsPromptAndNoLogprobsUnlessAsked) {
  engine_.script = TwoUpdates();
  pb::GenerateRequest request;
  request.mutable_token_ids()->add_ids(1);
  request.mutable_token_ids()->add_ids(2);
  request.set_include_special_tokens(true);
  request.set_n(2);
  std::vector<pb::GenerateResponse> responses;
  ASSERT_TRUE(Generate(request, &responses).ok());
  EXPECT_EQ(engine_.specs[0].prompt, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(engine_.specs[0].n, 2);
  EXPECT_EQ(engine_.specs[0].stop.max_tokens, 16);
  EXPECT_FALSE(engine_.specs[0].skip_special_tokens);
  EXPECT_EQ(engine_.specs[0].sampling.logprobs, -1);
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].choices(0).logprobs_size(), 0);
}

TEST_F(GrpcServiceTest, ErrorsAreStatusCodes) {
  std::vector<pb::GenerateResponse> responses;
  pb::GenerateRequest request;
  request.set_text("hi");

  pb::GenerateRequest wrong_model = request;
  wrong_model.set_model("other");
  EXPECT_EQ(Generate(wrong_model, &responses).error_code(), grpc::StatusCode::NOT_FOUND);

  pb::GenerateRequest bad_temperature = request;
  bad_temperature.mutable_sampling()->set_temperature(-1);
  grpc::Status st = Generate(bad_temperature, &responses);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("temperature"), std::string::npos) << st.error_message();

  pb::GenerateRequest bad_id;
  bad_id.mutable_token_ids()->add_ids(1 << 30);
  EXPECT_EQ(Generate(bad_id, &responses).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Generate(pb::GenerateRequest(), &responses).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  pb::GenerateRequest zero_tokens = request;
  zero_tokens.mutable_stopping()->set_max_tokens(0);
  EXPECT_EQ(Generate(zero_tokens, &responses).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Over the shared request bounds: the messages HTTP gives for the same request
  // (openai_protocol_test).
  pb::GenerateRequest many_stops = request;
  for (int i = 0; i < 17; ++i) many_stops.mutable_stopping()->add_stop(std::to_string(i));
  st = Generate(many_stops, &responses);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "stop may hold at most 16 strings, got 17");
  pb::GenerateRequest long_stop = request;
  long_stop.mutable_stopping()->clear_stop();
  long_stop.mutable_stopping()->add_stop(std::string(5000, 'x'));
  st = Generate(long_stop, &responses);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "stop strings may hold at most 4096 bytes in all, got 5000");
  pb::GenerateRequest many_ids = request;
  many_ids.mutable_stopping()->clear_stop_token_ids();
  for (int i = 0; i < 65; ++i) many_ids.mutable_stopping()->add_stop_token_ids(3);
  st = Generate(many_ids, &responses);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "stop_token_ids may hold at most 64 ids, got 65");
  pb::GenerateRequest outside_id = request;
  outside_id.mutable_stopping()->clear_stop_token_ids();
  outside_id.mutable_stopping()->add_stop_token_ids(1 << 30);
  st = Generate(outside_id, &responses);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("stop_token_ids: id 1073741824 is outside the vocabulary"),
            std::string::npos)
      << st.error_message();
  pb::GenerateRequest many_choices = request;
  many_choices.set_n(129);
  EXPECT_EQ(Generate(many_choices, &responses).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(engine_.specs.empty());  // none of these reached the engine

  engine_.submit_error = Status::ResourceExhausted("queue full");
  st = Generate(request, &responses);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(st.error_message(), "queue full");
  engine_.submit_error = Status::OutOfRange("prompt too long");
  EXPECT_EQ(Generate(request, &responses).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  engine_.submit_error = Status::Unavailable("draining");
  EXPECT_EQ(Generate(request, &responses).error_code(), grpc::StatusCode::UNAVAILABLE);
  engine_.submit_error = Status::Internal("bug");
  EXPECT_EQ(Generate(request, &responses).error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_TRUE(responses.empty());

  engine_.submit_error = Status::Ok();
  ctx_.ready = false;
  EXPECT_EQ(Generate(request, &responses).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcServiceTest, InternalFaultAfterOutputIsInternal) {
  RequestUpdate fault;
  fault.finished = true;
  fault.status = Status::Internal("engine died");
  engine_.script = {TwoUpdates()[0], fault};
  pb::GenerateRequest request;
  request.set_text("hi");
  std::vector<pb::GenerateResponse> responses;
  grpc::Status st = Generate(request, &responses);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(st.error_message(), "engine died");
  EXPECT_EQ(responses.size(), 2u);
}

TEST_F(GrpcServiceTest, DeadlineAbortsTheRequest) {
  engine_.script = {TwoUpdates()[0]};  // never finishes
  pb::GenerateRequest request;
  request.set_text("hi");
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + milliseconds(300));
  auto reader = stub_->Generate(&context, request);
  pb::GenerateResponse response;
  int read = 0;
  while (reader->Read(&response)) ++read;
  EXPECT_EQ(read, 1);
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(engine_.WaitForAbort(), std::vector<uint64_t>{7});
  // The engine was handed the call's deadline too (so it can end a request still queued).
  ASSERT_EQ(engine_.specs.size(), 1u);
  ASSERT_TRUE(engine_.specs[0].deadline.has_value());
  EXPECT_LE(*engine_.specs[0].deadline, Clock::now());
}

TEST_F(GrpcServiceTest, AnEngineDeadlineIsDeadlineExceeded) {
  RequestUpdate last;
  last.finished = true;
  last.status = Status::DeadlineExceeded("the request passed its deadline");
  engine_.script = {last};
  pb::GenerateRequest request;
  request.set_text("hi");
  std::vector<pb::GenerateResponse> responses;
  grpc::Status st = Generate(request, &responses);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(st.error_message(), "the request passed its deadline");
  EXPECT_TRUE(engine_.specs.back().deadline == std::nullopt);  // no call deadline, no timeout
}

TEST_F(GrpcServiceTest, CancelAbortsTheRequest) {
  engine_.script = {TwoUpdates()[0]};
  pb::GenerateRequest request;
  request.set_text("hi");
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, request);
  pb::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(engine_.WaitForAbort(), std::vector<uint64_t>{7});
}

TEST_F(GrpcServiceTest, DetokenizeRefusesIdsOutsideTheVocabulary) {
  const int32_t vocab = engine_.tokenizer().vocab_size();
  pb::DetokenizeRequest request;
  request.mutable_token_ids()->Add(1);
  request.mutable_token_ids()->Add(vocab);  // the first bad id, named in the message
  request.mutable_token_ids()->Add(-1);
  grpc::ClientContext context;
  pb::DetokenizeResponse response;
  const grpc::Status st = stub_->Detokenize(&context, request, &response);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("id " + std::to_string(vocab) + " "), std::string::npos)
      << st.error_message();
  EXPECT_TRUE(response.text().empty());
  // The last id of the vocabulary is still fine.
  pb::DetokenizeRequest last;
  last.mutable_token_ids()->Add(vocab - 1);
  grpc::ClientContext c2;
  EXPECT_TRUE(stub_->Detokenize(&c2, last, &response).ok());
}

TEST_F(GrpcServiceTest, TokenizeDetokenizeModelInfo) {
  grpc::ClientContext c1;
  pb::TokenizeRequest tr;
  tr.set_text("Hello world");
  pb::TokenizeResponse tresp;
  ASSERT_TRUE(stub_->Tokenize(&c1, tr, &tresp).ok());
  const std::vector<int32_t> ids(tresp.token_ids().begin(), tresp.token_ids().end());
  EXPECT_EQ(ids, engine_.tokenizer().Encode("Hello world", false));
  EXPECT_EQ(tresp.max_model_len(), 128);

  grpc::ClientContext c2;
  pb::DetokenizeRequest dr;
  dr.mutable_token_ids()->Add(ids.begin(), ids.end());
  pb::DetokenizeResponse dresp;
  ASSERT_TRUE(stub_->Detokenize(&c2, dr, &dresp).ok());
  EXPECT_EQ(dresp.text(), "Hello world");

  grpc::ClientContext c3;
  pb::ModelInfoResponse info;
  ASSERT_TRUE(stub_->ModelInfo(&c3, pb::ModelInfoRequest(), &info).ok());
  const ModelConfig& config = engine_.model_config();
  EXPECT_EQ(info.model(), "tiny");
  EXPECT_EQ(info.architecture(), config.architecture);
  EXPECT_EQ(info.num_layers(), config.num_layers);
  EXPECT_EQ(info.num_experts(), config.num_experts);
  EXPECT_EQ(info.num_experts_per_token(), config.num_experts_per_tok);
  EXPECT_EQ(info.vocab_size(), config.vocab_size);
  EXPECT_EQ(info.eos_token_ids_size(), static_cast<int>(engine_.tokenizer().eos_ids().size()));

  grpc::ClientContext c4;
  tr.set_model("other");
  EXPECT_EQ(stub_->Tokenize(&c4, tr, &tresp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcServiceTest, HealthFollowsReadinessAndLiveness) {
  constexpr int kServing = 1;
  constexpr int kNotServing = 2;
  EXPECT_EQ(HealthStatus(""), kServing);
  EXPECT_EQ(HealthStatus("switchyard.v1.Switchyard"), kServing);

  // What `serve` does on SIGTERM: readiness off, then SetServing applies it at once.
  ctx_.ready = false;
  server_->SetServing(false);
  EXPECT_EQ(HealthStatus(""), kNotServing);
  EXPECT_EQ(HealthStatus("switchyard.v1.Switchyard"), kNotServing);
  ctx_.ready = true;
  server_->SetServing(true);
  EXPECT_EQ(HealthStatus("switchyard.v1.Switchyard"), kServing);

  // Without SetServing, the background check follows ctx.ready and engine liveness.
  ctx_.ready = false;
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_EQ(HealthStatus(""), kNotServing);
  ctx_.ready = true;
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_EQ(HealthStatus(""), kServing);
  engine_.alive = false;
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_EQ(HealthStatus("switchyard.v1.Switchyard"), kNotServing);
}

// With API keys every switchyard.v1 call needs `authorization: Bearer KEY`; Health stays open.
class GrpcApiKeyTest : public GrpcServiceTest {
 protected:
  void SetUp() override {
    ctx_.security.api_keys = {"sk-one", "sk-two"};
    GrpcServiceTest::SetUp();
  }

  // The status of each switchyard.v1 method called with `authorization` (none if empty).
  std::vector<grpc::Status> CallEveryMethod(const std::string& authorization) {
    const auto prepare = [&](grpc::ClientContext* context) {
      if (!authorization.empty()) context->AddMetadata("authorization", authorization);
    };
    std::vector<grpc::Status> statuses;
    {
      grpc::ClientContext context;
      prepare(&context);
      pb::GenerateRequest request;
      request.set_text("hi");
      auto reader = stub_->Generate(&context, request);
      pb::GenerateResponse response;
      while (reader->Read(&response)) {
      }
      statuses.push_back(reader->Finish());
    }
    {
      grpc::ClientContext context;
      prepare(&context);
      pb::TokenizeRequest request;
      request.set_text("hi");
      pb::TokenizeResponse response;
      statuses.push_back(stub_->Tokenize(&context, request, &response));
    }
    {
      grpc::ClientContext context;
      prepare(&context);
      pb::DetokenizeRequest request;
      request.add_token_ids(1);
      pb::DetokenizeResponse response;
      statuses.push_back(stub_->Detokenize(&context, request, &response));
    }
    {
      grpc::ClientContext context;
      prepare(&context);
      pb::ModelInfoResponse response;
      statuses.push_back(stub_->ModelInfo(&context, pb::ModelInfoRequest(), &response));
    }
    return statuses;
  }
};

TEST_F(GrpcApiKeyTest, MissingKeyIsUnauthenticated) {
  for (const grpc::Status& st : CallEveryMethod("")) {
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(st.error_message(),
              "missing API key: send the metadata 'authorization: Bearer <key>'");
  }
  EXPECT_TRUE(engine_.specs.empty());
}

TEST_F(GrpcApiKeyTest, WrongKeyIsUnauthenticated) {
  for (const char* value : {"Bearer sk-three", "sk-one", "Basic sk-one", "Bearer"}) {
    for (const grpc::Status& st : CallEveryMethod(value)) {
      EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << value;
      EXPECT_EQ(st.error_message(),
                "invalid API key in the 'authorization' metadata (expected 'Bearer <key>')");
    }
  }
  EXPECT_TRUE(engine_.specs.empty());
}

TEST_F(GrpcApiKeyTest, EitherKeyIsAccepted) {
  engine_.script = TwoUpdates();
  for (const char* value : {"Bearer sk-one", "bearer sk-two"}) {
    for (const grpc::Status& st : CallEveryMethod(value)) {
      EXPECT_TRUE(st.ok()) << value << ": " << st.error_message();
    }
  }
  EXPECT_EQ(engine_.specs.size(), 2u);
}

TEST_F(GrpcApiKeyTest, HealthNeedsNoKey) { EXPECT_EQ(HealthStatus(""), 1); }

class GrpcMessageLimitTest : public GrpcServiceTest {
 protected:
  void SetUp() override {
    options_.max_receive_message_bytes = 1024;
    GrpcServiceTest::SetUp();
  }
};

TEST_F(GrpcMessageLimitTest, OversizedMessageIsResourceExhaustedAndTheServerServesOn) {
  pb::TokenizeRequest big;
  big.set_text(std::string(2000, 'x'));
  pb::TokenizeResponse response;
  grpc::ClientContext c1;
  const grpc::Status st = stub_->Tokenize(&c1, big, &response);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  pb::TokenizeRequest small;
  small.set_text(std::string(900, 'x'));
  grpc::ClientContext c2;
  EXPECT_TRUE(stub_->Tokenize(&c2, small, &response).ok());
  EXPECT_GT(response.token_ids_size(), 0);
}

// TLS with client certificates required (--ssl-ca-certs), certificates made by the openssl CLI.
class GrpcTlsTest : public GrpcServiceTest {
 protected:
  static void SetUpTestSuite() { certs_ = new std::string(sy::testing::MakeTestCerts()); }
  static void TearDownTestSuite() {
    if (!certs_->empty()) std::filesystem::remove_all(*certs_);
    delete certs_;
  }
  void SetUp() override {
    ASSERT_FALSE(certs_->empty()) << "openssl could not make certificates";
    SecurityOptions options;
    options.ssl_certfile = *certs_ + "/server.crt";
    options.ssl_keyfile = *certs_ + "/server.key";
    options.ssl_ca_certs = *certs_ + "/ca.crt";
    StatusOr<TlsFiles> tls = LoadTlsFiles(options);
    ASSERT_TRUE(tls.ok()) << tls.status().ToString();
    ctx_.tls = std::move(tls).value();
    GrpcServiceTest::SetUp();
  }

  static std::string Read(const std::string& name) {
    std::ifstream in(*certs_ + "/" + name);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // ModelInfo over a channel with `credentials`.
  grpc::Status ModelInfoOver(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    auto stub = pb::Switchyard::NewStub(grpc::CreateChannel(target(), credentials));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    pb::ModelInfoResponse response;
    return stub->ModelInfo(&context, pb::ModelInfoRequest(), &response);
  }

  // TLS trusting the test CA, presenting the certificate `who` (none if empty).
  std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& who) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = Read("ca.crt");
    if (!who.empty()) {
      ssl.pem_private_key = Read(who + ".key");
      ssl.pem_cert_chain = Read(who + ".crt");
    }
    return grpc::SslCredentials(ssl);
  }

  static std::string* certs_;
};
std::string* GrpcTlsTest::certs_ = nullptr;

TEST_F(GrpcTlsTest, ClientWithCertificateIsServed) {
  const grpc::Status st = ModelInfoOver(Tls("client"));
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(GrpcTlsTest, PlaintextAndUnknownClientsAreRefused) {
  EXPECT_EQ(ModelInfoOver(grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ModelInfoOver(Tls("")).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ModelInfoOver(Tls("stranger")).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// The real engine on the tiny Qwen3-MoE fixture: greedy output over gRPC equals transformers'
// greedy continuation. (Abort on cancel is checked deterministically with the fake above; the
// tiny model finishes its whole 64-token context faster than a cancel can race it.)
class GrpcRealEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions o;
    o.model_dir = kModelDir;
    o.threads = 1;
    o.block_size = 4;
    o.num_kv_blocks = 256;
    auto engine = Engine::Create(o);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
    ctx_.engine = engine_.get();
    ctx_.model_name = "qwen3_moe";
    ctx_.ready = true;
    server_ = std::make_unique<GrpcServer>(&ctx_, GrpcServerOptions{.address = "127.0.0.1:0"});
    ASSERT_TRUE(server_->Start().ok());
    stub_ = pb::Switchyard::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown(milliseconds(100));
  }

  ServingContext ctx_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<pb::Switchyard::Stub> stub_;
};

TEST_F(GrpcRealEngineTest, GreedyMatchesTransformers) {
  std::ifstream in(kModelDir + "/golden.json");
  const nlohmann::json golden = nlohmann::json::parse(in);
  const nlohmann::json& prompt = golden["prompts"][0];
  const auto ids = prompt["ids"].get<std::vector<int32_t>>();
  const auto expected = prompt["greedy"].get<std::vector<int32_t>>();

  pb::GenerateRequest request;
  request.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  request.mutable_sampling()->set_temperature(0);
  request.mutable_stopping()->set_max_tokens(static_cast<int32_t>(expected.size()));
  request.mutable_stopping()->set_ignore_eos(true);
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, request);
  pb::GenerateResponse response;
  std::vector<int32_t> tokens;
  std::string text;
  std::string finish;
  while (reader->Read(&response)) {
    for (const pb::ChoiceDelta& c : response.choices()) {
      tokens.insert(tokens.end(), c.token_ids().begin(), c.token_ids().end());
      text += c.text();
      if (!c.finish_reason().empty()) finish = c.finish_reason();
    }
  }
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(tokens, expected);
  EXPECT_EQ(text, engine_->tokenizer().Decode(expected, /*skip_special_tokens=*/true));
  EXPECT_EQ(finish, "length");
  EXPECT_TRUE(response.finished());
  EXPECT_EQ(response.usage().prompt_tokens(), static_cast<int32_t>(ids.size()));
  EXPECT_EQ(response.usage().completion_tokens(), static_cast<int32_t>(expected.size()));
}

}  // namespace
}  // namespace sy
