// ConnectNccl: a Communicator over NCCL for GPU ranks (one GPU per rank; processes on one host
// or several, or threads of one process). Buffers are device memory on the rank's GPU.
// Collectives are enqueued on the communicator's CUDA stream and, as the Communicator contract
// says, waited for before returning; the wait watches NCCL's asynchronous errors and the timeout,
// and aborts the NCCL communicator (Unavailable, then broken for good) when a peer fails or stalls.
// Rank 0 creates the ncclUniqueId and hands it out through the group's TCP store.
// Compiled only when CMake finds CUDA and NCCL (SWITCHYARD_HAVE_NCCL is then defined).
#pragma once

#include <cuda_runtime_api.h>

#include <chrono>
#include <memory>

#include "engine/core/status.h"
#include "engine/dist/communicator.h"
#include "engine/dist/dist_env.h"
#include "engine/dist/group_store.h"

namespace sy {

// Joins the group described by `env` on GPU `device`. `stream` is where collectives run; null
// means a stream of the communicator's own. Rendezvous and each collective are bounded by
// `timeout`.
StatusOr<std::unique_ptr<Communicator>> ConnectNccl(const DistEnv& env, int device,
                                                    cudaStream_t stream,
                                                    std::chrono::milliseconds timeout);

// The same over a store already joined (ranks as threads of one process share one server this
// way). The unique id lives under "nccl/" in the store. The communicator keeps `store` alive.
StatusOr<std::unique_ptr<Communicator>> ConnectNcclWithStore(int rank, int world_size,
                                                             GroupStore store, int device,
                                                             cudaStream_t stream,
                                                             std::chrono::milliseconds timeout);

}  // namespace sy
