// RankGroup: this `switchyard serve` process's place in an expert-parallel group. With
// --ep-size N and no group variables in the environment, it becomes rank 0 of a local group and
// starts ranks 1..N-1 as child processes; with SWITCHYARD_* or LeaderWorkerSet LWS_* variables
// (the children, or pods on several hosts) it joins the group they describe. Either way it then
// connects the Gloo communicator. Owned by the serve command's main thread.
#pragma once

#include <chrono>
#include <memory>

#include "engine/dist/communicator.h"
#include "engine/dist/dist_env.h"
#include "engine/dist/rank_launcher.h"

namespace sy {

struct RankGroup {
  DistEnv env;
  bool local = false;                      // all ranks are processes of this host
  std::unique_ptr<RankLauncher> launcher;  // the local group's leader only
  std::unique_ptr<Communicator> comm;      // null for a group of one
};

// ep_port 0 picks a free port for a local group. Errors: malformed group variables, a group
// size that contradicts --ep-size, children that cannot start, rendezvous timeout.
StatusOr<RankGroup> JoinRankGroup(int ep_size, int ep_port, std::chrono::milliseconds timeout);

}  // namespace sy
