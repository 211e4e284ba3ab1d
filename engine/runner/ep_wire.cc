#include "engine/runner/ep_wire.h"

#include <cstring>
#include <string>

namespace sy {
namespace {

class Writer {
 public:
  template <typename T>
  void Put(T v) {
    const size_t at = out_.size();
    out_.resize(at + sizeof(T));
    std::memcpy(out_.data() + at, &v, sizeof(T));
  }
  template <typename T>
  void PutVector(const std::vector<T>& v) {
    Put<uint64_t>(v.size());
    const size_t at = out_.size();
    out_.resize(at + v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(out_.data() + at, v.data(), v.size() * sizeof(T));
  }
  std::vector<uint8_t> Take() { return std::move(out_); }

 private:
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  template <typename T>
  bool Get(T* v) {
    if (in_.size() - at_ < sizeof(T)) return false;
    std::memcpy(v, in_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return true;
  }
  template <typename T>
  bool GetVector(std::vector<T>* v) {
    uint64_t n = 0;
    if (!Get(&n) || n > (in_.size() - at_) / sizeof(T)) return false;
    v->resize(n);
    if (n > 0) std::memcpy(v->data(), in_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
    return true;
  }
  bool done() const { return at_ == in_.size(); }

 private:
  std::span<const uint8_t> in_;
  size_t at_ = 0;
};

Status Malformed(const char* what) {
  return Status::DataLoss(std::string("malformed expert-parallel ") + what + " message");
}

}  // namespace

std::vector<uint8_t> EncodeStepCommand(const StepBatch& b, const MigrationAction& m) {
  Writer w;
  w.Put(EpCommand::kStep);
  w.PutVector(b.tokens);
  w.PutVector(b.positions);
  w.PutVector(b.slots);
  w.PutVector(b.token_seq);
  w.PutVector(b.block_tables);
  w.Put(b.max_blocks_per_seq);
  w.PutVector(b.logits_indices);
  w.PutVector(std::vector<char>(m.stage_placement_json.begin(), m.stage_placement_json.end()));
  w.Put(m.migrate_layer);
  w.Put<uint8_t>(m.commit ? 1 : 0);
  return w.Take();
}

std::vector<uint8_t> EncodeStopCommand() {
  Writer w;
  w.Put(EpCommand::kStop);
  return w.Take();
}

std::vector<uint8_t> EncodeHeartbeatCommand() {
  Writer w;
  w.Put(EpCommand::kHeartbeat);
  return w.Take();
}

StatusOr<EpCommand> DecodeCommand(std::span<const uint8_t> message, StepBatch* b,
                                  MigrationAction* m) {
  Reader r(message);
  EpCommand command{};
  if (!r.Get(&command)) return Malformed("command");
  if (command == EpCommand::kStop || command == EpCommand::kHeartbeat) {
    if (!r.done()) return Malformed("command");
    return command;
  }
  if (command != EpCommand::kStep) return Malformed("command");
  if (!r.GetVector(&b->tokens) || !r.GetVector(&b->positions) || !r.GetVector(&b->slots) ||
      !r.GetVector(&b->token_seq) || !r.GetVector(&b->block_tables) ||
      !r.Get(&b->max_blocks_per_seq) || !r.GetVector(&b->logits_indices)) {
    return Malformed("step");
  }
  std::vector<char> json;
  uint8_t commit = 0;
  if (!r.GetVector(&json) || !r.Get(&m->migrate_layer) || !r.Get(&commit) || commit > 1 ||
      !r.done()) {
    return Malformed("step");
  }
  m->stage_placement_json.assign(json.begin(), json.end());
  m->commit = commit == 1;
  return command;
}

std::vector<uint8_t> EncodeReply(const Status& status, const std::vector<float>& logits,
                                 const StepRouting& routing) {
  Writer w;
  w.Put(static_cast<int32_t>(status.code()));
  const std::string& message = status.message();
  w.PutVector(std::vector<char>(message.begin(), message.end()));
  w.PutVector(logits);
  w.Put(routing.tokens);
  w.Put<uint64_t>(routing.choices.size());
  for (size_t l = 0; l < routing.choices.size(); ++l) {
    w.PutVector(routing.choices[l]);
    w.PutVector(routing.ranks[l]);
  }
  return w.Take();
}

StatusOr<EpReply> DecodeReply(std::span<const uint8_t> message) {
  Reader r(message);
  EpReply reply;
  int32_t code = 0;
  std::vector<char> text;
  uint64_t layers = 0;
  if (!r.Get(&code) || !r.GetVector(&text) || !r.GetVector(&reply.logits) ||
      !r.Get(&reply.routing.tokens) || !r.Get(&layers) || layers > message.size()) {
    return Malformed("reply");
  }
  reply.routing.choices.resize(layers);
  reply.routing.ranks.resize(layers);
  for (uint64_t l = 0; l < layers; ++l) {
    if (!r.GetVector(&reply.routing.choices[l]) || !r.GetVector(&reply.routing.ranks[l])) {
      return Malformed("reply");
    }
  }
  if (!r.done()) return Malformed("reply");
  reply.status = Status(static_cast<StatusCode>(code), std::string(text.begin(), text.end()));
  return reply;
}

StatusOr<std::vector<uint8_t>> ScatterFromLeader(
    Communicator& comm, const std::vector<std::vector<uint8_t>>& messages) {
  const int n = comm.size();
  std::vector<size_t> send(n, 0), recv(n, 0);
  std::vector<uint8_t> out;
  if (comm.rank() == 0) {
    for (int r = 1; r < n; ++r) {
      send[r] = messages[r].size();
      out.insert(out.end(), messages[r].begin(), messages[r].end());
    }
  }
  SY_RETURN_IF_ERROR(ExchangeCounts(comm, send, recv));
  std::vector<uint8_t> in(recv[0]);
  SY_RETURN_IF_ERROR(comm.AllToAllV(out.data(), send, in.data(), recv));
  return in;
}

StatusOr<std::vector<std::vector<uint8_t>>> GatherToLeader(Communicator& comm,
                                                           const std::vector<uint8_t>& message) {
  const int n = comm.size();
  std::vector<size_t> send(n, 0), recv(n, 0);
  if (comm.rank() != 0) send[0] = message.size();
  SY_RETURN_IF_ERROR(ExchangeCounts(comm, send, recv));
  size_t total = 0;
  for (size_t c : recv) total += c;
  std::vector<uint8_t> in(total);
  SY_RETURN_IF_ERROR(comm.AllToAllV(message.data(), send, in.data(), recv));
  std::vector<std::vector<uint8_t>> out;
  if (comm.rank() != 0) return out;
  out.resize(n);
  size_t at = 0;
  for (int r = 0; r < n; ++r) {
    out[r].assign(in.begin() + at, in.begin() + at + recv[r]);
    at += recv[r];
  }
  return out;
}

}  // namespace sy
