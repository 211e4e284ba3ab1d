#include "engine/moe/planner/cbc_mip.h"

#include <CbcEventHandler.hpp>
#include <CbcHeuristic.hpp>
#include <CbcHeuristicLocal.hpp>
#include <CbcModel.hpp>
#include <CoinPackedMatrix.hpp>
#include <OsiClpSolverInterface.hpp>
#include <algorithm>
#include <cmath>

namespace sy {

namespace {

// Stops the search at the wall-clock deadline (CBC's own limit is checked less often).
class DeadlineHandler : public CbcEventHandler {
 public:
  explicit DeadlineHandler(Clock::time_point deadline) : deadline_(deadline) {}
  CbcAction event(CbcEvent) override { return Clock::now() >= deadline_ ? stop : noAction; }
  CbcEventHandler* clone() const override { return new DeadlineHandler(*this); }

 private:
  Clock::time_point deadline_;
};

}  // namespace

int32_t MipModel::AddColumn(double lower, double upper, double cost, bool integer) {
  col_lower.push_back(lower);
  col_upper.push_back(upper);
  objective.push_back(cost);
  is_integer.push_back(integer ? 1 : 0);
  return num_cols() - 1;
}

void MipModel::AddRow(double lower, double upper,
                      const std::vector<std::pair<int32_t, double>>& entries) {
  const int32_t row = num_rows();
  row_lower.push_back(lower);
  row_upper.push_back(upper);
  for (const auto& [col, value] : entries) {
    entry_row.push_back(row);
    entry_col.push_back(col);
    entry_value.push_back(value);
  }
}

double MipModel::ObjectiveOf(const std::vector<double>& values) const {
  double total = 0;
  for (int32_t c = 0; c < num_cols(); ++c) total += objective[c] * values[c];
  return total;
}

MipResult SolveMip(const MipModel& model, const std::vector<double>& start,
                   Clock::time_point deadline) {
  MipResult result;
  result.solution = start;
  result.objective = model.ObjectiveOf(start);
  result.bound = -1e300;
  const double seconds = std::chrono::duration<double>(deadline - Clock::now()).count();
  if (seconds <= 0) {
    result.hit_time_limit = true;
    return result;
  }
  CoinPackedMatrix matrix(false, model.entry_row.data(), model.entry_col.data(),
                          model.entry_value.data(),
                          static_cast<CoinBigIndex>(model.entry_value.size()));
  matrix.setDimensions(model.num_rows(), model.num_cols());
  OsiClpSolverInterface solver;
  solver.messageHandler()->setLogLevel(0);
  solver.loadProblem(matrix, model.col_lower.data(), model.col_upper.data(), model.objective.data(),
                     model.row_lower.data(), model.row_upper.data());
  for (int32_t c = 0; c < model.num_cols(); ++c) {
    if (model.is_integer[c]) solver.setInteger(c);
  }
  CbcModel cbc(solver);
  cbc.setLogLevel(0);
  cbc.messageHandler()->setLogLevel(0);
  cbc.solver()->messageHandler()->setLogLevel(0);
  cbc.setUseElapsedTime(true);
  cbc.setMaximumSeconds(seconds);
  cbc.setNumberThreads(0);
  // Strong branching evaluates many LPs per node without checking the clock: on the joint
  // model it overran a 0.5 s deadline by seconds.
  cbc.setNumberStrong(0);
  cbc.setNumberBeforeTrust(0);
  DeadlineHandler handler(deadline);
  cbc.passInEventHandler(&handler);
  CbcRounding rounding(cbc);
  cbc.addHeuristic(&rounding);
  CbcHeuristicLocal local(cbc);
  cbc.addHeuristic(&local);
  cbc.setBestSolution(start.data(), model.num_cols(), result.objective, true);
  cbc.branchAndBound();

  result.proven_optimal = cbc.isProvenOptimal();
  result.hit_time_limit = !result.proven_optimal;
  const double* best = cbc.bestSolution();
  if (best != nullptr) {
    std::vector<double> values(best, best + model.num_cols());
    for (int32_t c = 0; c < model.num_cols(); ++c) {
      if (model.is_integer[c]) values[c] = std::round(values[c]);
    }
    const double objective = model.ObjectiveOf(values);
    if (objective < result.objective) {
      result.solution = std::move(values);
      result.objective = objective;
    }
  }
  result.bound = std::min(result.objective, cbc.getBestPossibleObjValue());
  if (result.proven_optimal) result.bound = result.objective;
  return result;
}

}  // namespace sy
