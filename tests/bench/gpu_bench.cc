// gpu_bench: speed of the CUDA backend against the device-to-device copy roofline measured in the
// same run. Modes (any combination, run in this order):
//   --copy     copy bandwidth of sy::cuda::copy_bytes over a 2 GiB buffer (bytes read + written)
//   --quant    cuda::quantized_matmul alone, int8, int4 and FP8 weights, for --quant-rows rows
//              (tests/bench/quant_gemm_bench.h; runs --copy first)
//   --moe      one MoE layer alone (router, top-k, sort, gather, grouped experts, combine) on the
//              OLMoE-1B-7B and Qwen3-30B-A3B shapes, eager and as a CUDA graph
//   --decode   decode steps of a whole model through ModelRunner (graphs), per batch size, with
//              the bytes a step must read counted from first principles (runs --copy first)
//   --prefill  one long prompt prefilled in chunks of the step's token budget
// Prints a table per mode and one JSON line; --json FILE writes the same JSON. Not a test: it
// never fails on time. Without a CUDA device it says so and exits 0; --cpu runs --moe, --decode
// and --prefill on the CPU backend instead, to check the benchmark itself on small models.
//
//   gpu_bench --decode --model preset:qwen3-30b-a3b [--batches 1,8,32,128] [--context 512]
//             [--steps 64] [--prefill --prompt 2048 --chunk 2048] [--json out.json]
//   gpu_bench --moe [--shape olmoe|qwen3|all] [--tokens 1,8,32,128,512,2048]
//   --model preset:NAME uses random weights; --model DIR reads the checkpoint.
#include <cuda_runtime_api.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu_backend.h"
#include "engine/backend/cuda_backend.h"
#include "engine/model/model_source.h"
#include "engine/model/moe_model.h"
#include "engine/runner/model_runner.h"
#include "kernels/cuda/ops.h"
#include "tests/bench/quant_gemm_bench.h"

namespace sy {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())))];
}

Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return Status::Internal(std::string(what) + ": " + cudaGetErrorString(err));
}

// --- copy roofline ---

struct CopyResult {
  size_t buffer_bytes = 0;
  double median_s = 0;
  double gbs = 0;  // (read + written) / time
};

// Frees its device allocations and stream on every exit path.
struct CopyResources {
  void* src = nullptr;
  void* dst = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<cudaEvent_t> events;
  ~CopyResources() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    if (stream != nullptr) cudaStreamDestroy(stream);
    cudaFree(src);
    cudaFree(dst);
  }
};

// Median of `reps` timed copies of `bytes` (after warm-up), each between its own pair of events.
StatusOr<CopyResult> MeasureCopy(size_t bytes, int reps) {
  bytes = bytes / 16 * 16;
  CopyResources r;
  SY_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&r.src, bytes), "cudaMalloc (copy source)"));
  SY_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&r.dst, bytes), "cudaMalloc (copy destination)"));
  SY_RETURN_IF_ERROR(
      CudaStatus(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  r.events.resize(2 * static_cast<size_t>(reps));
  for (cudaEvent_t& e : r.events) {
    SY_RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&e), "cudaEventCreate"));
  }
  // Real data, not zeros; then a few copies to warm up clocks and TLBs.
  SY_RETURN_IF_ERROR(CudaStatus(
      cuda::fill_random(r.src, DType::kF32, static_cast<int64_t>(bytes / 4), 7, 1.0f, r.stream),
      "fill_random"));
  for (int i = 0; i < 3; ++i) {
    SY_RETURN_IF_ERROR(CudaStatus(cuda::copy_bytes(r.dst, r.src, bytes, r.stream), "copy_bytes"));
  }
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(r.events[2 * i], r.stream);
    SY_RETURN_IF_ERROR(CudaStatus(cuda::copy_bytes(r.dst, r.src, bytes, r.stream), "copy_bytes"));
    cudaEventRecord(r.events[2 * i + 1], r.stream);
  }
  SY_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(r.stream), "copy"));
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    float ms = 0;
    SY_RETURN_IF_ERROR(
        CudaStatus(cudaEventElapsedTime(&ms, r.events[2 * i], r.events[2 * i + 1]), "events"));
    times.push_back(ms * 1e-3);
  }
  CopyResult out;
  out.buffer_bytes = bytes;
  out.median_s = Median(times);
  out.gbs = 2.0 * static_cast<double>(bytes) / out.median_s / 1e9;
  return out;
}

json CopyJson(const CopyResult& c) {
  return {
      {"buffer_bytes", c.buffer_bytes}, {"median_ms", c.median_s * 1e3}, {"bandwidth_gbs", c.gbs}};
}

void PrintCopy(const CopyResult& c) {
  std::printf("copy: %.2f GiB buffer, median of 20: %.3f ms -> %.1f GB/s (read + written)\n",
              static_cast<double>(c.buffer_bytes) / (1 << 30), c.median_s * 1e3, c.gbs);
}

