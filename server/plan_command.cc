// `switchyard plan`: expert placement from routing statistics (engine/moe/planner), or with
// --evaluate a replay of a trace against placements. Bad input: message on stderr, exit code 2.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/config.h"
#include "engine/model/presets.h"
#include "engine/moe/planner/evaluate.h"
#include "engine/moe/planner/planner.h"
#include "engine/moe/synthetic_trace.h"
#include "server/commands.h"

namespace sy {
namespace {

struct PlanFlags {
  std::string trace_path, dataset, strategy = "ilp", current_path, model_dir, preset;
  std::string dtype = "bf16", window, out_path, save_trace;
  int32_t ranks = 0, slots_per_rank = 0, sweeps = 2;
  int64_t batch_tokens = 64;
  MachineNumbers machine;
  double time_limit = 5.0;
  PlanWeights weights;
  bool json = false, evaluate = false, synthetic = false;
  std::vector<std::string> placements;
  SyntheticTraceOptions synthetic_options;
};

int Fail(const Status& st) {
  std::fprintf(stderr, "plan: %s\n", st.message().c_str());
  return 2;
}

// The model of --model or --preset, if one is given.
StatusOr<std::optional<ModelConfig>> LoadConfig(const PlanFlags& f) {
  if (f.model_dir.empty() && f.preset.empty()) return std::optional<ModelConfig>();
  if (!f.model_dir.empty() && !f.preset.empty()) {
    return Status::InvalidArgument("give --model or --preset, not both");
  }
  if (!f.model_dir.empty()) {
    SY_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(f.model_dir));
    return std::optional<ModelConfig>(std::move(config));
  }
  SY_ASSIGN_OR_RETURN(std::string text, PresetConfigText(f.preset));
  SY_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(text));
  return std::optional<ModelConfig>(std::move(config));
}

std::string LayerList(const std::vector<int32_t>& layers) {
  if (layers.empty()) return "none";
  return std::to_string(layers.front()) + ".." + std::to_string(layers.back()) + " (" +
         std::to_string(layers.size()) + " layers)";
}

// A placement is for the model's MoE layers (DeepSeek's dense first layers have none), so every
// layer of the trace must be one of those (a measured trace may sample a few). A synthetic trace
// numbers its layers 0..L-1: with a model it takes the model's MoE layer indices instead, when the
// counts agree.
StatusOr<RoutingTrace> LoadTrace(const PlanFlags& f, const std::optional<ModelConfig>& config) {
  RoutingTrace trace;
  if (f.synthetic) {
    if (!f.trace_path.empty())
      return Status::InvalidArgument("give --trace or --synthetic, not both");
    SY_ASSIGN_OR_RETURN(trace, GenerateSyntheticTrace(f.synthetic_options));
    if (config.has_value() && trace.layers.size() == MoeLayerIndices(*config).size()) {
      trace.layers = MoeLayerIndices(*config);
    }
    if (!f.save_trace.empty()) SY_RETURN_IF_ERROR(trace.Save(f.save_trace));
  } else {
    if (f.trace_path.empty())
      return Status::InvalidArgument("--trace FILE (or --synthetic) is required");
    SY_ASSIGN_OR_RETURN(trace, RoutingTrace::Load(f.trace_path, f.dataset));
  }
  if (config.has_value()) {
    const std::vector<int32_t> moe_layers = MoeLayerIndices(*config);
    for (int32_t layer : trace.layers) {
      if (!std::binary_search(moe_layers.begin(), moe_layers.end(), layer)) {
        return Status::InvalidArgument("the trace has layer " + std::to_string(layer) +
                                       ", which is not one of the model's MoE layers " +
                                       LayerList(moe_layers) + "; the trace's layers are " +
                                       LayerList(trace.layers));
      }
    }
  }
  return trace;
}

// "first:count" of the trace's windows, or the total when empty.
StatusOr<RoutingWindow> SelectWindow(const RoutingTrace& trace, const std::string& spec) {
  if (spec.empty()) return trace.Total();
  const size_t colon = spec.find(':');
  size_t first = 0, count = 0;
  try {
    if (colon == std::string::npos) throw std::invalid_argument(spec);
    first = std::stoul(spec.substr(0, colon));
    count = std::stoul(spec.substr(colon + 1));
  } catch (const std::exception&) {
    return Status::InvalidArgument("--window wants first:count, got '" + spec + "'");
  }
  if (count == 0 || first + count > trace.windows.size()) {
    return Status::InvalidArgument("--window " + spec + " is outside the trace's " +
                                   std::to_string(trace.windows.size()) + " windows");
  }
  return trace.Sum(first, count);
}

