// The Gloo communicator: every collective with 1-4 ranks as threads (one Gloo context each) and
// as forked processes joined through ConnectGloo, plus failure behaviour: a rank that never
// shows up, a peer that dies or stalls mid-collective.
#include "engine/dist/gloo_communicator.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "engine/dist/rank_launcher.h"
#include "engine/dist/socket_io.h"
#include "engine/dist/tcp_store.h"
#include "tests/unit/dist_collective_checks.h"

namespace sy {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kTimeout(10000);

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

int FreePort() {
  auto listener = ListenTcp("127.0.0.1", 0);
  EXPECT_TRUE(listener.ok());
  return LocalPort(listener->get());
}

// Connects `n` Gloo ranks on threads through one store; comms[r] is rank r (null on failure,
// with the reason in `errors`).
std::vector<std::unique_ptr<Communicator>> ConnectThreads(int n, milliseconds timeout,
                                                          std::unique_ptr<TcpStoreServer>& server) {
  auto started = TcpStoreServer::Start("127.0.0.1", 0);
  EXPECT_TRUE(started.ok()) << started.status().ToString();
  server = std::move(started).value();
  std::vector<std::unique_ptr<Communicator>> comms(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      auto client = TcpStoreClient::Connect("127.0.0.1", server->port(), timeout);
      ASSERT_TRUE(client.ok()) << client.status().ToString();
      auto comm =
          ConnectGlooWithStore(r, n, GroupStore{nullptr, std::move(client).value()}, timeout);
      ASSERT_TRUE(comm.ok()) << comm.status().ToString();
      comms[r] = std::move(comm).value();
    });
  }
  for (auto& thread : threads) thread.join();
  return comms;
}

class GlooThreads : public ::testing::TestWithParam<int> {};