// --- the MoE layer alone ---

struct MoeShape {
  const char* name;
  int64_t hidden, experts, k, inter;
  bool renormalize;
};
constexpr MoeShape kOlmoe{"olmoe-1b-7b", 2048, 64, 8, 1024, false};
constexpr MoeShape kQwen3{"qwen3-30b-a3b", 2048, 128, 8, 768, true};
// Copies of the experts the timed loop cycles through, so that repetitions do not find the
// weights in the 50 MB L2 cache.
constexpr int kMoeLayers = 4;

StatusOr<Tensor> Alloc(Backend* be, std::vector<DeviceBuffer>& owned, DType dtype, int64_t rows,
                       int64_t cols) {
  SY_ASSIGN_OR_RETURN(DeviceBuffer buf,
                      be->Allocate(static_cast<size_t>(rows * cols) * dtype_size(dtype)));
  owned.push_back(std::move(buf));
  return Tensor{owned.back().data(), dtype, rows, cols};
}

struct MoeTiming {
  double seconds = 0;  // per layer
  double gbs = 0;
  double tflops = 0;
};

// Router, top-k, sort, gather, grouped experts and combine for each of `tokens`, in bf16, through
// the Backend interface (the same calls as MoeModel::Moe). Eager times include launch gaps and,
// above 16 rows per expert, the per-expert cuBLAS path; graph times replay the layer captured
// (backends with graphs only).
StatusOr<json> RunMoe(Backend* be, const MoeShape& s, const std::vector<int64_t>& tokens) {
  const DType wt = DType::kBF16;
  const int64_t max_t = *std::max_element(tokens.begin(), tokens.end());
  const int64_t max_tk = max_t * s.k;
  const size_t expert_bytes = static_cast<size_t>(3 * s.inter * s.hidden) * dtype_size(wt);
  std::vector<DeviceBuffer> owned;

  // Expert weights, one buffer per layer copy, and their pointer tables (as BuildExpertTables).
  std::vector<void*> host_ptrs;
  std::vector<void*> layer_base;
  for (int l = 0; l < kMoeLayers; ++l) {
    SY_ASSIGN_OR_RETURN(Tensor w, Alloc(be, owned, wt, s.experts * 3 * s.inter, s.hidden));
    be->FillRandom(w, 100 + l, 0.03f);
    layer_base.push_back(w.data);
  }
  for (int l = 0; l < kMoeLayers; ++l) {
    char* base = static_cast<char*>(layer_base[l]);
    for (int64_t e = 0; e < s.experts; ++e) host_ptrs.push_back(base + e * expert_bytes);
    for (int64_t e = 0; e < s.experts; ++e) {
      // down [hidden, inter] follows gate_up [2*inter, hidden] in each expert's slice.
      host_ptrs.push_back(base + e * expert_bytes + expert_bytes * 2 / 3);
    }
  }
  SY_ASSIGN_OR_RETURN(Tensor ptrs,
                      Alloc(be, owned, DType::kI64, 1, static_cast<int64_t>(host_ptrs.size())));
  be->CopyToDevice(ptrs.data, host_ptrs.data(), host_ptrs.size() * sizeof(void*));
  std::vector<ExpertTable> tables(kMoeLayers);
  for (int l = 0; l < kMoeLayers; ++l) {
    const size_t first = 2 * static_cast<size_t>(l * s.experts);
    auto* p = static_cast<void**>(ptrs.data) + first;
    ExpertTable& t = tables[l];
    t.gate_up_ptrs = Tensor{p, DType::kI64, 1, s.experts};
    t.down_ptrs = Tensor{p + s.experts, DType::kI64, 1, s.experts};
    t.gate_up_host = std::span<void* const>(host_ptrs.data() + first, s.experts);
    t.down_host = std::span<void* const>(host_ptrs.data() + first + s.experts, s.experts);
    t.dtype = wt;
    t.num_experts = s.experts;
    t.hidden = s.hidden;
    t.inter = s.inter;
  }

  SY_ASSIGN_OR_RETURN(Tensor router, Alloc(be, owned, wt, s.experts, s.hidden));
  be->FillRandom(router, 99, 0.03f);
  SY_ASSIGN_OR_RETURN(Tensor x, Alloc(be, owned, DType::kF32, max_t, s.hidden));
  be->FillRandom(x, 98, 1.0f);
  SY_ASSIGN_OR_RETURN(Tensor logits, Alloc(be, owned, DType::kF32, max_t, s.experts));
  SY_ASSIGN_OR_RETURN(Tensor ids, Alloc(be, owned, DType::kI32, max_t, s.k));
  SY_ASSIGN_OR_RETURN(Tensor weights, Alloc(be, owned, DType::kF32, max_t, s.k));
  SY_ASSIGN_OR_RETURN(Tensor offsets, Alloc(be, owned, DType::kI32, 1, s.experts + 1));
  SY_ASSIGN_OR_RETURN(Tensor sorted_buf, Alloc(be, owned, DType::kI32, 3, max_tk));
  SY_ASSIGN_OR_RETURN(Tensor xs, Alloc(be, owned, DType::kF32, max_tk, s.hidden));
  SY_ASSIGN_OR_RETURN(Tensor ys, Alloc(be, owned, DType::kF32, max_tk, s.hidden));
  SY_ASSIGN_OR_RETURN(Tensor scratch, Alloc(be, owned, DType::kF32, 1, max_tk * 3 * s.inter));
  SY_ASSIGN_OR_RETURN(Tensor out, Alloc(be, owned, DType::kF32, max_t, s.hidden));
  be->Synchronize();
  SY_RETURN_IF_ERROR(be->status());

  json rows = json::array();
  std::printf("\nMoE layer %s: hidden %lld, %lld experts top-%lld, inter %lld, bf16 weights\n",
              s.name, static_cast<long long>(s.hidden), static_cast<long long>(s.experts),
              static_cast<long long>(s.k), static_cast<long long>(s.inter));
  std::printf("%7s %8s | %10s %8s %8s | %10s %8s %8s\n", "tokens", "experts", "eager us", "GB/s",
              "TFLOP/s", "graph us", "GB/s", "TFLOP/s");
  RouterParams router_params;
  router_params.k = static_cast<int>(s.k);
  router_params.renormalize = s.renormalize;
  for (int64_t t : tokens) {
    const int64_t tk = t * s.k;
    const Tensor xt = x.Rows(0, t);
    const Tensor lt = logits.Rows(0, t);
    const Tensor it = ids.Rows(0, t);
    const Tensor wt_t = weights.Rows(0, t);
    const Tensor sorted{sorted_buf.data, DType::kI32, 3, tk};
    const Tensor xst = xs.Rows(0, tk);
    const Tensor yst = ys.Rows(0, tk);
    const Tensor ot = out.Rows(0, t);
    auto layer = [&](int l) {
      be->MatMul(xt, router, nullptr, lt);
      be->Route(lt, router_params, nullptr, it, wt_t);
      be->SortByExpert(it, s.experts, offsets, sorted);
      be->GatherRows(xt, sorted.Rows(0, 1), xst);
      be->GroupedExpertFfn(xst, offsets, tables[l], scratch, yst);
      be->CombineExperts(yst, sorted.Rows(2, 1).Reshaped(t, s.k), wt_t, ot);
    };
    for (int l = 0; l < kMoeLayers; ++l) layer(l);  // warm-up (sizes the backend's scratch)
    be->Synchronize();
    SY_RETURN_IF_ERROR(be->status());

    // Every layer copy routes the same x through the same router: one set of active experts.
    std::vector<int32_t> off(s.experts + 1);
    be->CopyToHost(off.data(), offsets.data, off.size() * sizeof(int32_t));
    int64_t active = 0;
    for (int64_t e = 0; e < s.experts; ++e) active += off[e + 1] > off[e] ? 1 : 0;
    // Weights of the active experts and the router; activations in f32: x (read by the router
    // and the gather), xs and ys (each written and read), the gate/up activation (written and
    // read) and the output.
    const double bytes = static_cast<double>(active) * static_cast<double>(expert_bytes) +
                         static_cast<double>(s.experts * s.hidden * dtype_size(wt)) +
                         4.0 * (3.0 * t * s.hidden + 4.0 * tk * s.hidden + 2.0 * tk * s.inter);
    const double flops = 2.0 * 3.0 * static_cast<double>(s.hidden * s.inter) * tk;
    const int reps = t >= 512 ? 16 : 200;  // layers timed (cycling through the copies)

    auto timing = [&](double seconds) {
      return MoeTiming{seconds, bytes / seconds / 1e9, flops / seconds / 1e12};
    };
    auto t0 = Clock::now();
    for (int r = 0; r < reps; ++r) layer(r % kMoeLayers);
    be->Synchronize();
    const MoeTiming eager = timing(Seconds(t0, Clock::now()) / reps);
    SY_RETURN_IF_ERROR(be->status());

    MoeTiming graphed;
    if (be->SupportsGraphs()) {
      SY_RETURN_IF_ERROR(be->BeginCapture());
      for (int l = 0; l < kMoeLayers; ++l) layer(l);
      SY_ASSIGN_OR_RETURN(int graph, be->EndCapture());
      SY_RETURN_IF_ERROR(be->Replay(graph));
      be->Synchronize();
      const int replays = std::max(1, reps / kMoeLayers);
      t0 = Clock::now();
      for (int r = 0; r < replays; ++r) SY_RETURN_IF_ERROR(be->Replay(graph));
      be->Synchronize();
      graphed = timing(Seconds(t0, Clock::now()) / (replays * kMoeLayers));
      SY_RETURN_IF_ERROR(be->status());
    }

    std::printf("%7lld %8lld | %10.1f %8.1f %8.2f | ", static_cast<long long>(t),
                static_cast<long long>(active), eager.seconds * 1e6, eager.gbs, eager.tflops);
    if (be->SupportsGraphs()) {
      std::printf("%10.1f %8.1f %8.2f\n", graphed.seconds * 1e6, graphed.gbs, graphed.tflops);
    } else {
      std::printf("%10s\n", "-");
    }
    rows.push_back({{"tokens", t},
                    {"active_experts", active},
                    {"bytes", bytes},
                    {"flops", flops},
                    {"eager_us", eager.seconds * 1e6},
                    {"eager_gbs", eager.gbs},
                    {"eager_tflops", eager.tflops},
                    {"graph_us", graphed.seconds * 1e6},
                    {"graph_gbs", graphed.gbs},
                    {"graph_tflops", graphed.tflops}});
  }
  return json{{"shape", s.name}, {"hidden", s.hidden}, {"experts", s.experts},
              {"top_k", s.k},    {"inter", s.inter},   {"rows", rows}};
}

