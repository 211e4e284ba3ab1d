// planner_bench: placement quality and planning time of contiguous, greedy and ILP placements on
// synthetic traces (planned on one window, replayed on the next) and on the real OLMoE / Mixtral
// traces. Prints a table and one JSON line; never passes or fails.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/moe/planner/planner.h"
#include "engine/moe/synthetic_trace.h"

namespace sy {
namespace {

struct Case {
  std::string name;
  RoutingTrace trace;  // window 0 plans; the last window replays (the same window if only one)
  int32_t ranks = 0;
  int32_t spare = 0;      // spare slots per rank beyond ceil(E / ranks)
  CostModel cost;         // tokens mode unless a decode cost case
  double time_limit = 0;  // 0: the command line's
};

struct Row {
  std::string strategy;
  double seconds = 0, balance = 0, worst = 0, crossing = 0, replay_balance = 0;
  double replay_crossing = 0, gap = -1;
};

// Balance (mean and worst layer max rank cost / ideal) and crossing share of `placement` on
// `window`, in the case's cost model.
void Replay(const Case& c, const RoutingWindow& window, const ExpertPlacement& placement,
            double* balance, double* worst, double* crossing) {
  PlanProblem problem =
      PlanProblem::Create(c.trace.layers, c.trace.num_experts, window, c.ranks,
                          placement.slots_per_rank(), c.cost, PlanWeights(), nullptr)
          .value();
  std::vector<LayerHosts> hosts;
  for (int32_t li = 0; li < problem.num_layers(); ++li) {
    hosts.push_back(problem.HostsOf(placement, li));
  }
  const ObjectiveTerms terms = problem.Evaluate(hosts);
  *balance = terms.balance;
  *crossing = terms.crossing;
  if (worst != nullptr) {
    *worst = 0;
    for (int32_t li = 0; li < problem.num_layers(); ++li) {
      *worst = std::max(*worst, problem.Balance(li, hosts[li]));
    }
  }
}

std::vector<Row> RunCase(const Case& c, double time_limit) {
  const int32_t E = c.trace.num_experts;
  const int32_t slots = (E + c.ranks - 1) / c.ranks + c.spare;
  std::vector<Row> rows;
  for (PlanStrategy s : {PlanStrategy::kContiguous, PlanStrategy::kGreedy, PlanStrategy::kIlp}) {
    PlanOptions options;
    options.strategy = s;
    options.num_ranks = c.ranks;
    options.slots_per_rank = slots;
    options.time_limit_seconds = c.time_limit > 0 ? c.time_limit : time_limit;
    options.cost_model = c.cost;
    PlanReport report;
    const RoutingWindow plan_window = c.trace.windows.front();
    StatusOr<ExpertPlacement> placement = Plan(c.trace.layers, E, plan_window, options, &report);
    if (!placement.ok()) {
      std::fprintf(stderr, "%s: %s\n", c.name.c_str(), placement.status().ToString().c_str());
      continue;
    }
    Row row;
    row.strategy = PlanStrategyName(s);
    row.seconds = report.seconds;
    Replay(c, plan_window, *placement, &row.balance, &row.worst, &row.crossing);
    Replay(c, c.trace.windows.back(), *placement, &row.replay_balance, nullptr,
           &row.replay_crossing);
    if (s == PlanStrategy::kIlp) row.gap = report.worst_gap;
    rows.push_back(row);
  }
  return rows;
}

std::vector<Case> SyntheticCases(bool quick) {
  struct Shape {
    int32_t experts, top_k, layers, ranks;
  };
  std::vector<Shape> shapes = {{8, 2, 32, 4}, {64, 8, 16, 8}, {64, 8, 16, 16}, {128, 8, 48, 16}};
  std::vector<double> zipfs = {0.8, 1.2};
  if (quick) shapes = {{8, 2, 8, 4}, {64, 8, 16, 8}}, zipfs = {1.0};
  std::vector<Case> cases;
  for (const Shape& shape : shapes) {
    for (double zipf : zipfs) {
      SyntheticTraceOptions o;
      o.num_layers = shape.layers;
      o.num_experts = shape.experts;
      o.top_k = shape.top_k;
      o.zipf_exponent = zipf;
      o.affinity = 0.5;
      o.num_windows = 2;
      o.tokens_per_window = 16384;
      o.seed = 7;
      RoutingTrace trace = GenerateSyntheticTrace(o).value();
      for (int32_t spare : {0, 1, 2}) {
        char name[96];
        std::snprintf(name, sizeof(name), "syn E%d k%d L%d R%d s%.1f +%d", shape.experts,
                      shape.top_k, shape.layers, shape.ranks, zipf, spare);
        cases.push_back({name, trace, shape.ranks, spare, CostModel(), 0});
      }
    }
  }
  return cases;
}

std::vector<Case> RealCases(const std::string& path) {
  std::vector<Case> cases;
  for (const char* dataset : {"olmoe_c4", "olmoe_github", "mixtral_c4"}) {
    StatusOr<RoutingTrace> trace = RoutingTrace::Load(path, dataset);
    if (!trace.ok()) {
      std::fprintf(stderr, "skipping %s: %s\n", dataset, trace.status().ToString().c_str());
      continue;
    }
    for (int32_t ranks : {4, 8}) {
      for (int32_t spare : {0, 1, 2}) {
        cases.push_back(
            {std::string(dataset) + " R" + std::to_string(ranks) + " +" + std::to_string(spare),
             *trace, ranks, spare, CostModel(), 0});
      }
    }
  }
  return cases;
}

// Time to quality: the goal case (64 experts x 16 layers x 8 ranks) at several ILP limits.
std::vector<Case> TimeSweepCases() {
  SyntheticTraceOptions o;
  o.num_layers = 16;
  o.num_experts = 64;
  o.top_k = 8;
  o.zipf_exponent = 1.0;
  o.affinity = 0.5;
  o.num_windows = 2;
  o.tokens_per_window = 16384;
  o.seed = 7;
  const RoutingTrace trace = GenerateSyntheticTrace(o).value();
  std::vector<Case> cases;
  for (double limit : {0.1, 0.3, 1.0, 3.0}) {
    for (int32_t spare : {0, 1}) {
      char name[96];
      std::snprintf(name, sizeof(name), "limit %.1fs E64 L16 R8 +%d", limit, spare);
      cases.push_back({name, trace, 8, spare, CostModel(), limit});
    }
  }
  return cases;
}

// Decode cost (seconds mode, H100 numbers, bf16) on the real OLMoE GitHub trace with OLMoE-1B-7B
// shapes (hidden 2048, moe_intermediate 1024): at small batches a replica's weight reads cost.
std::vector<Case> DecodeCostCases(const std::string& path) {
  StatusOr<RoutingTrace> trace = RoutingTrace::Load(path, "olmoe_github");
  if (!trace.ok()) return {};
  ExpertShape olmoe;
  olmoe.hidden_size = 2048;
  olmoe.moe_intermediate_size = 1024;
  olmoe.num_experts = 64;
  std::vector<Case> cases;
  for (int64_t batch : {16, 64, 512}) {
    const CostModel cost = CostModel::FromModel(olmoe, "bf16", MachineNumbers(), batch).value();
    cases.push_back(
        {"olmoe_github R8 +1 B=" + std::to_string(batch) + " (s)", *trace, 8, 1, cost, 0});
  }
  return cases;
}

}  // namespace
}  // namespace sy

