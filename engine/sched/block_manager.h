// BlockManager: the engine's KV blocks, with reference counts and automatic prefix caching. A
// full block is identified by a hash chained over its prefix (parent block's hash + its token
// ids), so the same tokens after a different prefix never match. Unreferenced blocks with a
// known hash stay cached and are evicted least-recently-freed first, only when a block is
// needed. Owned and used by the engine thread; not thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace sy {

// The KV blocks one sequence holds, in order. Managed by BlockManager.
struct SeqBlocks {
  std::vector<int32_t> ids;
  int64_t num_hashed = 0;  // leading full blocks whose chained hash is known
  uint64_t last_hash = 0;  // hash of block num_hashed - 1: the parent of the next full block
};

// Cached full blocks found at the start of a token sequence.
struct PrefixMatch {
  std::vector<int32_t> blocks;
  uint64_t last_hash = 0;
};

class BlockManager {
 public:
  BlockManager(int32_t num_blocks, int block_size, bool enable_prefix_caching);

  // The cached blocks that start `tokens`. Never covers the last token: at least one token
  // must be computed to get next-token logits. Changes nothing.
  PrefixMatch MatchPrefix(std::span<const int32_t> tokens) const;
  // Whether a sequence holding no blocks can take `match` and grow to `num_tokens` slots.
  bool CanAllocate(const PrefixMatch& match, int64_t num_tokens) const;
  // Takes the matched blocks plus fresh ones up to `num_tokens` slots (requires CanAllocate),
  // and counts a prefix-cache lookup of `num_query_tokens` tokens that hit match's tokens.
  void Allocate(const PrefixMatch& match, int64_t num_tokens, int64_t num_query_tokens,
                SeqBlocks* seq);
  // Whether `seq` can grow to `num_tokens` slots; Append grows it (requires CanAppend).
  bool CanAppend(const SeqBlocks& seq, int64_t num_tokens) const;
  void Append(int64_t num_tokens, SeqBlocks* seq);
  // Makes the full blocks among the first `num_computed` of `tokens` (whose K/V are now in the
  // cache) findable by MatchPrefix.
  void CacheFullBlocks(std::span<const int32_t> tokens, int64_t num_computed, SeqBlocks* seq);
  // Drops the sequence's references; it then holds no blocks.
  void Free(SeqBlocks* seq);

  int block_size() const { return block_size_; }
  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  // Blocks that can be handed out: unreferenced, including cached ones.
  int32_t num_free() const { return static_cast<int32_t>(free_.size() + lru_.size()); }
  int32_t num_used() const { return num_blocks() - num_free(); }  // referenced by a sequence
  int32_t num_cached_free() const { return static_cast<int32_t>(lru_.size()); }
  int32_t ref_count(int32_t block) const { return blocks_[block].ref; }
  int64_t query_tokens() const { return query_tokens_; }  // cumulative, counted by Allocate
  int64_t hit_tokens() const { return hit_tokens_; }

 private:
  struct Block {
    int32_t ref = 0;
    bool cached = false;  // hash, parent_hash and tokens are set and cache_ maps hash to it
    uint64_t hash = 0;
    uint64_t parent_hash = 0;
    std::vector<int32_t> tokens;  // kept to verify a hit, so a hash collision cannot match
    std::list<int32_t>::iterator lru_pos;
  };

  int64_t BlocksFor(int64_t num_tokens) const;
  int32_t AllocateFresh();
  void Take(int32_t block);
  void Release(int32_t block);

  int block_size_;
  bool enable_prefix_caching_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;  // unreferenced blocks with no cached content
  std::list<int32_t> lru_;     // unreferenced cached blocks, least recently freed first
  std::unordered_map<uint64_t, int32_t> cache_;
  int64_t query_tokens_ = 0;
  int64_t hit_tokens_ = 0;
};

}  // namespace sy