// --- decode and prefill of a whole model ---

struct Flags {
  bool copy = false, decode = false, prefill = false, moe = false, quant = false;
  std::string model;
  bool random_weights = false;
  uint64_t seed = 1;
  int device = 0;
  std::vector<int64_t> batches = {1, 8, 32, 128};
  int64_t context = 512;
  int64_t steps = 64;
  int64_t prompt = 2048;
  int64_t chunk = 2048;
  int block_size = 16;
  double gpu_memory_utilization = 0.9;
  bool eager = false;
  std::string shape = "all";
  std::vector<int64_t> tokens = {1, 8, 32, 128, 512, 2048};
  std::vector<int64_t> quant_rows = {1, 4, 16, 64, 512};
  double copy_gib = 2.0;
  std::string json_path;
  bool verbose = false;
  bool cpu = false;
  int threads = 0;
};

// Bytes a decode step reads once whatever the routing: every weight but the routed experts (the
// embedding only for the rows gathered, norms and biases in f32), for `batch` tokens.
double FixedStepBytes(const ModelConfig& c, size_t wb, int64_t batch) {
  const double h = static_cast<double>(c.hidden_size);
  const double q = static_cast<double>(c.num_heads * c.head_dim);
  const double kv = static_cast<double>(c.num_kv_heads * c.head_dim);
  double elems = static_cast<double>(batch) * h + static_cast<double>(c.vocab_size) * h;
  double f32 = h;  // final norm
  for (int64_t l = 0; l < c.num_layers; ++l) {
    elems += 2 * q * h + 2 * kv * h;  // q, k, v, o
    f32 += 2 * h;                     // input and post-attention norms
    if (c.qkv_bias) f32 += q + 2 * kv;
    if (c.o_bias) f32 += h;
    if (c.qk_norm == QkNorm::kPerHead) f32 += 2.0 * static_cast<double>(c.head_dim);
    if (c.qk_norm == QkNorm::kFull) f32 += q + kv;
    if (c.layer_is_moe[l]) {
      elems += static_cast<double>(c.num_experts) * h;  // router
      if (c.shared_expert_intermediate_size > 0) {
        elems += 3.0 * static_cast<double>(c.shared_expert_intermediate_size) * h + h;
      }
    } else {
      elems += 3.0 * static_cast<double>(c.dense_intermediate_size) * h;
    }
  }
  return elems * static_cast<double>(wb) + 4.0 * f32;
}

