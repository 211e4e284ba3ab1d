// Checkpoint: the weights of a Hugging Face model directory (model.safetensors, or shards named
// by model.safetensors.index.json), memory-mapped. Owns the mapped shards; TensorViews point
// into them and live as long as the Checkpoint. Immutable after Open: reads are thread-safe.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "engine/model/safetensors.h"

namespace sy {

class Checkpoint {
 public:
  // Opens `model_dir`: NotFound "model directory not found: X" if it is missing; with an index,
  // opens every shard it names (NotFound naming a missing shard, DataLoss for a tensor the
  // index lists but its shard lacks); else model.safetensors; else NotFound "no
  // model.safetensors or model.safetensors.index.json in X".
  static StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir);

  // The tensor `name`, checked against the shape the model config implies: NotFound "missing
  // tensor <name> in <dir>", InvalidArgument "tensor <name> has shape [a, b] but the config
  // implies [c, d]".
  StatusOr<TensorView> Get(std::string_view name, std::span<const int64_t> expected_shape) const;
  StatusOr<TensorView> Get(std::string_view name,
                           std::initializer_list<int64_t> expected_shape) const {
    return Get(name, std::span<const int64_t>(expected_shape.begin(), expected_shape.size()));
  }
  bool Has(std::string_view name) const { return tensors_.count(name) != 0; }
  // Sorted tensor names.
  std::vector<std::string> names() const;
  const std::string& dir() const { return dir_; }
  // The shard files opened, in name order.
  std::vector<std::string> shard_paths() const;
  // Sum of every tensor's bytes.
  uint64_t total_bytes() const;

 private:
  explicit Checkpoint(std::string dir) : dir_(std::move(dir)) {}
  Status OpenIndexed(const std::string& index_path);
  Status OpenSingle(const std::string& path);

  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const TensorView*, std::less<>> tensors_;  // views owned by shards_
};

// "[a, b, c]".
std::string ShapeToString(std::span<const int64_t> shape);

}  // namespace sy
