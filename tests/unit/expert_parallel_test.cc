// Expert parallelism gives the single-rank model's results: the same logits (within 1e-5) and
// the same greedy tokens, over 2 and 4 ranks (threads with the in-process communicator), with
// contiguous placements and with shuffled placements holding replicas of experts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>

#include "engine/backend/cpu_backend.h"
#include "engine/dist/inprocess_communicator.h"
#include "engine/runner/ep_step_executor.h"
#include "engine/sched/engine.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

constexpr float kTolerance = 1e-5f;
constexpr int kBlockSize = 16;
constexpr int kBlocksPerSeq = 8;

std::filesystem::path ModelDir(const std::string& name) {
  return std::filesystem::path(testing::GoldenDir()) / "models" / name;
}

std::vector<std::vector<int32_t>> Prompts(const std::string& model) {
  std::vector<std::vector<int32_t>> prompts = testing::GoldenPrompts(ModelDir(model));
  // More sequences than ranks, of different lengths.
  const size_t n = prompts.size();
  for (size_t i = 0; i < n; ++i) {
    std::vector<int32_t> p = prompts[i];
    p.resize(std::max<size_t>(1, p.size() / 2));
    prompts.push_back(p);
  }
  return prompts;
}

// Experts spread over ranks in a random order, spare slots filled with replicas of random
// experts (never two of one expert on a rank).
ExpertPlacement ShuffledWithReplicas(const ModelConfig& c, int ranks, int slots, uint32_t seed) {
  const int32_t experts = static_cast<int32_t>(c.num_experts);
  ExpertPlacement p(MoeLayerIndices(c), experts, ranks, slots);
  std::mt19937 rng(seed);
  for (int32_t li = 0; li < p.num_layers(); ++li) {
    std::vector<int32_t> order(experts);
    for (int32_t e = 0; e < experts; ++e) order[e] = e;
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::pair<int32_t, int32_t>> free_slots;
    for (int32_t r = 0; r < ranks; ++r) {
      for (int32_t s = 0; s < slots; ++s) free_slots.push_back({r, s});
    }
    std::shuffle(free_slots.begin(), free_slots.end(), rng);
    size_t next = 0;
    for (int32_t e : order) {
      p.set_expert(li, free_slots[next].first, free_slots[next].second, e);
      ++next;
    }
    for (; next < free_slots.size(); ++next) {
      const auto [r, s] = free_slots[next];
      for (int tries = 0; tries < 64; ++tries) {
        const int32_t e = static_cast<int32_t>(rng() % experts);
        bool on_rank = false;
        for (int32_t t = 0; t < slots; ++t) on_rank = on_rank || p.expert_at(li, r, t) == e;
        if (!on_rank) {
          p.set_expert(li, r, s, e);
          break;
        }
      }
    }
  }
  EXPECT_TRUE(p.Validate().ok()) << p.Validate().ToString();
  return p;
}

// One sequence fed by hand: blocks [first_block, first_block + kBlocksPerSeq) of its rank.
struct Seq {
  std::vector<int32_t> tokens;
  int64_t computed = 0;
  int32_t first_block = 0;
};

// Feeds every uncomputed token of `seqs`; asks for each sequence's last-token logits.
StepBatch BatchOf(const std::vector<Seq*>& seqs) {
  StepBatch b;
  b.max_blocks_per_seq = kBlocksPerSeq;
  for (size_t row = 0; row < seqs.size(); ++row) {
    Seq& s = *seqs[row];
    for (int32_t k = 0; k < kBlocksPerSeq; ++k) b.block_tables.push_back(s.first_block + k);
    for (int64_t pos = s.computed; pos < static_cast<int64_t>(s.tokens.size()); ++pos) {
      b.tokens.push_back(s.tokens[pos]);
      b.positions.push_back(static_cast<int32_t>(pos));
      b.slots.push_back(static_cast<int64_t>(s.first_block) * kBlockSize + pos);
      b.token_seq.push_back(static_cast<int32_t>(row));
    }
    b.logits_indices.push_back(static_cast<int32_t>(b.tokens.size()) - 1);
    s.computed = static_cast<int64_t>(s.tokens.size());
  }
  if (seqs.empty()) b = EmptyStepBatch();
  return b;
}