// Routed-expert bytes of the last step: each expert that received a token in a layer is read
// once. `active` gets the number of (layer, expert) pairs.
double ExpertStepBytes(const ModelConfig& c, size_t wb, const ExpertLoad& load, int64_t* active) {
  *active = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    if (!c.layer_is_moe[l]) continue;
    for (int64_t n : load.last_step(l)) *active += n > 0 ? 1 : 0;
  }
  return static_cast<double>(*active) * 3.0 * static_cast<double>(c.moe_intermediate_size) *
         static_cast<double>(c.hidden_size) * static_cast<double>(wb);
}

// K and V that `batch` tokens, each seeing `keys` positions, read in every layer (at most the
// window in sliding-window layers).
double KvStepBytes(const ModelConfig& c, size_t kv_elt, int64_t batch, int64_t keys) {
  double positions = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const bool windowed = c.sliding_window > 0 && c.layer_uses_sliding_window[l];
    positions += static_cast<double>(windowed ? std::min(keys, c.sliding_window) : keys);
  }
  return static_cast<double>(batch) * positions * static_cast<double>(c.num_kv_heads * c.head_dim) *
         2.0 * static_cast<double>(kv_elt);
}

// Matrix FLOPs of a prefill of `prompt` tokens with `logit_rows` rows of logits: 2 per weight
// element a token meets (top-k experts only) plus causal attention (q.k and p.v per key).
double PrefillFlops(const ModelConfig& c, int64_t prompt, int64_t logit_rows) {
  const double h = static_cast<double>(c.hidden_size);
  const double q = static_cast<double>(c.num_heads * c.head_dim);
  const double kv = static_cast<double>(c.num_kv_heads * c.head_dim);
  double per_token = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    per_token += 2 * q * h + 2 * kv * h;
    if (c.layer_is_moe[l]) {
      per_token += static_cast<double>(c.num_experts) * h +
                   static_cast<double>(c.num_experts_per_tok) * 3.0 *
                       static_cast<double>(c.moe_intermediate_size) * h +
                   3.0 * static_cast<double>(c.shared_expert_intermediate_size) * h;
    } else {
      per_token += 3.0 * static_cast<double>(c.dense_intermediate_size) * h;
    }
  }
  const double p = static_cast<double>(prompt);
  const double keys = p * (p + 1) / 2;  // sum over positions of visible keys
  return 2.0 * per_token * p + 4.0 * q * keys * static_cast<double>(c.num_layers) +
         2.0 * static_cast<double>(c.vocab_size) * h * static_cast<double>(logit_rows);
}

