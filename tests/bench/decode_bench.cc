// decode_bench: CPU prefill and decode speed of a checkpoint, against the memory-bandwidth
// roofline measured in the same run. Prints a table and one JSON line. Not a test.
//
//   decode_bench --model DIR [--threads 2] [--prompt-len 128] [--decode 32] [--batches 1,4,16,64]
//                [--quantization none|int8|int4|fp8] [--kv-cache-dtype auto|bf16|fp8]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/backend/backend_factory.h"
#include "engine/model/checkpoint.h"
#include "engine/model/moe_model.h"
#include "engine/runner/generator.h"
#include "kernels/cpu/membw.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/bench/decode_roofline.h"

namespace sy {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::vector<int32_t> RandomPrompt(int64_t len, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> p(len);
  for (auto& t : p) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab - 3));
  return p;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "%s\n", s.ToString().c_str());
  return 1;
}

struct DecodeResult {
  double prefill_s = 0;
  double decode_tok_s = 0;  // all sequences together
};

// Prefills `batch` random prompts in one go, then decodes `decode` tokens each (greedy, no EOS).
StatusOr<DecodeResult> RunBatch(ModelRunner* runner, int64_t batch, int64_t prompt_len,
                                int32_t decode) {
  const int64_t vocab = runner->model().config().vocab_size;
  std::vector<GenerationRequest> reqs(batch);
  for (int64_t i = 0; i < batch; ++i) {
    reqs[i].prompt = RandomPrompt(prompt_len, vocab, 100 + i);
    reqs[i].sampling.temperature = 0.0f;
    reqs[i].max_new_tokens = decode;
  }
  Generator gen(runner);
  int64_t emitted = 0;
  Clock::time_point first_step_end;
  const auto t0 = Clock::now();
  auto out = gen.Generate(reqs, [&](size_t, const SampledToken&) {
    if (emitted++ == batch - 1) first_step_end = Clock::now();
  });
  const auto t1 = Clock::now();
  if (!out.ok()) return out.status();
  DecodeResult r;
  r.prefill_s = Seconds(t0, first_step_end);
  r.decode_tok_s = static_cast<double>(batch * (decode - 1)) / Seconds(first_step_end, t1);
  return r;
}