struct Rank {
  std::unique_ptr<CpuBackend> backend;
  std::unique_ptr<MoeModel> model;
  std::unique_ptr<ExpertParallel> ep;
  std::unique_ptr<ModelRunner> runner;
};

Status LoadRank(const std::string& dir, const ExpertPlacement& placement, Communicator* comm,
                int64_t num_blocks, Rank* out) {
  out->backend = std::make_unique<CpuBackend>(1);
  SY_ASSIGN_OR_RETURN(out->model, MoeModel::Load(dir, out->backend.get(), false));
  SY_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));
  SY_ASSIGN_OR_RETURN(out->ep, ExpertParallel::Create(out->model->config(), *ckpt,
                                                      out->backend.get(), placement, comm));
  out->model->SetExpertDispatch(out->ep.get());
  RunnerOptions ro;
  ro.max_batch_tokens = 512;
  ro.num_kv_blocks = num_blocks;
  ro.block_size = kBlockSize;
  SY_ASSIGN_OR_RETURN(out->runner, ModelRunner::Create(out->model.get(), ro));
  return Status::Ok();
}

int32_t ArgMax(const float* logits, int64_t n) {
  return static_cast<int32_t>(std::max_element(logits, logits + n) - logits);
}

// Runs prefill plus decode steps of all prompts on one rank and on `ranks` ranks (sequence i
// on rank i % ranks), comparing every step's logits; greedy tokens come from the single rank.
void CheckLogitsMatch(const std::string& model, int ranks, const ExpertPlacement* placement_in) {
  const std::string dir = ModelDir(model).string();
  const auto prompts = Prompts(model);
  const int64_t num_blocks = static_cast<int64_t>(prompts.size()) * kBlocksPerSeq;
  testing::LoadedModel single = testing::LoadForTest(dir, kBlockSize, 512, 1);
  ASSERT_NE(single.runner, nullptr);
  const ModelConfig& c = single.model->config();
  const int64_t vocab = c.vocab_size;
  const ExpertPlacement placement =
      placement_in != nullptr ? *placement_in
                              : ExpertPlacement::Contiguous(
                                    MoeLayerIndices(c), static_cast<int32_t>(c.num_experts), ranks,
                                    (static_cast<int32_t>(c.num_experts) + ranks - 1) / ranks);

  std::vector<Seq> ref(prompts.size()), ep(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    ref[i].tokens = ep[i].tokens = prompts[i];
    ref[i].first_block = static_cast<int32_t>(i) * kBlocksPerSeq;
    ep[i].first_block = static_cast<int32_t>(i / ranks) * kBlocksPerSeq;
  }
  auto comms = InProcessGroup::Create(ranks, std::chrono::seconds(30));
  std::vector<Rank> rank_models(ranks);
  std::vector<Status> worker_status(ranks);
  std::vector<std::thread> workers;
  // Worker threads load their rank and serve until the leader stops them.
  for (int r = 1; r < ranks; ++r) {
    workers.emplace_back([&, r] {
      Status st = LoadRank(dir, placement, comms[r].get(), num_blocks, &rank_models[r]);
      worker_status[r] =
          st.ok() ? RunEpWorker(rank_models[r].runner.get(), rank_models[r].ep.get()) : st;
    });
  }
  Status leader = LoadRank(dir, placement, comms[0].get(), num_blocks, &rank_models[0]);
  ASSERT_TRUE(leader.ok()) << leader.ToString();
  {
    EpStepExecutor executor(rank_models[0].runner.get(), rank_models[0].ep.get());
    for (int step = 0; step < 5; ++step) {
      std::vector<Seq*> all;
      for (Seq& s : ref) all.push_back(&s);
      std::vector<float> ref_logits;
      ASSERT_TRUE(single.runner->Step(BatchOf(all), &ref_logits).ok());

      std::vector<std::vector<Seq*>> per_rank(ranks);
      for (size_t i = 0; i < ep.size(); ++i) per_rank[i % ranks].push_back(&ep[i]);
      std::vector<StepBatch> batches;
      for (int r = 0; r < ranks; ++r) batches.push_back(BatchOf(per_rank[r]));
      std::vector<std::vector<float>> ep_logits;
      const Status st = executor.Step(batches, MigrationAction{}, &ep_logits);
      ASSERT_TRUE(st.ok()) << st.ToString();

      for (size_t i = 0; i < prompts.size(); ++i) {
        const float* a = ref_logits.data() + i * vocab;
        const float* b = ep_logits[i % ranks].data() + (i / ranks) * vocab;
        float diff = 0;
        for (int64_t v = 0; v < vocab; ++v) diff = std::max(diff, std::fabs(a[v] - b[v]));
        EXPECT_LE(diff, kTolerance)
            << model << " ranks " << ranks << " step " << step << " seq " << i;
        const int32_t next = ArgMax(a, vocab);
        EXPECT_EQ(ArgMax(b, vocab), next);
        ref[i].tokens.push_back(next);
        ep[i].tokens.push_back(next);
      }
    }
    ASSERT_TRUE(executor.Stop().ok());
  }
  for (auto& t : workers) t.join();
  for (int r = 1; r < ranks; ++r) EXPECT_TRUE(worker_status[r].ok()) << worker_status[r].ToString();
}

