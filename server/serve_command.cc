// `switchyard serve`: loads a model into the serving engine and serves it over the OpenAI HTTP
// API, gRPC and /metrics until SIGTERM or SIGINT, then drains: readiness goes false, new
// requests are refused, in-flight ones finish within --shutdown-timeout, and it exits 0 (1 if
// the engine had died meanwhile).
// With expert parallelism (--ep-size, or group variables) rank 0 serves and the other ranks run
// the engine's worker loop; they stop when rank 0 does.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "engine/model/config.h"
#include "engine/model/model_source.h"
#include "engine/sched/engine.h"
#include "engine/tokenizer/chat_template.h"
#include "server/commands.h"
#include "server/grpc/grpc_service.h"
#include "server/http/http_server.h"
#include "server/http/openai_protocol.h"
#include "server/metrics/metrics.h"
#include "server/rank_group.h"
#include "server/security.h"
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
  int64_t max_connections = 10000;
  double header_timeout_s = 10;
  double body_timeout_s = 30;
  double keep_alive_timeout_s = 5;
  int http_threads = 2;
  // api_keys holds the --api-key flags until RunServe merges in SWITCHYARD_API_KEY.
  SecurityOptions security;
  bool disable_access_log = false;
  double shutdown_timeout_s = 30;
  double request_timeout_s = 0;  // 0: none
  bool no_prefix_caching = false;
  std::string log_level = "info";
  std::string quantization = "none";    // parsed into engine.quantization
  std::string kv_cache_dtype = "auto";  // parsed into engine.kv_cache_dtype
  // Expert parallelism.
  int ep_size = 1;
  int ep_port = 0;  // 0: a free port (local group) or the environment's / 29500
  std::string placement_file;
  double dist_timeout_s = 120;
  // Routing statistics.
  int routing_window_steps = 256;
  std::string record_routing_file;
  int record_routing_steps = 64;
};

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

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

// SIGTERM and SIGINT stay blocked: rank 0 drains its requests first and needs every rank for
// that, so a worker leaves only when rank 0 stops it or the group breaks (--dist-timeout).
int RunWorkerRank(const EngineOptions& options, int rank) {
  spdlog::info("serve: rank {} loading {}", rank, options.model_dir);
  const Status st = Engine::RunWorker(options);
  if (!st.ok()) return Fail(st);
  spdlog::info("serve: rank {} stopped", rank);
  return 0;
}

// Fills ctx->chat_template; a model without one serves no chat endpoint.
Status LoadChatTemplateInto(const std::string& model_dir, ServingContext* ctx) {
  if (ModelSource{model_dir}.is_preset()) {
    spdlog::warn("serve: a preset model has no chat template; /v1/chat/completions is disabled");
    return Status::Ok();
  }
  auto chat_template = ChatTemplate::Load(model_dir);
  if (chat_template.ok()) {
    ctx->chat_template = *chat_template;
  } else if (chat_template.status().code() == StatusCode::kNotFound) {
    spdlog::warn("serve: the model has no chat template; /v1/chat/completions is disabled");
  } else {
    return chat_template.status();
  }
  return Status::Ok();
}

// Writes what --record-routing recorded; false on failure.
bool SaveRoutingTrace(RoutingStats& routing, const std::string& file, const std::string& model) {
  RoutingTrace trace = routing.TakeRecordedTrace();
  trace.source = "switchyard serve --record-routing, model " + model;
  if (Status st = trace.Save(file); !st.ok()) {
    spdlog::error("serve: writing the routing trace: {}", st.ToString());
    return false;
  }
  spdlog::info("serve: wrote {} routing windows to {}", trace.windows.size(), file);
  return true;
}

// Waits for the local worker ranks (they leave once the engine stopped); false if any failed.
bool ReapLocalRanks(RankGroup& group) {
  if (group.launcher == nullptr) return true;
  bool ok = true;
  for (const RankExit& e : group.launcher->WaitAll(std::chrono::seconds(10))) {
    if (!e.success()) {
      spdlog::error("serve: {}", e.Describe());
      ok = false;
    }
  }
  return ok;
}

