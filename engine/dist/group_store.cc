#include "engine/dist/group_store.h"

#include <cstdlib>

namespace sy {

StatusOr<GroupStore> JoinGroupStore(const DistEnv& env, std::chrono::milliseconds timeout) {
  GroupStore store;
  if (env.rank == 0) {
    StatusOr<std::unique_ptr<TcpStoreServer>> server = TcpStoreServer::Start("", env.leader_port);
    if (!server.ok()) {
      return Status::Unavailable("rank 0 cannot serve the rendezvous store on port " +
                                 std::to_string(env.leader_port) + ": " +
                                 server.status().message());
    }
    store.server = std::move(server).value();
  }
  SY_ASSIGN_OR_RETURN(store.client,
                      TcpStoreClient::Connect(env.leader_host, env.leader_port, timeout));
  return store;
}

std::string TransportAddress(const TcpStoreClient& client) {
  const char* configured = std::getenv("SWITCHYARD_HOST_ADDR");
  if (configured != nullptr && *configured != '\0') return configured;
  return client.local_address();
}

}  // namespace sy