// Routed experts only: attention, shared experts and dense layers run data-parallel, each rank
// on its own tokens, so their cost is the same for every placement (see docs/planner.md).
StatusOr<CostModel> MakeCostModel(const PlanFlags& f, const std::optional<ModelConfig>& model,
                                  const RoutingTrace& trace) {
  if (f.batch_tokens <= 0) return Status::InvalidArgument("--batch-tokens must be positive");
  if (!model.has_value()) return CostModel(f.batch_tokens);
  const ModelConfig& config = *model;
  if (config.num_experts != trace.num_experts) {
    return Status::InvalidArgument("the model has " + std::to_string(config.num_experts) +
                                   " experts, the trace " + std::to_string(trace.num_experts));
  }
  const ExpertShape shape{config.num_experts, config.hidden_size, config.moe_intermediate_size};
  return CostModel::FromModel(shape, f.dtype, f.machine, f.batch_tokens);
}

nlohmann::json ReportJson(const PlanReport& r) {
  return {{"strategy", PlanStrategyName(r.strategy)},
          {"seconds", r.seconds},
          {"objective",
           {{"total", r.objective.total},
            {"balance", r.objective.balance},
            {"crossing", r.objective.crossing},
            {"moved", r.objective.moved}}},
          {"start_objective", r.start_objective.total},
          {"layer_balance", r.layer_balance},
          {"layer_max_over_mean", r.layer_max_over_mean},
          {"pair_crossing", r.pair_crossing},
          {"subproblems", r.subproblems},
          {"proven_optimal", r.proven_optimal},
          {"layer_gap", r.layer_gap},
          {"worst_gap", r.worst_gap},
          {"joint_gap", r.joint_gap},
          {"time_limit_hit", r.time_limit_hit},
          {"solver_status", r.solver_status}};
}

void PrintSummary(const PlanReport& r, const RoutingTrace& trace, const CostModel& cost) {
  std::printf("strategy %s, %.3f s, cost model: %s\n", PlanStrategyName(r.strategy), r.seconds,
              cost.Describe().c_str());
  std::printf(
      "objective %.4f = balance %.4f + traffic term (crossing share %.4f) + migration "
      "term (%lld moved)\n",
      r.objective.total, r.objective.balance, r.objective.crossing,
      static_cast<long long>(r.objective.moved));
  if (r.strategy == PlanStrategy::kIlp) {
    std::printf("start (greedy) objective %.4f; %s\n", r.start_objective.total,
                r.solver_status.c_str());
  }
  std::printf("%6s %10s %10s %10s\n", "layer", "max/ideal", "max/mean", "cross->next");
  for (size_t li = 0; li < r.layer_balance.size(); ++li) {
    char crossing[16] = "-";
    if (li < r.pair_crossing.size())
      std::snprintf(crossing, sizeof(crossing), "%.4f", r.pair_crossing[li]);
    std::printf("%6d %10.4f %10.4f %10s\n", trace.layers[li], r.layer_balance[li],
                r.layer_max_over_mean[li], crossing);
  }
}

int RunEvaluate(const PlanFlags& f, const RoutingTrace& trace, const CostModel& cost,
                const ExpertPlacement* reference) {
  if (f.placements.empty())
    return Fail(Status::InvalidArgument("--evaluate needs --placement FILE"));
  std::vector<NamedPlacement> placements;
  for (const std::string& path : f.placements) {
    StatusOr<ExpertPlacement> p = ExpertPlacement::Load(path);
    if (!p.ok()) return Fail(p.status());  // the message names the file
    placements.push_back({path, std::move(*p)});
  }
  StatusOr<std::vector<PlacementEvaluation>> ev =
      EvaluatePlacements(trace, placements, cost, f.weights, reference, /*per_window=*/true);
  if (!ev.ok()) return Fail(ev.status());
  if (f.json) {
    std::printf("%s\n", EvaluationJson(*ev).dump(2).c_str());
  } else {
    std::printf("cost model: %s\n%s", cost.Describe().c_str(), EvaluationTable(*ev).c_str());
  }
  return 0;
}

