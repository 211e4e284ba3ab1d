#include "engine/runner/graph_buckets.h"

#include <algorithm>

namespace sy {

std::vector<int32_t> DecodeGraphBuckets(int64_t max_seqs) {
  std::vector<int32_t> buckets;
  const int32_t cap = static_cast<int32_t>(std::min<int64_t>(max_seqs, 256));
  for (int32_t b = 1; b <= cap;) {
    buckets.push_back(b);
    b = b < 8 ? 2 * b : b < 32 ? b + 8 : b < 128 ? b + 16 : b + 32;
  }
  if (cap > 0 && buckets.back() != cap) buckets.push_back(cap);
  return buckets;
}

int32_t BucketFor(const std::vector<int32_t>& buckets, int64_t n) {
  for (int32_t b : buckets) {
    if (b >= n) return b;
  }
  return -1;
}

bool IsDecodeStep(const StepBatch& b) {
  const size_t n = b.tokens.size();
  if (n == 0 || b.max_blocks_per_seq <= 0 ||
      b.block_tables.size() != n * static_cast<size_t>(b.max_blocks_per_seq) ||
      b.logits_indices.size() != n) {
    return false;
  }
  for (size_t i = 0; i < n; ++i) {
    if (b.token_seq[i] != static_cast<int32_t>(i) ||
        b.logits_indices[i] != static_cast<int32_t>(i)) {
      return false;
    }
  }
  return true;
}

StepBatch PadDecodeStep(const StepBatch& b, int32_t bucket, int32_t max_blocks_per_seq) {
  const size_t n = b.tokens.size();
  StepBatch p;
  p.tokens = b.tokens;
  p.positions = b.positions;
  p.slots = b.slots;
  p.token_seq = b.token_seq;
  p.logits_indices = b.logits_indices;
  p.tokens.resize(bucket, 0);
  p.positions.resize(bucket, 0);
  p.slots.resize(bucket, -1);
  p.max_blocks_per_seq = max_blocks_per_seq;
  p.block_tables.assign(static_cast<size_t>(bucket) * max_blocks_per_seq, 0);
  for (size_t s = 0; s < n; ++s) {
    std::copy_n(b.block_tables.begin() + s * b.max_blocks_per_seq, b.max_blocks_per_seq,
                p.block_tables.begin() + s * max_blocks_per_seq);
  }
  for (int32_t i = static_cast<int32_t>(n); i < bucket; ++i) {
    p.token_seq.push_back(i);
    p.logits_indices.push_back(i);
  }
  return p;
}

}  // namespace sy