TEST_P(GlooThreads, AllCollectivesMatchFormulas) {
  std::unique_ptr<TcpStoreServer> server;
  auto comms = ConnectThreads(GetParam(), kTimeout, server);
  for (int r = 0; r < GetParam(); ++r) {
    ASSERT_NE(comms[r], nullptr);
    EXPECT_EQ(comms[r]->rank(), r);
    EXPECT_EQ(comms[r]->size(), GetParam());
    EXPECT_EQ(comms[r]->transport(), "gloo");
  }
  for (const std::string& error : dist_test::RunOnThreads(comms, dist_test::CheckAllCollectives)) {
    EXPECT_EQ(error, "");
  }
  std::atomic<int> arrived{0};
  for (const std::string& error : dist_test::RunOnThreads(comms, [&](Communicator& comm) {
         return dist_test::CheckBarrierWaitsForAll(comm, arrived);
       })) {
    EXPECT_EQ(error, "");
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, GlooThreads, ::testing::Values(1, 2, 3, 4));

// Forks `n` processes that each join through ConnectGloo (rank 0 serving the store on `port`) and
// run `body`; a child's exit code is 0 when body returned "", else 1 after printing the error.
// Returns the exit codes by rank; a child still running after 60 s is killed (code -1).
std::vector<int> RunInProcesses(int n, int port, milliseconds timeout,
                                const std::function<std::string(Communicator&)>& body) {
  std::vector<pid_t> children;
  for (int r = 0; r < n; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      auto comm = ConnectGloo(DistEnv{.rank = r, .world_size = n, .leader_port = port}, timeout);
      std::string error = comm.ok() ? body(**comm) : comm.status().ToString();
      if (!error.empty()) std::fprintf(stderr, "rank %d: %s\n", r, error.c_str());
      std::fflush(stderr);
      _exit(error.empty() ? 0 : 1);
    }
    children.push_back(pid);
  }
  std::vector<int> codes(n, -1);
  const auto deadline = SteadyClock::now() + std::chrono::seconds(60);
  for (int r = 0; r < n; ++r) {
    int status = 0;
    while (waitpid(children[r], &status, WNOHANG) == 0) {
      if (SteadyClock::now() > deadline) {
        kill(children[r], SIGKILL);
        waitpid(children[r], &status, 0);
        break;
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    if (WIFEXITED(status)) codes[r] = WEXITSTATUS(status);
  }
  return codes;
}

class GlooProcesses : public ::testing::TestWithParam<int> {};

TEST_P(GlooProcesses, AllCollectivesMatchFormulas) {
  const int n = GetParam();
  EXPECT_EQ(RunInProcesses(n, FreePort(), kTimeout, dist_test::CheckAllCollectives),
            std::vector<int>(n, 0));
}

INSTANTIATE_TEST_SUITE_P(Ranks, GlooProcesses, ::testing::Values(2, 4));

// The production path end to end: this test process is rank 0 of 3; RankLauncher re-runs this
// binary as ranks 1 and 2 (only the entry test below), which read their place from the
// environment and join through ConnectGloo like `switchyard serve` ranks do.
TEST(GlooLaunchedRanks, LauncherStartsRanksThatJoinTheGroup) {
  auto command_line = CurrentCommandLine();
  ASSERT_TRUE(command_line.ok());
  RankLauncher::Options options;
  options.world_size = 3;
  options.leader_port = FreePort();
  options.argv = {(*command_line)[0], "--gtest_filter=GlooLaunchedRankChild.JoinAndCheck"};
  auto launcher = RankLauncher::Start(options);
  ASSERT_TRUE(launcher.ok()) << launcher.status().ToString();
  auto comm = ConnectGloo(DistEnv{.world_size = 3, .leader_port = options.leader_port}, kTimeout);
  ASSERT_TRUE(comm.ok()) << comm.status().ToString();
  EXPECT_EQ(dist_test::CheckAllCollectives(**comm), "");
  for (const RankExit& exit : (*launcher)->WaitAll(kTimeout)) {
    EXPECT_TRUE(exit.success()) << exit.Describe();
  }
}

// Only does something inside a child started by LauncherStartsRanksThatJoinTheGroup.
TEST(GlooLaunchedRankChild, JoinAndCheck) {
  if (getenv("SWITCHYARD_RANK") == nullptr) {
    GTEST_SKIP() << "runs only as a child of GlooLaunchedRanks.LauncherStartsRanksThatJoinTheGroup";
  }
  auto env = DistEnvFromEnvironment(DistEnv());
  auto comm = env.ok() ? ConnectGloo(*env, kTimeout) : env.status();
  const std::string error =
      comm.ok() ? dist_test::CheckAllCollectives(**comm) : comm.status().ToString();
  if (!error.empty()) std::fprintf(stderr, "%s\n", error.c_str());
  std::fflush(stderr);
  _exit(error.empty() ? 0 : 1);
}

// A peer process dies while rank 0 waits in an all-reduce: rank 0 gets Unavailable (exit 0) well
// before its 5 s timeout, and the communicator stays failed.
TEST(GlooFailure, PeerProcessDyingMidCollectiveIsUnavailable) {
  const auto codes = RunInProcesses(2, FreePort(), milliseconds(5000), [](Communicator& comm) {
    if (comm.rank() == 1) _exit(0);  // gone without a word
    const auto start = SteadyClock::now();
    int64_t value = 1;
    const Status status = comm.AllReduceSum(&value, 1, ReduceType::kI64);
    if (status.code() != StatusCode::kUnavailable) return "got " + status.ToString();
    if (SecondsSince(start) > 4.0) return std::string("took the whole timeout");
    if (comm.Barrier().code() != StatusCode::kUnavailable) return std::string("not broken");
    return std::string();
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

// A peer thread destroys its communicator (closing its sockets) while rank 0 waits.
TEST(GlooFailure, PeerClosingMidCollectiveIsUnavailable) {
  std::unique_ptr<TcpStoreServer> server;
  auto comms = ConnectThreads(2, milliseconds(5000), server);
  ASSERT_NE(comms[1], nullptr);
  std::thread closer([&] {
    std::this_thread::sleep_for(milliseconds(100));
    comms[1].reset();
  });
  const auto start = SteadyClock::now();
  std::vector<float> data(1000, 1.0f);
  const Status status = comms[0]->AllReduceSum(data.data(), data.size(), ReduceType::kF32);
  closer.join();
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_LT(SecondsSince(start), 4.0);
}

// A peer that is alive but never joins the collective: Unavailable after the timeout.
TEST(GlooFailure, StalledPeerTimesOut) {
  std::unique_ptr<TcpStoreServer> server;
  auto comms = ConnectThreads(2, milliseconds(300), server);
  ASSERT_NE(comms[0], nullptr);
  const auto start = SteadyClock::now();
  const Status status = comms[0]->Barrier();
  const double elapsed = SecondsSince(start);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_GE(elapsed, 0.25);
  EXPECT_LT(elapsed, 3.0);
  char byte = 0;
  EXPECT_EQ(comms[0]->Broadcast(&byte, 1, 0).code(), StatusCode::kUnavailable);
}

// Rank 1 of 2 never starts: rank 0's ConnectGloo gives up after its timeout.
TEST(GlooFailure, MissingRankFailsRendezvous) {
  const auto start = SteadyClock::now();
  auto comm = ConnectGloo(DistEnv{.rank = 0, .world_size = 2, .leader_port = FreePort()},
                          milliseconds(300));
  EXPECT_EQ(comm.status().code(), StatusCode::kUnavailable);
  EXPECT_LT(SecondsSince(start), 5.0);
}

// Rank 1 of 2 whose leader never starts: Unavailable naming the leader's address.
TEST(GlooFailure, MissingLeaderFailsRendezvous) {
  const int port = FreePort();
  auto comm =
      ConnectGloo(DistEnv{.rank = 1, .world_size = 2, .leader_port = port}, milliseconds(200));
  EXPECT_EQ(comm.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(comm.status().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << comm.status().message();
}

// SWITCHYARD_HOST_ADDR overrides the address Gloo listens on: an address this host does not
// have makes the rendezvous fail, naming it.
TEST(GlooFailure, HostAddressFromTheEnvironmentIsUsed) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok());
  auto client = TcpStoreClient::Connect("127.0.0.1", (*server)->port(), kTimeout);
  ASSERT_TRUE(client.ok());
  setenv("SWITCHYARD_HOST_ADDR", "192.0.2.1", 1);  // TEST-NET-1: never a local address
  auto comm = ConnectGlooWithStore(0, 1, GroupStore{nullptr, std::move(client).value()}, kTimeout);
  unsetenv("SWITCHYARD_HOST_ADDR");
  EXPECT_EQ(comm.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(comm.status().message().find("192.0.2.1"), std::string::npos)
      << comm.status().message();
}

TEST(GlooCommunicator, RejectsMalformedArguments) {
  std::unique_ptr<TcpStoreServer> server;
  auto comms = ConnectThreads(1, kTimeout, server);
  ASSERT_NE(comms[0], nullptr);
  const std::vector<size_t> two = {0, 0}, one_a = {1}, one_b = {2};
  char buffer[2] = {};
  EXPECT_EQ(comms[0]->AllToAllV(buffer, two, buffer, two).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(comms[0]->AllToAllV(buffer, one_a, buffer, one_b).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(comms[0]->Broadcast(buffer, 1, 1).code(), StatusCode::kInvalidArgument);
  // Argument errors are caught before Gloo runs, so the communicator is still healthy.
  EXPECT_EQ(dist_test::CheckAllGather(*comms[0], 2), "");
  EXPECT_EQ(ConnectGlooWithStore(2, 2, GroupStore{}, kTimeout).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sy
