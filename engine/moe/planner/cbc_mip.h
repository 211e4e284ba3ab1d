// MipModel and SolveMip: a small mixed-integer program in plain arrays, solved by COIN-OR CBC
// with a starting solution, a wall-clock deadline and no logging. Keeps CBC's headers out of
// the rest of the planner. SolveMip is reentrant (one CBC model per call).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sy {

struct MipModel {
  std::vector<double> col_lower, col_upper, objective;  // minimised
  std::vector<uint8_t> is_integer;
  std::vector<double> row_lower, row_upper;
  std::vector<int32_t> entry_row, entry_col;  // sparse constraint matrix
  std::vector<double> entry_value;

  int32_t num_cols() const { return static_cast<int32_t>(objective.size()); }
  int32_t num_rows() const { return static_cast<int32_t>(row_lower.size()); }
  int32_t AddColumn(double lower, double upper, double cost, bool integer);
  void AddRow(double lower, double upper, const std::vector<std::pair<int32_t, double>>& entries);
  // sum objective * values.
  double ObjectiveOf(const std::vector<double>& values) const;
};

struct MipResult {
  std::vector<double> solution;  // best found; the start when CBC found nothing better
  double objective = 0;          // of `solution`
  double bound = 0;              // best proven lower bound (<= objective)
  bool proven_optimal = false;
  bool hit_time_limit = false;
};

using Clock = std::chrono::steady_clock;

// Minimises `model` starting from the feasible `start`, stopping at `deadline` (CBC checks
// between nodes and heuristics; the root LP always finishes). Integer values come back rounded.
MipResult SolveMip(const MipModel& model, const std::vector<double>& start,
                   Clock::time_point deadline);

}  // namespace sy
