// DistEnv: where this process sits in a distributed group (its rank, the group's size, and the
// leader whose rendezvous store everyone joins), read from the environment: our own
// SWITCHYARD_* variables, or Kubernetes LeaderWorkerSet's LWS_* when ours are absent.
// Plain value type.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "engine/core/status.h"

namespace sy {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  std::string leader_host = "127.0.0.1";
  int leader_port = 29500;
};

// Per field, the first that is set wins:
//   rank:        SWITCHYARD_RANK, LWS_WORKER_INDEX, defaults.rank
//   world_size:  SWITCHYARD_WORLD_SIZE, LWS_GROUP_SIZE, defaults.world_size
//   leader:      SWITCHYARD_LEADER_ADDR ("host:port", "host" or "[v6]:port"), LWS_LEADER_ADDRESS
//                (a host), defaults.leader_host
//   leader port: the port in SWITCHYARD_LEADER_ADDR, SWITCHYARD_LEADER_PORT, defaults.leader_port
// InvalidArgument, naming the variable, for a malformed number, a port outside 1..65535, an empty
// host, a world size below 1, or a rank outside [0, world size).
StatusOr<DistEnv> DistEnvFromEnvironment(const DistEnv& defaults);

// The same over any variable lookup (tests, or a config file standing in for the environment).
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
StatusOr<DistEnv> DistEnvFromLookup(const DistEnv& defaults, const EnvLookup& lookup);

}  // namespace sy
