// `switchyard generate`: one prompt, offline, streamed to stdout; speed summary on stderr.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "engine/backend/backend_factory.h"
#include "engine/model/model_source.h"
#include "engine/model/moe_model.h"
#include "engine/runner/generator.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/commands.h"

namespace sy {
namespace {

struct GenerateFlags {
  std::string model;
  bool random_weights = false;
  uint64_t random_seed = 0;
  std::string quantization = "none";
  std::string kv_cache_dtype = "auto";
  std::string device = "cpu";
  std::string prompt;
  int32_t max_tokens = 64;
  bool ignore_eos = false;
  int threads = 0;
  int block_size = 16;
  SamplingParams sampling;
  uint64_t seed = 0;
  bool has_seed = false;
};

int Fail(const Status& st) {
  std::fprintf(stderr, "generate: %s\n", st.ToString().c_str());
  return 1;
}

int RunGenerate(const GenerateFlags& f) {
  using Clock = std::chrono::steady_clock;
  const int threads = f.threads > 0
                          ? f.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const auto t_load = Clock::now();
  auto quantization = ParseQuantization(f.quantization);
  if (!quantization.ok()) return Fail(quantization.status());
  auto kv_cache_dtype = ParseKvCacheDType(f.kv_cache_dtype);
  if (!kv_cache_dtype.ok()) return Fail(kv_cache_dtype.status());
  auto device = ParseDevice(f.device);
  if (!device.ok()) return Fail(device.status());
  BackendOptions bo;
  bo.cpu_threads = threads;
  bo.kv_cache_dtype = *kv_cache_dtype;
  auto backend = CreateBackend(*device, bo);
  if (!backend.ok()) return Fail(backend.status());
  const ModelSource source{f.model, f.random_weights, f.random_seed, *quantization};
  auto model = LoadSourceModel(source, backend->get());
  if (!model.ok()) return Fail(model.status());
  auto tokenizer = LoadSourceTokenizer(source);
  if (!tokenizer.ok()) return Fail(tokenizer.status());

  GenerationRequest req;
  req.prompt = (*tokenizer)->Encode(f.prompt, /*add_special_tokens=*/true);
  if (req.prompt.empty()) return Fail(Status::InvalidArgument("the prompt encodes to no tokens"));
  req.max_new_tokens = f.max_tokens;
  req.sampling = f.sampling;
  if (f.has_seed) req.sampling.seed = f.seed;
  if (!f.ignore_eos) req.stop_token_ids = (*tokenizer)->eos_ids();

  RunnerOptions ro;
  ro.block_size = f.block_size;
  ro.max_batch_tokens = std::max<int64_t>(512, static_cast<int64_t>(req.prompt.size()));
  ro.max_seqs = 1;
  const int64_t context = static_cast<int64_t>(req.prompt.size()) + f.max_tokens;
  ro.num_kv_blocks = (context + f.block_size - 1) / f.block_size + 1;
  auto runner = ModelRunner::Create(model->get(), ro);
  if (!runner.ok()) return Fail(runner.status());
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();

  IncrementalDetokenizer detok(**tokenizer, /*skip_special_tokens=*/true);
  Generator gen(runner->get());
  const auto t0 = Clock::now();
  Clock::time_point t_first;
  int64_t n = 0;
  auto result = gen.Generate({&req, 1}, [&](size_t, const SampledToken& t) {
    if (n++ == 0) t_first = Clock::now();
    const std::string text = detok.Push(t.token);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  });
  if (!result.ok()) return Fail(result.status());
  const std::string tail = detok.Flush();
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fputc('\n', stdout);
  const auto t_end = Clock::now();
  const double prefill_s = std::chrono::duration<double>(t_first - t0).count();
  const double decode_s = std::chrono::duration<double>(t_end - t_first).count();
  std::fprintf(stderr,
               "\n[load %.2f s] prompt %zu tokens: prefill %.3f s (%.1f tok/s); generated %lld "
               "tokens (%s): %.1f tok/s decode, %d threads\n",
               load_s, req.prompt.size(), prefill_s,
               static_cast<double>(req.prompt.size()) / prefill_s, static_cast<long long>(n),
               (*result)[0].finish_reason.c_str(),
               n > 1 ? static_cast<double>(n - 1) / decode_s : 0.0, threads);
  return 0;
}

}  // namespace

Command AddGenerateCommand(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text for one prompt, offline");
  cmd->add_option("--model", f->model,
                  "Hugging Face model directory, or preset:NAME with --random-weights")
      ->required();
  cmd->add_flag("--random-weights", f->random_weights,
                "make random weights on the device instead of reading them");
  cmd->add_option("--random-weights-seed", f->random_seed, "seed of --random-weights");
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
  cmd->add_option("--device", f->device, "cpu, cuda or cuda:N");
  cmd->add_option("--prompt", f->prompt, "prompt text")->required();
  cmd->add_option("--max-tokens", f->max_tokens, "tokens to generate")->check(CLI::PositiveNumber);
  cmd->add_flag("--ignore-eos", f->ignore_eos, "keep generating after end-of-sequence");
  cmd->add_option("--threads", f->threads, "CPU threads (default: all cores)");
  cmd->add_option("--block-size", f->block_size, "KV-cache block size")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", f->sampling.temperature, "0 is greedy");
  cmd->add_option("--top-k", f->sampling.top_k, "keep the k most likely tokens (0: all)");
  cmd->add_option("--top-p", f->sampling.top_p, "nucleus sampling mass");
  cmd->add_option("--min-p", f->sampling.min_p, "drop tokens below min_p x the top probability");
  cmd->add_option("--repetition-penalty", f->sampling.repetition_penalty,
                  "> 1 discourages repeats");
  cmd->add_option("--presence-penalty", f->sampling.presence_penalty, "[-2, 2]");
  cmd->add_option("--frequency-penalty", f->sampling.frequency_penalty, "[-2, 2]");
  cmd->add_option("--seed", f->seed, "sampling seed (same seed, same output)")
      ->each([f](const std::string&) { f->has_seed = true; });
  return {cmd, [f]() { return RunGenerate(*f); }};
}

}  // namespace sy
