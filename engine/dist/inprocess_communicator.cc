#include "engine/dist/inprocess_communicator.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

namespace sy {
namespace {

enum class OpKind { kAllToAllV, kAllReduceSum, kAllGather, kBroadcast, kBarrier };

// What one rank brings to the current collective; peers read it between the two rendezvous.
struct Contribution {
  OpKind op = OpKind::kBarrier;
  const void* send = nullptr;
  void* recv = nullptr;  // for the in-place collectives: the rank's data
  std::span<const size_t> send_bytes = {};
  std::span<const size_t> recv_bytes = {};
  size_t size = 0;  // bytes (AllGather, Broadcast) or elements (AllReduceSum)
  ReduceType type = ReduceType::kF32;
  int root = 0;
};

// The state the N communicators share: a generation-counted barrier plus one contribution slot
// per rank. A slot is written only by its rank, before the first rendezvous of a collective, and
// read by the others only between the first and the second, so reads need no lock.
class Hub {
 public:
  Hub(int n, std::chrono::milliseconds timeout) : timeout_(timeout), slots_(n) {}

  int size() const { return static_cast<int>(slots_.size()); }
  const Contribution& slot(int rank) const { return slots_[rank]; }

  Status Post(int rank, const Contribution& mine) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      slots_[rank] = mine;
    }
    return Arrive();
  }

  // Blocks until all ranks have arrived; Unavailable when the group broke or this wait timed out.
  Status Arrive() {
    std::unique_lock<std::mutex> lock(mu_);
    if (broken_) return Status::Unavailable("in-process group is broken (an earlier timeout)");
    const uint64_t generation = generation_;
    if (++arrived_ == size()) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return Status::Ok();
    }
    const bool released =
        cv_.wait_for(lock, timeout_, [&] { return generation_ != generation || broken_; });
    if (released && generation_ != generation) return Status::Ok();
    broken_ = true;
    cv_.notify_all();
    return Status::Unavailable("in-process group: timed out after " +
                               std::to_string(timeout_.count()) +
                               " ms waiting for the other ranks to join a collective");
  }

 private:
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool broken_ = false;
  std::vector<Contribution> slots_;
};

size_t ElementBytes(ReduceType type) { return type == ReduceType::kF32 ? 4 : 8; }

// Checks that the contributions of all ranks fit together. Every rank runs it over the same
// slots, so every rank reaches the same verdict and the group stays in lockstep.
Status ValidateGroup(const Hub& hub) {
  const int n = hub.size();
  const Contribution& first = hub.slot(0);
  for (int r = 1; r < n; ++r) {
    const Contribution& c = hub.slot(r);
    if (c.op != first.op) {
      return Status::Internal("in-process group: ranks called different collectives");
    }
    if (c.size != first.size || c.type != first.type || c.root != first.root) {
      return Status::InvalidArgument("in-process group: rank " + std::to_string(r) +
                                     " disagrees with rank 0 on the size, type or root");
    }
  }
  if (first.op == OpKind::kBroadcast && (first.root < 0 || first.root >= n)) {
    return Status::InvalidArgument("Broadcast: root " + std::to_string(first.root) +
                                   " is not a rank of a group of " + std::to_string(n));
  }
  if (first.op != OpKind::kAllToAllV) return Status::Ok();
  for (int r = 0; r < n; ++r) {
    const Contribution& c = hub.slot(r);
    if (c.send_bytes.size() != static_cast<size_t>(n) ||
        c.recv_bytes.size() != static_cast<size_t>(n)) {
      return Status::InvalidArgument("AllToAllV: rank " + std::to_string(r) +
                                     " passed byte counts that do not have one entry per rank");
    }
  }
  for (int from = 0; from < n; ++from) {
    for (int to = 0; to < n; ++to) {
      const size_t sent = hub.slot(from).send_bytes[to];
      const size_t expected = hub.slot(to).recv_bytes[from];
      if (sent != expected) {
        return Status::InvalidArgument(
            "AllToAllV: rank " + std::to_string(from) + " sends " + std::to_string(sent) +
            " bytes to rank " + std::to_string(to) + ", which expects " + std::to_string(expected));
      }
    }
  }
  return Status::Ok();
}