TEST(ExpertParallelTest, LogitsMatchSingleRankContiguous) {
  for (const std::string model : {"olmoe", "qwen2_moe", "deepseek_v2", "deepseek_v3", "glm4_moe"}) {
    for (int ranks : {2, 4}) CheckLogitsMatch(model, ranks, nullptr);
  }
}

TEST(ExpertParallelTest, LogitsMatchSingleRankWithReplicas) {
  for (const std::string model :
       {"olmoe", "mixtral", "qwen2_moe", "deepseek_v2", "deepseek_v3", "glm4_moe"}) {
    testing::LoadedModel m = testing::LoadForTest(ModelDir(model).string());
    ASSERT_NE(m.model, nullptr);
    for (int ranks : {2, 4}) {
      const int slots = static_cast<int>(m.model->config().num_experts) / ranks + 2;
      const ExpertPlacement p = ShuffledWithReplicas(m.model->config(), ranks, slots, 7 + ranks);
      CheckLogitsMatch(model, ranks, &p);
    }
  }
}

// DeepSeek-family models (dense first layer, shared experts): placements cover only the
// routed experts of the MoE layers. The ranks' expert buffers together hold each routed expert
// once and nothing else: the shared experts (like the dense layer's MLP) are loaded with the
// non-routed weights on every rank, which is why the logits above match. A placement naming
// the dense layer or one more expert than the routed ones is refused.
TEST(ExpertParallelTest, DeepSeekPlacementsHoldOnlyRoutedExpertsOfMoeLayers) {
  for (const std::string model : {"deepseek_v2", "deepseek_v3", "glm4_moe"}) {
    const std::string dir = ModelDir(model).string();
    CpuBackend backend(1);
    auto loaded = MoeModel::Load(dir, &backend, false);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    auto ckpt = Checkpoint::Open(dir);
    ASSERT_TRUE(ckpt.ok());
    const ModelConfig& c = (*loaded)->config();
    ASSERT_GT(c.shared_expert_intermediate_size, 0) << model;
    const std::vector<int32_t> moe_layers = MoeLayerIndices(c);
    ASSERT_EQ(moe_layers, (std::vector<int32_t>{1, 2})) << model;  // first_k_dense_replace 1
    const int32_t experts = static_cast<int32_t>(c.num_experts);
    constexpr int kRanks = 2;
    auto comms = InProcessGroup::Create(kRanks);
    const ExpertPlacement p =
        ExpertPlacement::Contiguous(moe_layers, experts, kRanks, experts / kRanks);
    size_t hosted = 0;
    for (int r = 0; r < kRanks; ++r) {
      auto ep = ExpertParallel::Create(c, **ckpt, &backend, p, comms[r].get());
      ASSERT_TRUE(ep.ok()) << ep.status().ToString();
      hosted += (*ep)->hosted_bytes();
    }
    // gate, up and down of every routed expert of every MoE layer, in f32.
    const size_t routed = moe_layers.size() * static_cast<size_t>(experts) * 3 *
                          static_cast<size_t>(c.hidden_size * c.moe_intermediate_size) *
                          sizeof(float);
    EXPECT_EQ(hosted, routed) << model;

    const ExpertPlacement with_dense =
        ExpertPlacement::Contiguous({0, 1, 2}, experts, kRanks, experts / kRanks);
    EXPECT_EQ(
        ExpertParallel::Create(c, **ckpt, &backend, with_dense, comms[0].get()).status().code(),
        StatusCode::kInvalidArgument)
        << model;
    const ExpertPlacement with_shared =
        ExpertPlacement::Contiguous(moe_layers, experts + 1, kRanks, experts / kRanks + 1);
    EXPECT_EQ(
        ExpertParallel::Create(c, **ckpt, &backend, with_shared, comms[0].get()).status().code(),
        StatusCode::kInvalidArgument)
        << model;
  }
}

