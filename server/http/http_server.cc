#include "server/http/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <exception>
#include <set>
#include <string>

#include "server/http/access_log.h"
#include "server/http/generation_handler.h"
#include "server/http/http_reply.h"
#include "server/http/openai_protocol.h"

#ifndef SY_VERSION
#define SY_VERSION "unknown"
#endif

namespace sy::http {
namespace {

using nlohmann::json;

const std::set<std::string>& PostRoutes() {
  static const std::set<std::string> routes = {"/v1/completions", "/v1/chat/completions",
                                               "/tokenize", "/detokenize", "/admin/placement"};
  return routes;
}

const std::set<std::string>& GetRoutes() {
  static const std::set<std::string> routes = {"/v1/models",     "/health",         "/ready",
                                               "/health/ready",  "/metrics",        "/version",
                                               "/admin/routing", "/admin/placement"};
  return routes;
}

ApiError NotServing(const char* what) { return ErrorFromStatus(Status::Unavailable(what)); }
ApiError Loading() { return NotServing("The model is still loading."); }

// Errors httplib produced itself (no route, body too large, bad request line) get the OpenAI
// error object; responses our handlers already filled are left alone.
httplib::Server::HandlerResponse OnError(const httplib::Request& req, httplib::Response& res) {
  if (!res.body.empty() || res.content_provider_) {
    return httplib::Server::HandlerResponse::Unhandled;
  }
  ApiError error;
  error.http_status = res.status;
  if (res.status == 404) {
    const bool post_route = PostRoutes().count(req.path) > 0;
    if (post_route || GetRoutes().count(req.path) > 0) {
      error.http_status = 405;
      error.message = "Method " + req.method + " is not allowed for " + req.path + ".";
      res.set_header("Allow", post_route ? "POST" : "GET");
    } else {
      error.message = "No route for " + req.method + " " + req.path + ".";
      error.code = "not_found";
    }
  } else if (res.status == 413) {
    error.message = "The request body is too large.";
  } else if (res.status >= 500) {
    error.type = "internal_error";
    error.message = "Internal server error.";
  } else {
    error.message = "Malformed HTTP request.";
  }
  SendError(res, error);
  return httplib::Server::HandlerResponse::Handled;
}

// What was thrown goes to the log only: its text may describe server internals.
void OnException(const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
  std::string what = "unknown exception";
  try {
    if (ep) std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  spdlog::error("http: {} {} threw: {}", req.method, req.path, what);
  SendError(res, ErrorFromStatus(Status::Internal("Internal server error.")));
}

}  // namespace

HttpServer::HttpServer(ServingContext* ctx, HttpServerOptions options)
    : ctx_(ctx), options_(std::move(options)), server_(std::make_unique<httplib::Server>()) {
  const size_t threads = static_cast<size_t>(std::max(options_.threads, 1));
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_payload_max_length(options_.max_body_bytes);
  server_->set_error_handler(httplib::Server::HandlerWithResponse(OnError));
  server_->set_exception_handler(OnException);
  // httplib's default also sets SO_REUSEPORT, which would let a second server share the port
  // silently; SO_REUSEADDR alone still allows a quick restart.
  server_->set_socket_options([this](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd_ = sock;
  });
  RegisterRoutes();
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::RegisterRoutes() {
  ServingContext* ctx = ctx_;
  const GenerationEnv env{ctx_, &stopping_, &active_, options_.poll_interval, options_.access_log};
  server_->Post("/v1/completions", [env](const httplib::Request& req, httplib::Response& res) {
    HandleGeneration(env, Endpoint::kCompletions, req, res, RequestIdFor(req));
  });
  server_->Post("/v1/chat/completions", [env](const httplib::Request& req, httplib::Response& res) {
    HandleGeneration(env, Endpoint::kChat, req, res, RequestIdFor(req));
  });
  server_->Get("/v1/models", [ctx](const httplib::Request&, httplib::Response& res) {
    if (!ctx->loaded.load()) return SendError(res, Loading());
    json model = {{"id", ctx->model_name},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "switchyard"},
                  {"root", ctx->engine->model_dir()},
                  {"parent", nullptr},
                  {"max_model_len", ctx->engine->max_model_len()}};
    SendJson(res, 200, {{"object", "list"}, {"data", json::array({model})}});
  });
  server_->Post("/tokenize", [ctx](const httplib::Request& req, httplib::Response& res) {
    if (!ctx->loaded.load()) return SendError(res, Loading());
    ApiError error;
    std::optional<json> body = ParseJsonObject(req.body, &error);
    const ProtocolContext pctx = MakeProtocolContext(*ctx);
    std::optional<std::vector<int32_t>> tokens;
    if (body) tokens = ParseTokenizeRequest(*body, pctx, &error);
    if (!tokens) return SendError(res, error);
    SendJson(
        res, 200,
        {{"tokens", *tokens}, {"count", tokens->size()}, {"max_model_len", pctx.max_model_len}});
  });
  server_->Post("/detokenize", [ctx](const httplib::Request& req, httplib::Response& res) {
    if (!ctx->loaded.load()) return SendError(res, Loading());
    ApiError error;
    std::optional<json> body = ParseJsonObject(req.body, &error);
    const ProtocolContext pctx = MakeProtocolContext(*ctx);
    std::optional<std::vector<int32_t>> tokens;
    if (body) tokens = ParseDetokenizeRequest(*body, pctx, &error);
    if (!tokens) return SendError(res, error);
    SendJson(res, 200, {{"prompt", ctx->engine->tokenizer().Decode(*tokens, false)}});
  });
  server_->Get("/health", [ctx](const httplib::Request&, httplib::Response& res) {
    // Alive while the model loads; dead only once a loaded engine has stopped.
    if (ctx->loaded.load() && !ctx->engine->Alive()) {
      return SendError(res, NotServing("The engine is not running."));
    }
    res.status = 200;
  });
  auto ready = [ctx](const httplib::Request&, httplib::Response& res) {
    if (!ctx->ready.load()) return SendError(res, NotServing("The server is not ready."));
    // A dead engine serves nothing, so it is not ready either (`ready` stays set until drain).
    if (!ctx->engine->Alive()) return SendError(res, NotServing("The engine is not running."));
    SendJson(res, 200, {{"status", "ready"}});
  };
  server_->Get("/ready", ready);
  server_->Get("/health/ready", ready);
  server_->Get("/metrics", [ctx](const httplib::Request&, httplib::Response& res) {
    res.status = 200;
    res.set_content(ctx->render_metrics ? ctx->render_metrics() : std::string(),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  RegisterAdminRoutes();
  server_->Get("/version", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, {{"version", SY_VERSION}});
  });
}

// Expert parallelism: routing statistics, the placement in use, and a live migration to
// another (docs/expert-parallel.md). One-rank servers answer 404.
void HttpServer::RegisterAdminRoutes() {
  ServingContext* ctx = ctx_;
  server_->Get("/admin/routing", [ctx](const httplib::Request& req, httplib::Response& res) {
    if (!ctx->routing_json) {
      return SendError(res, ErrorFromStatus(Status::NotFound(
                                "This model has no routed experts, so no routing statistics.")));
    }
    const std::string t = req.get_param_value("transitions");
    res.status = 200;
    res.set_content(ctx->routing_json(t == "1" || t == "true"), "application/json");
  });
  server_->Get("/admin/placement", [ctx](const httplib::Request&, httplib::Response& res) {
    if (!ctx->loaded.load()) return SendError(res, Loading());
    const std::shared_ptr<const ExpertPlacement> p = ctx->engine->placement();
    if (p == nullptr) {
      return SendError(res, ErrorFromStatus(Status::NotFound(
                                "This server has no expert parallelism, so no placement.")));
    }
    res.status = 200;
    res.set_content(p->ToJson(), "application/json");
  });
  server_->Post("/admin/placement", [ctx](const httplib::Request& req, httplib::Response& res) {
    if (!ctx->loaded.load()) return SendError(res, Loading());
    if (ctx->engine->placement() == nullptr) {
      return SendError(res, ErrorFromStatus(Status::NotFound(
                                "This server has no expert parallelism, so no placement.")));
    }
    StatusOr<ExpertPlacement> next = ExpertPlacement::FromJson(req.body);
    if (!next.ok()) return SendError(res, ErrorFromStatus(next.status()));
    StatusOr<int64_t> moves = ctx->engine->ApplyPlacement(*next);
    if (!moves.ok()) return SendError(res, ErrorFromStatus(moves.status()));
    SendJson(res, 202, {{"status", "migrating"}, {"moves", *moves}});
  });
}

Status HttpServer::Start() {
  if (thread_.joinable()) return Status::Internal("the HTTP server is already running");
  if (options_.port == 0) {
    bound_port_ = server_->bind_to_any_port(options_.host);
  } else if (server_->bind_to_port(options_.host, options_.port)) {
    bound_port_ = options_.port;
  }
  if (bound_port_ <= 0) {
    return Status::Unavailable("cannot listen on " + options_.host + ":" +
                               std::to_string(options_.port) + " (address in use?)");
  }
  // httplib listens with a backlog of 5: a burst of clients overflows it and some connections
  // are reset. Listening again on the bound socket only raises the backlog.
  if (listen_fd_ >= 0) ::listen(listen_fd_, SOMAXCONN);
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // Wait until the accept loop runs, so that an early Stop() cannot miss it.
  for (int i = 0; i < 5000 && !server_->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Status::Ok();
}

void HttpServer::Stop() {
  stopping_ = true;
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace sy::http
