#include "engine/kv/kv_cache.h"

#include <string>

#include "kernels/kv_rows.h"

namespace sy {

size_t KvCache::BytesPerToken(int64_t num_layers, int64_t k_dim, int64_t v_dim, DType dtype) {
  const size_t v_bytes = v_dim > 0 ? dtype_row_bytes(dtype, v_dim) : 0;
  return static_cast<size_t>(num_layers) * (dtype_row_bytes(dtype, k_dim) + v_bytes);
}

size_t KvCache::BytesPerBlock(int64_t num_layers, int block_size, int64_t k_dim, int64_t v_dim,
                              DType dtype) {
  return static_cast<size_t>(block_size) * BytesPerToken(num_layers, k_dim, v_dim, dtype);
}

StatusOr<KvCache> KvCache::Create(Backend* backend, int64_t num_layers, int64_t num_blocks,
                                  int block_size, int64_t k_dim, int64_t v_dim, DType dtype) {
  if (num_layers <= 0 || num_blocks <= 0 || block_size <= 0 || k_dim <= 0 || v_dim < 0) {
    return Status::InvalidArgument("KV cache needs positive sizes (blocks " +
                                   std::to_string(num_blocks) + ", block size " +
                                   std::to_string(block_size) + ")");
  }
  if (!is_kv_cache_dtype(dtype)) {
    return Status::InvalidArgument("the KV cache holds f32, bf16 or fp8 (e4m3 rows), not " +
                                   std::string(dtype_name(dtype)));
  }
  const size_t rows = static_cast<size_t>(num_layers * num_blocks * block_size);
  KvCache cache;
  SY_ASSIGN_OR_RETURN(cache.k_, backend->Allocate(rows * dtype_row_bytes(dtype, k_dim)));
  if (v_dim > 0) {
    SY_ASSIGN_OR_RETURN(cache.v_, backend->Allocate(rows * dtype_row_bytes(dtype, v_dim)));
  }
  cache.num_layers_ = num_layers;
  cache.num_blocks_ = num_blocks;
  cache.block_size_ = block_size;
  cache.k_dim_ = k_dim;
  cache.v_dim_ = v_dim;
  cache.dtype_ = dtype;
  return cache;
}

Tensor KvCache::LayerView(const DeviceBuffer& buf, int64_t layer, int64_t dim) const {
  const int64_t rows = num_blocks_ * block_size_;
  if (dim == 0) return Tensor{nullptr, dtype_, rows, 0};
  Tensor t{buf.data(), dtype_, num_layers_ * rows, dim};
  return t.Rows(layer * rows, rows);
}

}  // namespace sy
