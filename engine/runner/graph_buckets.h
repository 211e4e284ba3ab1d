// Decode-step graphs: the batch sizes a graph is captured for, and the padding that turns a
// decode step of n sequences into the step its bucket's graph was captured with. A padded
// token reads KV block 0 and writes no KV (slot -1); its logits are computed and dropped.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/runner/model_runner.h"

namespace sy {

// 1, 2, 4, 8, then steps of 8 up to 32, of 16 up to 128, of 32 up to 256, capped by max_seqs
// (which is always the last bucket when it is below 256).
std::vector<int32_t> DecodeGraphBuckets(int64_t max_seqs);

// The smallest bucket holding n sequences, or -1.
int32_t BucketFor(const std::vector<int32_t>& buckets, int64_t n);

// True when `b` is a pure decode step (one token per sequence, each sequence's logits wanted,
// in order): the only shape graphs are captured for.
bool IsDecodeStep(const StepBatch& b);

// `b` padded to `bucket` sequences, with block tables `max_blocks_per_seq` wide.
StepBatch PadDecodeStep(const StepBatch& b, int32_t bucket, int32_t max_blocks_per_seq);

}  // namespace sy