// Rank 0: the frontends, the engine and, with expert parallelism, the leader of the group.
int ServeRankZero(ServeFlags& f, const ModelConfig& config, RankGroup& group,
                  const sigset_t& stop_signals) {
  RoutingStats routing(MoeLayerIndices(config), static_cast<int32_t>(config.num_experts),
                       static_cast<int32_t>(config.num_experts_per_tok), group.env.world_size,
                       f.routing_window_steps);
  if (!f.record_routing_file.empty()) routing.StartRecording(f.record_routing_steps);
  if (config.num_experts > 0) f.engine.routing_stats = &routing;
  ServingContext ctx;
  ctx.model_name = f.served_model_name.empty()
                       ? std::filesystem::path(f.engine.model_dir).filename().string()
                       : f.served_model_name;
  if (ctx.model_name.empty()) ctx.model_name = f.engine.model_dir;
  ctx.request_timeout_s = f.request_timeout_s;
  Metrics metrics(ctx.model_name, config);
  f.engine.observer = &metrics;
  if (f.engine.routing_stats != nullptr) {
    metrics.SetRoutingStats(&routing);
    ctx.routing_json = [&routing](bool transitions) { return routing.ToJson(transitions); };
  }
  if (Status st = LoadChatTemplateInto(f.engine.model_dir, &ctx); !st.ok()) return Fail(st);
  StatusOr<TlsFiles> tls = LoadTlsFiles(f.security);  // a bad file fails before the model loads
  if (!tls.ok()) return Fail(tls.status());
  ctx.security = f.security;
  ctx.tls = std::move(tls).value();

  // HTTP comes up first, so probes see the process alive and not ready while it loads.
  ctx.render_metrics = [&metrics, &ctx]() {
    const bool loaded = ctx.loaded.load();
    const bool alive = !loaded || ctx.engine->Alive();
    metrics.SetHealth(ctx.ready.load() && alive, alive);
    if (loaded) metrics.SetPlacement(ctx.engine->placement());
    return metrics.Render(loaded ? ctx.engine->Snapshot() : EngineSnapshot{});
  };
  http::HttpServerOptions http_options;
  http_options.host = f.host;
  http_options.port = f.port;
  http_options.limits.max_body_bytes = static_cast<size_t>(f.max_body_bytes);
  http_options.limits.header_timeout = Millis(f.header_timeout_s);
  http_options.limits.body_timeout = Millis(f.body_timeout_s);
  http_options.limits.keep_alive_timeout = Millis(f.keep_alive_timeout_s);
  http_options.max_connections = static_cast<size_t>(f.max_connections);
  http_options.io_threads = f.http_threads;
  http_options.access_log = !f.disable_access_log;
  http_options.access = http::AccessFrom(ctx.security);
  http_options.tls = ctx.tls;
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
    grpc = std::make_unique<GrpcServer>(
        &ctx, GrpcServerOptions{.address = f.host + ":" + std::to_string(f.grpc_port),
                                .max_receive_message_bytes = f.max_body_bytes});
    if (Status st = grpc->Start(); !st.ok()) {
      http.Stop();  // its handlers use the engine, which goes first
      return Fail(st);
    }
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
  // A dead engine (failed step, lost rank, exception) is a failure to report to whoever restarts
  // the server, whatever the cause.
  const bool engine_alive = (*engine)->Alive();
  if (!engine_alive) spdlog::error("serve: the engine had stopped; exiting 1");
  engine->reset();
  bool ok = f.record_routing_file.empty() ||
            SaveRoutingTrace(routing, f.record_routing_file, ctx.model_name);
  ok = ReapLocalRanks(group) && ok && engine_alive;
  spdlog::info("serve: stopped");
  return ok ? 0 : 1;
}

// Every open connection holds a file descriptor: take the hard limit, as nginx and vLLM do.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) spdlog::warn("serve: cannot raise RLIMIT_NOFILE");
}

