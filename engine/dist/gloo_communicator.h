// ConnectGloo: a Communicator over Gloo's TCP transport, for CPU ranks in separate processes on
// one host or several. Ranks rendezvous through the group's TCP store (rank 0 serves it on the
// leader port); after that Gloo connects every pair of ranks directly on ephemeral ports.
// Failures never throw: a peer that dies or a collective that outlives the timeout gives
// Unavailable, after which the communicator is broken and every later call fails the same way.
#pragma once

#include <chrono>
#include <memory>

#include "engine/core/status.h"
#include "engine/dist/communicator.h"
#include "engine/dist/dist_env.h"
#include "engine/dist/group_store.h"

namespace sy {

// Joins the group described by `env`: rendezvous and every later collective are bounded by
// `timeout`.
StatusOr<std::unique_ptr<Communicator>> ConnectGloo(const DistEnv& env,
                                                    std::chrono::milliseconds timeout);

// The same over a store already joined (tests run ranks as threads that share one server this
// way). Gloo's keys live under "gloo/" in the store. The communicator keeps `store` alive.
StatusOr<std::unique_ptr<Communicator>> ConnectGlooWithStore(int rank, int world_size,
                                                             GroupStore store,
                                                             std::chrono::milliseconds timeout);

}  // namespace sy
