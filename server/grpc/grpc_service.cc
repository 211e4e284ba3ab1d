#include "server/grpc/grpc_service.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <optional>
#include <utility>

#include "engine/sched/request_limits.h"
#include "server/grpc/grpc_convert.h"
#include "switchyard/v1/switchyard.grpc.pb.h"

namespace sy {
namespace {

namespace pb = switchyard::v1;

constexpr const char* kServiceName = "switchyard.v1.Switchyard";
// How often a Generate call waiting for output checks whether its client went away.
constexpr std::chrono::milliseconds kPollInterval(50);

// Connection policy (docs/serving.md, "gRPC API"). While calls are open the server pings a
// connection that sent nothing for kKeepaliveTimeMs and closes it when the ack takes longer than
// kKeepaliveTimeoutMs: a vanished client's Generate calls are then cancelled and their requests
// aborted. Clients may ping at most every kMinClientPingIntervalMs while calls are open (on a
// connection without calls gRPC's policy allows one ping per two hours); one more than
// kMaxPingStrikes pings too early (counted until the server next sends data) closes the
// connection with GOAWAY too_many_pings. A connection without calls for kMaxConnectionIdleMs is
// closed (clients reconnect on their next call).
constexpr int kKeepaliveTimeMs = 60'000;
constexpr int kKeepaliveTimeoutMs = 20'000;
constexpr int kMinClientPingIntervalMs = 10'000;
constexpr int kMaxPingStrikes = 2;
constexpr int kMaxConnectionIdleMs = 300'000;

class SwitchyardService final : public pb::Switchyard::Service {
 public:
  explicit SwitchyardService(ServingContext* ctx) : ctx_(ctx), api_keys_(ctx->security.api_keys) {}

  grpc::Status Generate(grpc::ServerContext* context, const pb::GenerateRequest* request,
                        grpc::ServerWriter<pb::GenerateResponse>* writer) override {
    if (grpc::Status st = Authenticate(*context); !st.ok()) return st;
    if (grpc::Status st = CheckServing(request->model()); !st.ok()) return st;
    Engine* engine = ctx_->engine;
    StatusOr<RequestSpec> spec =
        ToRequestSpec(*request, engine->tokenizer(), engine->model_config().vocab_size);
    if (!spec.ok()) return ToGrpcStatus(spec.status());
    spec->deadline = EngineDeadline(*context);
    const bool with_logprobs = spec->sampling.logprobs >= 0;
    StatusOr<std::shared_ptr<RequestStream>> stream = engine->Submit(std::move(spec).value());
    if (!stream.ok()) return ToGrpcStatus(stream.status());
    return Stream(context, **stream, with_logprobs, writer);
  }

  grpc::Status Tokenize(grpc::ServerContext* context, const pb::TokenizeRequest* request,
                        pb::TokenizeResponse* response) override {
    if (grpc::Status st = Authenticate(*context); !st.ok()) return st;
    if (grpc::Status st = CheckModel(request->model()); !st.ok()) return st;
    const std::vector<int32_t> ids =
        ctx_->engine->tokenizer().Encode(request->text(), request->add_special_tokens());
    response->mutable_token_ids()->Add(ids.begin(), ids.end());
    response->set_max_model_len(static_cast<int32_t>(ctx_->engine->max_model_len()));
    return grpc::Status::OK;
  }

  grpc::Status Detokenize(grpc::ServerContext* context, const pb::DetokenizeRequest* request,
                          pb::DetokenizeResponse* response) override {
    if (grpc::Status st = Authenticate(*context); !st.ok()) return st;
    if (grpc::Status st = CheckModel(request->model()); !st.ok()) return st;
    const std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
    // As HTTP /detokenize: an id outside the vocabulary is refused, not silently dropped.
    const Tokenizer& tokenizer = ctx_->engine->tokenizer();
    if (Status st = CheckTokenIds(ids, tokenizer.vocab_size(), "token_ids"); !st.ok())
      return ToGrpcStatus(st);
    response->set_text(tokenizer.Decode(ids, request->skip_special_tokens()));
    return grpc::Status::OK;
  }

  grpc::Status ModelInfo(grpc::ServerContext* context, const pb::ModelInfoRequest*,
                         pb::ModelInfoResponse* response) override {
    if (grpc::Status st = Authenticate(*context); !st.ok()) return st;
    if (grpc::Status st = CheckModel(""); !st.ok()) return st;
    const Engine& engine = *ctx_->engine;
    const ModelConfig& config = engine.model_config();
    response->set_model(ctx_->model_name);
    response->set_architecture(config.architecture);
    response->set_max_model_len(static_cast<int32_t>(engine.max_model_len()));
    response->set_vocab_size(static_cast<int32_t>(config.vocab_size));
    response->set_num_layers(static_cast<int32_t>(config.num_layers));
    response->set_num_experts(static_cast<int32_t>(config.num_experts));
    response->set_num_experts_per_token(static_cast<int32_t>(config.num_experts_per_tok));
    const std::vector<int32_t> eos = engine.tokenizer().eos_ids();
    response->mutable_eos_token_ids()->Add(eos.begin(), eos.end());
    return grpc::Status::OK;
  }