int RunServe(ServeFlags f) {
  RaiseFileLimit();
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  const sigset_t stop_signals = BlockStopSignals();
  f.engine.enable_prefix_caching = !f.no_prefix_caching;
  const char* env_keys = std::getenv("SWITCHYARD_API_KEY");
  f.security.api_keys = MergeApiKeys(f.security.api_keys, env_keys == nullptr ? "" : env_keys);
  if (Status st = CheckSecurityOptions(f.security); !st.ok()) return Fail(st);
  auto quantization = ParseQuantization(f.quantization);
  if (!quantization.ok()) return Fail(quantization.status());
  f.engine.quantization = *quantization;
  auto kv_cache_dtype = ParseKvCacheDType(f.kv_cache_dtype);
  if (!kv_cache_dtype.ok()) return Fail(kv_cache_dtype.status());
  f.engine.kv_cache_dtype = *kv_cache_dtype;

  auto config = LoadSourceConfig(
      ModelSource{f.engine.model_dir, f.engine.random_weights, f.engine.random_seed});
  if (!config.ok()) return Fail(config.status());
  if (!f.placement_file.empty()) {
    auto placement = ExpertPlacement::Load(f.placement_file);
    if (!placement.ok()) return Fail(placement.status());
    f.engine.placement = std::make_shared<ExpertPlacement>(std::move(*placement));
  }
  const auto dist_timeout = std::chrono::milliseconds(static_cast<int64_t>(f.dist_timeout_s * 1e3));
  auto group = JoinRankGroup(f.ep_size, f.ep_port, dist_timeout);
  if (!group.ok()) return Fail(group.status());
  const int world = group->env.world_size;
  if (f.engine.threads == 0 && world > 1 && group->local) {
    // Ranks on one host share its cores.
    f.engine.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world);
  }
  f.engine.communicator = group->comm.get();
  if (group->env.rank > 0) return RunWorkerRank(f.engine, group->env.rank);
  return ServeRankZero(f, *config, *group, stop_signals);
}

}  // namespace

