#include "engine/dist/nccl_communicator.h"

#include <nccl.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace sy {
namespace {

constexpr char kUniqueIdKey[] = "nccl/unique_id";

using SteadyDeadline = std::chrono::steady_clock::time_point;

Status CudaError(std::string_view what, cudaError_t error) {
  return Status::Unavailable(std::string(what) + ": " + cudaGetErrorString(error));
}

ncclDataType_t NcclType(ReduceType type) {
  switch (type) {
    case ReduceType::kF32:
      return ncclFloat32;
    case ReduceType::kF64:
      return ncclFloat64;
    case ReduceType::kI64:
      return ncclInt64;
  }
  return ncclFloat32;
}

// Waits while a non-blocking NCCL communicator reports ncclInProgress; the final state.
ncclResult_t WaitWhileInProgress(ncclComm_t comm, ncclResult_t result, SteadyDeadline deadline) {
  while (result == ncclInProgress && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
    if (ncclCommGetAsyncError(comm, &result) != ncclSuccess) return ncclSystemError;
  }
  return result;
}

// The ncclUniqueId, created by rank 0 and fetched from the store by everyone else.
StatusOr<ncclUniqueId> ShareUniqueId(int rank, TcpStoreClient& store,
                                     std::chrono::milliseconds timeout) {
  ncclUniqueId id;
  if (rank == 0) {
    const ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) {
      return Status::Unavailable(std::string("ncclGetUniqueId: ") + ncclGetErrorString(result));
    }
    SY_RETURN_IF_ERROR(store.Set(kUniqueIdKey, std::string_view(id.internal, sizeof(id.internal))));
    return id;
  }
  SY_ASSIGN_OR_RETURN(const std::string bytes, store.Get(kUniqueIdKey, timeout));
  if (bytes.size() != sizeof(id.internal)) {
    return Status::DataLoss("the NCCL unique id in the store has " + std::to_string(bytes.size()) +
                            " bytes, expected " + std::to_string(sizeof(id.internal)));
  }
  std::memcpy(id.internal, bytes.data(), bytes.size());
  return id;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(GroupStore store, int rank, int size, int device, ncclComm_t comm,
                   cudaStream_t stream, bool owns_stream, int32_t* scratch,
                   std::chrono::milliseconds timeout)
      : store_(std::move(store)),
        rank_(rank),
        size_(size),
        device_(device),
        comm_(comm),
        stream_(stream),
        owns_stream_(owns_stream),
        scratch_(scratch),
        timeout_(timeout) {}

  ~NcclCommunicator() override {
    cudaSetDevice(device_);
    if (comm_ != nullptr) ncclCommAbort(comm_);  // never blocks on peers that may be gone
    cudaFree(scratch_);
    if (owns_stream_) cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view transport() const override { return "nccl"; }

  Status AllToAllV(const void* send, std::span<const size_t> send_bytes, void* recv,
                   std::span<const size_t> recv_bytes) override {
    if (send_bytes.size() != static_cast<size_t>(size_) ||
        recv_bytes.size() != static_cast<size_t>(size_)) {
      return Status::InvalidArgument("AllToAllV: byte counts need one entry per rank");
    }
    return Run("AllToAllV", [&]() -> ncclResult_t {
      ncclResult_t result = ncclGroupStart();
      size_t send_offset = 0, recv_offset = 0;
      for (int peer = 0; peer < size_ && result == ncclSuccess; ++peer) {
        if (send_bytes[peer] > 0) {
          result = ncclSend(static_cast<const char*>(send) + send_offset, send_bytes[peer],
                            ncclUint8, peer, comm_, stream_);
        }
        if (recv_bytes[peer] > 0 && result == ncclSuccess) {
          result = ncclRecv(static_cast<char*>(recv) + recv_offset, recv_bytes[peer], ncclUint8,
                            peer, comm_, stream_);
        }
        send_offset += send_bytes[peer];
        recv_offset += recv_bytes[peer];
      }
      const ncclResult_t end = ncclGroupEnd();
      return result != ncclSuccess ? result : end;
    });
  }

  Status AllReduceSum(void* data, size_t count, ReduceType type) override {
    if (count == 0) return Status::Ok();
    return Run("AllReduceSum", [&] {
      return ncclAllReduce(data, data, count, NcclType(type), ncclSum, comm_, stream_);
    });
  }

  Status AllGather(const void* send, size_t bytes, void* recv) override {
    if (bytes == 0) return Status::Ok();
    return Run("AllGather",
               [&] { return ncclAllGather(send, recv, bytes, ncclUint8, comm_, stream_); });
  }

  Status Broadcast(void* data, size_t bytes, int root) override {
    if (root < 0 || root >= size_) {
      return Status::InvalidArgument("Broadcast: root " + std::to_string(root) +
                                     " is not a rank of a group of " + std::to_string(size_));
    }
    if (bytes == 0) return Status::Ok();
    return Run("Broadcast",
               [&] { return ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_); });
  }

