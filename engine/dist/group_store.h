// GroupStore: a rank's handle on its group's rendezvous store. Rank 0 serves the TCP store on the
// leader port (every interface); every rank, rank 0 included, connects to it as a client. The
// transports (Gloo, NCCL) publish and fetch their connection details through the client.
// Owns the server (rank 0) and the client; moved into whatever communicator it connected.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "engine/core/status.h"
#include "engine/dist/dist_env.h"
#include "engine/dist/tcp_store.h"

namespace sy {

struct GroupStore {
  std::unique_ptr<TcpStoreServer> server;  // rank 0 only
  std::unique_ptr<TcpStoreClient> client;
};

// Rank 0 starts the server on env.leader_port; then every rank connects to
// env.leader_host:env.leader_port, retrying until `timeout` while the leader starts.
StatusOr<GroupStore> JoinGroupStore(const DistEnv& env, std::chrono::milliseconds timeout);

// The address this rank's transports listen on: SWITCHYARD_HOST_ADDR when set, else the local end
// of the connection to the leader's store (the interface the leader, and so presumably the other
// hosts, can reach), so several hosts work without configuration.
std::string TransportAddress(const TcpStoreClient& client);

}  // namespace sy