// A rank whose batch fails its checks makes every rank skip the step together: the leader
// reports that rank's error, and the next step runs normally (the group stayed in step).
TEST(ExpertParallelTest, AFailingRankFailsTheStepNotTheGroup) {
  const std::string dir = ModelDir("olmoe").string();
  const auto prompts = Prompts("olmoe");
  auto comms = InProcessGroup::Create(2, std::chrono::seconds(30));
  testing::LoadedModel m = testing::LoadForTest(dir);
  const ModelConfig& c = m.model->config();
  const ExpertPlacement placement =
      ExpertPlacement::Contiguous(MoeLayerIndices(c), static_cast<int32_t>(c.num_experts), 2, 4);
  std::vector<Rank> ranks(2);
  Status worker_status;
  std::thread worker([&] {
    Status st = LoadRank(dir, placement, comms[1].get(), 64, &ranks[1]);
    worker_status = st.ok() ? RunEpWorker(ranks[1].runner.get(), ranks[1].ep.get()) : st;
  });
  ASSERT_TRUE(LoadRank(dir, placement, comms[0].get(), 64, &ranks[0]).ok());
  {
    EpStepExecutor executor(ranks[0].runner.get(), ranks[0].ep.get());
    Seq a{prompts[0], 0, 0}, b{prompts[1], 0, 0};
    std::vector<StepBatch> batches = {BatchOf({&a}), BatchOf({&b})};
    batches[1].tokens[0] = static_cast<int32_t>(c.vocab_size);  // outside the vocabulary
    std::vector<std::vector<float>> logits;
    const Status failed = executor.Step(batches, MigrationAction{}, &logits);
    EXPECT_EQ(failed.code(), StatusCode::kInvalidArgument) << failed.ToString();
    EXPECT_NE(failed.message().find("rank 1: token id"), std::string::npos) << failed.message();

    // The same step with a valid batch on rank 1 works (rank 0's sequence starts over).
    a.computed = 0;
    b.computed = 0;
    batches = {BatchOf({&a}), BatchOf({&b})};
    const Status ok = executor.Step(batches, MigrationAction{}, &logits);
    EXPECT_TRUE(ok.ok()) << ok.ToString();
    EXPECT_EQ(logits[1].size(), static_cast<size_t>(c.vocab_size));
    EXPECT_TRUE(executor.Stop().ok());
  }
  worker.join();
  EXPECT_TRUE(worker_status.ok()) << worker_status.ToString();
}