// A KV layout of fixed, contiguous blocks: sequence s owns blocks [s * width, (s + 1) * width).
struct Layout {
  int64_t block_size = 16;
  int64_t width = 0;  // blocks per sequence

  int64_t Slot(int64_t seq, int64_t pos) const {
    return (seq * width + pos / block_size) * block_size + pos % block_size;
  }
  std::vector<int32_t> Tables(int64_t seqs) const {
    std::vector<int32_t> t(static_cast<size_t>(seqs * width));
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>(i);
    return t;
  }
};

// Prefills sequences 0..seqs-1 to `len` random tokens, packing chunks of several sequences into
// steps of up to `budget` tokens; each sequence's last token gets logits, as in serving.
Status Prefill(ModelRunner* runner, const Layout& lay, int64_t seqs, int64_t len, int64_t budget,
               std::mt19937_64& rng) {
  const int64_t vocab = runner->model().config().vocab_size;
  std::vector<float> logits;
  int64_t seq = 0, pos = 0;
  while (seq < seqs) {
    StepBatch b;
    b.max_blocks_per_seq = static_cast<int32_t>(lay.width);
    b.block_tables = lay.Tables(seqs);
    while (seq < seqs && static_cast<int64_t>(b.tokens.size()) < budget) {
      const int64_t n = std::min(len - pos, budget - static_cast<int64_t>(b.tokens.size()));
      for (int64_t i = 0; i < n; ++i, ++pos) {
        b.tokens.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab)));
        b.positions.push_back(static_cast<int32_t>(pos));
        b.slots.push_back(lay.Slot(seq, pos));
        b.token_seq.push_back(static_cast<int32_t>(seq));
      }
      if (pos == len) {
        b.logits_indices.push_back(static_cast<int32_t>(b.tokens.size() - 1));
        ++seq;
        pos = 0;
      }
    }
    SY_RETURN_IF_ERROR(runner->Step(b, &logits));
  }
  return Status::Ok();
}

// One decode token for each of sequences 0..batch-1 at position `pos`.
StepBatch DecodeStep(const Layout& lay, int64_t batch, int64_t pos, int64_t vocab,
                     std::mt19937_64& rng) {
  StepBatch b;
  b.max_blocks_per_seq = static_cast<int32_t>(lay.width);
  b.block_tables = lay.Tables(batch);
  for (int64_t s = 0; s < batch; ++s) {
    b.tokens.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab)));
    b.positions.push_back(static_cast<int32_t>(pos));
    b.slots.push_back(lay.Slot(s, pos));
    b.token_seq.push_back(static_cast<int32_t>(s));
    b.logits_indices.push_back(static_cast<int32_t>(s));
  }
  return b;
}

// 0 (plan the KV pool from free device memory) on a GPU; exactly what is needed elsewhere.
int64_t KvBlocks(Backend* be, int64_t needed) { return be->MemoryInfo().ok() ? 0 : needed; }

