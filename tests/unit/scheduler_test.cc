// Scheduler with no model: token budget and sequence limit, chunked prefill, decode first, FCFS
// admission, preemption of the latest admitted and its resume, aborts, and n > 1 admission
// through the prefix cache. "Sampling" appends a made-up token to each sequence whose known
// tokens are all computed, as the engine does.
#include "engine/sched/scheduler.h"

#include <gtest/gtest.h>

#include <memory>
#include <numeric>

namespace sy {
namespace {

constexpr int kBlock = 4;

std::vector<int32_t> Prompt(int32_t len, int32_t first = 1) {
  std::vector<int32_t> v(len);
  std::iota(v.begin(), v.end(), first);
  return v;
}

class Harness {
 public:
  Harness(int32_t num_blocks, int64_t budget, int64_t max_seqs, bool prefix_caching = false)
      : blocks(num_blocks, kBlock, prefix_caching), sched({budget, max_seqs}, &blocks) {}

  Sequence* Add(int32_t prompt_len, int32_t first_token = 1) {
    seqs.push_back(std::make_unique<Sequence>(seqs.size(), 0, Prompt(prompt_len, first_token)));
    sched.Add(seqs.back().get());
    return seqs.back().get();
  }

  // One step: schedule, "run", append a token to every sequence that reached its end.
  SchedulerOutput Step() {
    SchedulerOutput out = sched.Schedule();
    sched.OnStepDone(out);
    for (const ScheduledSequence& s : out.scheduled) {
      if (s.seq->num_computed_tokens == s.seq->num_tokens()) s.seq->tokens.push_back(9000);
    }
    return out;
  }