 private:
  // With API keys configured, the call's `authorization` metadata must carry one. Checked before
  // anything else, so that a caller without a key learns nothing about the model.
  grpc::Status Authenticate(const grpc::ServerContext& context) const {
    if (!api_keys_.enabled()) return grpc::Status::OK;
    const auto& metadata = context.client_metadata();
    const auto found = metadata.find("authorization");
    if (found == metadata.end()) {
      return {grpc::StatusCode::UNAUTHENTICATED,
              "missing API key: send the metadata 'authorization: Bearer <key>'"};
    }
    if (!api_keys_.AcceptsAuthorization(
            std::string_view(found->second.data(), found->second.size()))) {
      return {grpc::StatusCode::UNAUTHENTICATED,
              "invalid API key in the 'authorization' metadata (expected 'Bearer <key>')"};
    }
    return grpc::Status::OK;
  }

  // Calls that only read the model work whenever the engine exists.
  grpc::Status CheckModel(const std::string& model) const {
    if (ctx_->engine == nullptr) return {grpc::StatusCode::UNAVAILABLE, "the model is loading"};
    if (!model.empty() && model != ctx_->model_name) {
      return {grpc::StatusCode::NOT_FOUND, "the model '" + model + "' does not exist"};
    }
    return grpc::Status::OK;
  }

  // The call's deadline and --request-timeout, whichever comes first, as an engine deadline
  // (the engine then ends the request and frees its blocks even while it is queued).
  std::optional<Clock::time_point> EngineDeadline(const grpc::ServerContext& context) const {
    std::optional<Clock::time_point> deadline;
    const auto call = context.deadline();
    if (call != std::chrono::system_clock::time_point::max()) {
      deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    call - std::chrono::system_clock::now());
    }
    if (ctx_->request_timeout_s > 0) {
      const auto limit = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(ctx_->request_timeout_s));
      if (!deadline || limit < *deadline) deadline = limit;
    }
    return deadline;
  }

  // Generation needs readiness too: refused while starting up and once draining.
  grpc::Status CheckServing(const std::string& model) const {
    if (grpc::Status st = CheckModel(model); !st.ok()) return st;
    if (!ctx_->ready.load()) return {grpc::StatusCode::UNAVAILABLE, "the server is not ready"};
    return grpc::Status::OK;
  }

  // Writes one response per update until the request finishes. A cancelled call (client cancel
  // or deadline) or a failed write aborts the request, as an HTTP disconnect does.
  grpc::Status Stream(grpc::ServerContext* context, RequestStream& stream, bool with_logprobs,
                      grpc::ServerWriter<pb::GenerateResponse>* writer) {
    const std::string request_id = std::to_string(stream.id());
    RequestUpdate update;
    for (;;) {
      if (context->IsCancelled()) {
        ctx_->engine->Abort(stream.id());
        if (std::chrono::system_clock::now() >= context->deadline()) {
          return {grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded; request aborted"};
        }
        return {grpc::StatusCode::CANCELLED, "cancelled; request aborted"};
      }
      if (!stream.Next(&update, kPollInterval)) continue;
      if (!update.finished && update.deltas.empty()) continue;
      if (!writer->Write(ToResponse(update, request_id, with_logprobs))) {
        ctx_->engine->Abort(stream.id());
        return {grpc::StatusCode::CANCELLED, "the client went away; request aborted"};
      }
      if (update.finished) return ToGrpcStatus(update.status);
    }
  }

  ServingContext* ctx_;
  const ApiKeys api_keys_;
};

// Insecure credentials, or TLS with the files' certificate chain and key; with CA certificates
// a client must present a certificate they sign.
std::shared_ptr<grpc::ServerCredentials> Credentials(const TlsFiles& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      tls.ca_certs.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                           : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = tls.ca_certs;
  ssl.pem_key_cert_pairs.push_back({tls.private_key, tls.cert_chain});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

GrpcServer::GrpcServer(ServingContext* ctx, GrpcServerOptions options)
    : ctx_(ctx), options_(std::move(options)) {}

GrpcServer::~GrpcServer() {
  if (server_ != nullptr) Shutdown(std::chrono::milliseconds(0));
}

Status GrpcServer::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  service_ = std::make_unique<SwitchyardService>(ctx_);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.address, Credentials(ctx_->tls), &port_);
  builder.RegisterService(service_.get());
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<int64_t>(options_.max_receive_message_bytes, INT_MAX)));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Keepalive pings continue through a call that sends nothing for long (a long prefill).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             kMinClientPingIntervalMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, kMaxPingStrikes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, kMaxConnectionIdleMs);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return Status::Unavailable("gRPC: cannot listen on " + options_.address);
  }
  SetServing(ctx_->ready.load());
  health_thread_ = std::thread([this] { HealthLoop(); });
  spdlog::info("grpc: listening on {} (port {}, {}{})", options_.address, port_,
               ctx_->tls.enabled() ? "TLS" : "plaintext",
               ctx_->tls.ca_certs.empty() ? "" : ", client certificates required");
  return Status::Ok();
}

void GrpcServer::SetServing(bool serving) {
  const bool alive = ctx_->engine != nullptr && ctx_->engine->Alive();
  const int status = serving && alive ? 1 : 0;
  std::lock_guard<std::mutex> lock(mu_);
  if (server_ == nullptr || stopping_ || status == serving_) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus("", status == 1);
  health->SetServingStatus(kServiceName, status == 1);
  serving_ = status;
}

void GrpcServer::HealthLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (stopping_) break;
    lock.unlock();
    SetServing(ctx_->ready.load());
    lock.lock();
  }
}

void GrpcServer::Shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (server_ == nullptr || stopping_) return;
    stopping_ = true;
    // Sets NOT_SERVING everywhere and ends open Health.Watch streams, which would otherwise
    // hold Shutdown until the grace period ends.
    server_->GetHealthCheckService()->Shutdown();
  }
  cv_.notify_all();
  if (health_thread_.joinable()) health_thread_.join();
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
}

}  // namespace sy
