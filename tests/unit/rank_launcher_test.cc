// RankLauncher: children get the right rank variables and the parent's environment, exits are
// reported, SIGTERM then SIGKILL, and no child outlives the launcher or its leader. Children are
// /bin/sh one-liners, plus this test binary itself re-run as a child (the real use).
#include "engine/dist/rank_launcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

namespace sy {
namespace {

using std::chrono::milliseconds;

RankLauncher::Options Shell(int world_size, const std::string& script) {
  return RankLauncher::Options{.world_size = world_size,
                               .leader_host = "10.0.0.7",
                               .leader_port = 1234,
                               .executable = "/bin/sh",
                               .argv = {"sh", "-c", script}};
}

std::unique_ptr<RankLauncher> StartOrDie(const RankLauncher::Options& options) {
  auto launcher = RankLauncher::Start(options);
  EXPECT_TRUE(launcher.ok()) << launcher.status().ToString();
  return std::move(launcher).value();
}

bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

// Each child checks its variables and exits with 10 + its rank; a wrong variable exits 1.
TEST(RankLauncher, ChildrenGetRankVariablesAndTheParentEnvironment) {
  setenv("RANK_LAUNCHER_TEST_MARK", "inherited", 1);
  setenv("SWITCHYARD_RANK", "0", 1);  // the leader's own value must not leak into children
  auto launcher = StartOrDie(Shell(
      3,
      "test \"$SWITCHYARD_WORLD_SIZE\" = 3 && test \"$SWITCHYARD_LEADER_ADDR\" = 10.0.0.7:1234 "
      "&& test \"$RANK_LAUNCHER_TEST_MARK\" = inherited && exit $((10 + SWITCHYARD_RANK)); "
      "exit 1"));
  unsetenv("RANK_LAUNCHER_TEST_MARK");
  unsetenv("SWITCHYARD_RANK");
  const std::vector<RankExit> exits = launcher->WaitAll(milliseconds(10000));
  ASSERT_EQ(exits.size(), 2u);
  EXPECT_EQ(exits[0].rank, 1);
  EXPECT_EQ(exits[0].exit_code, 11);
  EXPECT_EQ(exits[1].rank, 2);
  EXPECT_EQ(exits[1].exit_code, 12);
  EXPECT_EQ(exits[1].Describe(), "rank 2 exited with code 12");
}

TEST(RankLauncher, WorldSizeOneStartsNothing) {
  auto launcher = StartOrDie(Shell(1, "exit 1"));
  EXPECT_TRUE(launcher->pids().empty());
  EXPECT_FALSE(launcher->PollExited().has_value());
  EXPECT_TRUE(launcher->WaitAll(milliseconds(10)).empty());
  EXPECT_EQ(RankLauncher::Start(Shell(0, "")).status().code(), StatusCode::kInvalidArgument);
}

// Rank 1 fails at once, rank 2 runs on: PollExited reports rank 1 (once), and Terminate's
// SIGTERM ends rank 2.
TEST(RankLauncher, PollReportsAnEarlyExitThenTerminateStopsTheRest) {
  auto launcher =
      StartOrDie(Shell(3, "if [ \"$SWITCHYARD_RANK\" = 1 ]; then exit 3; fi; exec sleep 30"));
  std::optional<RankExit> exit;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(exit = launcher->PollExited()) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->rank, 1);
  EXPECT_EQ(exit->exit_code, 3);
  EXPECT_FALSE(exit->success());
  EXPECT_FALSE(launcher->PollExited().has_value());  // rank 2 still runs; rank 1 not repeated
  launcher->Terminate();
  const std::vector<RankExit> exits = launcher->WaitAll(milliseconds(10000));
  EXPECT_EQ(exits[0].exit_code, 3);
  EXPECT_EQ(exits[1].signal, SIGTERM);
  EXPECT_NE(exits[1].Describe().find("killed by signal 15"), std::string::npos);
}

// A child that ignores SIGTERM is SIGKILLed once the wait runs out.
TEST(RankLauncher, ChildIgnoringSigtermIsKilledAfterTheGrace) {
  auto launcher = StartOrDie(Shell(2, "trap '' TERM; exec sleep 30"));
  std::this_thread::sleep_for(milliseconds(100));  // let the shell install the trap
  launcher->Terminate();
  const auto start = std::chrono::steady_clock::now();
  const std::vector<RankExit> exits = launcher->WaitAll(milliseconds(200));
  EXPECT_EQ(exits[0].signal, SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST(RankLauncher, DestructorLeavesNoChildBehind) {
  auto options = Shell(4, "trap '' TERM; exec sleep 30");
  options.shutdown_grace = milliseconds(100);
  auto launcher = StartOrDie(options);
  const std::vector<pid_t> pids = launcher->pids();
  ASSERT_EQ(pids.size(), 3u);
  for (pid_t pid : pids) EXPECT_TRUE(ProcessExists(pid));
  launcher.reset();
  for (pid_t pid : pids) EXPECT_FALSE(ProcessExists(pid)) << pid;  // reaped, not zombies
}

// The leader dies without cleaning up (no destructor): the kernel kills its children. This test
// process becomes a subreaper so it can reap the orphaned children and see how they died.
TEST(RankLauncher, ChildrenDieWithTheirLeader) {
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t leader = fork();
  if (leader == 0) {
    // The children report on fd 9 once they run (past PR_SET_PDEATHSIG), so the leader dies
    // with every child fully started.
    int ready[2];
    if (pipe(ready) != 0 || dup2(ready[1], 9) != 9) _exit(1);
    auto launcher = RankLauncher::Start(Shell(3, "echo ready >&9; exec sleep 30"));
    if (!launcher.ok()) _exit(1);
    char lines[12];
    for (size_t got = 0; got < sizeof(lines);) {
      const ssize_t n = read(ready[0], lines + got, sizeof(lines) - got);
      if (n <= 0) _exit(1);
      got += static_cast<size_t>(n);
    }
    std::vector<pid_t> pids = (*launcher)->pids();
    if (write(pipe_fds[1], pids.data(), pids.size() * sizeof(pid_t)) < 0) _exit(1);
    _exit(0);  // skips the launcher's destructor
  }
  pid_t children[2] = {};
  ASSERT_EQ(read(pipe_fds[0], children, sizeof(children)), static_cast<ssize_t>(sizeof(children)));
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  int status = 0;
  ASSERT_EQ(waitpid(leader, &status, 0), leader);
  for (pid_t child : children) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    pid_t result = 0;
    while ((result = waitpid(child, &status, WNOHANG)) == 0 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    if (result == 0) kill(child, SIGKILL);  // do not leave it behind even when the test fails
    ASSERT_EQ(result, child) << "child " << child << " outlived its leader";
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  prctl(PR_SET_CHILD_SUBREAPER, 0);
}

// The real use: this very binary, re-run as ranks 1 and 2 (default executable /proc/self/exe),
// runs only the entry test below, which exits with 20 + its rank.
TEST(RankLauncher, RerunsThisExecutable) {
  RankLauncher::Options options{.world_size = 3};
  auto command_line = CurrentCommandLine();
  ASSERT_TRUE(command_line.ok());
  ASSERT_FALSE(command_line->empty());
  EXPECT_NE((*command_line)[0].find("rank_launcher_test"), std::string::npos);
  options.argv = {(*command_line)[0], "--gtest_filter=RankLauncherChild.ExitWithRank"};
  auto launcher = StartOrDie(options);
  const std::vector<RankExit> exits = launcher->WaitAll(milliseconds(10000));
  EXPECT_EQ(exits[0].exit_code, 21);
  EXPECT_EQ(exits[1].exit_code, 22);
}

// Only does something inside a child started by RerunsThisExecutable.
TEST(RankLauncherChild, ExitWithRank) {
  const char* rank = getenv("SWITCHYARD_RANK");
  if (rank == nullptr) GTEST_SKIP() << "runs only as a child of RankLauncher.RerunsThisExecutable";
  _exit(20 + atoi(rank));
}

TEST(RankLauncher, MissingExecutableExits127) {
  auto options = Shell(2, "");
  options.executable = "/nonexistent/switchyard";
  auto launcher = StartOrDie(options);
  EXPECT_EQ(launcher->WaitAll(milliseconds(10000))[0].exit_code, 127);
}

}  // namespace
}  // namespace sy
