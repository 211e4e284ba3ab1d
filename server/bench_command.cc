// `switchyard bench`: a load tester for any OpenAI-compatible server, with the metric
// definitions of `vllm bench serve` so the numbers compare.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "server/bench/bench_client.h"
#include "server/bench/bench_dataset.h"
#include "server/bench/bench_runner.h"
#include "server/bench/bench_stats.h"
#include "server/commands.h"

namespace sy {
namespace {

struct BenchFlags {
  std::string url = "http://127.0.0.1:8000";
  std::string model;
  int64_t concurrency = 0;
  std::string request_rate = "inf";
  int64_t max_concurrency = 0;
  double burstiness = 1.0;
  int64_t num_prompts = 1000;
  std::string dataset = "random";
  std::string dataset_path;
  int64_t input_len = 1024;
  int64_t output_len = 128;
  double range_ratio = 0;
  int64_t vocab_size = 1000;
  bool tokenize_via_server = false;
  bool ignore_eos = false;
  uint64_t seed = 0;
  double temperature = 0;
  std::string percentiles = "50,90,99";
  std::string result_json;
  bool json = false;
  int64_t warmup = 0;
  double timeout_s = 600;
  // Which optional flags were given.
  CLI::Option* concurrency_opt = nullptr;
  CLI::Option* max_concurrency_opt = nullptr;
  CLI::Option* output_len_opt = nullptr;
  CLI::Option* ignore_eos_opt = nullptr;
};

int Fail(const Status& st) {
  std::fprintf(stderr, "bench: %s\n", st.ToString().c_str());
  return 1;
}

StatusOr<double> ParseRate(const std::string& text) {
  char* end = nullptr;
  const double rate = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(rate > 0)) {
    return Status::InvalidArgument("--request-rate must be a positive number or inf: " + text);
  }
  return rate;
}

StatusOr<std::vector<bench::BenchRequest>> BuildRequests(const BenchFlags& f,
                                                         bench::BenchClient& meta,
                                                         const std::string& model) {
  if (f.dataset == "random") {
    bench::RandomDatasetOptions o;
    o.num_prompts = f.num_prompts;
    o.input_len = f.input_len;
    o.output_len = f.output_len;
    o.range_ratio = f.range_ratio;
    o.vocab_size = f.vocab_size;
    o.seed = f.seed;
    return bench::MakeRandomRequests(o);
  }
  SY_ASSIGN_OR_RETURN(const std::vector<bench::ShareGptPair> pairs,
                      bench::LoadShareGpt(f.dataset_path));
  bench::ShareGptOptions o;
  o.num_prompts = f.num_prompts;
  o.seed = f.seed;
  if (f.output_len_opt->count() > 0) o.output_len = f.output_len;
  bench::TokenCounter count = [](const std::string& text) -> StatusOr<int64_t> {
    return bench::EstimateTokens(text);
  };
  if (f.tokenize_via_server) {
    count = [&](const std::string& text) { return meta.CountTokens(model, text); };
  }
  return bench::MakeShareGptRequests(pairs, o, count);
}

void PrintErrors(const std::vector<bench::RequestRecord>& records) {
  int shown = 0;
  for (const bench::RequestRecord& r : records) {
    if (r.success) continue;
    if (shown == 0) std::fprintf(stderr, "Failed requests (first 10):\n");
    std::fprintf(stderr, "  %s\n", r.error.c_str());
    if (++shown == 10) break;
  }
}

bench::LoadOptions MakeLoadOptions(const BenchFlags& f, double rate) {
  bench::LoadOptions load;
  load.seed = f.seed;
  load.burstiness = f.burstiness;
  load.show_progress = true;
  if (f.concurrency_opt->count() > 0) {
    load.max_concurrency = f.concurrency;  // closed loop: N clients, each sends on completion
  } else {
    load.request_rate = rate;
    if (f.max_concurrency_opt->count() > 0) load.max_concurrency = f.max_concurrency;
  }
  return load;
}

// Prints the table (stdout, or stderr with --json), the JSON, and writes --result-json.
int Report(const BenchFlags& f, const bench::LoadResult& result, const bench::BenchRunInfo& info,
           const std::vector<double>& percentiles) {
  const bench::BenchSummary summary =
      bench::Summarize(result.records, result.duration_s, percentiles);
  PrintErrors(result.records);
  const std::string table = bench::RenderTable(summary, info);
  std::fputs(table.c_str(), f.json ? stderr : stdout);
  if (f.json) std::printf("%s\n", bench::ToJson(summary, info, nullptr).dump(2).c_str());
  if (!f.result_json.empty()) {
    std::ofstream out(f.result_json);
    out << bench::ToJson(summary, info, &result.records).dump(2) << "\n";
    if (!out) return Fail(Status::Unavailable("cannot write " + f.result_json));
  }
  return summary.completed > 0 ? 0 : 1;
}

int RunBench(const BenchFlags& f) {
  auto url = bench::ParseBaseUrl(f.url);
  if (!url.ok()) return Fail(url.status());
  auto rate = ParseRate(f.request_rate);
  if (!rate.ok()) return Fail(rate.status());
  auto percentiles = bench::ParsePercentiles(f.percentiles);
  if (!percentiles.ok()) return Fail(percentiles.status());
  if (f.dataset == "sharegpt" && f.dataset_path.empty()) {
    return Fail(Status::InvalidArgument("--dataset sharegpt needs --dataset-path"));
  }

  bench::BenchClient meta(*url, f.timeout_s);
  std::string model = f.model;
  if (model.empty()) {
    auto first = meta.FirstModel();
    if (!first.ok()) return Fail(first.status());
    model = *first;
  }
  auto requests = BuildRequests(f, meta, model);
  if (!requests.ok()) return Fail(requests.status());

  bench::CompletionParams params;
  params.model = model;
  params.temperature = f.temperature;
  params.ignore_eos = f.ignore_eos_opt->count() > 0 ? f.ignore_eos : f.dataset == "random";

  const bench::LoadOptions load = MakeLoadOptions(f, *rate);
  const double timeout_s = f.timeout_s;
  const bench::BaseUrl base = *url;
  const bench::SendFnFactory make_sender = [&]() -> bench::SendFn {
    auto client = std::make_shared<bench::BenchClient>(base, timeout_s);
    return [client, &params](const bench::BenchRequest& r, bench::BenchClock::time_point t0) {
      return client->Complete(params, r, t0);
    };
  };

  if (f.warmup > 0) {
    std::fprintf(stderr, "Warming up with %lld requests...\n", static_cast<long long>(f.warmup));
    const std::vector<bench::BenchRequest> warm(static_cast<size_t>(f.warmup), requests->front());
    bench::LoadOptions warm_load;
    warm_load.max_concurrency = load.max_concurrency;
    bench::RunLoad(warm, warm_load, make_sender);
  }

  bench::BenchRunInfo info;
  info.model = model;
  info.url = f.url;
  info.num_prompts = static_cast<int64_t>(requests->size());
  info.request_rate = load.request_rate;
  info.burstiness = load.burstiness;
  info.max_concurrency = load.max_concurrency;
  std::fprintf(stderr,
               "Model %s at %s: %zu requests, rate %g/s, burstiness %g, max concurrency %s\n",
               model.c_str(), f.url.c_str(), requests->size(), load.request_rate, load.burstiness,
               load.max_concurrency ? std::to_string(*load.max_concurrency).c_str() : "none");
  const bench::LoadResult result = bench::RunLoad(*requests, load, make_sender);

  return Report(f, result, info, *percentiles);
}

}  // namespace