  // NCCL has no barrier: a one-element all-reduce completes on no rank before all joined.
  Status Barrier() override {
    return Run("Barrier", [&] {
      return ncclAllReduce(scratch_, scratch_, 1, ncclInt32, ncclSum, comm_, stream_);
    });
  }

 private:
  // Enqueues one collective and waits for it on the stream, bounded by the timeout.
  template <typename Enqueue>
  Status Run(std::string_view what, Enqueue&& enqueue) {
    if (!broken_.empty()) {
      return Status::Unavailable(std::string(what) +
                                 ": NCCL communicator unusable after: " + broken_);
    }
    const cudaError_t set = cudaSetDevice(device_);
    if (set != cudaSuccess) return CudaError(what, set);
    const SteadyDeadline deadline = std::chrono::steady_clock::now() + timeout_;
    const ncclResult_t result = WaitWhileInProgress(comm_, enqueue(), deadline);
    if (result == ncclInProgress) return Fail(what, TimedOut());
    if (result != ncclSuccess) return Fail(what, ncclGetErrorString(result));
    while (true) {
      const cudaError_t query = cudaStreamQuery(stream_);
      if (query == cudaSuccess) return Status::Ok();
      if (query != cudaErrorNotReady) return Fail(what, cudaGetErrorString(query));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        return Fail(what, ncclGetErrorString(async));
      }
      if (std::chrono::steady_clock::now() >= deadline) return Fail(what, TimedOut());
      std::this_thread::yield();
    }
  }

  std::string TimedOut() const {
    return "timed out after " + std::to_string(timeout_.count()) + " ms (a peer is gone or stuck)";
  }

  // Aborting frees NCCL's resources and unblocks the kernels still waiting on peers.
  Status Fail(std::string_view what, const std::string& why) {
    broken_ = why;
    ncclCommAbort(comm_);
    comm_ = nullptr;
    return Status::Unavailable(std::string(what) + " failed on rank " + std::to_string(rank_) +
                               ": " + why);
  }

  GroupStore store_;
  const int rank_, size_, device_;
  ncclComm_t comm_;
  const cudaStream_t stream_;
  const bool owns_stream_;
  int32_t* const scratch_;  // one device int for Barrier
  const std::chrono::milliseconds timeout_;
  std::string broken_;
};

}  // namespace

StatusOr<std::unique_ptr<Communicator>> ConnectNcclWithStore(int rank, int world_size,
                                                             GroupStore store, int device,
                                                             cudaStream_t stream,
                                                             std::chrono::milliseconds timeout) {
  if (world_size < 1 || rank < 0 || rank >= world_size || store.client == nullptr) {
    return Status::InvalidArgument("ConnectNccl: rank " + std::to_string(rank) + " of world size " +
                                   std::to_string(world_size) +
                                   (store.client == nullptr ? " without a store" : ""));
  }
  if (const cudaError_t error = cudaSetDevice(device); error != cudaSuccess) {
    return CudaError("ConnectNccl: cudaSetDevice(" + std::to_string(device) + ")", error);
  }
  SY_ASSIGN_OR_RETURN(ncclUniqueId id, ShareUniqueId(rank, *store.client, timeout));
  // Non-blocking, so that a peer that never arrives costs a timeout rather than a hang.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const SteadyDeadline deadline = std::chrono::steady_clock::now() + timeout;
  ncclResult_t result = ncclCommInitRankConfig(&comm, world_size, id, rank, &config);
  if (comm != nullptr) result = WaitWhileInProgress(comm, result, deadline);
  if (result != ncclSuccess) {
    if (comm != nullptr) ncclCommAbort(comm);
    return Status::Unavailable(
        "ncclCommInitRank (rank " + std::to_string(rank) + " of " + std::to_string(world_size) +
        "): " + (result == ncclInProgress ? std::string("timed out") : ncclGetErrorString(result)));
  }
  const bool owns_stream = stream == nullptr;
  cudaError_t error = cudaSuccess;
  if (owns_stream) error = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  int32_t* scratch = nullptr;
  if (error == cudaSuccess) error = cudaMalloc(&scratch, sizeof(int32_t));
  if (error != cudaSuccess) {
    ncclCommAbort(comm);
    if (owns_stream && stream != nullptr) cudaStreamDestroy(stream);
    return CudaError("ConnectNccl: stream or scratch buffer", error);
  }
  return std::unique_ptr<Communicator>(new NcclCommunicator(
      std::move(store), rank, world_size, device, comm, stream, owns_stream, scratch, timeout));
}

StatusOr<std::unique_ptr<Communicator>> ConnectNccl(const DistEnv& env, int device,
                                                    cudaStream_t stream,
                                                    std::chrono::milliseconds timeout) {
  SY_ASSIGN_OR_RETURN(GroupStore store, JoinGroupStore(env, timeout));
  return ConnectNcclWithStore(env.rank, env.world_size, std::move(store), device, stream, timeout);
}

}  // namespace sy