Command AddServeCommand(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model over the OpenAI HTTP API and gRPC");
  EngineOptions& e = f->engine;
  cmd->add_option("--model", e.model_dir,
                  "Hugging Face model directory, or preset:NAME with --random-weights")
      ->required();
  cmd->add_flag("--random-weights", e.random_weights,
                "make random weights on the device instead of reading them (benchmarks)");
  cmd->add_option("--random-weights-seed", e.random_seed, "seed of --random-weights");
  cmd->add_option("--quantization", f->quantization,
                  "none, int8 (weight-only, a scale per output channel), int4 (weight-only, "
                  "asymmetric, a scale and min per group of 128 inputs) or fp8 (e4m3, a scale "
                  "per 128 columns of each row): matmul weights quantized at load; pre-quantized "
                  "checkpoints (FP8, GPTQ, AWQ) load as published")
      ->capture_default_str();
  cmd->add_option(
         "--kv-cache-dtype", f->kv_cache_dtype,
         "KV cache element type: auto (f32 on the CPU, bf16 on CUDA), bf16, or fp8 (e4m3fn "
         "with one f32 scale per cached row: per token and layer for K and for V, per "
         "latent row for MLA; CPU only)")
      ->capture_default_str();
  cmd->add_option("--device", e.device, "cpu, cuda or cuda:N");
  cmd->add_option("--gpu-memory-utilization", e.gpu_memory_utilization,
                  "GPU: share of device memory to use; the KV cache gets what the model leaves")
      ->check(CLI::Range(0.01, 1.0));
  cmd->add_flag("--enforce-eager", e.enforce_eager, "GPU: run decode steps without CUDA graphs");
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
                  "waiting sequences (n per prompt) beyond this are rejected with 429")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--num-kv-blocks", e.num_kv_blocks,
                  "KV-cache blocks (0: from --kv-cache-bytes on CPU, from free memory on GPU)");
  cmd->add_option("--kv-cache-bytes", e.kv_cache_bytes, "KV-cache pool size in bytes")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--block-size", e.block_size, "tokens per KV-cache block")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-model-len", e.max_model_len,
                  "context length (default: the model's max_position_embeddings)");
  cmd->add_flag("--no-enable-prefix-caching", f->no_prefix_caching,
                "do not reuse the KV blocks of earlier prompts");
  cmd->add_flag("--disable-access-log", f->disable_access_log,
                "no info line per finished completion/chat request");
  cmd->add_option("--max-body-bytes", f->max_body_bytes,
                  "largest accepted request body (HTTP) or message (gRPC)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-connections", f->max_connections,
                  "open HTTP connections at most; beyond, new ones get 503")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--header-timeout", f->header_timeout_s,
                  "seconds from a request's first byte to the end of its head (else 408)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--body-timeout", f->body_timeout_s,
                  "seconds from a request's head to the end of its body (else 408)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--keep-alive-timeout", f->keep_alive_timeout_s,
                  "seconds an idle keep-alive connection stays open")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--http-threads", f->http_threads, "network threads of the HTTP server")
      ->check(CLI::Range(1, 64));
  SecurityOptions& sec = f->security;
  cmd->add_option("--api-key", sec.api_keys,
                  "require `Authorization: Bearer KEY` on /v1/*, /tokenize, /detokenize and "
                  "gRPC (repeatable; env SWITCHYARD_API_KEY adds comma-separated keys)")
      ->allow_extra_args(false);
  cmd->add_option("--admin-api-key", sec.admin_api_key,
                  "enable /admin/* for `Authorization: Bearer KEY` (default: disabled, 403)");
  cmd->add_flag("--protect-metrics", sec.protect_metrics, "/metrics needs an API key too");
  cmd->add_option("--ssl-certfile", sec.ssl_certfile,
                  "PEM certificate chain: serve HTTP and gRPC over TLS (with --ssl-keyfile)");
  cmd->add_option("--ssl-keyfile", sec.ssl_keyfile, "PEM private key of --ssl-certfile");
  cmd->add_option("--ssl-ca-certs", sec.ssl_ca_certs,
                  "PEM CA certificates: require client certificates they sign (mutual TLS)");
  cmd->add_option("--request-timeout", f->request_timeout_s,
                  "seconds a generation request may take before it is aborted (HTTP 504); a "
                  "request's \"timeout\" field may shorten it; 0: no limit")
      ->check(CLI::Range(0.0, http::kMaxRequestTimeoutSeconds));
  cmd->add_option("--shutdown-timeout", f->shutdown_timeout_s,
                  "seconds in-flight requests get to finish after SIGTERM");
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error");
  cmd->add_option("--ep-size", f->ep_size,
                  "expert-parallel ranks: N > 1 starts ranks 1..N-1 as local processes (Gloo); "
                  "several hosts use SWITCHYARD_RANK/WORLD_SIZE/LEADER_ADDR or LWS_* instead")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--ep-port", f->ep_port,
                  "rendezvous port of rank 0 (0: a free port for a local group, else 29500)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--placement", f->placement_file,
                  "expert placement JSON from `switchyard plan` (default: contiguous)");
  cmd->add_option("--expert-slots-per-rank", e.expert_slots_per_rank,
                  "expert slots per rank and layer (default: experts / ranks, rounded up)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--rebalance-interval", e.rebalance_interval_s,
                  "seconds between live re-plans of the expert placement from the routing "
                  "window, migrating experts while serving (0: off; needs --ep-size > 1)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--rebalance-strategy", e.rebalance_strategy, "planner for live re-plans")
      ->check(CLI::IsMember({"greedy", "ilp"}));
  cmd->add_option("--rebalance-time-limit", e.rebalance_time_limit_s,
                  "seconds one live re-plan may take (ILP)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--rebalance-min-gain", e.rebalance_min_gain,
                  "relative objective improvement a re-plan needs to be applied")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--dist-timeout", f->dist_timeout_s,
                  "seconds a rank waits for the others before the group counts as broken "
                  "(an idle leader sends a heartbeat every second)")
      ->check(CLI::Range(3.0, 86400.0));
  cmd->add_option("--routing-window-steps", f->routing_window_steps,
                  "steps in the sliding window of routing statistics")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--record-routing", f->record_routing_file,
                  "write the routing trace (for `switchyard plan`) to this file at shutdown");
  cmd->add_option("--record-routing-steps", f->record_routing_steps,
                  "engine steps per window of the recorded routing trace")
      ->check(CLI::PositiveNumber);
  return {cmd, [f]() { return RunServe(*f); }};
}

}  // namespace sy
