// ShardedSafetensorsWriter: streams a checkpoint of any size to disk, as model.safetensors or as
// Hugging Face shards + model.safetensors.index.json, holding at most one chunk in memory.
// Not thread-safe. Owns the files it writes; destroying it before Finish removes them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "kernels/dtype.h"

namespace sy {

// Usage: Declare every tensor (this fixes the headers), then Write each one in declaration
// order, then Finish. Shards hold tensors in declaration order and are cut before a tensor
// that would push the shard's data past max_shard_bytes (a larger tensor gets a shard alone).
// Inside a shard, tensors are laid out widest element first, so every tensor is aligned to its
// element size (the header is padded with spaces to a multiple of 8, as the reference does).
class ShardedSafetensorsWriter {
 public:
  // Produces the tensor's bytes from `byte_offset` on into `chunk`. Chunks arrive in order and
  // both the offset and the chunk size are multiples of the element size.
  using FillFn = std::function<void(uint64_t byte_offset, std::span<std::byte> chunk)>;

  ShardedSafetensorsWriter(std::string dir, uint64_t max_shard_bytes);
  ~ShardedSafetensorsWriter();
  ShardedSafetensorsWriter(const ShardedSafetensorsWriter&) = delete;
  ShardedSafetensorsWriter& operator=(const ShardedSafetensorsWriter&) = delete;

  // InvalidArgument for a duplicate or reserved name, a negative dimension, an overflowing
  // size, or a call after the first Write.
  Status Declare(std::string name, DType dtype, std::vector<int64_t> shape);
  // Adds an entry to every shard's "__metadata__" ({"format": "pt"} is always there).
  Status SetMetadata(std::string key, std::string value);

  // Writes the next declared tensor; `data` holds all of its bytes. InvalidArgument if `name`
  // is not the next tensor; ResourceExhausted when the disk is full; Internal for other I/O.
  Status Write(std::string_view name, const void* data);
  Status Write(std::string_view name, const FillFn& fill);

  // Checks that every tensor was written, then writes the index (when sharded) and removes a
  // stale single file or index of the other layout from `dir`.
  Status Finish();

  // Valid after the first Write: how many shards the checkpoint has.
  int num_shards() const { return static_cast<int>(shards_.size()); }

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    size_t shard;
    uint64_t offset;  // within the shard's data region
  };
  struct Shard {
    std::string path;        // final name
    std::string header;      // padded header JSON
    size_t last_tensor = 0;  // index of its last tensor in declaration order
    bool done = false;
  };

  Status Plan();
  Status BeginTensor(std::string_view name, const Tensor** tensor);
  Status EndTensor();
  Status OpenShard(size_t shard);
  Status CloseShard(size_t shard);
  std::string PartialPath(size_t shard) const;

  std::string dir_;
  uint64_t max_shard_bytes_;
  std::vector<Tensor> tensors_;
  std::set<std::string, std::less<>> names_;
  std::map<std::string, std::string> metadata_;
  std::vector<Shard> shards_;
  bool planned_ = false;
  bool finished_ = false;
  size_t next_ = 0;                   // next tensor to write
  int fd_ = -1;                       // the open shard's .partial file
  size_t open_shard_ = 0;             // valid while fd_ >= 0
  std::vector<std::string> created_;  // files to remove if we never finish
};

}  // namespace sy
