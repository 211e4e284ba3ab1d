// KvCache: the paged key/value cache of every layer, in backend memory. Each layer's K and V are
// [num_blocks * block_size, kv_dim] arrays of f32 (CPU) or bf16 (GPU); a token's slot is
// block * block_size + offset.
// Owns its memory; not thread-safe (the engine thread uses it).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend/backend.h"

namespace sy {

class KvCache {
 public:
  static StatusOr<KvCache> Create(Backend* backend, int64_t num_layers, int64_t num_blocks,
                                  int block_size, int64_t kv_dim, DType dtype = DType::kF32);

  Tensor k(int64_t layer) const { return LayerView(k_, layer); }
  Tensor v(int64_t layer) const { return LayerView(v_, layer); }
  int block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  // Bytes one block takes across all layers, K and V.
  static size_t BytesPerBlock(int64_t num_layers, int block_size, int64_t kv_dim,
                              DType dtype = DType::kF32);
  DType dtype() const { return dtype_; }

 private:
  KvCache() = default;
  Tensor LayerView(const DeviceBuffer& buf, int64_t layer) const;

  DeviceBuffer k_;
  DeviceBuffer v_;
  int64_t num_layers_ = 0;
  int64_t num_blocks_ = 0;
  int block_size_ = 0;
  int64_t kv_dim_ = 0;
  DType dtype_ = DType::kF32;
};

}  // namespace sy