StatusOr<json> RunDecode(MoeModel* model, const Flags& f, double copy_gbs) {
  const ModelConfig& c = model->config();
  SY_ASSIGN_OR_RETURN(const DType wdt, ConfigWeightDType(c));
  const size_t wb = dtype_size(wdt);
  const size_t kv_elt = dtype_size(model->backend()->kv_cache_dtype());
  const int64_t max_batch = *std::max_element(f.batches.begin(), f.batches.end());
  constexpr int64_t kWarmup = 3;
  Layout lay;
  lay.block_size = f.block_size;
  lay.width = (f.context + kWarmup + f.steps + f.block_size - 1) / f.block_size;

  RunnerOptions ro;
  ro.max_batch_tokens = std::max(f.chunk, max_batch);
  ro.max_seqs = max_batch;
  ro.num_kv_blocks = KvBlocks(model->backend(), max_batch * lay.width);
  ro.block_size = f.block_size;
  ro.max_blocks_per_seq = lay.width;
  ro.max_logits_rows = max_batch;
  ro.gpu_memory_utilization = f.gpu_memory_utilization;
  ro.use_graphs = !f.eager;
  SY_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, ModelRunner::Create(model, ro));
  const int64_t blocks = runner->options().num_kv_blocks;
  if (blocks < max_batch * lay.width) {
    return Status::ResourceExhausted(
        "the KV pool has " + std::to_string(blocks) + " blocks; batch " +
        std::to_string(max_batch) + " at context " + std::to_string(f.context) + " needs " +
        std::to_string(max_batch * lay.width) + " (lower --batches or --context)");
  }

  std::mt19937_64 rng(f.seed);
  auto t0 = Clock::now();
  SY_RETURN_IF_ERROR(Prefill(runner.get(), lay, max_batch, f.context, ro.max_batch_tokens, rng));
  const double prefill_s = Seconds(t0, Clock::now());
  std::printf(
      "\ndecode: %lld KV blocks of %d; %lld sequences prefilled to %lld tokens in %.2f s "
      "(%.0f tok/s, steps of %lld tokens)\n",
      static_cast<long long>(blocks), f.block_size, static_cast<long long>(max_batch),
      static_cast<long long>(f.context), prefill_s,
      static_cast<double>(max_batch * f.context) / prefill_s,
      static_cast<long long>(ro.max_batch_tokens));
  std::printf("%6s %5s %9s %9s %10s %9s %9s %8s %9s %8s %7s\n", "batch", "graph", "step ms",
              "p90 ms", "tok/s", "fixed MB", "expert MB", "KV MB", "exp/layer", "GB/s", "of copy");

  json rows = json::array();
  std::vector<float> logits;
  int64_t moe_layers = 0;
  for (bool m : c.layer_is_moe) moe_layers += m ? 1 : 0;
  for (int64_t batch : f.batches) {
    // Decode restarts at position `context` for every batch size: each step writes its slot
    // before any token attends to it, so older contents never leak in.
    int64_t pos = f.context;
    for (int64_t i = 0; i < kWarmup; ++i, ++pos) {
      SY_RETURN_IF_ERROR(runner->Step(DecodeStep(lay, batch, pos, c.vocab_size, rng), &logits));
    }
    const int64_t replays0 = runner->graph_replays();
    std::vector<double> times;
    double expert_bytes = 0, kv_bytes = 0;
    int64_t active_total = 0;
    for (int64_t i = 0; i < f.steps; ++i, ++pos) {
      const StepBatch b = DecodeStep(lay, batch, pos, c.vocab_size, rng);
      t0 = Clock::now();
      SY_RETURN_IF_ERROR(runner->Step(b, &logits));
      times.push_back(Seconds(t0, Clock::now()));
      int64_t active = 0;
      expert_bytes += ExpertStepBytes(c, wb, runner->expert_load(), &active);
      active_total += active;
      kv_bytes += KvStepBytes(c, kv_elt, batch, pos + 1);
    }
    const double n = static_cast<double>(f.steps);
    const double fixed = FixedStepBytes(c, wb, batch);
    const double bytes = fixed + expert_bytes / n + kv_bytes / n;
    const double step_s = Median(times);
    const double gbs = bytes / step_s / 1e9;
    const double of_copy = copy_gbs > 0 ? gbs / copy_gbs : 0;
    const bool graphed = runner->graph_replays() > replays0;
    const double per_layer =
        moe_layers > 0 ? static_cast<double>(active_total) / n / static_cast<double>(moe_layers)
                       : 0;
    std::printf("%6lld %5s %9.3f %9.3f %10.1f %9.1f %9.1f %8.1f %9.1f %8.1f %6.1f%%\n",
                static_cast<long long>(batch), graphed ? "yes" : "no", step_s * 1e3,
                Percentile(times, 90) * 1e3, static_cast<double>(batch) / step_s, fixed / 1e6,
                expert_bytes / n / 1e6, kv_bytes / n / 1e6, per_layer, gbs, 100.0 * of_copy);
    rows.push_back({{"batch", batch},
                    {"graph", graphed},
                    {"step_ms_median", step_s * 1e3},
                    {"step_ms_p90", Percentile(times, 90) * 1e3},
                    {"tok_s", static_cast<double>(batch) / step_s},
                    {"bytes_per_step", bytes},
                    {"fixed_bytes", fixed},
                    {"expert_bytes", expert_bytes / n},
                    {"kv_bytes", kv_bytes / n},
                    {"active_experts_per_layer", per_layer},
                    {"logits_bytes_to_host", static_cast<double>(batch * c.vocab_size * 4)},
                    {"achieved_gbs", gbs},
                    {"fraction_of_copy", of_copy}});
  }
  return json{{"context", f.context},
              {"steps", f.steps},
              {"kv_blocks", blocks},
              {"kv_dtype", std::string(dtype_name(model->backend()->kv_cache_dtype()))},
              {"graphs", runner->options().use_graphs},
              {"prefill_tokens", max_batch * f.context},
              {"prefill_s", prefill_s},
              {"rows", rows}};
}

