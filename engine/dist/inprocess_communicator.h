// InProcessGroup: a group of N communicators whose ranks are threads of one process, for tests
// and for single-process runs. Each collective is a rendezvous of all N threads; data is copied
// straight from the senders' buffers, so there is no serialisation and no transport.
// The communicators share one hub (kept alive by whichever communicator outlives the others);
// each communicator is used by its own thread, like any Communicator.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "engine/dist/communicator.h"

namespace sy {

class InProcessGroup {
 public:
  // A rank that waits longer than `timeout` for the others breaks the group: that collective
  // and every later one on any rank return Unavailable (instead of hanging a test forever).
  static constexpr std::chrono::milliseconds kDefaultTimeout = std::chrono::seconds(60);

  // Communicators for ranks 0..n-1 (element r is rank r). n must be >= 1.
  static std::vector<std::unique_ptr<Communicator>> Create(
      int n, std::chrono::milliseconds timeout = kDefaultTimeout);
};

}  // namespace sy
