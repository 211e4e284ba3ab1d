#include "server/http/http_routes.h"

#include <string>

#include "server/http/generation_handler.h"
#include "server/http/http_reply.h"

#ifndef SY_VERSION
#define SY_VERSION "unknown"
#endif

namespace sy::http {
namespace {

using nlohmann::json;

ApiError NotServing(const char* what) { return ErrorFromStatus(Status::Unavailable(what)); }
HttpResponse Loading() { return ErrorResponse(NotServing("The model is still loading.")); }

HttpResponse NoPlacement() {
  return ErrorResponse(
      ErrorFromStatus(Status::NotFound("This server has no expert parallelism, so no placement.")));
}

HttpResponse Unauthorized(const char* message) {
  ApiError e;
  e.http_status = 401;
  e.message = message;
  e.code = "invalid_api_key";
  HttpResponse res = ErrorResponse(e);
  res.headers.emplace_back("WWW-Authenticate", "Bearer");
  return res;
}

HttpResponse Forbidden(const char* message) {
  ApiError e;
  e.http_status = 403;
  e.message = message;
  e.code = "forbidden";
  return ErrorResponse(e);
}

HttpResponse Models(const ServingContext& ctx) {
  if (!ctx.loaded.load()) return Loading();
  json model = {{"id", ctx.model_name},
                {"object", "model"},
                {"created", 0},
                {"owned_by", "switchyard"},
                {"root", ctx.engine->model_dir()},
                {"parent", nullptr},
                {"max_model_len", ctx.engine->max_model_len()}};
  return JsonResponse(200, {{"object", "list"}, {"data", json::array({model})}});
}

HttpResponse Tokenize(const ServingContext& ctx, const HttpRequest& req) {
  if (!ctx.loaded.load()) return Loading();
  ApiError error;
  std::optional<json> body = ParseJsonObject(req.body, &error);
  const ProtocolContext pctx = MakeProtocolContext(ctx);
  std::optional<std::vector<int32_t>> tokens;
  if (body) tokens = ParseTokenizeRequest(*body, pctx, &error);
  if (!tokens) return ErrorResponse(error);
  return JsonResponse(
      200, {{"tokens", *tokens}, {"count", tokens->size()}, {"max_model_len", pctx.max_model_len}});
}

HttpResponse Detokenize(const ServingContext& ctx, const HttpRequest& req) {
  if (!ctx.loaded.load()) return Loading();
  ApiError error;
  std::optional<json> body = ParseJsonObject(req.body, &error);
  const ProtocolContext pctx = MakeProtocolContext(ctx);
  std::optional<std::vector<int32_t>> tokens;
  if (body) tokens = ParseDetokenizeRequest(*body, pctx, &error);
  if (!tokens) return ErrorResponse(error);
  return JsonResponse(200, {{"prompt", ctx.engine->tokenizer().Decode(*tokens, false)}});
}

HttpResponse Health(const ServingContext& ctx) {
  // Alive while the model loads; dead only once a loaded engine has stopped.
  if (ctx.loaded.load() && !ctx.engine->Alive()) {
    return ErrorResponse(NotServing("The engine is not running."));
  }
  HttpResponse res;
  res.content_type = "text/plain; charset=utf-8";
  return res;
}

HttpResponse Ready(const ServingContext& ctx) {
  if (!ctx.ready.load()) return ErrorResponse(NotServing("The server is not ready."));
  // A dead engine serves nothing, so it is not ready either (`ready` stays set until drain).
  if (!ctx.engine->Alive()) return ErrorResponse(NotServing("The engine is not running."));
  return JsonResponse(200, {{"status", "ready"}});
}

HttpResponse Metrics(const ServingContext& ctx) {
  HttpResponse res;
  res.content_type = "text/plain; version=0.0.4; charset=utf-8";
  if (ctx.render_metrics) res.body = ctx.render_metrics();
  return res;
}

}  // namespace

RouteAccess AccessFrom(const SecurityOptions& security) {
  RouteAccess access;
  auto user = std::make_shared<const ApiKeys>(security.api_keys);
  if (user->enabled()) {
    access.user_key = [user](std::string_view auth) { return user->AcceptsAuthorization(auth); };
  }
  if (!security.admin_api_key.empty()) {
    auto admin = std::make_shared<const ApiKeys>(std::vector<std::string>{security.admin_api_key});
    access.admin_key = [admin](std::string_view auth) { return admin->AcceptsAuthorization(auth); };
  }
  access.protect_metrics = security.protect_metrics;
  return access;
}

HttpRoutes::HttpRoutes(ServingContext* ctx, RouteAccess access)
    : ctx_(ctx), access_(std::move(access)) {
  using K = Route::Kind;
  AddGeneration("/v1/completions", Endpoint::kCompletions);
  AddGeneration("/v1/chat/completions", Endpoint::kChat);
  Add("GET", "/v1/models", K::kInline, Guard::kUser,
      [ctx](const HttpRequest&) { return Models(*ctx); });
  Add("POST", "/tokenize", K::kWorker, Guard::kUser,
      [ctx](const HttpRequest& req) { return Tokenize(*ctx, req); });
  Add("POST", "/detokenize", K::kWorker, Guard::kUser,
      [ctx](const HttpRequest& req) { return Detokenize(*ctx, req); });
  Add("GET", "/health", K::kInline, Guard::kOpen,
      [ctx](const HttpRequest&) { return Health(*ctx); });
  Add("GET", "/health/ready", K::kInline, Guard::kOpen,
      [ctx](const HttpRequest&) { return Ready(*ctx); });
  Add("GET", "/ready", K::kInline, Guard::kOpen, [ctx](const HttpRequest&) { return Ready(*ctx); });
  Add("GET", "/metrics", K::kInline, Guard::kMetrics,
      [ctx](const HttpRequest&) { return Metrics(*ctx); });
  Add("GET", "/version", K::kInline, Guard::kOpen, [](const HttpRequest&) {
    return JsonResponse(200, {{"version", SY_VERSION}});
  });
  AddAdminRoutes();
}

void HttpRoutes::Add(std::string method, std::string path, Route::Kind kind, Guard guard,
                     RouteHandler handler) {
  entries_.push_back({std::move(method), std::move(path), kind, guard, std::move(handler)});
}

void HttpRoutes::AddGeneration(std::string path, Endpoint endpoint) {
  entries_.push_back(
      {"POST", std::move(path), Route::Kind::kGeneration, Guard::kUser, nullptr, endpoint});
}

// Expert parallelism: routing statistics, the placement in use, and a live migration to
// another (docs/expert-parallel.md).
void HttpRoutes::AddAdminRoutes() {
  using K = Route::Kind;
  ServingContext* ctx = ctx_;
  Add("GET", "/admin/routing", K::kWorker, Guard::kAdmin, [ctx](const HttpRequest& req) {
    if (!ctx->routing_json) {
      return ErrorResponse(ErrorFromStatus(
          Status::NotFound("This model has no routed experts, so no routing statistics.")));
    }
    const std::string t = req.QueryParam("transitions");
    HttpResponse res;
    res.body = ctx->routing_json(t == "1" || t == "true");
    return res;
  });
  Add("GET", "/admin/placement", K::kInline, Guard::kAdmin, [ctx](const HttpRequest&) {
    if (!ctx->loaded.load()) return Loading();
    const std::shared_ptr<const ExpertPlacement> p = ctx->engine->placement();
    if (p == nullptr) return NoPlacement();
    HttpResponse res;
    res.body = p->ToJson();
    return res;
  });
  Add("POST", "/admin/placement", K::kWorker, Guard::kAdmin, [ctx](const HttpRequest& req) {
    if (!ctx->loaded.load()) return Loading();
    if (ctx->engine->placement() == nullptr) return NoPlacement();
    StatusOr<ExpertPlacement> next = ExpertPlacement::FromJson(req.body);
    if (!next.ok()) return ErrorResponse(ErrorFromStatus(next.status()));
    StatusOr<int64_t> moves = ctx->engine->ApplyPlacement(*next);
    if (!moves.ok()) return ErrorResponse(ErrorFromStatus(moves.status()));
    return JsonResponse(202, {{"status", "migrating"}, {"moves", *moves}});
  });
}

std::optional<HttpResponse> HttpRoutes::Refuse(Guard guard, const HttpRequest& req) const {
  const std::string_view authorization = req.Header("Authorization");
  switch (guard) {
    case Guard::kOpen:
      return std::nullopt;
    case Guard::kMetrics:
      if (!access_.protect_metrics) return std::nullopt;
      [[fallthrough]];
    case Guard::kUser:
      if (!access_.user_key || access_.user_key(authorization)) return std::nullopt;
      return Unauthorized(authorization.empty() ? "Missing API key: send Authorization: Bearer KEY."
                                                : "Invalid API key.");
    case Guard::kAdmin:
      if (!access_.admin_key) {
        return Forbidden(
            "The admin endpoints are disabled; start the server with --admin-api-key.");
      }
      if (access_.admin_key(authorization)) return std::nullopt;
      return Unauthorized(authorization.empty()
                              ? "Missing admin key: send Authorization: Bearer ADMIN_KEY."
                              : "Invalid admin key.");
  }
  return std::nullopt;
}

Route HttpRoutes::Resolve(const HttpRequest& req) const {
  Route route;
  std::string allowed;
  for (const Entry& e : entries_) {
    if (e.path != req.path) continue;
    if (e.method != req.method) {
      allowed += allowed.empty() ? e.method : ", " + e.method;
      continue;
    }
    if (std::optional<HttpResponse> refusal = Refuse(e.guard, req)) {
      route.response = std::move(*refusal);
      return route;
    }
    route.kind = e.kind;
    route.handler = e.handler;
    route.endpoint = e.endpoint;
    return route;
  }
  ApiError error;
  if (!allowed.empty()) {
    error.http_status = 405;
    error.message = "Method " + req.method + " is not allowed for " + req.path + ".";
    route.response = ErrorResponse(error);
    route.response.headers.emplace_back("Allow", allowed);
  } else {
    error.http_status = 404;
    error.message = "No route for " + req.method + " " + req.path + ".";
    error.code = "not_found";
    route.response = ErrorResponse(error);
  }
  return route;
}

}  // namespace sy::http
