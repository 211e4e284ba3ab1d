#include "engine/dist/communicator.h"

#include <string>
#include <vector>

namespace sy {

Status ExchangeCounts(Communicator& comm, std::span<const size_t> send_counts,
                      std::span<size_t> recv_counts) {
  const size_t world = static_cast<size_t>(comm.size());
  if (send_counts.size() != world || recv_counts.size() != world) {
    return Status::InvalidArgument("ExchangeCounts: send_counts has " +
                                   std::to_string(send_counts.size()) + " entries, recv_counts " +
                                   std::to_string(recv_counts.size()) + ", world size is " +
                                   std::to_string(world));
  }
  // One size_t travels each way between every pair of ranks.
  const std::vector<size_t> segment_bytes(world, sizeof(size_t));
  return comm.AllToAllV(send_counts.data(), segment_bytes, recv_counts.data(), segment_bytes);
}

}  // namespace sy
