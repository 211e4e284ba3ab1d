// `switchyard serve`: loads a model into the serving engine and serves it over the OpenAI HTTP
// API, gRPC and /metrics until SIGTERM or SIGINT, then drains: readiness goes false, new
// requests are refused, in-flight ones finish within --shutdown-timeout, and it exits 0.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "engine/model/config.h"
#include "engine/sched/engine.h"
#include "engine/tokenizer/chat_template.h"
#include "server/commands.h"
#include "server/grpc/grpc_service.h"
#include "server/http/http_server.h"
#include "server/metrics/metrics.h"
#include "server/serving_context.h"

namespace sy {
namespace {

struct ServeFlags {
  EngineOptions engine;
  std::string host = "127.0.0.1";
  int port = 8000;
  int grpc_port = 50051;  // 0: no gRPC server
  std::string served_model_name;
  int64_t max_body_bytes = 8 << 20;
  double shutdown_timeout_s = 30;
  bool no_prefix_caching = false;
  std::string log_level = "info";
};

int Fail(const Status& st) {
  spdlog::error("serve: {}", st.ToString());
  return 1;
}

// Blocks the signals that end the server in every thread (threads inherit the mask), so the
// main thread alone takes them with sigwait.
sigset_t BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// Waits for running requests to finish, at most `timeout_s`; then aborts what is left so every
// stream ends before the frontends stop.
void DrainEngine(Engine* engine, const http::HttpServer& http, double timeout_s) {
  engine->Drain();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_s));
  while (std::chrono::steady_clock::now() < deadline) {
    if (engine->Idle() && http.active_requests() == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  spdlog::warn("serve: shutdown timeout; {} requests still active", http.active_requests());
}

int RunServe(ServeFlags f) {
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  const sigset_t stop_signals = BlockStopSignals();
  f.engine.enable_prefix_caching = !f.no_prefix_caching;

  auto config = LoadModelConfig(f.engine.model_dir);
  if (!config.ok()) return Fail(config.status());
  ServingContext ctx;
  ctx.model_name = f.served_model_name.empty()
                       ? std::filesystem::path(f.engine.model_dir).filename().string()
                       : f.served_model_name;
  if (ctx.model_name.empty()) ctx.model_name = f.engine.model_dir;
  Metrics metrics(ctx.model_name, *config);
  f.engine.observer = &metrics;

  auto chat_template = ChatTemplate::Load(f.engine.model_dir);
  if (chat_template.ok()) {
    ctx.chat_template = *chat_template;
  } else if (chat_template.status().code() == StatusCode::kNotFound) {
    spdlog::warn("serve: the model has no chat template; /v1/chat/completions is disabled");
  } else {
    return Fail(chat_template.status());
  }

  // HTTP comes up first, so probes see the process alive and not ready while it loads.
  ctx.render_metrics = [&metrics, &ctx]() {
    return metrics.Render(ctx.loaded.load() ? ctx.engine->Snapshot() : EngineSnapshot{});
  };
  http::HttpServerOptions http_options;
  http_options.host = f.host;
  http_options.port = f.port;
  http_options.max_body_bytes = f.max_body_bytes;
  http::HttpServer http(&ctx, http_options);
  if (Status st = http.Start(); !st.ok()) return Fail(st);

  const auto t_load = std::chrono::steady_clock::now();
  auto engine = Engine::Create(f.engine);
  if (!engine.ok()) return Fail(engine.status());
  ctx.engine = engine->get();
  ctx.loaded = true;
  spdlog::info("serve: model {} loaded and warmed up in {:.2f} s (max_model_len {})",
               ctx.model_name,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count(),
               (*engine)->max_model_len());

  std::unique_ptr<GrpcServer> grpc;
  if (f.grpc_port > 0) {
    grpc = std::make_unique<GrpcServer>(&ctx, f.host + ":" + std::to_string(f.grpc_port));
    if (Status st = grpc->Start(); !st.ok()) return Fail(st);
  }
  ctx.ready = true;
  if (grpc) grpc->SetServing(true);
  spdlog::info("serve: ready on http://{}:{}{}", f.host, f.port,
               grpc ? " and grpc " + f.host + ":" + std::to_string(f.grpc_port) : "");
  spdlog::info(
      "try: curl http://{}:{}/v1/completions -H 'Content-Type: application/json' -d "
      "'{{\"model\": \"{}\", \"prompt\": \"Hello\", \"max_tokens\": 16}}'",
      f.host, f.port, ctx.model_name);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("serve: signal {}; draining (timeout {:.0f} s)", signal_number,
               f.shutdown_timeout_s);
  ctx.ready = false;
  if (grpc) grpc->SetServing(false);
  DrainEngine(ctx.engine, http, f.shutdown_timeout_s);
  http.Stop();
  if (grpc) grpc->Shutdown();
  engine->reset();
  spdlog::info("serve: stopped");
  return 0;
}

}  // namespace

Command AddServeCommand(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model over the OpenAI HTTP API and gRPC");
  EngineOptions& e = f->engine;
  cmd->add_option("--model", e.model_dir, "Hugging Face model directory")->required();
  cmd->add_option("--host", f->host, "address to listen on");
  cmd->add_option("--port", f->port, "HTTP port")->check(CLI::Range(1, 65535));
  cmd->add_option("--grpc-port", f->grpc_port, "gRPC port (0: no gRPC)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--served-model-name", f->served_model_name,
                  "the model name clients use (default: the directory's name)");
  cmd->add_option("--threads", e.threads, "CPU threads (default: all cores)");
  cmd->add_option("--max-num-batched-tokens", e.max_num_batched_tokens,
                  "token budget of one engine step (prefills are chunked to fit)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-num-seqs", e.max_num_seqs, "sequences per engine step")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-queued-requests", e.max_queued_requests,
                  "waiting requests beyond this are rejected with 429")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--num-kv-blocks", e.num_kv_blocks, "KV-cache blocks (0: from --kv-cache-bytes)");
  cmd->add_option("--kv-cache-bytes", e.kv_cache_bytes, "KV-cache pool size in bytes")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--block-size", e.block_size, "tokens per KV-cache block")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-model-len", e.max_model_len,
                  "context length (default: the model's max_position_embeddings)");
  cmd->add_flag("--no-enable-prefix-caching", f->no_prefix_caching,
                "do not reuse the KV blocks of earlier prompts");
  cmd->add_option("--max-body-bytes", f->max_body_bytes, "largest accepted request body")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--shutdown-timeout", f->shutdown_timeout_s,
                  "seconds in-flight requests get to finish after SIGTERM");
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error");
  return {cmd, [f]() { return RunServe(*f); }};
}

}  // namespace sy
