#include "engine/runner/generator.h"

#include <algorithm>

namespace sy {

struct Generator::Sequence {
  size_t index = 0;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t fed = 0;              // tokens whose K/V are in the cache
  bool done = false;
  BlockTable blocks;
  // Generation state (unused by PromptLogits).
  const GenerationRequest* request = nullptr;
  std::unique_ptr<Sampler> sampler;
  GenerationResult result;
};

Generator::Generator(ModelRunner* runner)
    : runner_(runner), allocator_(static_cast<int32_t>(runner->options().num_kv_blocks)) {}

Status Generator::Run(
    std::vector<Sequence>& seqs, bool all_logits,
    const std::function<void(Sequence&, std::span<float>, int64_t first_pos)>& consume) {
  const RunnerOptions& o = runner_->options();
  const int64_t vocab = runner_->model().config().vocab_size;
  last_steps_ = 0;
  StepBatch b;
  std::vector<float> logits;
  struct Part {
    Sequence* seq;
    int64_t n;
    int64_t first_logit;
  };
  std::vector<Part> parts;
  for (;;) {
    b = StepBatch{};
    parts.clear();
    int64_t budget = o.max_batch_tokens;
    for (Sequence& s : seqs) {
      const int64_t pending = static_cast<int64_t>(s.tokens.size()) - s.fed;
      if (s.done || pending <= 0) continue;
      if (budget == 0 || static_cast<int64_t>(parts.size()) == o.max_seqs) break;
      const int64_t n = std::min(pending, budget);
      if (!s.blocks.EnsureCapacity(s.fed + n, o.block_size, &allocator_)) {
        return Status::ResourceExhausted("the KV cache has too few free blocks for this batch");
      }
      const int32_t row = static_cast<int32_t>(parts.size());
      const int64_t first_logit = static_cast<int64_t>(b.logits_indices.size());
      for (int64_t j = 0; j < n; ++j) {
        const int64_t pos = s.fed + j;
        const bool last = pos + 1 == static_cast<int64_t>(s.tokens.size());
        if (all_logits || last) b.logits_indices.push_back(static_cast<int32_t>(b.tokens.size()));
        b.tokens.push_back(s.tokens[pos]);
        b.positions.push_back(static_cast<int32_t>(pos));
        b.slots.push_back(s.blocks.Slot(pos, o.block_size));
        b.token_seq.push_back(row);
      }
      parts.push_back({&s, n, first_logit});
      budget -= n;
    }
    if (parts.empty()) return Status::Ok();
    size_t max_blocks = 1;
    for (const Part& p : parts) max_blocks = std::max(max_blocks, p.seq->blocks.blocks().size());
    b.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
    b.block_tables.assign(parts.size() * max_blocks, 0);
    for (size_t r = 0; r < parts.size(); ++r) {
      const std::vector<int32_t>& blocks = parts[r].seq->blocks.blocks();
      std::copy(blocks.begin(), blocks.end(), b.block_tables.begin() + r * max_blocks);
    }
    SY_RETURN_IF_ERROR(runner_->Step(b, &logits));
    ++last_steps_;
    for (const Part& p : parts) {
      const int64_t first_pos = p.seq->fed;
      p.seq->fed += p.n;
      const bool has_logits =
          all_logits || p.seq->fed == static_cast<int64_t>(p.seq->tokens.size());
      if (!has_logits) continue;
      const int64_t rows = all_logits ? p.n : 1;
      consume(*p.seq, std::span<float>(logits.data() + p.first_logit * vocab, rows * vocab),
              first_pos);
      if (p.seq->done) p.seq->blocks.ReleaseAll(&allocator_);
    }
  }
}

StatusOr<std::vector<GenerationResult>> Generator::Generate(
    std::span<const GenerationRequest> requests,
    const std::function<void(size_t, const SampledToken&)>& on_token) {
  const int64_t max_len = runner_->model().config().max_position_embeddings;
  std::vector<Sequence> seqs(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerationRequest& r = requests[i];
    if (r.prompt.empty()) return Status::InvalidArgument("prompt is empty");
    if (r.max_new_tokens <= 0) return Status::InvalidArgument("max_new_tokens must be positive");
    if (static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens > max_len) {
      return Status::OutOfRange("prompt (" + std::to_string(r.prompt.size()) + " tokens) plus " +
                                std::to_string(r.max_new_tokens) +
                                " new tokens exceeds the context length " +
                                std::to_string(max_len));
    }
    SY_RETURN_IF_ERROR(r.sampling.Validate());
    seqs[i].index = i;
    seqs[i].tokens = r.prompt;
    seqs[i].request = &r;
    seqs[i].sampler = std::make_unique<Sampler>(r.sampling, r.prompt);
  }
  Status st = Run(seqs, /*all_logits=*/false, [&](Sequence& s, std::span<float> logits, int64_t) {
    SampledToken t = s.sampler->Sample(logits);
    s.tokens.push_back(t.token);
    s.result.tokens.push_back(t.token);
    if (on_token) on_token(s.index, t);
    s.result.samples.push_back(std::move(t));
    const std::vector<int32_t>& stops = s.request->stop_token_ids;
    if (std::find(stops.begin(), stops.end(), s.tokens.back()) != stops.end()) {
      s.result.finish_reason = "stop";
      s.done = true;
    } else if (static_cast<int32_t>(s.result.tokens.size()) == s.request->max_new_tokens) {
      s.result.finish_reason = "length";
      s.done = true;
    }
  });
  for (Sequence& s : seqs) s.blocks.ReleaseAll(&allocator_);
  SY_RETURN_IF_ERROR(st);
  std::vector<GenerationResult> out;
  out.reserve(seqs.size());
  for (Sequence& s : seqs) out.push_back(std::move(s.result));
  return out;
}

StatusOr<std::vector<std::vector<float>>> Generator::PromptLogits(
    std::span<const std::vector<int32_t>> prompts) {
  const int64_t vocab = runner_->model().config().vocab_size;
  std::vector<Sequence> seqs(prompts.size());
  std::vector<std::vector<float>> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) return Status::InvalidArgument("prompt is empty");
    seqs[i].index = i;
    seqs[i].tokens = prompts[i];
    out[i].resize(prompts[i].size() * vocab);
  }
  Status st =
      Run(seqs, /*all_logits=*/true, [&](Sequence& s, std::span<float> logits, int64_t first_pos) {
        std::copy(logits.begin(), logits.end(), out[s.index].begin() + first_pos * vocab);
        s.done = s.fed == static_cast<int64_t>(s.tokens.size());
      });
  for (Sequence& s : seqs) s.blocks.ReleaseAll(&allocator_);
  SY_RETURN_IF_ERROR(st);
  return out;
}

}  // namespace sy
