// ExpertParallel: one rank's share of an expert-parallel MoE model: the placement map, the
// routed-expert weights this rank hosts, and each MoE layer's exchange: every token-expert pair
// goes to a rank hosting a replica of its expert, runs there, and its output comes back.
// It is the model's ExpertDispatch. Belongs to one rank's model and is used by its engine thread
// only. Every rank calls RunLayer for every MoE layer of every step in the same order, with or
// without tokens (lockstep).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/dist/communicator.h"
#include "engine/model/checkpoint.h"
#include "engine/model/config.h"
#include "engine/model/expert_dispatch.h"
#include "engine/moe/placement.h"

namespace sy {

class ExpertParallel final : public ExpertDispatch {
 public:
  // Loads the experts `placement` puts on comm->rank(). The placement must fit the model and
  // the group (InvalidArgument otherwise). `comm` is not owned and must outlive this object.
  static StatusOr<std::unique_ptr<ExpertParallel>> Create(const ModelConfig& config,
                                                          const Checkpoint& checkpoint,
                                                          Backend* backend,
                                                          ExpertPlacement placement,
                                                          Communicator* comm);

  // See ExpertDispatch::RunLayer. Also computes the pairs other ranks send here. Returns
  // communication errors (the group is then broken). A local compute failure must not
  // desynchronise the group, so it is kept instead (TakeError) and the pairs it concerned come
  // back as zeros.
  Status RunLayer(int64_t layer, const Tensor& xs, std::span<const int64_t> offsets,
                  const Tensor& ys, std::span<int32_t> dest_rank) override;

  // Live placement change, driven in lockstep on every rank at step boundaries:
  // StagePlacement checks `next`; MigrateLayer(li) (a collective) copies the weights of layer
  // index li's experts that `next` adds to each rank from a rank hosting them now, into new
  // buffers while the old placement keeps serving; CommitPlacement switches every rank to `next`
  // and frees the experts a rank no longer hosts. Every layer must be migrated before commit.
  Status StagePlacement(ExpertPlacement next);
  Status MigrateLayer(int32_t li);
  Status CommitPlacement();
  // The first compute error since the last call (OK if none); clears it.
  Status TakeError() override;

  const ExpertPlacement& placement() const { return placement_; }
  Communicator& comm() const { return *comm_; }
  int rank() const { return comm_->rank(); }
  // Bytes of routed-expert weights this rank holds.
  size_t hosted_bytes() const { return hosted_bytes_; }

 private:
  ExpertParallel(const ModelConfig& config, Backend* backend, ExpertPlacement placement,
                 Communicator* comm);
  // Picks the rank computing each pair: a local replica if there is one, else the replica rank
  // with the fewest pairs sent to it so far in this layer.
  void ChooseRanks(int32_t li, std::span<const int64_t> offsets, std::span<int32_t> dest_rank);
  // Runs the received pairs through the experts hosted here, results in arrival order (zeros
  // when it fails).
  Status ComputeReceived(int64_t layer);
  Status Grow(DeviceBuffer* buf, size_t bytes);
  void IndexReplicas();
  // The rank that sends expert e of layer index li to a rank newly hosting it: the lowest rank
  // hosting it now.
  int32_t MigrationSource(int32_t li, int32_t e) const;
  // Allocates an expert's two weight tensors (shapes and dtype of this model's experts).
  StatusOr<FfnWeights> NewExpert(std::vector<DeviceBuffer>* buffers);

  const ModelConfig config_;
  Backend* backend_;
  ExpertPlacement placement_;
  Communicator* comm_;
  // replica_ranks_[li][e]: ranks hosting expert e of layer index li.
  std::vector<std::vector<std::vector<int32_t>>> replica_ranks_;
  std::vector<std::vector<FfnWeights>> experts_;  // [model layer][expert]; empty if not hosted
  // [model layer][expert]: the buffers behind experts_ (gate_up, down).
  std::vector<std::vector<std::vector<DeviceBuffer>>> buffers_;
  DType expert_dtype_ = DType::kBF16;
  size_t hosted_bytes_ = 0;

  // A staged placement and the weights migrated for it so far, [model layer][expert].
  std::unique_ptr<ExpertPlacement> staged_;
  std::vector<std::vector<FfnWeights>> staged_experts_;
  std::vector<std::vector<std::vector<DeviceBuffer>>> staged_buffers_;
  std::vector<bool> layer_migrated_;
  Status error_;  // a kept compute error (see RunLayer)

  // Per-layer scratch, reused across steps.
  std::vector<size_t> send_pairs_, recv_pairs_, send_bytes_, recv_bytes_;
  std::vector<int64_t> send_order_;  // pair index of each send slot
  std::vector<int32_t> send_experts_, recv_experts_;
  std::vector<float> send_rows_, recv_rows_, back_rows_;
  std::vector<int64_t> local_offsets_, cursor_, local_pos_;
  DeviceBuffer local_x_, local_y_, scratch_;
};

}  // namespace sy
