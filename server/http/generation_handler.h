// Serves POST /v1/completions and /v1/chat/completions: validates the body, submits to the
// engine, and answers once (non-streaming) or as server-sent events, aborting the engine work
// when the client goes away or the server stops. Stateless; called on httplib worker threads.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>

#include "server/http/openai_protocol.h"
#include "server/serving_context.h"

namespace sy::http {

// What the handler borrows from the HttpServer (all outlive every request).
struct GenerationEnv {
  ServingContext* ctx = nullptr;
  const std::atomic<bool>* stopping = nullptr;  // the server is shutting down: cut off
  std::atomic<size_t>* active = nullptr;        // generation requests being answered
  std::chrono::milliseconds poll_interval{20};
  bool access_log = true;  // one info line per finished request (server/http/access_log.h)
};

ProtocolContext MakeProtocolContext(const ServingContext& ctx);

// `request_id` is echoed in the X-Request-Id header and the access log.
void HandleGeneration(const GenerationEnv& env, Endpoint endpoint, const httplib::Request& req,
                      httplib::Response& res, std::string request_id);

}  // namespace sy::http
