// ExpertDispatch: runs the routed experts of a MoE layer somewhere other than the model's own
// expert weights (expert parallelism: on the ranks hosting them). MoeModel calls it in every MoE
// layer when one is set; the implementation (runner/expert_parallel.h) owns the weights and the
// exchange. Used by the model's engine thread only.
#pragma once

#include <cstdint>
#include <span>

#include "engine/backend/backend.h"
#include "engine/core/status.h"

namespace sy {

class ExpertDispatch {
 public:
  virtual ~ExpertDispatch() = default;

  // This rank's token-expert pairs of model layer `layer`, sorted by logical expert: rows
  // [offsets[e], offsets[e+1]) of xs [P, hidden] go to expert e (offsets has num_experts + 1
  // entries). Fills ys [P, hidden] with each pair's expert output, in the same order, and
  // dest_rank[p] with the rank that computed it. Called for every MoE layer of every step, with
  // no pairs too (P = 0), since other ranks may send pairs here. A returned error means the
  // exchange is broken; an error that leaves it intact is kept until TakeError.
  virtual Status RunLayer(int64_t layer, const Tensor& xs, std::span<const int64_t> offsets,
                          const Tensor& ys, std::span<int32_t> dest_rank) = 0;
  // The first kept error since the last call (OK if none); clears it.
  virtual Status TakeError() = 0;
};

}  // namespace sy