int RunPlan(const PlanFlags& f) {
  StatusOr<std::optional<ModelConfig>> config = LoadConfig(f);
  if (!config.ok()) return Fail(config.status());
  StatusOr<RoutingTrace> trace = LoadTrace(f, *config);
  if (!trace.ok()) return Fail(trace.status());
  StatusOr<CostModel> cost = MakeCostModel(f, *config, *trace);
  if (!cost.ok()) return Fail(cost.status());
  std::unique_ptr<ExpertPlacement> current;
  if (!f.current_path.empty()) {
    StatusOr<ExpertPlacement> p = ExpertPlacement::Load(f.current_path);
    if (!p.ok()) return Fail(p.status());
    current = std::make_unique<ExpertPlacement>(std::move(*p));
  }
  if (f.evaluate) return RunEvaluate(f, *trace, *cost, current.get());

  StatusOr<PlanStrategy> strategy = ParsePlanStrategy(f.strategy);
  if (!strategy.ok()) return Fail(strategy.status());
  StatusOr<RoutingWindow> window = SelectWindow(*trace, f.window);
  if (!window.ok()) return Fail(window.status());
  if (f.ranks <= 0) return Fail(Status::InvalidArgument("--ranks must be positive"));
  PlanOptions options;
  options.strategy = *strategy;
  options.num_ranks = f.ranks;
  options.slots_per_rank =
      f.slots_per_rank > 0 ? f.slots_per_rank : (trace->num_experts + f.ranks - 1) / f.ranks;
  options.current = current.get();
  options.cost_model = *cost;
  options.weights = f.weights;
  options.time_limit_seconds = f.time_limit;
  options.sweeps = f.sweeps;
  PlanReport report;
  StatusOr<ExpertPlacement> placement =
      Plan(trace->layers, trace->num_experts, *window, options, &report);
  if (!placement.ok()) return Fail(placement.status());
  if (!f.out_path.empty()) {
    Status saved = placement->Save(f.out_path);
    if (!saved.ok()) return Fail(saved);
  }
  if (f.json) {
    std::printf("%s\n", ReportJson(report).dump(2).c_str());
  } else {
    PrintSummary(report, *trace, *cost);
    if (!f.out_path.empty()) std::printf("wrote %s\n", f.out_path.c_str());
  }
  return 0;
}

void AddSyntheticFlags(CLI::App* cmd, PlanFlags& f) {
  SyntheticTraceOptions& s = f.synthetic_options;
  cmd->add_flag("--synthetic", f.synthetic, "plan on a generated trace instead of --trace");
  cmd->add_option("--experts", s.num_experts, "synthetic: experts per layer");
  cmd->add_option("--layers", s.num_layers, "synthetic: MoE layers");
  cmd->add_option("--top-k", s.top_k, "synthetic: experts per token");
  cmd->add_option("--zipf", s.zipf_exponent, "synthetic: popularity skew (0: uniform)");
  cmd->add_option("--affinity", s.affinity, "synthetic: inter-layer affinity (0..1)");
  cmd->add_option("--drift", s.drift, "synthetic: popularity drift per window (0..1)");
  cmd->add_option("--windows", s.num_windows, "synthetic: windows");
  cmd->add_option("--tokens", s.tokens_per_window, "synthetic: tokens per window");
  cmd->add_option("--seed", s.seed, "synthetic: random seed");
  cmd->add_option("--save-trace", f.save_trace, "synthetic: also write the trace here");
}

}  // namespace

Command AddPlanCommand(CLI::App& app) {
  auto f = std::make_shared<PlanFlags>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "Plan an expert placement from routing statistics (or --evaluate placements)");
  cmd->add_option("--trace", f->trace_path, "routing trace (switchyard-routing-v1 JSON)");
  cmd->add_option("--dataset", f->dataset,
                  "an entry of tests/data/traces/olmoe-mixtral-routing.json (olmoe_c4, ...)");
  cmd->add_option("--ranks", f->ranks, "ranks (GPUs) in the expert-parallel group");
  cmd->add_option("--slots-per-rank", f->slots_per_rank,
                  "expert slots per rank per layer (default ceil(experts / ranks))");
  cmd->add_option("--strategy", f->strategy, "contiguous, greedy or ilp");
  cmd->add_option("--current", f->current_path,
                  "the placement now in use: migration is counted against it");
  cmd->add_option("--model", f->model_dir, "model directory (config.json) for the cost model");
  cmd->add_option("--preset", f->preset, "model preset name for the cost model");
  cmd->add_option("--dtype", f->dtype, "expert weight dtype: bf16, f16, f32, fp8");
  cmd->add_option("--batch-tokens", f->batch_tokens, "tokens per decode step in the group");
  cmd->add_option("--bandwidth-gbs", f->machine.bandwidth_gbs, "memory bandwidth per rank, GB/s");
  cmd->add_option("--tflops", f->machine.tflops, "dense TFLOP/s per rank");
  cmd->add_option("--time-limit", f->time_limit, "ILP wall-clock limit, seconds");
  cmd->add_option("--sweeps", f->sweeps, "ILP passes over the layers");
  cmd->add_option("--traffic-weight", f->weights.traffic, "objective weight of crossing share");
  cmd->add_option("--migration-weight", f->weights.migration,
                  "objective weight of the moved share of slots");
  cmd->add_option("--window", f->window, "plan on windows first:count (default: all)");
  cmd->add_option("-o,--out", f->out_path, "write the placement here");
  cmd->add_flag("--json", f->json, "print JSON instead of a table");
  cmd->add_flag("--evaluate", f->evaluate, "replay the trace against --placement files");
  cmd->add_option("--placement", f->placements, "--evaluate: a placement file (repeatable)");
  AddSyntheticFlags(cmd, *f);
  return {cmd, [f]() { return RunPlan(*f); }};
}

}  // namespace sy
