// Checks shared by the communicator tests (in-process, Gloo, NCCL-free): each runs one collective
// on one rank with inputs given by a formula of (rank, peer, index) and compares what arrived
// with the same formula evaluated independently on the receiving side. A check returns "" when
// everything matched and otherwise a description of the first mismatch, so it can run on a
// thread or in a forked child that reports through its exit code.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/dist/communicator.h"

namespace sy::dist_test {

inline std::string Describe(const Communicator& comm, const std::string& what) {
  return "rank " + std::to_string(comm.rank()) + "/" + std::to_string(comm.size()) + " (" +
         std::string(comm.transport()) + "): " + what;
}

// Bytes rank `from` sends rank `to` in the AllToAllV check: 0..3 times `scale`, zero for some
// pairs (e.g. 1 -> 0), never zero for a rank sending to itself in a group of one.
inline size_t SegmentBytes(int from, int to, size_t scale) {
  return static_cast<size_t>((from * 3 + to * 5 + 1) % 4) * scale;
}
inline uint8_t SegmentByte(int from, int to, size_t i) {
  return static_cast<uint8_t>(from * 37 + to * 11 + i * 7 + i / 251);
}

inline std::string CheckAllToAllV(Communicator& comm, size_t scale) {
  const int n = comm.size(), me = comm.rank();
  std::vector<size_t> send_bytes(n), recv_bytes(n);
  std::vector<uint8_t> send;
  for (int to = 0; to < n; ++to) {
    send_bytes[to] = SegmentBytes(me, to, scale);
    for (size_t i = 0; i < send_bytes[to]; ++i) send.push_back(SegmentByte(me, to, i));
  }
  size_t total = 0;
  for (int from = 0; from < n; ++from) total += recv_bytes[from] = SegmentBytes(from, me, scale);
  std::vector<uint8_t> recv(total + 1, 0xEE);  // one poisoned byte past the end
  const Status status = comm.AllToAllV(send.data(), send_bytes, recv.data(), recv_bytes);
  if (!status.ok()) return Describe(comm, "AllToAllV: " + status.ToString());
  size_t offset = 0;
  for (int from = 0; from < n; ++from) {
    for (size_t i = 0; i < recv_bytes[from]; ++i, ++offset) {
      if (recv[offset] != SegmentByte(from, me, i)) {
        return Describe(comm, "AllToAllV: byte " + std::to_string(i) + " from rank " +
                                  std::to_string(from) + " is " + std::to_string(recv[offset]));
      }
    }
  }
  if (recv[total] != 0xEE) return Describe(comm, "AllToAllV wrote past the receive buffer");
  return "";
}

inline std::string CheckExchangeCounts(Communicator& comm) {
  const int n = comm.size(), me = comm.rank();
  std::vector<size_t> send(n), recv(n, 999);
  for (int to = 0; to < n; ++to) send[to] = static_cast<size_t>(me * 100 + to);
  const Status status = ExchangeCounts(comm, send, recv);
  if (!status.ok()) return Describe(comm, "ExchangeCounts: " + status.ToString());
  for (int from = 0; from < n; ++from) {
    if (recv[from] != static_cast<size_t>(from * 100 + me)) {
      return Describe(comm, "ExchangeCounts: from rank " + std::to_string(from) + " got " +
                                std::to_string(recv[from]));
    }
  }
  return "";
}

// Rank r contributes value(r, i); the sum over ranks has a closed form, sum(n, i).
template <typename T>
std::string CheckAllReduceOf(Communicator& comm, ReduceType type, size_t count,
                             const std::function<T(int, size_t)>& value,
                             const std::function<T(int, size_t)>& sum) {
  std::vector<T> data(count);
  for (size_t i = 0; i < count; ++i) data[i] = value(comm.rank(), i);
  const Status status = comm.AllReduceSum(data.data(), count, type);
  if (!status.ok()) return Describe(comm, "AllReduceSum: " + status.ToString());
  for (size_t i = 0; i < count; ++i) {
    if (data[i] != sum(comm.size(), i)) {
      return Describe(comm, "AllReduceSum: element " + std::to_string(i) + " is " +
                                std::to_string(data[i]) + ", expected " +
                                std::to_string(sum(comm.size(), i)));
    }
  }
  return "";
}

inline std::string CheckAllReduce(Communicator& comm, size_t count) {
  // Values chosen so every partial sum is exact in the type: no rounding, exact comparison.
  std::string error = CheckAllReduceOf<float>(
      comm, ReduceType::kF32, count, [](int r, size_t i) { return r + 0.5f * (i % 64); },
      [](int n, size_t i) { return n * 0.5f * (i % 64) + n * (n - 1) / 2; });
  if (error.empty()) {
    error = CheckAllReduceOf<double>(
        comm, ReduceType::kF64, count, [](int r, size_t i) { return r * 0.25 + i * 1e3; },
        [](int n, size_t i) { return n * (n - 1) / 2 * 0.25 + n * (i * 1e3); });
  }
  if (error.empty()) {
    // Beyond 32 bits, and negative, to catch a narrowing or unsigned reduction.
    error = CheckAllReduceOf<int64_t>(
        comm, ReduceType::kI64, count,
        [](int r, size_t i) { return (int64_t{r} << 40) + static_cast<int64_t>(i) - 7; },
        [](int n, size_t i) {
          return (int64_t{n * (n - 1) / 2} << 40) + n * (static_cast<int64_t>(i) - 7);
        });
  }
  return error;
}

inline uint8_t GatherByte(int rank, size_t i) { return static_cast<uint8_t>(rank * 31 + i + 1); }

inline std::string CheckAllGather(Communicator& comm, size_t bytes) {
  const int n = comm.size();
  std::vector<uint8_t> send(bytes), recv(n * bytes + 1, 0xEE);
  for (size_t i = 0; i < bytes; ++i) send[i] = GatherByte(comm.rank(), i);
  const Status status = comm.AllGather(send.data(), bytes, recv.data());
  if (!status.ok()) return Describe(comm, "AllGather: " + status.ToString());
  for (int r = 0; r < n; ++r) {
    for (size_t i = 0; i < bytes; ++i) {
      if (recv[r * bytes + i] != GatherByte(r, i)) {
        return Describe(comm, "AllGather: byte " + std::to_string(i) + " of rank " +
                                  std::to_string(r) + " is wrong");
      }
    }
  }
  if (recv[n * bytes] != 0xEE) return Describe(comm, "AllGather wrote past the receive buffer");
  return "";
}

// Every rank in turn is the root; non-roots start with poison.
inline std::string CheckBroadcast(Communicator& comm, size_t bytes) {
  for (int root = 0; root < comm.size(); ++root) {
    std::vector<uint8_t> data(bytes, 0xEE);
    if (comm.rank() == root) {
      for (size_t i = 0; i < bytes; ++i) data[i] = GatherByte(root + 7, i);
    }
    const Status status = comm.Broadcast(data.data(), bytes, root);
    if (!status.ok()) return Describe(comm, "Broadcast: " + status.ToString());
    for (size_t i = 0; i < bytes; ++i) {
      if (data[i] != GatherByte(root + 7, i)) {
        return Describe(comm, "Broadcast from root " + std::to_string(root) + ": byte " +
                                  std::to_string(i) + " is wrong");
      }
    }
  }
  return "";
}

// Every collective, small and larger sizes (the larger ones make transports chunk and pipeline).
inline std::string CheckAllCollectives(Communicator& comm) {
  const std::function<std::string()> checks[] = {
      [&] { return CheckAllToAllV(comm, 1); },      [&] { return CheckAllToAllV(comm, 40000); },
      [&] { return CheckExchangeCounts(comm); },    [&] { return CheckAllReduce(comm, 0); },
      [&] { return CheckAllReduce(comm, 3); },      [&] { return CheckAllReduce(comm, 50000); },
      [&] { return CheckAllGather(comm, 0); },      [&] { return CheckAllGather(comm, 5); },
      [&] { return CheckAllGather(comm, 100000); }, [&] { return CheckBroadcast(comm, 0); },
      [&] { return CheckBroadcast(comm, 9); },      [&] { return CheckBroadcast(comm, 100000); },
  };
  for (const auto& check : checks) {
    std::string error = check();
    if (!error.empty()) return error;
    const Status barrier = comm.Barrier();
    if (!barrier.ok()) return Describe(comm, "Barrier: " + barrier.ToString());
  }
  return "";
}

// Runs `body` on one thread per communicator; returns what each thread returned, by rank.
inline std::vector<std::string> RunOnThreads(
    std::vector<std::unique_ptr<Communicator>>& comms,
    const std::function<std::string(Communicator&)>& body) {
  std::vector<std::string> results(comms.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < comms.size(); ++r) {
    threads.emplace_back([&, r] { results[r] = body(*comms[r]); });
  }
  for (auto& thread : threads) thread.join();
  return results;
}

// Barrier check for ranks that share memory: nobody leaves before everybody arrived.
inline std::string CheckBarrierWaitsForAll(Communicator& comm, std::atomic<int>& arrived) {
  for (int round = 1; round <= 3; ++round) {
    arrived.fetch_add(1);
    const Status status = comm.Barrier();
    if (!status.ok()) return Describe(comm, "Barrier: " + status.ToString());
    if (arrived.load() < round * comm.size()) {
      return Describe(comm, "left barrier round " + std::to_string(round) + " after only " +
                                std::to_string(arrived.load()) + " arrivals");
    }
    // A second barrier so nobody starts the next round's increment before all have checked.
    const Status again = comm.Barrier();
    if (!again.ok()) return Describe(comm, "Barrier: " + again.ToString());
  }
  return "";
}

}  // namespace sy::dist_test
