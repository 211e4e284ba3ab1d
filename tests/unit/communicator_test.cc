// The in-process communicator (ranks as threads): every collective with 1-4 ranks against
// hand-computed results and formulas, plus the group's error behaviour.
#include "engine/dist/communicator.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "engine/dist/inprocess_communicator.h"
#include "tests/unit/dist_collective_checks.h"

namespace sy {
namespace {

using dist_test::RunOnThreads;

class InProcessAllCollectives : public ::testing::TestWithParam<int> {};

TEST_P(InProcessAllCollectives, MatchFormulas) {
  auto comms = InProcessGroup::Create(GetParam());
  ASSERT_EQ(comms.size(), static_cast<size_t>(GetParam()));
  for (int r = 0; r < GetParam(); ++r) {
    EXPECT_EQ(comms[r]->rank(), r);
    EXPECT_EQ(comms[r]->size(), GetParam());
    EXPECT_EQ(comms[r]->transport(), "inprocess");
  }
  for (const std::string& error : RunOnThreads(comms, dist_test::CheckAllCollectives)) {
    EXPECT_EQ(error, "");
  }
}

TEST_P(InProcessAllCollectives, BarrierWaitsForAllRanks) {
  auto comms = InProcessGroup::Create(GetParam());
  std::atomic<int> arrived{0};
  for (const std::string& error : RunOnThreads(comms, [&](Communicator& comm) {
         return dist_test::CheckBarrierWaitsForAll(comm, arrived);
       })) {
    EXPECT_EQ(error, "");
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, InProcessAllCollectives, ::testing::Values(1, 2, 3, 4));

// Three ranks exchanging letters; the expected buffers are written out by hand.
TEST(InProcessCommunicator, AllToAllVHandComputed) {
  // send[r] holds r's segments for ranks 0, 1, 2 one after another.
  const std::vector<std::string> send = {
      "a"
      "bb"
      "",
      ""
      ""
      "ccc",
      "dd"
      "e"
      "f"};
  const std::vector<std::vector<size_t>> send_bytes = {{1, 2, 0}, {0, 0, 3}, {2, 1, 1}};
  // recv_bytes[q][r] = send_bytes[r][q].
  const std::vector<std::vector<size_t>> recv_bytes = {{1, 0, 2}, {2, 0, 1}, {0, 3, 1}};
  const std::vector<std::string> expected = {
      "a"
      "dd",
      "bb"
      "e",
      "ccc"
      "f"};
  auto comms = InProcessGroup::Create(3);
  const auto errors = RunOnThreads(comms, [&](Communicator& comm) -> std::string {
    const int r = comm.rank();
    std::string recv(expected[r].size(), '?');
    Status status = comm.AllToAllV(send[r].data(), send_bytes[r], recv.data(), recv_bytes[r]);
    if (!status.ok()) return status.ToString();
    return recv == expected[r] ? "" : "rank " + std::to_string(r) + " got " + recv;
  });
  for (const std::string& error : errors) EXPECT_EQ(error, "");
}

TEST(InProcessCommunicator, ExchangeCountsHandComputed) {
  const std::vector<std::vector<size_t>> send = {{5, 0}, {7, 11}};
  const std::vector<std::vector<size_t>> expected = {{5, 7}, {0, 11}};
  auto comms = InProcessGroup::Create(2);
  const auto errors = RunOnThreads(comms, [&](Communicator& comm) -> std::string {
    std::vector<size_t> recv(2, 99);
    Status status = ExchangeCounts(comm, send[comm.rank()], recv);
    if (!status.ok()) return status.ToString();
    return recv == expected[comm.rank()] ? ""
                                         : "wrong counts on rank " + std::to_string(comm.rank());
  });
  for (const std::string& error : errors) EXPECT_EQ(error, "");
}

TEST(InProcessCommunicator, ExchangeCountsRejectsWrongLength) {
  auto comms = InProcessGroup::Create(1);
  std::vector<size_t> send = {1, 2}, recv(2);
  EXPECT_EQ(ExchangeCounts(*comms[0], send, recv).code(), StatusCode::kInvalidArgument);
}

// Rank 0 expects 4 bytes from rank 1, which sends 3: every rank gets the same error, and the
// group stays usable for the next collective.
TEST(InProcessCommunicator, MismatchedSizesFailOnEveryRankAndGroupRecovers) {
  auto comms = InProcessGroup::Create(2);
  const auto errors = RunOnThreads(comms, [&](Communicator& comm) -> std::string {
    const std::vector<size_t> send_bytes = {comm.rank() == 1 ? size_t{3} : 0, 0};
    const std::vector<size_t> recv_bytes = {0, comm.rank() == 0 ? size_t{4} : 0};
    char send[4] = {}, recv[4] = {};
    Status status = comm.AllToAllV(send, send_bytes, recv, recv_bytes);
    if (status.code() != StatusCode::kInvalidArgument) return "got " + status.ToString();
    return dist_test::CheckAllGather(comm, 3);
  });
  for (const std::string& error : errors) EXPECT_EQ(error, "");
}

TEST(InProcessCommunicator, BroadcastRejectsRootOutsideGroup) {
  auto comms = InProcessGroup::Create(2);
  const auto errors = RunOnThreads(comms, [&](Communicator& comm) -> std::string {
    char data[1] = {};
    Status status = comm.Broadcast(data, 1, 2);
    return status.code() == StatusCode::kInvalidArgument ? "" : "got " + status.ToString();
  });
  for (const std::string& error : errors) EXPECT_EQ(error, "");
}

// Rank 1 never joins: rank 0 gets Unavailable after the timeout instead of hanging, and the
// group stays broken afterwards.
TEST(InProcessCommunicator, MissingRankTimesOutAndBreaksGroup) {
  auto comms = InProcessGroup::Create(2, std::chrono::milliseconds(50));
  EXPECT_EQ(comms[0]->Barrier().code(), StatusCode::kUnavailable);
  EXPECT_EQ(comms[1]->Barrier().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace sy
