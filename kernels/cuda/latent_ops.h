// CUDA ops of DeepSeek's multi-head latent attention (absorbed form) over a paged cache of
// compressed latents: the cache write and the attention, with the semantics of
// kernels/cpu/latent_ops.h (sy::cpu::ref is the oracle in tests/gpu). Conventions as
// kernels/cuda/ops.h: device pointers, the launch's error returned, no allocation, no
// synchronisation, launch shapes independent of device data (graph capture). The per-head
// matmuls run on cuBLAS in the backend (engine/backend/cuda_backend.cc).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace sy::cuda {

// As sy::cpu::ref::latent_kv_write into an f32 or bf16 cache [slots, latent_dim + rope_dim].
cudaError_t latent_kv_write(const float* latent, const float* rope, int64_t tokens,
                            int64_t latent_dim, int64_t rope_dim, const int64_t* slots, void* cache,
                            DType cache_dtype, cudaStream_t stream);

struct LatentAttentionArgs {
  const float* q_latent = nullptr;        // [tokens, n_heads, latent_dim]
  const float* q_rope = nullptr;          // [tokens, n_heads, rope_dim]
  float* out = nullptr;                   // [tokens, n_heads, latent_dim]
  const void* cache = nullptr;            // [slots, latent_dim + rope_dim], 16-byte aligned
  DType cache_dtype = DType::kBF16;       // kBF16 or kF32
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  const int32_t* token_seq = nullptr;     // [tokens]
  const int32_t* ctx_len = nullptr;       // [tokens]
  int64_t tokens = 0;
  int n_heads = 0;
  int latent_dim = 0;  // a multiple of 32, at most 512
  int rope_dim = 0;    // latent_dim + rope_dim: a multiple of 8
  int block_size = 0;
  int max_blocks_per_seq = 0;
  float scale = 1.0f;
  // Scratch for split-K partial results: at least latent_attention_scratch_bytes(...) bytes.
  void* scratch = nullptr;
};

// Bytes of scratch latent_attention needs for up to `tokens` query tokens.
size_t latent_attention_scratch_bytes(int64_t tokens, int n_heads, int latent_dim);

// As sy::cpu::ref::latent_attention. A block serves one token, up to 16 of its heads and one
// split of its context (a fixed number of splits per token, from its ctx_len alone): it loads
// each tile of cache rows into shared memory once for all its heads, runs an online softmax per
// head, and leaves (max, sum, unnormalised output); a second kernel merges the splits in order.
// Unsupported shapes (see the fields above) return cudaErrorInvalidValue.
cudaError_t latent_attention(const LatentAttentionArgs& a, cudaStream_t stream);

}  // namespace sy::cuda
