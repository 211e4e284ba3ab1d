// The messages the leader of an expert-parallel group exchanges with its workers each step:
// a command (run this batch, stop) going out, and a reply (status, logits, routing) coming
// back. Plain little-endian byte strings; both ends are the same binary. Thread-compatible.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/dist/communicator.h"
#include "engine/runner/model_runner.h"
#include "engine/runner/step_executor.h"

namespace sy {

// kHeartbeat keeps idle workers' collectives inside their timeout; it has no reply.
enum class EpCommand : uint32_t { kStep = 1, kStop = 2, kHeartbeat = 3 };

struct EpReply {
  Status status;
  std::vector<float> logits;
  StepRouting routing;
};

std::vector<uint8_t> EncodeStepCommand(const StepBatch& batch, const MigrationAction& migration);
std::vector<uint8_t> EncodeStopCommand();
std::vector<uint8_t> EncodeHeartbeatCommand();
// DataLoss for a truncated or malformed message.
StatusOr<EpCommand> DecodeCommand(std::span<const uint8_t> message, StepBatch* batch,
                                  MigrationAction* migration);

std::vector<uint8_t> EncodeReply(const Status& status, const std::vector<float>& logits,
                                 const StepRouting& routing);
StatusOr<EpReply> DecodeReply(std::span<const uint8_t> message);

// Rank 0 sends messages[r] to every rank r > 0 (it ignores messages[0]); every rank returns
// what it received (empty on rank 0). Ranks other than 0 pass an empty `messages`.
StatusOr<std::vector<uint8_t>> ScatterFromLeader(Communicator& comm,
                                                 const std::vector<std::vector<uint8_t>>& messages);
// Every rank r > 0 sends `message` to rank 0, which returns them all (index r; [0] empty).
// Other ranks return an empty list.
StatusOr<std::vector<std::vector<uint8_t>>> GatherToLeader(Communicator& comm,
                                                           const std::vector<uint8_t>& message);

}  // namespace sy