void CopyBytes(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

template <typename T>
void SumInto(const Hub& hub, size_t count, std::vector<std::byte>& out) {
  T* sum = reinterpret_cast<T*>(out.data());
  std::fill(sum, sum + count, T{0});
  // Rank order, so every rank adds in the same order and gets bit-identical floats.
  for (int r = 0; r < hub.size(); ++r) {
    const T* data = static_cast<const T*>(hub.slot(r).recv);
    for (size_t i = 0; i < count; ++i) sum[i] += data[i];
  }
}

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<Hub> hub, int rank) : hub_(std::move(hub)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return hub_->size(); }
  std::string_view transport() const override { return "inprocess"; }

  Status AllToAllV(const void* send, std::span<const size_t> send_bytes, void* recv,
                   std::span<const size_t> recv_bytes) override {
    Contribution mine{.op = OpKind::kAllToAllV,
                      .send = send,
                      .recv = recv,
                      .send_bytes = send_bytes,
                      .recv_bytes = recv_bytes};
    return Run(mine, [&] {
      size_t recv_offset = 0;
      for (int from = 0; from < size(); ++from) {
        const Contribution& peer = hub_->slot(from);
        const size_t send_offset =
            std::accumulate(peer.send_bytes.begin(), peer.send_bytes.begin() + rank_, size_t{0});
        CopyBytes(static_cast<char*>(recv) + recv_offset,
                  static_cast<const char*>(peer.send) + send_offset, recv_bytes[from]);
        recv_offset += recv_bytes[from];
      }
    });
  }

  Status AllReduceSum(void* data, size_t count, ReduceType type) override {
    Contribution mine{.op = OpKind::kAllReduceSum, .recv = data, .size = count, .type = type};
    std::vector<std::byte> sum(count * ElementBytes(type));
    return Run(
        mine,
        [&] {
          switch (type) {
            case ReduceType::kF32:
              return SumInto<float>(*hub_, count, sum);
            case ReduceType::kF64:
              return SumInto<double>(*hub_, count, sum);
            case ReduceType::kI64:
              return SumInto<int64_t>(*hub_, count, sum);
          }
        },
        // In place: overwrite our data only once every rank has read it.
        [&] { CopyBytes(data, sum.data(), sum.size()); });
  }

  Status AllGather(const void* send, size_t bytes, void* recv) override {
    Contribution mine{.op = OpKind::kAllGather, .send = send, .size = bytes};
    return Run(mine, [&] {
      for (int from = 0; from < size(); ++from) {
        CopyBytes(static_cast<char*>(recv) + from * bytes, hub_->slot(from).send, bytes);
      }
    });
  }

  Status Broadcast(void* data, size_t bytes, int root) override {
    Contribution mine{.op = OpKind::kBroadcast, .recv = data, .size = bytes, .root = root};
    return Run(mine, [&] {
      if (rank_ != root) CopyBytes(data, hub_->slot(root).recv, bytes);
    });
  }

  Status Barrier() override {
    return Run(Contribution{.op = OpKind::kBarrier}, [] {});
  }

 private:
  // Every collective is two rendezvous: after the first, all contributions are posted and each
  // rank reads what it needs from its peers (`read_peers`); after the second, nobody reads any
  // more, so each rank may modify its own buffers (`after`) and return.
  Status Run(
      const Contribution& mine, const std::function<void()>& read_peers,
      const std::function<void()>& after = [] {}) {
    SY_RETURN_IF_ERROR(hub_->Post(rank_, mine));
    const Status valid = ValidateGroup(*hub_);
    if (valid.ok()) read_peers();
    SY_RETURN_IF_ERROR(hub_->Arrive());
    if (valid.ok()) after();
    return valid;
  }

  std::shared_ptr<Hub> hub_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> InProcessGroup::Create(
    int n, std::chrono::milliseconds timeout) {
  auto hub = std::make_shared<Hub>(n, timeout);
  std::vector<std::unique_ptr<Communicator>> group;
  for (int r = 0; r < n; ++r) group.push_back(std::make_unique<InProcessCommunicator>(hub, r));
  return group;
}

}  // namespace sy