  BlockManager blocks;
  Scheduler sched;
  std::vector<std::unique_ptr<Sequence>> seqs;
};

// (sequence, tokens) pairs of a step, for compact expectations.
std::vector<std::pair<Sequence*, int64_t>> Work(const SchedulerOutput& out) {
  std::vector<std::pair<Sequence*, int64_t>> w;
  for (const ScheduledSequence& s : out.scheduled) w.emplace_back(s.seq, s.num_tokens);
  return w;
}

using W = std::vector<std::pair<Sequence*, int64_t>>;

TEST(Scheduler, ChunksPrefillsUnderTheTokenBudget) {
  Harness h(64, /*budget=*/8, /*max_seqs=*/8);
  Sequence* a = h.Add(10);
  Sequence* b = h.Add(5);
  SchedulerOutput s1 = h.Step();
  EXPECT_EQ(Work(s1), (W{{a, 8}}));  // a's first chunk takes the whole budget
  EXPECT_EQ(s1.num_prefill_tokens, 8);
  EXPECT_EQ(a->num_computed_tokens, 8);
  EXPECT_EQ(a->num_tokens(), 10);  // no token sampled mid-prefill
  SchedulerOutput s2 = h.Step();
  EXPECT_EQ(Work(s2), (W{{a, 2}, {b, 5}}));
  EXPECT_EQ(s2.num_prefill_tokens, 7);
  SchedulerOutput s3 = h.Step();
  EXPECT_EQ(Work(s3), (W{{a, 1}, {b, 1}}));
  EXPECT_EQ(s3.num_decode_tokens, 2);
  EXPECT_EQ(s3.num_prefill_tokens, 0);
}

TEST(Scheduler, DecodesComeBeforeNewPrefills) {
  Harness h(64, /*budget=*/4, /*max_seqs=*/8);
  Sequence* a = h.Add(3);
  h.Step();  // a's prefill
  Sequence* b = h.Add(10);
  EXPECT_EQ(Work(h.Step()), (W{{a, 1}, {b, 3}}));
  EXPECT_EQ(Work(h.Step()), (W{{a, 1}, {b, 3}}));
}

TEST(Scheduler, RespectsTheSequenceLimit) {
  Harness h(64, /*budget=*/100, /*max_seqs=*/2);
  Sequence* a = h.Add(3);
  Sequence* b = h.Add(3);
  Sequence* c = h.Add(3);
  EXPECT_EQ(Work(h.Step()), (W{{a, 3}, {b, 3}}));
  EXPECT_EQ(h.sched.waiting().size(), 1u);
  EXPECT_EQ(Work(h.Step()), (W{{a, 1}, {b, 1}}));
  h.sched.Remove(a);  // a finished
  EXPECT_EQ(Work(h.Step()), (W{{b, 1}, {c, 3}}));
}

TEST(Scheduler, AdmitsFirstComeFirstServed) {
  // 4 blocks: a (8 tokens) takes 2; b needs 3 and must wait; c (1 block) must not overtake it.
  Harness h(4, /*budget=*/100, /*max_seqs=*/8);
  Sequence* a = h.Add(7);
  EXPECT_EQ(Work(h.Step()), (W{{a, 7}}));
  Sequence* b = h.Add(12);
  Sequence* c = h.Add(2);
  EXPECT_EQ(Work(h.Step()), (W{{a, 1}}));
  EXPECT_EQ(h.sched.waiting().front(), b);
  h.sched.Remove(a);
  EXPECT_EQ(Work(h.Step()), (W{{b, 12}, {c, 2}}));
}

TEST(Scheduler, PreemptsTheLatestAdmittedAndResumesIt) {
  // 4 blocks of 4. a and b each hold 2 blocks after their 7-token prompts; growing past 8
  // tokens needs a third block, so b (admitted last) is preempted for a.
  Harness h(4, /*budget=*/100, /*max_seqs=*/8);
  Sequence* a = h.Add(7, 1);
  Sequence* b = h.Add(7, 50);
  EXPECT_EQ(Work(h.Step()), (W{{a, 7}, {b, 7}}));  // both now hold 8 tokens
  EXPECT_EQ(Work(h.Step()), (W{{a, 1}, {b, 1}}));  // both now hold 9 tokens
  EXPECT_EQ(h.blocks.num_free(), 0);
  SchedulerOutput s3 = h.Step();
  EXPECT_EQ(Work(s3), (W{{a, 1}}));
  EXPECT_EQ(s3.preempted, std::vector<Sequence*>{b});
  EXPECT_EQ(b->status, SequenceStatus::kWaiting);
  EXPECT_EQ(b->num_computed_tokens, 0);
  EXPECT_TRUE(b->blocks.ids.empty());
  EXPECT_EQ(b->num_tokens(), 9);  // its output so far is kept
  EXPECT_EQ(b->num_preemptions, 1);
  EXPECT_EQ(h.sched.waiting().front(), b);
  EXPECT_EQ(a->blocks.ids.size(), 3u);
  // b cannot come back while a holds 3 of the 4 blocks; when a ends, b recomputes all 9.
  EXPECT_EQ(Work(h.Step()), (W{{a, 1}}));
  h.sched.Remove(a);
  SchedulerOutput s5 = h.Step();
  EXPECT_EQ(Work(s5), (W{{b, 9}}));
  EXPECT_EQ(s5.num_prefill_tokens, 9);
  EXPECT_EQ(b->num_tokens(), 10);
  EXPECT_EQ(Work(h.Step()), (W{{b, 1}}));
}

TEST(Scheduler, PreemptsTheLatestAdmittedNotTheNeighbour) {
  // 5 blocks: a holds 2, b and c 1 each. When a and b both need a new block, a takes the free
  // one and c, admitted last, is preempted for b.
  Harness h(5, /*budget=*/100, /*max_seqs=*/8);
  Sequence* a = h.Add(7);
  Sequence* b = h.Add(3);
  Sequence* c = h.Add(3);
  h.Step();  // a: 8 tokens, b and c: 4
  h.Step();  // a: 9 tokens, b and c: 5
  SchedulerOutput s = h.Step();
  EXPECT_EQ(Work(s), (W{{a, 1}, {b, 1}}));
  EXPECT_EQ(s.preempted, std::vector<Sequence*>{c});
  EXPECT_EQ(h.sched.running(), (std::vector<Sequence*>{a, b}));
}

TEST(Scheduler, AbortFreesBlocksAtOnce) {
  Harness h(16, /*budget=*/100, /*max_seqs=*/8);
  Sequence* a = h.Add(9);
  Sequence* b = h.Add(5);
  h.Step();
  EXPECT_EQ(h.blocks.num_used(), 3 + 2);
  h.sched.Remove(a);
  EXPECT_EQ(h.blocks.num_used(), 2);
  EXPECT_EQ(a->status, SequenceStatus::kFinished);
  Sequence* c = h.Add(5);
  h.sched.Remove(c);  // still waiting
  EXPECT_TRUE(h.sched.waiting().empty());
  h.sched.Remove(b);
  EXPECT_EQ(h.blocks.num_used(), 0);
  EXPECT_FALSE(h.sched.HasWork());
}

TEST(Scheduler, SiblingsWaitForTheLeaderPromptAndShareItsBlocks) {
  Harness h(32, /*budget=*/100, /*max_seqs=*/8, /*prefix_caching=*/true);
  Sequence* leader = h.Add(10);
  Sequence* sibling = h.Add(10);
  sibling->prefix_leader = leader;
  Sequence* other = h.Add(2, 500);
  // The sibling is skipped (not ready) without holding back later requests.
  EXPECT_EQ(Work(h.Step()), (W{{leader, 10}, {other, 2}}));
  // Now the leader's two full prompt blocks are cached: the sibling computes only 2 tokens.
  SchedulerOutput s2 = h.Step();
  EXPECT_EQ(Work(s2), (W{{leader, 1}, {other, 1}, {sibling, 2}}));
  EXPECT_EQ(sibling->num_cached_tokens, 8);
  EXPECT_EQ(sibling->blocks.ids[0], leader->blocks.ids[0]);
  EXPECT_EQ(sibling->blocks.ids[1], leader->blocks.ids[1]);
  EXPECT_EQ(h.blocks.ref_count(leader->blocks.ids[0]), 2);
}

TEST(Scheduler, ResumedSequenceReusesItsCachedBlocks) {
  Harness h(4, /*budget=*/100, /*max_seqs=*/8, /*prefix_caching=*/true);
  Sequence* a = h.Add(7, 1);
  Sequence* b = h.Add(7, 50);
  h.Step();
  h.Step();
  h.Step();  // b preempted; its two full blocks were cached, and a's new block evicts the
             // second (a sequence's tail goes first)
  ASSERT_EQ(b->num_preemptions, 1);
  h.Step();
  h.sched.Remove(a);
  SchedulerOutput s = h.Step();
  // 9 tokens known: the first block comes from the cache, 5 tokens are recomputed.
  EXPECT_EQ(Work(s), (W{{b, 5}}));
  EXPECT_EQ(b->num_cached_tokens, 0);  // the first admission's hit is what the request reports
}

}  // namespace
}  // namespace sy
