// RequestStreamQueue: the RequestStream the engine hands out. The engine thread pushes updates
// (tokens); a frontend thread pops them, with queued updates merged into one and run through the
// request's OutputProcessor there, off the engine thread. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

#include "engine/sched/engine.h"
#include "engine/sched/output_processor.h"

namespace sy {

class RequestStreamQueue final : public RequestStream {
 public:
  // Without a processor, updates pass through as pushed.
  explicit RequestStreamQueue(uint64_t id, std::unique_ptr<OutputProcessor> processor = nullptr)
      : id_(id), processor_(std::move(processor)) {}

  uint64_t id() const override { return id_; }
  bool Next(RequestUpdate* update, std::chrono::milliseconds timeout) override;
  void SetReadyCallback(std::function<void()> ready) override;

  // Called by the engine; nothing may be pushed after an update with `finished` set.
  void Push(RequestUpdate update);

 private:
  const uint64_t id_;
  // Held through Next, so that pops (and the processor) are serialized without keeping the
  // engine's Push waiting on the processor's work.
  std::mutex consume_mu_;
  std::unique_ptr<OutputProcessor> processor_;  // under consume_mu_
  bool delivered_last_ = false;                 // the finished update was popped; consume_mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestUpdate> queue_;
  std::function<void()> ready_;
};

// Appends `next` to `into`: per choice, tokens and text concatenate and the finish fields of the
// later update win; counters and status are those of `next`.
void MergeUpdate(RequestUpdate&& next, RequestUpdate* into);

}  // namespace sy