// Ranks started with different memory plans refuse to serve together, on every rank.
TEST(ExpertParallelTest, RanksWithDifferentFlagsRefuseToStart) {
  auto comms = InProcessGroup::Create(2, std::chrono::seconds(30));
  EngineOptions o;
  o.model_dir = ModelDir("olmoe").string();
  o.threads = 1;
  o.num_kv_blocks = 64;
  Status worker_status;
  std::thread worker([&] {
    EngineOptions wo = o;
    wo.num_kv_blocks = 128;
    wo.communicator = comms[1].get();
    worker_status = Engine::RunWorker(wo);
  });
  o.communicator = comms[0].get();
  auto engine = Engine::Create(o);
  worker.join();
  EXPECT_EQ(engine.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(engine.status().message().find("rank 1"), std::string::npos);
  EXPECT_EQ(worker_status.code(), StatusCode::kInvalidArgument);
}

// int8 experts are not exchanged yet: every rank refuses --quantization int8 up front.
TEST(ExpertParallelTest, RefusesInt8Quantization) {
  auto comms = InProcessGroup::Create(2, std::chrono::seconds(30));
  EngineOptions o;
  o.model_dir = ModelDir("olmoe").string();
  o.threads = 1;
  o.num_kv_blocks = 64;
  o.quantization = Quantization::kInt8;
  Status worker_status;
  std::thread worker([&] {
    EngineOptions wo = o;
    wo.communicator = comms[1].get();
    worker_status = Engine::RunWorker(wo);
  });
  o.communicator = comms[0].get();
  auto engine = Engine::Create(o);
  worker.join();
  EXPECT_EQ(engine.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(engine.status().message().find("expert parallelism"), std::string::npos);
  EXPECT_EQ(worker_status.code(), StatusCode::kUnimplemented);
}

TEST(ExpertParallelTest, RejectsPlacementThatDoesNotFitTheGroup) {
  const std::string dir = ModelDir("olmoe").string();
  auto comms = InProcessGroup::Create(1);
  CpuBackend backend(1);
  auto model = MoeModel::Load(dir, &backend, false);
  ASSERT_TRUE(model.ok());
  auto ckpt = Checkpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok());
  const ModelConfig& c = (*model)->config();
  // A placement for 2 ranks in a group of 1.
  const ExpertPlacement p =
      ExpertPlacement::Contiguous(MoeLayerIndices(c), static_cast<int32_t>(c.num_experts), 2, 4);
  auto ep = ExpertParallel::Create(c, **ckpt, &backend, p, comms[0].get());
  EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument);
}

// The whole engine: requests spread over the ranks' schedulers give the single-rank engine's
// greedy tokens and logprobs.
std::vector<std::vector<int32_t>> RunGreedy(Engine& engine,
                                            const std::vector<std::vector<int32_t>>& prompts,
                                            std::vector<std::vector<float>>* logprobs,
                                            int32_t max_tokens = 12) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& p : prompts) {
    RequestSpec spec;
    spec.prompt = p;
    spec.sampling.temperature = 0;
    spec.sampling.logprobs = 0;
    spec.stop.max_tokens = max_tokens;
    spec.stop.ignore_eos = true;
    auto s = engine.Submit(spec);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return {};
    streams.push_back(*s);
  }
  std::vector<std::vector<int32_t>> tokens(prompts.size());
  logprobs->assign(prompts.size(), {});
  for (size_t i = 0; i < streams.size(); ++i) {
    RequestUpdate u;
    while (streams[i]->Next(&u, std::chrono::seconds(60))) {
      for (const CompletionDelta& d : u.deltas) {
        for (const SampledToken& t : d.samples) {
          tokens[i].push_back(t.token);
          (*logprobs)[i].push_back(t.logprob);
        }
      }
      if (u.finished) break;
    }
  }
  return tokens;
}

std::vector<std::vector<int32_t>> EngineGreedy(const EngineOptions& o,
                                               const std::vector<std::vector<int32_t>>& prompts,
                                               std::vector<std::vector<float>>* logprobs,
                                               EngineSnapshot* snapshot = nullptr,
                                               int32_t max_tokens = 12) {
  auto engine = Engine::Create(o);
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  if (!engine.ok()) return {};
  auto tokens = RunGreedy(**engine, prompts, logprobs, max_tokens);
  if (snapshot != nullptr) *snapshot = (*engine)->Snapshot();
  return tokens;
}