int Main(int argc, char** argv) {
  CLI::App app{"CPU prefill/decode benchmark against the memory-bandwidth roofline"};
  std::string model_dir;
  int threads = 2;
  int64_t prompt_len = 128;
  int32_t decode = 32;
  std::vector<int64_t> batches = {1, 4, 16, 64};
  size_t membw_bytes = size_t{1} << 30;
  std::string quantization_name = "none";
  std::string kv_cache_dtype_name = "auto";
  app.add_option("--model", model_dir)->required();
  app.add_option("--threads", threads);
  app.add_option("--prompt-len", prompt_len);
  app.add_option("--decode", decode);
  app.add_option("--batches", batches)->delimiter(',');
  app.add_option("--membw-bytes", membw_bytes);
  app.add_option("--quantization", quantization_name,
                 "none, int8, int4 or fp8 (as serve --quantization)");
  app.add_option("--kv-cache-dtype", kv_cache_dtype_name,
                 "auto (f32), bf16 or fp8 (as serve --kv-cache-dtype)");
  CLI11_PARSE(app, argc, argv);
  auto quantization = ParseQuantization(quantization_name);
  if (!quantization.ok()) return Fail(quantization.status());
  auto kv_cache_dtype = ParseKvCacheDType(kv_cache_dtype_name);
  if (!kv_cache_dtype.ok()) return Fail(kv_cache_dtype.status());

  BackendOptions backend_options;
  backend_options.cpu_threads = threads;
  backend_options.kv_cache_dtype = *kv_cache_dtype;
  auto created = CreateBackend(DeviceSpec{}, backend_options);
  if (!created.ok()) return Fail(created.status());
  Backend& backend = **created;
  const DType kv_dtype = backend.kv_cache_dtype();
  auto config = LoadModelConfig(model_dir);
  if (!config.ok()) return Fail(config.status());
  auto checkpoint = Checkpoint::Open(model_dir);
  if (!checkpoint.ok()) return Fail(checkpoint.status());
  auto weights = LoadModelWeights(*config, **checkpoint, &backend, /*load_routed_experts=*/true,
                                  *quantization);
  if (!weights.ok()) return Fail(weights.status());
  // From the weights as loaded: config.json's torch_dtype need not match the tensors.
  const double bytes_tok =
      DecodeBytesPerToken(*config, *weights, prompt_len + decode / 2, kv_dtype);
  // The matmul weights' dtype: int8/int4g128 when quantized (the embedding keeps the checkpoint's).
  const std::string dtype(dtype_name(weights->layers.at(0).wq.dtype));
  auto model = MoeModel::Create(&backend, *config, std::move(*weights));
  if (!model.ok()) return Fail(model.status());
  RunnerOptions ro;
  const int64_t max_batch = *std::max_element(batches.begin(), batches.end());
  ro.max_batch_tokens = std::max<int64_t>(prompt_len * 4, max_batch);
  ro.max_seqs = max_batch;
  ro.block_size = 16;
  ro.num_kv_blocks = max_batch * ((prompt_len + decode) / 16 + 2);
  auto runner = ModelRunner::Create(model->get(), ro);
  if (!runner.ok()) {
    std::fprintf(stderr, "%s\n", runner.status().ToString().c_str());
    return 1;
  }
  cpu::ThreadPool pool(threads);
  const double bw = cpu::measure_read_bandwidth_gbs(membw_bytes, 5, &pool) * 1e9;
  // Warm up once (page in weights, spin up threads).
  if (!RunBatch(runner->get(), 1, 16, 4).ok()) return 1;

  nlohmann::json report = {{"model", model_dir},
                           {"dtype", dtype},
                           {"threads", threads},
                           {"kv_cache_dtype", std::string(dtype_name(kv_dtype))},
                           {"read_bandwidth_gbs", bw / 1e9}};
  auto single = RunBatch(runner->get(), 1, prompt_len, decode);
  if (!single.ok()) {
    std::fprintf(stderr, "%s\n", single.status().ToString().c_str());
    return 1;
  }
  const double roofline_tok_s = bw / bytes_tok;
  std::printf("model %s (%s), %d threads, KV cache %s\n", model_dir.c_str(), dtype.c_str(), threads,
              std::string(dtype_name(kv_dtype)).c_str());
  std::printf("read bandwidth           %8.2f GB/s\n", bw / 1e9);
  std::printf("bytes per decoded token  %8.2f MB\n", bytes_tok / 1e6);
  std::printf("prefill (%lld tokens)     %8.1f tok/s\n", static_cast<long long>(prompt_len),
              static_cast<double>(prompt_len) / single->prefill_s);
  std::printf("decode, 1 stream         %8.2f tok/s  (roofline %.2f tok/s: %.1f%%)\n",
              single->decode_tok_s, roofline_tok_s, 100.0 * single->decode_tok_s / roofline_tok_s);
  report["bytes_per_token"] = bytes_tok;
  report["prefill_tok_s"] = static_cast<double>(prompt_len) / single->prefill_s;
  report["decode_tok_s"] = single->decode_tok_s;
  report["roofline_tok_s"] = roofline_tok_s;
  report["roofline_fraction"] = single->decode_tok_s / roofline_tok_s;
  nlohmann::json batched = nlohmann::json::array();
  double first_rate = 0;
  for (int64_t b : batches) {
    auto r = RunBatch(runner->get(), b, 16, decode);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return 1;
    }
    if (first_rate == 0) first_rate = r->decode_tok_s;
    std::printf("decode, batch %-4lld      %8.2f tok/s  (%.2fx batch %lld)\n",
                static_cast<long long>(b), r->decode_tok_s, r->decode_tok_s / first_rate,
                static_cast<long long>(batches[0]));
    batched.push_back({{"batch", b}, {"decode_tok_s", r->decode_tok_s}});
  }
  report["batched"] = batched;
  std::printf("%s\n", report.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace sy

int main(int argc, char** argv) { return sy::Main(argc, argv); }
