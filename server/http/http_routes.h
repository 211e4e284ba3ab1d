// HttpRoutes: the route table of the HTTP API: which handler answers each method and path, who
// may call it (API keys), and where it runs: inline on a network thread (cheap reads), on the
// worker pool (tokenizing, migrations), or as a generation. Immutable after construction.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/http/http_message.h"
#include "server/http/openai_protocol.h"
#include "server/security.h"
#include "server/serving_context.h"

namespace sy::http {

// Who may call what. A check gets the request's Authorization header.
struct RouteAccess {
  std::function<bool(std::string_view authorization)> user_key;   // null: /v1/* etc. are open
  std::function<bool(std::string_view authorization)> admin_key;  // null: /admin/* answer 403
  bool protect_metrics = false;  // /metrics needs a user key (when user keys are set)
};

// The checks the serve flags ask for: user keys, the admin key, --protect-metrics.
RouteAccess AccessFrom(const SecurityOptions& security);

using RouteHandler = std::function<HttpResponse(const HttpRequest&)>;

struct Route {
  enum class Kind { kRespond, kInline, kWorker, kGeneration };
  Kind kind = Kind::kRespond;
  HttpResponse response;                       // kRespond: the answer (404, 405, 401, 403)
  RouteHandler handler;                        // kInline, kWorker
  Endpoint endpoint = Endpoint::kCompletions;  // kGeneration
};

class HttpRoutes {
 public:
  HttpRoutes(ServingContext* ctx, RouteAccess access);
  Route Resolve(const HttpRequest& req) const;

 private:
  enum class Guard { kOpen, kUser, kAdmin, kMetrics };
  struct Entry {
    std::string method;
    std::string path;
    Route::Kind kind;
    Guard guard;
    RouteHandler handler;
    Endpoint endpoint = Endpoint::kCompletions;
  };
  void Add(std::string method, std::string path, Route::Kind kind, Guard guard,
           RouteHandler handler);
  void AddGeneration(std::string path, Endpoint endpoint);
  void AddAdminRoutes();
  // The 401/403 answer when `guard` refuses `req`; empty when it lets it through.
  std::optional<HttpResponse> Refuse(Guard guard, const HttpRequest& req) const;

  ServingContext* ctx_;
  RouteAccess access_;
  std::vector<Entry> entries_;
};

}  // namespace sy::http