StatusOr<json> RunPrefill(MoeModel* model, const Flags& f) {
  const ModelConfig& c = model->config();
  Layout lay;
  lay.block_size = f.block_size;
  lay.width = (f.prompt + f.block_size - 1) / f.block_size;
  RunnerOptions ro;
  ro.max_batch_tokens = f.chunk;
  ro.max_seqs = 1;
  ro.num_kv_blocks = KvBlocks(model->backend(), lay.width);
  ro.block_size = f.block_size;
  ro.max_blocks_per_seq = lay.width;
  ro.max_logits_rows = 1;
  ro.gpu_memory_utilization = f.gpu_memory_utilization;
  ro.use_graphs = !f.eager;
  SY_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, ModelRunner::Create(model, ro));
  std::mt19937_64 rng(f.seed + 1);
  SY_RETURN_IF_ERROR(Prefill(runner.get(), lay, 1, f.prompt, f.chunk, rng));  // warm-up
  std::vector<double> times;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    SY_RETURN_IF_ERROR(Prefill(runner.get(), lay, 1, f.prompt, f.chunk, rng));
    times.push_back(Seconds(t0, Clock::now()));
  }
  const double s = Median(times);
  const double tflops = PrefillFlops(c, f.prompt, 1) / s / 1e12;
  std::printf(
      "\nprefill: %lld-token prompt in chunks of %lld: %.1f ms (median of 3) -> %.0f tok/s, "
      "%.1f TFLOP/s of matrix work\n",
      static_cast<long long>(f.prompt), static_cast<long long>(f.chunk), s * 1e3,
      static_cast<double>(f.prompt) / s, tflops);
  return json{{"prompt", f.prompt},
              {"chunk", f.chunk},
              {"ms_median", s * 1e3},
              {"tok_s", static_cast<double>(f.prompt) / s},
              {"tflops", tflops}};
}

void WriteJson(const std::string& path, const json& report) {
  std::printf("%s\n", report.dump().c_str());
  if (path.empty()) return;
  std::ofstream out(path);
  out << report.dump(2) << "\n";
  if (!out) std::fprintf(stderr, "gpu_bench: cannot write %s\n", path.c_str());
}

int Fail(const Status& st) {
  std::fprintf(stderr, "gpu_bench: %s\n", st.ToString().c_str());
  return 1;
}

