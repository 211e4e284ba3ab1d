// RequestStreamQueue: the RequestStream the engine hands out. The engine thread pushes updates;
// one frontend thread pops them, with queued updates merged into one. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

#include "engine/sched/engine.h"

namespace sy {

class RequestStreamQueue final : public RequestStream {
 public:
  explicit RequestStreamQueue(uint64_t id) : id_(id) {}

  uint64_t id() const override { return id_; }
  bool Next(RequestUpdate* update, std::chrono::milliseconds timeout) override;
  void SetReadyCallback(std::function<void()> ready) override;

  // Called by the engine; nothing may be pushed after an update with `finished` set.
  void Push(RequestUpdate update);

 private:
  const uint64_t id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestUpdate> queue_;
  bool delivered_last_ = false;  // the finished update was popped
  std::function<void()> ready_;
};

// Appends `next` to `into`: per choice, tokens and text concatenate and the finish fields of the
// later update win; counters and status are those of `next`.
void MergeUpdate(RequestUpdate&& next, RequestUpdate* into);

}  // namespace sy
