#include "server/rank_group.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <string>

#include "engine/dist/gloo_communicator.h"
#include "engine/dist/socket_io.h"

namespace sy {
namespace {

bool GroupVariablesSet() {
  return std::getenv("SWITCHYARD_WORLD_SIZE") != nullptr ||
         std::getenv("LWS_GROUP_SIZE") != nullptr;
}

// A port the kernel reports free on 127.0.0.1 right now (the socket closes again at once).
StatusOr<int> FreeLoopbackPort() {
  SY_ASSIGN_OR_RETURN(UniqueFd fd, ListenTcp("127.0.0.1", 0));
  return LocalPort(fd.get());
}

}  // namespace

StatusOr<RankGroup> JoinRankGroup(int ep_size, int ep_port, std::chrono::milliseconds timeout) {
  RankGroup g;
  if (ep_size < 1) return Status::InvalidArgument("--ep-size must be at least 1");
  if (GroupVariablesSet()) {
    DistEnv defaults;
    if (ep_port > 0) defaults.leader_port = ep_port;
    SY_ASSIGN_OR_RETURN(g.env, DistEnvFromEnvironment(defaults));
    if (ep_size > 1 && g.env.world_size != ep_size) {
      return Status::InvalidArgument("--ep-size " + std::to_string(ep_size) +
                                     " contradicts the group size " +
                                     std::to_string(g.env.world_size) + " of the environment");
    }
    g.local = std::getenv("SWITCHYARD_LOCAL_GROUP") != nullptr;
  } else {
    g.env.world_size = ep_size;
    g.local = true;
    if (ep_size > 1) {
      if (ep_port == 0) {
        SY_ASSIGN_OR_RETURN(ep_port, FreeLoopbackPort());
      }
      g.env.leader_port = ep_port;
      // The children inherit the environment; this tells them the group is on one host.
      setenv("SWITCHYARD_LOCAL_GROUP", "1", 1);
      RankLauncher::Options lo;
      lo.world_size = ep_size;
      lo.leader_host = g.env.leader_host;
      lo.leader_port = ep_port;
      SY_ASSIGN_OR_RETURN(g.launcher, RankLauncher::Start(lo));
      spdlog::info("serve: started ranks 1..{} of a local expert-parallel group (leader port {})",
                   ep_size - 1, ep_port);
    }
  }
  if (g.env.world_size > 1) {
    SY_ASSIGN_OR_RETURN(g.comm, ConnectGloo(g.env, timeout));
    spdlog::info("serve: rank {} of {} joined the group at {}:{}", g.env.rank, g.env.world_size,
                 g.env.leader_host, g.env.leader_port);
  }
  return g;
}

}  // namespace sy