TEST(ExpertParallelTest, EngineOverRanksMatchesSingleRank) {
  const std::string dir = ModelDir("olmoe").string();
  std::vector<std::vector<int32_t>> prompts = Prompts("olmoe");
  EngineOptions o;
  o.model_dir = dir;
  o.threads = 1;
  o.num_kv_blocks = 256;
  std::vector<std::vector<float>> ref_logprobs;
  const auto ref = EngineGreedy(o, prompts, &ref_logprobs);
  ASSERT_EQ(ref.size(), prompts.size());

  for (int ranks : {2, 4}) {
    auto comms = InProcessGroup::Create(ranks, std::chrono::seconds(30));
    std::vector<std::thread> workers;
    std::vector<Status> worker_status(ranks);
    EngineOptions eo = o;
    eo.expert_slots_per_rank = 8 / ranks + 1;
    {
      testing::LoadedModel m = testing::LoadForTest(dir);
      eo.placement = std::make_shared<ExpertPlacement>(
          ShuffledWithReplicas(m.model->config(), ranks, eo.expert_slots_per_rank, 3));
    }
    for (int r = 1; r < ranks; ++r) {
      workers.emplace_back([&, r] {
        EngineOptions wo = eo;
        wo.communicator = comms[r].get();
        worker_status[r] = Engine::RunWorker(wo);
      });
    }
    eo.communicator = comms[0].get();
    std::vector<std::vector<float>> logprobs;
    const auto got = EngineGreedy(eo, prompts, &logprobs);  // the engine stops at scope exit
    for (auto& t : workers) t.join();
    for (int r = 1; r < ranks; ++r)
      EXPECT_TRUE(worker_status[r].ok()) << worker_status[r].ToString();
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_EQ(got[i], ref[i]) << "ranks " << ranks << " request " << i;
      for (size_t t = 0; t < ref_logprobs[i].size() && t < logprobs[i].size(); ++t) {
        EXPECT_NEAR(logprobs[i][t], ref_logprobs[i][t], 2 * kTolerance);
      }
    }
  }
}

// A live rebalance in the middle of 32 concurrent streams: experts move between ranks while
// the streams decode, and every stream's output stays what it is without rebalancing.
TEST(ExpertParallelTest, LiveRebalanceLeavesStreamsUnchanged) {
  const std::string dir = ModelDir("olmoe").string();
  std::vector<std::vector<int32_t>> prompts;
  const auto base = Prompts("olmoe");
  for (size_t i = 0; prompts.size() < 32; ++i) {
    std::vector<int32_t> p = base[i % base.size()];
    p.push_back(static_cast<int32_t>(i % 100) + 3);  // distinct prompts
    prompts.push_back(p);
  }
  EngineOptions o;
  o.model_dir = dir;
  o.threads = 1;
  o.num_kv_blocks = 512;
  std::vector<std::vector<float>> ref_logprobs;
  const auto ref = EngineGreedy(o, prompts, &ref_logprobs, nullptr, 24);
  ASSERT_EQ(ref.size(), prompts.size());

  constexpr int kRanks = 4;
  auto comms = InProcessGroup::Create(kRanks, std::chrono::seconds(30));
  testing::LoadedModel m = testing::LoadForTest(dir);
  const ModelConfig& c = m.model->config();
  RoutingStats stats(MoeLayerIndices(c), static_cast<int32_t>(c.num_experts),
                     static_cast<int32_t>(c.num_experts_per_tok), kRanks, 8);
  EngineOptions eo = o;
  eo.expert_slots_per_rank = 3;  // contiguous at start: 2 experts per rank, 1 spare slot
  eo.routing_stats = &stats;
  eo.rebalance_interval_s = 0.001;
  eo.rebalance_min_gain = -1;  // migrate to every plan that moves anything
  std::vector<std::thread> workers;
  std::vector<Status> worker_status(kRanks);
  for (int r = 1; r < kRanks; ++r) {
    workers.emplace_back([&, r] {
      EngineOptions wo = eo;
      wo.communicator = comms[r].get();
      wo.routing_stats = nullptr;
      wo.rebalance_interval_s = 0;
      worker_status[r] = Engine::RunWorker(wo);
    });
  }
  eo.communicator = comms[0].get();
  std::vector<std::vector<float>> logprobs;
  EngineSnapshot snapshot;
  const auto got = EngineGreedy(eo, prompts, &logprobs, &snapshot, 24);
  for (auto& t : workers) t.join();
  for (int r = 1; r < kRanks; ++r)
    EXPECT_TRUE(worker_status[r].ok()) << worker_status[r].ToString();
  EXPECT_GE(snapshot.num_rebalances, 1);
  EXPECT_GE(snapshot.experts_moved, 1);
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(got[i], ref[i]) << "request " << i;
    for (size_t t = 0; t < ref_logprobs[i].size() && t < logprobs[i].size(); ++t) {
      EXPECT_NEAR(logprobs[i][t], ref_logprobs[i][t], 2 * kTolerance);
    }
  }
}

