// KvCache: the paged key/value cache of every layer, in backend memory. Each layer's K is a
// [num_blocks * block_size, k_dim] array and its V [num_blocks * block_size, v_dim], of f32
// (CPU default), bf16 (GPU default) or kF8Row (e4m3fn with one f32 scale per row, i.e. per token
// and layer for K and for V; kernels/kv_rows.h); a token's slot is block * block_size + offset.
// With v_dim 0 there is no V: the key row is all a token stores (MLA's compressed latent).
// Owns its memory; not thread-safe (the engine thread uses it).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend/backend.h"

namespace sy {

class KvCache {
 public:
  static StatusOr<KvCache> Create(Backend* backend, int64_t num_layers, int64_t num_blocks,
                                  int block_size, int64_t k_dim, int64_t v_dim,
                                  DType dtype = DType::kF32);

  Tensor k(int64_t layer) const { return LayerView(k_, layer, k_dim_); }
  Tensor v(int64_t layer) const { return LayerView(v_, layer, v_dim_); }
  int block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  // Bytes one block takes across all layers, K and V (row scales included).
  static size_t BytesPerBlock(int64_t num_layers, int block_size, int64_t k_dim, int64_t v_dim,
                              DType dtype = DType::kF32);
  // Bytes one token takes across all layers, K and V (row scales included).
  static size_t BytesPerToken(int64_t num_layers, int64_t k_dim, int64_t v_dim, DType dtype);
  DType dtype() const { return dtype_; }

 private:
  KvCache() = default;
  Tensor LayerView(const DeviceBuffer& buf, int64_t layer, int64_t dim) const;

  DeviceBuffer k_;
  DeviceBuffer v_;
  int64_t num_layers_ = 0;
  int64_t num_blocks_ = 0;
  int block_size_ = 0;
  int64_t k_dim_ = 0;
  int64_t v_dim_ = 0;
  DType dtype_ = DType::kF32;
};

}  // namespace sy
