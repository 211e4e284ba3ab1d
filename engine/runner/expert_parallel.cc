#include "engine/runner/expert_parallel.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "engine/model/expert_layout.h"
#include "engine/model/model_weights.h"
#include "engine/model/weight_names.h"

namespace sy {

ExpertParallel::ExpertParallel(const ModelConfig& config, Backend* backend,
                               ExpertPlacement placement, Communicator* comm)
    : config_(config), backend_(backend), placement_(std::move(placement)), comm_(comm) {}

StatusOr<std::unique_ptr<ExpertParallel>> ExpertParallel::Create(const ModelConfig& config,
                                                                 const Checkpoint& checkpoint,
                                                                 Backend* backend,
                                                                 ExpertPlacement placement,
                                                                 Communicator* comm) {
  SY_RETURN_IF_ERROR(placement.CheckCompatible(
      MoeLayerIndices(config), static_cast<int32_t>(config.num_experts), comm->size()));
  std::unique_ptr<ExpertParallel> ep(
      new ExpertParallel(config, backend, std::move(placement), comm));
  const ExpertPlacement& p = ep->placement_;
  SY_ASSIGN_OR_RETURN(const ModelWeightNames names, CheckpointWeightNames(config, checkpoint));
  ep->experts_.resize(config.num_layers);
  ep->buffers_.resize(config.num_layers);
  for (int32_t li = 0; li < p.num_layers(); ++li) {
    const int32_t layer = p.layers()[li];
    ep->experts_[layer].resize(config.num_experts);
    ep->buffers_[layer].resize(config.num_experts);
    for (int32_t e = 0; e < p.num_experts(); ++e) {
      if (li == 0 && e == 0) {
        const FfnNames& first = names.layers[layer].experts[0];
        const std::vector<int64_t> shape =
            first.fused_expert >= 0
                ? std::vector<int64_t>{config.num_experts, 2 * config.moe_intermediate_size,
                                       config.hidden_size}
                : std::vector<int64_t>{config.moe_intermediate_size, config.hidden_size};
        SY_ASSIGN_OR_RETURN(TensorView v, checkpoint.Get(first.gate, shape));
        // FP8 checkpoint tensors load as kF8 rows (with their scales).
        ep->expert_dtype_ = v.dtype == DType::kE4M3 ? DType::kF8 : v.dtype;
      }
      for (const SlotRef& s : p.replicas(li, e)) {
        if (s.rank != comm->rank()) continue;
        SY_ASSIGN_OR_RETURN(
            ep->experts_[layer][e],
            LoadExpertWeights(config, checkpoint, backend, names.layers[layer].experts[e],
                              &ep->buffers_[layer][e]));
        const FfnWeights& w = ep->experts_[layer][e];
        // Migration copies an expert as (gate_up, down) bytes, which would drop a permutation.
        if (w.gate_up.input_perm != nullptr || w.down.input_perm != nullptr) {
          return Status::Unimplemented(
              "expert parallelism does not carry act-order (GPTQ desc_act or actorder group) input "
              "permutations; layer " +
              std::to_string(layer) + " expert " + std::to_string(e) + " has one");
        }
        // Migration copies an expert as (gate_up, down) in one dtype.
        if (w.gate_up.dtype != ep->expert_dtype_ || w.down.dtype != ep->expert_dtype_) {
          return Status::Unimplemented(
              "expert parallelism needs all expert weights in one dtype; layer " +
              std::to_string(layer) + " expert " + std::to_string(e) + " differs");
        }
        ep->hosted_bytes_ += w.gate_up.nbytes() + w.down.nbytes();
      }
    }
  }
  ep->IndexReplicas();
  return ep;
}

void ExpertParallel::IndexReplicas() {
  replica_ranks_.assign(placement_.num_layers(), {});
  for (int32_t li = 0; li < placement_.num_layers(); ++li) {
    replica_ranks_[li].resize(placement_.num_experts());
    for (int32_t e = 0; e < placement_.num_experts(); ++e) {
      for (const SlotRef& s : placement_.replicas(li, e)) replica_ranks_[li][e].push_back(s.rank);
    }
  }
}

int32_t ExpertParallel::MigrationSource(int32_t li, int32_t e) const {
  return replica_ranks_[li][e].front();
}

StatusOr<FfnWeights> ExpertParallel::NewExpert(std::vector<DeviceBuffer>* buffers) {
  const int64_t inter = config_.moe_intermediate_size;
  const int64_t hidden = config_.hidden_size;
  FfnWeights f;
  f.gate_up = Tensor{nullptr, expert_dtype_, 2 * inter, hidden};
  f.down = Tensor{nullptr, expert_dtype_, hidden, inter};
  for (Tensor* t : {&f.gate_up, &f.down}) {
    SY_ASSIGN_OR_RETURN(DeviceBuffer b, backend_->Allocate(t->nbytes()));
    t->data = b.data();
    buffers->push_back(std::move(b));
  }
  return f;
}

Status ExpertParallel::StagePlacement(ExpertPlacement next) {
  if (staged_ != nullptr) return Status::Internal("a placement is already staged");
  SY_RETURN_IF_ERROR(
      next.CheckCompatible(placement_.layers(), placement_.num_experts(), placement_.num_ranks()));
  staged_ = std::make_unique<ExpertPlacement>(std::move(next));
  staged_experts_.assign(config_.num_layers, {});
  staged_buffers_.clear();
  staged_buffers_.resize(config_.num_layers);
  layer_migrated_.assign(placement_.num_layers(), false);
  return Status::Ok();
}

Status ExpertParallel::MigrateLayer(int32_t li) {
  if (staged_ == nullptr || li < 0 || li >= placement_.num_layers() || layer_migrated_[li]) {
    return Status::Internal("migration of layer index " + std::to_string(li) + " out of order");
  }
  const int32_t layer = placement_.layers()[li];
  const int32_t me = rank();
  const int n = comm_->size();
  const int32_t experts = placement_.num_experts();
  staged_experts_[layer].resize(experts);
  staged_buffers_[layer].resize(experts);
  const size_t gate_up_bytes =
      2 * config_.moe_intermediate_size * dtype_row_bytes(expert_dtype_, config_.hidden_size);
  const size_t expert_bytes =
      gate_up_bytes +
      config_.hidden_size * dtype_row_bytes(expert_dtype_, config_.moe_intermediate_size);
  // Every rank derives the same transfer list: (destination, expert) for each expert a rank
  // gains, in rank then expert order, sent by MigrationSource.
  std::vector<size_t> send(n, 0), recv(n, 0);
  std::vector<std::pair<int32_t, int32_t>> outgoing, incoming;  // (rank, expert)
  for (int32_t dst = 0; dst < n; ++dst) {
    for (int32_t e = 0; e < experts; ++e) {
      const std::vector<int32_t>& now = replica_ranks_[li][e];
      bool next_here = false;
      for (const SlotRef& s : staged_->replicas(li, e)) next_here = next_here || s.rank == dst;
      if (!next_here || std::find(now.begin(), now.end(), dst) != now.end()) continue;
      const int32_t src = MigrationSource(li, e);
      if (src == me) {
        send[dst] += expert_bytes;
        outgoing.push_back({dst, e});
      }
      if (dst == me) {
        recv[src] += expert_bytes;
        incoming.push_back({src, e});
      }
    }
  }
  // Host staging, freed when the layer is done (it can be large).
  std::vector<uint8_t> send_buf(outgoing.size() * expert_bytes);
  for (size_t i = 0; i < outgoing.size(); ++i) {
    const FfnWeights& w = experts_[layer][outgoing[i].second];
    uint8_t* at = send_buf.data() + i * expert_bytes;
    backend_->CopyToHost(at, w.gate_up.data, gate_up_bytes);
    backend_->CopyToHost(at + gate_up_bytes, w.down.data, expert_bytes - gate_up_bytes);
  }
  std::vector<uint8_t> recv_buf(incoming.size() * expert_bytes);
  SY_RETURN_IF_ERROR(comm_->AllToAllV(send_buf.data(), send, recv_buf.data(), recv));
  // Arrivals are in source-rank order, each source's in expert order.
  std::stable_sort(incoming.begin(), incoming.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < incoming.size(); ++i) {
    const int32_t e = incoming[i].second;
    SY_ASSIGN_OR_RETURN(staged_experts_[layer][e], NewExpert(&staged_buffers_[layer][e]));
    const uint8_t* at = recv_buf.data() + i * expert_bytes;
    backend_->CopyToDevice(staged_experts_[layer][e].gate_up.data, at, gate_up_bytes);
    backend_->CopyToDevice(staged_experts_[layer][e].down.data, at + gate_up_bytes,
                           expert_bytes - gate_up_bytes);
  }
  layer_migrated_[li] = true;
  return Status::Ok();
}

Status ExpertParallel::CommitPlacement() {
  if (staged_ == nullptr ||
      std::find(layer_migrated_.begin(), layer_migrated_.end(), false) != layer_migrated_.end()) {
    return Status::Internal("commit before every layer was migrated");
  }
  const int32_t me = rank();
  for (int32_t li = 0; li < placement_.num_layers(); ++li) {
    const int32_t layer = placement_.layers()[li];
    for (int32_t e = 0; e < placement_.num_experts(); ++e) {
      bool keep = false;
      for (const SlotRef& s : staged_->replicas(li, e)) keep = keep || s.rank == me;
      if (staged_experts_[layer][e].gate_up.data != nullptr) {
        experts_[layer][e] = staged_experts_[layer][e];
        buffers_[layer][e] = std::move(staged_buffers_[layer][e]);
      } else if (!keep && experts_[layer][e].gate_up.data != nullptr) {
        experts_[layer][e] = FfnWeights{};
        buffers_[layer][e].clear();
      }
    }
  }
  hosted_bytes_ = 0;
  for (const auto& layer : experts_) {
    for (const FfnWeights& w : layer) hosted_bytes_ += w.gate_up.nbytes() + w.down.nbytes();
  }
  placement_ = std::move(*staged_);
  staged_.reset();
  staged_experts_.clear();
  staged_buffers_.clear();
  IndexReplicas();
  return Status::Ok();
}

void ExpertParallel::ChooseRanks(int32_t li, std::span<const int64_t> offsets,
                                 std::span<int32_t> dest_rank) {
  const int32_t me = comm_->rank();
  std::vector<size_t>& sent = send_pairs_;
  sent.assign(comm_->size(), 0);
  for (size_t e = 0; e + 1 < offsets.size(); ++e) {
    const std::vector<int32_t>& ranks = replica_ranks_[li][e];
    const bool local = std::find(ranks.begin(), ranks.end(), me) != ranks.end();
    for (int64_t p = offsets[e]; p < offsets[e + 1]; ++p) {
      int32_t best = me;
      if (!local) {
        // Start the scan at a pair-dependent replica so ties spread over replicas.
        best = ranks[p % ranks.size()];
        for (int32_t r : ranks) {
          if (sent[r] < sent[best]) best = r;
        }
      }
      dest_rank[p] = best;
      ++sent[best];
    }
  }
}

Status ExpertParallel::Grow(DeviceBuffer* buf, size_t bytes) {
  if (buf->size() >= bytes) return Status::Ok();
  SY_ASSIGN_OR_RETURN(*buf, backend_->Allocate(std::max(bytes, 2 * buf->size())));
  return Status::Ok();
}

Status ExpertParallel::RunLayer(int64_t layer, const Tensor& xs, std::span<const int64_t> offsets,
                                const Tensor& ys, std::span<int32_t> dest_rank) {
  const int32_t li = placement_.LayerIndex(static_cast<int32_t>(layer));
  SY_CHECK(li >= 0 && offsets.size() == static_cast<size_t>(config_.num_experts) + 1);
  const int64_t pairs = offsets.back();
  SY_CHECK(xs.rows >= pairs && static_cast<int64_t>(dest_rank.size()) >= pairs);
  const int n = comm_->size();
  const size_t row_bytes = static_cast<size_t>(config_.hidden_size) * sizeof(float);
  ChooseRanks(li, offsets, dest_rank);

  // Order the pairs by destination rank (stable), keeping each one's expert id.
  cursor_.assign(n, 0);
  for (int r = 1; r < n; ++r)
    cursor_[r] = cursor_[r - 1] + static_cast<int64_t>(send_pairs_[r - 1]);
  send_order_.resize(pairs);
  send_experts_.resize(pairs);
  for (size_t e = 0; e + 1 < offsets.size(); ++e) {
    for (int64_t p = offsets[e]; p < offsets[e + 1]; ++p) {
      const int64_t pos = cursor_[dest_rank[p]]++;
      send_order_[pos] = p;
      send_experts_[pos] = static_cast<int32_t>(e);
    }
  }
  send_rows_.resize(static_cast<size_t>(pairs) * config_.hidden_size);
  for (int64_t pos = 0; pos < pairs; ++pos) {
    backend_->CopyToHost(send_rows_.data() + pos * config_.hidden_size,
                         xs.Rows(send_order_[pos], 1).data, row_bytes);
  }

  recv_pairs_.assign(n, 0);
  SY_RETURN_IF_ERROR(ExchangeCounts(*comm_, send_pairs_, recv_pairs_));
  size_t received = 0;
  for (size_t c : recv_pairs_) received += c;
  send_bytes_.resize(n);
  recv_bytes_.resize(n);
  for (int r = 0; r < n; ++r) {
    send_bytes_[r] = send_pairs_[r] * sizeof(int32_t);
    recv_bytes_[r] = recv_pairs_[r] * sizeof(int32_t);
  }
  recv_experts_.resize(received);
  SY_RETURN_IF_ERROR(
      comm_->AllToAllV(send_experts_.data(), send_bytes_, recv_experts_.data(), recv_bytes_));
  for (int r = 0; r < n; ++r) {
    send_bytes_[r] = send_pairs_[r] * row_bytes;
    recv_bytes_[r] = recv_pairs_[r] * row_bytes;
  }
  recv_rows_.resize(received * config_.hidden_size);
  SY_RETURN_IF_ERROR(
      comm_->AllToAllV(send_rows_.data(), send_bytes_, recv_rows_.data(), recv_bytes_));

  if (Status st = ComputeReceived(layer); !st.ok() && error_.ok()) error_ = std::move(st);

  // Results travel back along the same routes; they arrive in the order the pairs were sent.
  SY_RETURN_IF_ERROR(
      comm_->AllToAllV(back_rows_.data(), recv_bytes_, send_rows_.data(), send_bytes_));
  for (int64_t pos = 0; pos < pairs; ++pos) {
    backend_->CopyToDevice(ys.Rows(send_order_[pos], 1).data,
                           send_rows_.data() + pos * config_.hidden_size, row_bytes);
  }
  return Status::Ok();
}

Status ExpertParallel::TakeError() {
  Status st = std::move(error_);
  error_ = Status::Ok();
  return st;
}

Status ExpertParallel::ComputeReceived(int64_t layer) {
  const int64_t hidden = config_.hidden_size;
  const int64_t experts = config_.num_experts;
  const int64_t received = static_cast<int64_t>(recv_experts_.size());
  const size_t row_bytes = static_cast<size_t>(hidden) * sizeof(float);
  back_rows_.assign(recv_rows_.size(), 0.0f);
  if (received == 0) return Status::Ok();
  const std::vector<FfnWeights>& hosted = experts_[layer];
  local_offsets_.assign(experts + 1, 0);
  for (int32_t e : recv_experts_) {
    if (e < 0 || e >= experts || hosted[e].gate_up.data == nullptr) {
      return Status::Internal("rank " + std::to_string(rank()) + " received a pair for expert " +
                              std::to_string(e) + " of layer " + std::to_string(layer) +
                              ", which it does not host");
    }
    ++local_offsets_[e + 1];
  }
  for (int64_t e = 0; e < experts; ++e) local_offsets_[e + 1] += local_offsets_[e];
  cursor_.assign(local_offsets_.begin(), local_offsets_.end() - 1);
  local_pos_.resize(received);
  for (int64_t i = 0; i < received; ++i) local_pos_[i] = cursor_[recv_experts_[i]]++;

  SY_RETURN_IF_ERROR(Grow(&local_x_, received * row_bytes));
  SY_RETURN_IF_ERROR(Grow(&local_y_, received * row_bytes));
  SY_RETURN_IF_ERROR(Grow(&scratch_, received * 3 * config_.moe_intermediate_size * sizeof(float)));
  const Tensor x{local_x_.data(), DType::kF32, received, hidden};
  const Tensor y{local_y_.data(), DType::kF32, received, hidden};
  const Tensor scratch{scratch_.data(), DType::kF32, 1,
                       static_cast<int64_t>(scratch_.size() / sizeof(float))};
  for (int64_t i = 0; i < received; ++i) {
    backend_->CopyToDevice(x.Rows(local_pos_[i], 1).data, recv_rows_.data() + i * hidden,
                           row_bytes);
  }
  backend_->ExpertFfn(x, local_offsets_, hosted, scratch, y);
  for (int64_t i = 0; i < received; ++i) {
    backend_->CopyToHost(back_rows_.data() + i * hidden, y.Rows(local_pos_[i], 1).data, row_bytes);
  }
  return Status::Ok();
}

}  // namespace sy