int Main(int argc, char** argv) {
  CLI::App app{"GPU benchmarks of the CUDA backend against the copy-bandwidth roofline"};
  Flags f;
  app.add_flag("--copy", f.copy, "device-to-device copy bandwidth (the roofline)");
  app.add_flag("--decode", f.decode, "decode steps per batch size (needs --model)");
  app.add_flag("--prefill", f.prefill, "prefill of one prompt (needs --model)");
  app.add_flag("--moe", f.moe, "the MoE layer alone");
  app.add_flag("--quant", f.quant, "quantized_matmul alone (int8, int4, fp8 weights)");
  app.add_option("--quant-rows", f.quant_rows, "--quant: row counts")->delimiter(',');
  app.add_option("--model", f.model, "preset:NAME (random weights) or a checkpoint directory");
  app.add_flag("--random-weights", f.random_weights, "random weights for a directory's config");
  app.add_option("--seed", f.seed, "seed of random weights and token ids");
  app.add_option("--device", f.device, "CUDA device ordinal");
  app.add_option("--batches", f.batches, "decode batch sizes")->delimiter(',');
  app.add_option("--context", f.context, "decode: tokens prefilled per sequence");
  app.add_option("--steps", f.steps, "decode: timed steps per batch size");
  app.add_option("--prompt", f.prompt, "prefill: prompt tokens");
  app.add_option("--chunk", f.chunk, "tokens per step (prefill chunks)");
  app.add_option("--block-size", f.block_size, "KV-cache block size");
  app.add_option("--gpu-memory-utilization", f.gpu_memory_utilization,
                 "share of device memory the runner plans for");
  app.add_flag("--eager", f.eager, "decode without CUDA graphs");
  app.add_option("--shape", f.shape, "MoE layer shape")
      ->check(CLI::IsMember({"olmoe", "qwen3", "all"}));
  app.add_option("--tokens", f.tokens, "MoE layer token counts")->delimiter(',');
  app.add_option("--copy-gib", f.copy_gib, "copy buffer size in GiB");
  app.add_option("--json", f.json_path, "write the results to this file");
  app.add_flag("--verbose", f.verbose, "keep the engine's info logs");
  app.add_flag("--cpu", f.cpu, "run --moe/--decode/--prefill on the CPU backend (self-check)");
  app.add_option("--threads", f.threads, "--cpu: threads (0: all cores)");
  CLI11_PARSE(app, argc, argv);
  if (!f.copy && !f.decode && !f.prefill && !f.moe && !f.quant) {
    std::fprintf(stderr,
                 "gpu_bench: pick at least one of --copy, --moe, --decode, --prefill, --quant\n");
    return 2;
  }
  if ((f.decode || f.prefill) && f.model.empty()) {
    std::fprintf(stderr, "gpu_bench: --decode and --prefill need --model\n");
    return 2;
  }
  if (f.batches.empty() || f.tokens.empty() || f.quant_rows.empty() || f.context <= 0 ||
      f.steps <= 0 || f.prompt <= 0 || f.chunk <= 0 || f.block_size <= 0) {
    std::fprintf(stderr, "gpu_bench: sizes must be positive\n");
    return 2;
  }
  if (!f.verbose) spdlog::set_level(spdlog::level::warn);

  if (f.cpu && (f.copy || f.quant)) {
    std::fprintf(stderr, "gpu_bench: --copy and --quant need a GPU\n");
    return 2;
  }
  int count = 0;
  const cudaError_t err = f.cpu ? cudaSuccess : cudaGetDeviceCount(&count);
  if (!f.cpu && (err != cudaSuccess || count == 0)) {
    const std::string why = err != cudaSuccess ? cudaGetErrorString(err) : "none found";
    std::printf("gpu_bench: no CUDA device (%s)\n", why.c_str());
    if (!f.json_path.empty()) WriteJson(f.json_path, json{{"skipped", "no CUDA device: " + why}});
    return 0;
  }
  std::unique_ptr<Backend> backend;
  std::string description = "cpu";
  if (f.cpu) {
    backend = std::make_unique<CpuBackend>(f.threads);
  } else {
    CudaBackendOptions bo;
    bo.device = f.device;
    auto cuda = CudaBackend::Create(bo);
    if (!cuda.ok()) return Fail(cuda.status());
    description = (*cuda)->description();
    backend = std::move(*cuda);
  }
  Backend* be = backend.get();
  json report = {{"device", description}};
  std::printf("device: %s\n", description.c_str());

  double copy_gbs = 0;
  if (f.copy || f.quant || (f.decode && !f.cpu)) {
    auto copy = MeasureCopy(static_cast<size_t>(f.copy_gib * (1 << 30)), 20);
    if (!copy.ok()) return Fail(copy.status());
    PrintCopy(*copy);
    report["copy"] = CopyJson(*copy);
    copy_gbs = copy->gbs;
  }
  if (f.quant) {
    auto r = RunQuantGemmBench(f.quant_rows, copy_gbs);
    if (!r.ok()) return Fail(r.status());
    report["quant"] = *r;
  }
  if (f.moe) {
    json moe = json::array();
    for (const MoeShape* s : {&kOlmoe, &kQwen3}) {
      if (f.shape != "all" && std::string(s->name).rfind(f.shape, 0) != 0) continue;
      auto r = RunMoe(be, *s, f.tokens);
      if (!r.ok()) return Fail(r.status());
      moe.push_back(*r);
    }
    report["moe"] = moe;
  }
  if (f.decode || f.prefill) {
    ModelSource source{f.model, f.random_weights, f.seed};
    if (source.is_preset()) source.random_weights = true;
    const auto t0 = Clock::now();
    auto model = LoadSourceModel(source, be);
    if (!model.ok()) return Fail(model.status());
    const ModelConfig& c = (*model)->config();
    std::printf(
        "\nmodel %s (%s%s, %lld layers, hidden %lld, %lld experts top-%lld): %.2f GB of "
        "weights, loaded in %.1f s\n",
        f.model.c_str(), std::string(ArchName(c.arch)).c_str(),
        source.random_weights ? ", random weights" : "", static_cast<long long>(c.num_layers),
        static_cast<long long>(c.hidden_size), static_cast<long long>(c.num_experts),
        static_cast<long long>(c.num_experts_per_tok),
        static_cast<double>((*model)->weights_bytes()) / 1e9, Seconds(t0, Clock::now()));
    report["model"] = {{"source", f.model},
                       {"random_weights", source.random_weights},
                       {"arch", std::string(ArchName(c.arch))},
                       {"layers", c.num_layers},
                       {"weights_bytes", (*model)->weights_bytes()}};
    if (f.decode) {
      auto r = RunDecode(model->get(), f, copy_gbs);
      if (!r.ok()) return Fail(r.status());
      report["decode"] = *r;
    }
    if (f.prefill) {
      auto r = RunPrefill(model->get(), f);
      if (!r.ok()) return Fail(r.status());
      report["prefill"] = *r;
    }
  }
  WriteJson(f.json_path, report);
  return 0;
}

}  // namespace
}  // namespace sy

int main(int argc, char** argv) { return sy::Main(argc, argv); }