Command AddBenchCommand(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Load-test an OpenAI-compatible server (metrics as in `vllm bench serve`)");
  cmd->add_option("--url", f->url, "server base URL")->capture_default_str();
  cmd->add_option("--model", f->model, "model name (default: the first of GET /v1/models)");
  f->concurrency_opt = cmd->add_option("--concurrency", f->concurrency,
                                       "closed loop: N clients sending back to back")
                           ->check(CLI::PositiveNumber);
  auto* rate = cmd->add_option("--request-rate", f->request_rate,
                               "open loop: Poisson arrivals per second (inf: all at once)")
                   ->capture_default_str();
  f->max_concurrency_opt =
      cmd->add_option("--max-concurrency", f->max_concurrency,
                      "open loop: at most this many in flight; the rest wait client-side")
          ->check(CLI::PositiveNumber);
  f->concurrency_opt->excludes(rate)->excludes(f->max_concurrency_opt);
  cmd->add_option("--burstiness", f->burstiness, "1: Poisson; <1 burstier, >1 more regular")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--num-prompts", f->num_prompts, "requests to send")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--dataset", f->dataset, "random or sharegpt")
      ->check(CLI::IsMember({"random", "sharegpt"}))
      ->capture_default_str();
  cmd->add_option("--dataset-path", f->dataset_path, "ShareGPT-format JSON file");
  cmd->add_option("--input-len", f->input_len, "random: prompt tokens")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  f->output_len_opt =
      cmd->add_option("--output-len", f->output_len,
                      "max tokens per request (sharegpt default: the reference answer's length)")
          ->check(CLI::PositiveNumber)
          ->capture_default_str();
  cmd->add_option("--range-ratio", f->range_ratio, "random: lengths vary by +-ratio, in [0, 1)")
      ->capture_default_str();
  cmd->add_option("--vocab-size", f->vocab_size, "random: token ids are drawn below this")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--tokenize-via-server", f->tokenize_via_server,
                "sharegpt: count tokens with POST /tokenize instead of chars/4");
  f->ignore_eos_opt = cmd->add_flag("--ignore-eos,!--no-ignore-eos", f->ignore_eos,
                                    "generate max tokens regardless of EOS (default: on for "
                                    "random, off for sharegpt)");
  cmd->add_option("--seed", f->seed, "seed for prompts and arrivals")->capture_default_str();
  cmd->add_option("--temperature", f->temperature, "sampling temperature")->capture_default_str();
  cmd->add_option("--percentiles", f->percentiles, "comma-separated percentiles to report")
      ->capture_default_str();
  cmd->add_option("--result-json", f->result_json, "write the summary and per-request data here");
  cmd->add_flag("--json", f->json,
                "print the summary as JSON on stdout (the table goes to stderr)");
  cmd->add_option("--warmup", f->warmup, "unmeasured requests sent first")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--timeout", f->timeout_s, "seconds allowed per request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  return {cmd, [f]() { return RunBench(*f); }};
}

}  // namespace sy
