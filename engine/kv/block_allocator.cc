#include "engine/kv/block_allocator.h"

#include "engine/core/check.h"

namespace sy {

BlockAllocator::BlockAllocator(int32_t num_blocks) : ref_counts_(num_blocks, 0) {
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

std::optional<int32_t> BlockAllocator::Allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t b = free_.back();
  free_.pop_back();
  ref_counts_[b] = 1;
  return b;
}

void BlockAllocator::AddRef(int32_t block) {
  SY_CHECK(ref_counts_[block] > 0);
  ++ref_counts_[block];
}

void BlockAllocator::Release(int32_t block) {
  SY_CHECK(ref_counts_[block] > 0);
  if (--ref_counts_[block] == 0) free_.push_back(block);
}

bool BlockTable::EnsureCapacity(int64_t num_tokens, int block_size, BlockAllocator* allocator) {
  const int64_t needed = (num_tokens + block_size - 1) / block_size;
  const int64_t missing = needed - static_cast<int64_t>(blocks_.size());
  if (missing <= 0) return true;
  if (!allocator->CanAllocate(static_cast<int32_t>(missing))) return false;
  for (int64_t i = 0; i < missing; ++i) blocks_.push_back(*allocator->Allocate());
  return true;
}

int64_t BlockTable::Slot(int64_t position, int block_size) const {
  const int64_t block = position / block_size;
  SY_CHECK(block < static_cast<int64_t>(blocks_.size()));
  return static_cast<int64_t>(blocks_[block]) * block_size + position % block_size;
}

void BlockTable::ReleaseAll(BlockAllocator* allocator) {
  for (int32_t b : blocks_) allocator->Release(b);
  blocks_.clear();
}

}  // namespace sy
