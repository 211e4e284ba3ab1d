#include "engine/sched/request_stream.h"

#include <algorithm>

namespace sy {

void MergeUpdate(RequestUpdate&& next, RequestUpdate* into) {
  for (CompletionDelta& d : next.deltas) {
    auto it = std::find_if(into->deltas.begin(), into->deltas.end(),
                           [&](const CompletionDelta& e) { return e.index == d.index; });
    if (it == into->deltas.end()) {
      into->deltas.push_back(std::move(d));
      continue;
    }
    it->token_ids.insert(it->token_ids.end(), d.token_ids.begin(), d.token_ids.end());
    std::move(d.samples.begin(), d.samples.end(), std::back_inserter(it->samples));
    it->text += d.text;
    if (d.finish_reason) it->finish_reason = d.finish_reason;
    if (d.stop_string) it->stop_string = std::move(d.stop_string);
    if (d.stop_token) it->stop_token = d.stop_token;
  }
  into->finished = next.finished;
  into->status = std::move(next.status);
  into->prompt_tokens = next.prompt_tokens;
  into->completion_tokens = next.completion_tokens;
  into->cached_prompt_tokens = next.cached_prompt_tokens;
}

bool RequestStreamQueue::Next(RequestUpdate* update, std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> consume(consume_mu_);
  if (delivered_last_) return false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_until(lock, deadline, [&] { return !queue_.empty(); })) return false;
      *update = std::move(queue_.front());
      queue_.pop_front();
      while (!queue_.empty()) {
        MergeUpdate(std::move(queue_.front()), update);
        queue_.pop_front();
      }
    }
    if (processor_ != nullptr) processor_->Process(update);
    // What the processor dropped entirely (output after a stop string) is not an update.
    if (processor_ == nullptr || update->finished || !update->deltas.empty()) break;
  }
  delivered_last_ = update->finished;
  return true;
}

void RequestStreamQueue::SetReadyCallback(std::function<void()> ready) {
  bool waiting = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_ = std::move(ready);
    waiting = !queue_.empty();
    ready = ready_;
  }
  if (waiting && ready) ready();
}

void RequestStreamQueue::Push(RequestUpdate update) {
  std::function<void()> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(update));
    ready = ready_;
  }
  cv_.notify_all();
  if (ready) ready();
}

}  // namespace sy
