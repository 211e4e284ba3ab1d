// BlockAllocator: hands out KV-cache block ids and counts references to them, so blocks can be
// shared (prefix caching, parallel sampling). Not thread-safe: the engine thread owns it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace sy {

class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t num_blocks);

  bool CanAllocate(int32_t n) const { return n <= num_free(); }
  // A free block with reference count 1, or nullopt when none is left.
  std::optional<int32_t> Allocate();
  void AddRef(int32_t block);
  // Drops one reference; the block is free again when none remain.
  void Release(int32_t block);
  int32_t ref_count(int32_t block) const { return ref_counts_[block]; }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t num_used() const { return num_blocks() - num_free(); }

 private:
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::vector<int32_t> ref_counts_;
};

// The blocks of one sequence, in order, and the cache slot of each of its positions.
class BlockTable {
 public:
  // Allocates blocks until `num_tokens` positions fit; false (and nothing allocated) if the
  // allocator has too few free blocks.
  bool EnsureCapacity(int64_t num_tokens, int block_size, BlockAllocator* allocator);
  int64_t Slot(int64_t position, int block_size) const;
  void ReleaseAll(BlockAllocator* allocator);
  const std::vector<int32_t>& blocks() const { return blocks_; }

 private:
  std::vector<int32_t> blocks_;
};

}  // namespace sy