// An operator's placement applied live to an idle group: the migration runs in empty steps,
// every rank switches, and the engine then answers as before.
TEST(ExpertParallelTest, ApplyPlacementMigratesWhileIdle) {
  const std::string dir = ModelDir("olmoe").string();
  const auto prompts = Prompts("olmoe");
  EngineOptions o;
  o.model_dir = dir;
  o.threads = 1;
  o.num_kv_blocks = 256;
  std::vector<std::vector<float>> ref_logprobs;
  const auto ref = EngineGreedy(o, prompts, &ref_logprobs);

  constexpr int kRanks = 2;
  auto comms = InProcessGroup::Create(kRanks, std::chrono::seconds(30));
  testing::LoadedModel m = testing::LoadForTest(dir);
  const ExpertPlacement next = ShuffledWithReplicas(m.model->config(), kRanks, 6, 11);
  EngineOptions eo = o;
  eo.expert_slots_per_rank = 6;
  std::thread worker([&] {
    EngineOptions wo = eo;
    wo.communicator = comms[1].get();
    EXPECT_TRUE(Engine::RunWorker(wo).ok());
  });
  eo.communicator = comms[0].get();
  {
    auto engine = Engine::Create(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    Engine& e = **engine;
    ASSERT_NE(e.placement(), nullptr);
    const ExpertPlacement before = *e.placement();
    // Wrong shape: refused at once.
    const ExpertPlacement other = ExpertPlacement::Contiguous(before.layers(), 8, 4, 2);
    EXPECT_EQ(e.ApplyPlacement(other).status().code(), StatusCode::kInvalidArgument);
    // More slots per rank than the group was sized for: refused.
    ExpertPlacement wider(before.layers(), 8, kRanks, 7);
    for (int32_t li = 0; li < wider.num_layers(); ++li) {
      for (int32_t e8 = 0; e8 < 8; ++e8) wider.set_expert(li, e8 % kRanks, e8 / kRanks, e8);
    }
    EXPECT_EQ(e.ApplyPlacement(wider).status().code(), StatusCode::kInvalidArgument);
    StatusOr<int64_t> moves = e.ApplyPlacement(next);
    ASSERT_TRUE(moves.ok()) << moves.status().ToString();
    EXPECT_EQ(*moves, next.MovesFrom(before));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (*e.placement() != next && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(*e.placement(), next);
    EXPECT_EQ(e.Snapshot().num_rebalances, 1);
    EXPECT_EQ(e.Snapshot().experts_moved, next.MovesFrom(before));
    std::vector<std::vector<float>> logprobs;
    EXPECT_EQ(RunGreedy(e, prompts, &logprobs), ref);
  }
  worker.join();
}

}  // namespace
}  // namespace sy
