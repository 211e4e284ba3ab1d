// Communicator: collective operations among the ranks of an expert-parallel group. One
// implementation per transport: in-process threads (tests), Gloo over TCP (CPU processes on one
// host or several), NCCL (GPU ranks). Buffers are host memory for the CPU transports and device
// memory for NCCL. Every rank must call the same collectives in the same order (lockstep).
// A Communicator is used by one thread at a time; calls block until the collective completes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "engine/core/status.h"

namespace sy {

enum class ReduceType { kF32, kF64, kI64 };

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "inprocess", "gloo" or "nccl".
  virtual std::string_view transport() const = 0;

  // Personalised exchange: this rank sends send_bytes[r] bytes to rank r (the segments lie one
  // after another in `send`, in rank order) and receives recv_bytes[r] bytes from rank r into
  // `recv`, likewise in rank order. The sizes must match pairwise across ranks (what r sends to
  // q is what q expects from r); use ExchangeCounts first when receivers do not know them.
  virtual Status AllToAllV(const void* send, std::span<const size_t> send_bytes, void* recv,
                           std::span<const size_t> recv_bytes) = 0;
  // Element-wise sum of `count` elements of `type` in place on every rank.
  virtual Status AllReduceSum(void* data, size_t count, ReduceType type) = 0;
  // Every rank contributes `bytes` bytes; `recv` gets size() * bytes, rank r's at r * bytes.
  virtual Status AllGather(const void* send, size_t bytes, void* recv) = 0;
  // `bytes` bytes of `data` on `root` are copied to `data` on every other rank.
  virtual Status Broadcast(void* data, size_t bytes, int root) = 0;
  virtual Status Barrier() = 0;
};

// All-to-all of one size_t per rank: recv_counts[r] = what rank r put in send_counts[rank()].
Status ExchangeCounts(Communicator& comm, std::span<const size_t> send_counts,
                      std::span<size_t> recv_counts);

}  // namespace sy
