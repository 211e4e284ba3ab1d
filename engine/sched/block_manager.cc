#include "engine/sched/block_manager.h"

#include <algorithm>

#include "engine/core/check.h"

namespace sy {
namespace {

constexpr uint64_t kRootHash = 0x5317c0de5eed0001ULL;  // the parent of a sequence's first block

// splitmix64's finaliser: a bijective 64-bit mix with full avalanche.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Chains the parent's hash with the block's token ids (and their count).
uint64_t HashBlock(uint64_t parent, std::span<const int32_t> tokens) {
  uint64_t h = Mix(parent ^ 0x9e3779b97f4a7c15ULL);
  for (int32_t t : tokens) h = Mix(h + 0x9e3779b97f4a7c15ULL + static_cast<uint32_t>(t));
  return Mix(h ^ tokens.size());
}

}  // namespace

BlockManager::BlockManager(int32_t num_blocks, int block_size, bool enable_prefix_caching)
    : block_size_(block_size), enable_prefix_caching_(enable_prefix_caching), blocks_(num_blocks) {
  SY_CHECK(num_blocks > 0 && block_size > 0);
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int64_t BlockManager::BlocksFor(int64_t num_tokens) const {
  return (num_tokens + block_size_ - 1) / block_size_;
}

PrefixMatch BlockManager::MatchPrefix(std::span<const int32_t> tokens) const {
  PrefixMatch match;
  match.last_hash = kRootHash;
  if (!enable_prefix_caching_ || tokens.empty()) return match;
  const int64_t max_blocks = static_cast<int64_t>(tokens.size() - 1) / block_size_;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const auto block_tokens = tokens.subspan(i * block_size_, block_size_);
    const uint64_t h = HashBlock(match.last_hash, block_tokens);
    const auto it = cache_.find(h);
    if (it == cache_.end()) break;
    const Block& b = blocks_[it->second];
    if (b.parent_hash != match.last_hash ||
        !std::equal(b.tokens.begin(), b.tokens.end(), block_tokens.begin(), block_tokens.end())) {
      break;
    }
    match.blocks.push_back(it->second);
    match.last_hash = h;
  }
  return match;
}

bool BlockManager::CanAllocate(const PrefixMatch& match, int64_t num_tokens) const {
  const int64_t matched = static_cast<int64_t>(match.blocks.size());
  const int64_t fresh = std::max<int64_t>(0, BlocksFor(num_tokens) - matched);
  // Matched blocks that are unreferenced leave the free pool when taken.
  int64_t reused_free = 0;
  for (int32_t b : match.blocks) reused_free += blocks_[b].ref == 0 ? 1 : 0;
  return fresh <= num_free() - reused_free;
}

void BlockManager::Allocate(const PrefixMatch& match, int64_t num_tokens, int64_t num_query_tokens,
                            SeqBlocks* seq) {
  SY_CHECK(seq->ids.empty() && CanAllocate(match, num_tokens));
  for (int32_t b : match.blocks) Take(b);
  seq->ids = match.blocks;
  seq->num_hashed = static_cast<int64_t>(match.blocks.size());
  seq->last_hash = match.last_hash;
  while (static_cast<int64_t>(seq->ids.size()) < BlocksFor(num_tokens)) {
    seq->ids.push_back(AllocateFresh());
  }
  if (enable_prefix_caching_) {
    query_tokens_ += num_query_tokens;
    hit_tokens_ += static_cast<int64_t>(match.blocks.size()) * block_size_;
  }
}

bool BlockManager::CanAppend(const SeqBlocks& seq, int64_t num_tokens) const {
  return BlocksFor(num_tokens) - static_cast<int64_t>(seq.ids.size()) <= num_free();
}

void BlockManager::Append(int64_t num_tokens, SeqBlocks* seq) {
  SY_CHECK(CanAppend(*seq, num_tokens));
  while (static_cast<int64_t>(seq->ids.size()) < BlocksFor(num_tokens)) {
    seq->ids.push_back(AllocateFresh());
  }
}

void BlockManager::CacheFullBlocks(std::span<const int32_t> tokens, int64_t num_computed,
                                   SeqBlocks* seq) {
  if (!enable_prefix_caching_) return;
  if (seq->num_hashed == 0) seq->last_hash = kRootHash;
  const int64_t full = std::min<int64_t>(num_computed / block_size_, seq->ids.size());
  for (int64_t i = seq->num_hashed; i < full; ++i) {
    const auto block_tokens = tokens.subspan(i * block_size_, block_size_);
    const uint64_t h = HashBlock(seq->last_hash, block_tokens);
    Block& b = blocks_[seq->ids[i]];
    // Another block may already hold the same content (computed concurrently); keep that one.
    if (!b.cached && cache_.find(h) == cache_.end()) {
      b.cached = true;
      b.hash = h;
      b.parent_hash = seq->last_hash;
      b.tokens.assign(block_tokens.begin(), block_tokens.end());
      cache_.emplace(h, seq->ids[i]);
    }
    seq->last_hash = h;
    seq->num_hashed = i + 1;
  }
}

void BlockManager::Free(SeqBlocks* seq) {
  // The last block first, so a sequence's tail is evicted before the prefix it depends on.
  for (auto it = seq->ids.rbegin(); it != seq->ids.rend(); ++it) Release(*it);
  seq->ids.clear();
  seq->num_hashed = 0;
  seq->last_hash = 0;
}

int32_t BlockManager::AllocateFresh() {
  int32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    SY_CHECK(!lru_.empty());
    id = lru_.front();
    lru_.pop_front();
    Block& b = blocks_[id];
    cache_.erase(b.hash);
    b.cached = false;
    b.tokens.clear();
  }
  blocks_[id].ref = 1;
  return id;
}

void BlockManager::Take(int32_t block) {
  Block& b = blocks_[block];
  if (b.ref == 0) {
    SY_CHECK(b.cached);
    lru_.erase(b.lru_pos);
  }
  ++b.ref;
}

void BlockManager::Release(int32_t block) {
  Block& b = blocks_[block];
  SY_CHECK(b.ref > 0);
  if (--b.ref > 0) return;
  if (b.cached) {
    b.lru_pos = lru_.insert(lru_.end(), block);
  } else {
    free_.push_back(block);
  }
}

}  // namespace sy