int main(int argc, char** argv) {
  CLI::App app{"planner_bench: expert placement quality and planning time"};
  double time_limit = 1.0;
  bool quick = false;
  std::string real = "tests/data/traces/olmoe-mixtral-routing.json";
  app.add_option("--time-limit", time_limit, "ILP time limit per plan, seconds");
  app.add_flag("--quick", quick, "a few small cases");
  app.add_option("--real-traces", real,
                 "the real traces (tests/data/traces/olmoe-mixtral-routing.json)");
  CLI11_PARSE(app, argc, argv);

  std::vector<sy::Case> cases = sy::SyntheticCases(quick);
  for (sy::Case& c : sy::RealCases(real)) cases.push_back(std::move(c));
  for (sy::Case& c : sy::DecodeCostCases(real)) cases.push_back(std::move(c));
  if (!quick) {
    for (sy::Case& c : sy::TimeSweepCases()) cases.push_back(std::move(c));
  }
  nlohmann::json json = nlohmann::json::array();
  std::printf("%-32s %-10s %8s %8s %8s %8s %9s %9s %8s %7s\n", "case", "strategy", "seconds", "bal",
              "worst", "cross", "cut_vs_c", "replay_b", "replay_x", "gap");
  for (const sy::Case& c : cases) {
    const std::vector<sy::Row> rows = sy::RunCase(c, time_limit);
    double contiguous_crossing = -1;
    for (const sy::Row& r : rows) {
      if (r.strategy == "contiguous") contiguous_crossing = r.crossing;
      const double cut = contiguous_crossing > 0 ? 1 - r.crossing / contiguous_crossing : 0;
      std::printf("%-32s %-10s %8.3f %8.4f %8.4f %8.4f %9.3f %9.4f %8.4f %7.4f\n", c.name.c_str(),
                  r.strategy.c_str(), r.seconds, r.balance, r.worst, r.crossing, cut,
                  r.replay_balance, r.replay_crossing, r.gap);
      json.push_back({{"case", c.name},
                      {"strategy", r.strategy},
                      {"seconds", r.seconds},
                      {"balance_mean", r.balance},
                      {"balance_worst_layer", r.worst},
                      {"crossing", r.crossing},
                      {"traffic_cut_vs_contiguous", contiguous_crossing > 0 ? cut : 0.0},
                      {"replay_balance_mean", r.replay_balance},
                      {"replay_crossing", r.replay_crossing},
                      {"ilp_worst_gap", r.gap}});
    }
    std::fflush(stdout);
  }
  std::printf("JSON %s\n", json.dump().c_str());
  return 0;
}
