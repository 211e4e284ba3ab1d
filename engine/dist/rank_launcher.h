// RankLauncher: runs the other ranks of a single-host group as child processes. The calling
// process is rank 0; ranks 1..n-1 run the same executable with the same arguments and
// environment plus SWITCHYARD_RANK, SWITCHYARD_WORLD_SIZE and SWITCHYARD_LEADER_ADDR (see
// dist_env.h), so each child joins the group like a rank on another host would.
// Never leaves orphans: the destructor terminates and reaps every child, and each child gets
// SIGKILL from the kernel if the thread that started it dies (PR_SET_PDEATHSIG), so create the
// launcher on a thread that lives as long as the group (normally main). Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace sy {

// How a child ended.
struct RankExit {
  int rank = 0;
  int exit_code = -1;  // when it exited normally, else -1
  int signal = 0;      // the signal that killed it, else 0

  bool success() const { return exit_code == 0; }
  // "rank 2 exited with code 3" / "rank 2 was killed by signal 9 (Killed)".
  std::string Describe() const;
};

class RankLauncher {
 public:
  struct Options {
    int world_size = 1;
    std::string leader_host = "127.0.0.1";
    int leader_port = 29500;
    // The program and arguments every child runs; empty `argv` means this process's own
    // (/proc/self/cmdline). Tests substitute a shell.
    std::string executable = "/proc/self/exe";
    std::vector<std::string> argv = {};
    // How long the destructor waits after SIGTERM before it sends SIGKILL.
    std::chrono::milliseconds shutdown_grace = std::chrono::seconds(5);
  };

  // Starts ranks 1..world_size-1 (none when world_size is 1).
  static StatusOr<std::unique_ptr<RankLauncher>> Start(const Options& options);
  // Terminate(), then WaitAll(shutdown_grace): every child is gone when this returns.
  ~RankLauncher();

  RankLauncher(const RankLauncher&) = delete;
  RankLauncher& operator=(const RankLauncher&) = delete;

  // A child that has exited since the last call (each is reported once), without blocking.
  std::optional<RankExit> PollExited();
  // Sends SIGTERM to every child still running.
  void Terminate();
  // Waits up to `timeout` for every child to exit, then SIGKILLs and reaps the rest. Returns how
  // each child ended, by rank (children already reported by PollExited included).
  std::vector<RankExit> WaitAll(std::chrono::milliseconds timeout);

  // Process ids by rank - 1 (0 once reaped).
  std::vector<pid_t> pids() const;

 private:
  struct Child {
    int rank;
    pid_t pid;  // 0 once reaped
    std::optional<RankExit> exit;
    bool reported = false;
  };
  explicit RankLauncher(Options options) : options_(std::move(options)) {}
  // Reaps `child` if it has exited (blocking when `block`); true when it is gone.
  bool Reap(Child& child, bool block);

  Options options_;
  std::vector<Child> children_;
};

// This process's arguments as the kernel reports them (/proc/self/cmdline).
StatusOr<std::vector<std::string>> CurrentCommandLine();

}  // namespace sy
