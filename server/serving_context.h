// ServingContext: what the frontends (HTTP, gRPC) share: the engine, the chat template, the
// served model's name, readiness, and the metrics renderer. Built by `switchyard serve`, which
// owns everything it points to and outlives the frontends.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "engine/sched/engine.h"
#include "engine/tokenizer/chat_template.h"
#include "server/security.h"

namespace sy {

struct ServingContext {
  // Set once, before `loaded` turns true (the HTTP server is up while the model loads).
  Engine* engine = nullptr;
  std::atomic<bool> loaded{false};
  std::shared_ptr<const ChatTemplate> chat_template;  // null: the model has none
  std::string model_name;                             // what clients pass as "model"
  // HTTP: the longest a generation request may run, in seconds (--request-timeout); 0: no limit.
  double request_timeout_s = 0;
  // Ready: weights loaded, warm-up step ran, not draining. Liveness is engine->Alive(); the
  // frontends report ready only while both hold.
  std::atomic<bool> ready{false};
  // Prometheus text exposition of every metric (GET /metrics).
  std::function<std::string()> render_metrics;
  // Routing statistics as JSON, transitions included when asked (GET /admin/routing); empty
  // function: the model has no routed experts.
  std::function<std::string(bool transitions)> routing_json;
  // API keys and TLS flags; set before the frontends start. `tls` holds the files' contents,
  // read and checked at startup (LoadTlsFiles).
  SecurityOptions security;
  TlsFiles tls;
};

}  // namespace sy
