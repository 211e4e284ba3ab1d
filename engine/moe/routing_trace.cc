#include "engine/moe/routing_trace.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <utility>

#include "engine/core/check.h"
#include "engine/core/file_util.h"
#include "engine/core/json_fields.h"
#include "engine/moe/int_array_json.h"

namespace sy {

namespace {

using json = nlohmann::json;
namespace jf = json_fields;

constexpr char kRoutingFormat[] = "switchyard-routing-v1";
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

// One window of our format, shapes checked against the header fields already read.
StatusOr<RoutingWindow> WindowFromJson(const json& entry, const std::string& path,
                                       int64_t num_layers, int64_t num_experts) {
  RoutingWindow window;
  SY_ASSIGN_OR_RETURN(window.tokens, jf::IntMember(entry, "tokens", path, 0, kMaxInt64));
  SY_ASSIGN_OR_RETURN(const json* counts, jf::Member(entry, "counts", path));
  SY_RETURN_IF_ERROR(jf::CheckArray(*counts, path + ".counts", num_layers));
  for (size_t li = 0; li < counts->size(); ++li) {
    SY_ASSIGN_OR_RETURN(std::vector<int64_t> row,
                        jf::IntArray((*counts)[li], jf::IndexPath(path + ".counts", li),
                                     num_experts, 0, kMaxInt64));
    window.counts.push_back(std::move(row));
  }
  if (!entry.contains("transitions")) return window;
  const json& transitions = entry["transitions"];
  const std::string tpath = path + ".transitions";
  SY_RETURN_IF_ERROR(jf::CheckArray(transitions, tpath, num_layers > 0 ? num_layers - 1 : 0));
  for (size_t li = 0; li < transitions.size(); ++li) {
    SY_ASSIGN_OR_RETURN(std::vector<int64_t> matrix,
                        jf::IntArray(transitions[li], jf::IndexPath(tpath, li),
                                     num_experts * num_experts, 0, kMaxInt64));
    window.transitions.push_back(std::move(matrix));
  }
  return window;
}

// Rows of an E x E matrix given as [[...], ...], appended row-major to `flat`.
Status AppendMatrix(const json& matrix, const std::string& path, int64_t num_experts,
                    std::vector<int64_t>* flat) {
  SY_RETURN_IF_ERROR(jf::CheckArray(matrix, path, num_experts));
  for (size_t i = 0; i < matrix.size(); ++i) {
    SY_ASSIGN_OR_RETURN(const std::vector<int64_t> row,
                        jf::IntArray(matrix[i], jf::IndexPath(path, i), num_experts, 0, kMaxInt64));
    flat->insert(flat->end(), row.begin(), row.end());
  }
  return Status::Ok();
}

// olmoe_c4_transitions: "pairs" [[0, 7], [7, 15]] and "matrices" [2][64][64], rows = source.
Status ReadRankAlignedTransitions(const json& doc, const RoutingTrace& trace,
                                  RoutingWindow* window) {
  const std::string path = "traces.olmoe_c4_transitions";
  SY_ASSIGN_OR_RETURN(const json* transitions, jf::Member(doc, "olmoe_c4_transitions", "traces"));
  SY_ASSIGN_OR_RETURN(const json* pairs, jf::Member(*transitions, "pairs", path));
  SY_ASSIGN_OR_RETURN(const json* matrices, jf::Member(*transitions, "matrices", path));
  const int64_t num_pairs = trace.num_layers() - 1;
  SY_RETURN_IF_ERROR(jf::CheckArray(*pairs, path + ".pairs", num_pairs));
  SY_RETURN_IF_ERROR(jf::CheckArray(*matrices, path + ".matrices", num_pairs));
  for (int64_t i = 0; i < num_pairs; ++i) {
    SY_ASSIGN_OR_RETURN(
        const std::vector<int64_t> pair,
        jf::IntArray((*pairs)[i], jf::IndexPath(path + ".pairs", i), 2, 0, kMaxInt32));
    if (pair[0] != trace.layers[i] || pair[1] != trace.layers[i + 1]) {
      return jf::FieldError(jf::IndexPath(path + ".pairs", i), "must name consecutive MoE layers");
    }
    std::vector<int64_t> flat;
    SY_RETURN_IF_ERROR(AppendMatrix((*matrices)[i], jf::IndexPath(path + ".matrices", i),
                                    trace.num_experts, &flat));
    window->transitions.push_back(std::move(flat));
  }
  return Status::Ok();
}

// The tests/data/traces/olmoe-mixtral-routing.json layout: one window per dataset, layers from the
// top-level "layers", tokens = assignments / top_k. Only olmoe_c4 has transitions, and they are
// rank-aligned (the r-th choice at one layer paired with the r-th at the next), so each matrix
// sums to tokens * top_k rather than the tokens * top_k^2 of full co-activation.
StatusOr<RoutingTrace> FromOlmoeRoutingAnalysis(const std::string& text,
                                                const std::string& dataset) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::InvalidArgument("traces: not valid JSON");
  RoutingTrace trace;
  SY_ASSIGN_OR_RETURN(const json* layers, jf::Member(doc, "layers", "traces"));
  SY_ASSIGN_OR_RETURN(const std::vector<int64_t> layer_ids,
                      jf::IntArray(*layers, "traces.layers", -1, 0, kMaxInt32));
  trace.layers.assign(layer_ids.begin(), layer_ids.end());
  const std::string path = "traces." + dataset;
  if (dataset.starts_with("olmoe_c4_") || !doc.contains(dataset)) {
    return Status::NotFound(path + ": no such dataset (olmoe_c4, olmoe_github, mixtral_c4)");
  }
  const json& entry = doc[dataset];
  SY_ASSIGN_OR_RETURN(const int64_t experts, jf::IntMember(entry, "num_experts", path, 1, 4096));
  SY_ASSIGN_OR_RETURN(const int64_t top_k, jf::IntMember(entry, "top_k", path, 1, experts));
  trace.num_experts = static_cast<int32_t>(experts);
  trace.top_k = static_cast<int32_t>(top_k);
  SY_ASSIGN_OR_RETURN(const json* counts, jf::Member(entry, "counts", path));
  SY_RETURN_IF_ERROR(jf::CheckArray(*counts, path + ".counts", trace.num_layers()));
  RoutingWindow window;
  for (size_t li = 0; li < counts->size(); ++li) {
    SY_ASSIGN_OR_RETURN(
        std::vector<int64_t> row,
        jf::IntArray((*counts)[li], jf::IndexPath(path + ".counts", li), experts, 0, kMaxInt64));
    window.counts.push_back(std::move(row));
  }
  if (!window.counts.empty()) {
    window.tokens =
        std::accumulate(window.counts[0].begin(), window.counts[0].end(), int64_t{0}) / top_k;
  }
  const json* source = doc.contains("source") ? &doc["source"] : nullptr;
  trace.source = (source && source->is_string() ? source->get<std::string>() : "shared traces") +
                 "; dataset " + dataset;
  if (dataset == "olmoe_c4") {
    SY_RETURN_IF_ERROR(ReadRankAlignedTransitions(doc, trace, &window));
    trace.source +=
        "; transitions are rank-aligned pairs (r-th choice at one layer with r-th "
        "choice at the next), summing to tokens*top_k, not full co-activation";
  }
  trace.windows.push_back(std::move(window));
  SY_RETURN_IF_ERROR(trace.Validate());
  return trace;
}

}  // namespace

bool RoutingTrace::has_transitions() const {
  if (windows.empty() || num_layers() < 2) return false;
  for (const RoutingWindow& window : windows) {
    if (window.transitions.empty()) return false;
  }
  return true;
}

RoutingWindow RoutingTrace::Total() const { return Sum(0, windows.size()); }

RoutingWindow RoutingTrace::Sum(size_t first, size_t n) const {
  SY_CHECK(first <= windows.size() && n <= windows.size() - first);
  RoutingWindow total;
  total.counts.assign(num_layers(), std::vector<int64_t>(num_experts, 0));
  bool all_have_transitions = n > 0 && num_layers() >= 2;
  for (size_t w = first; w < first + n; ++w) {
    if (windows[w].transitions.empty()) all_have_transitions = false;
  }
  if (all_have_transitions) {
    total.transitions.assign(num_layers() - 1,
                             std::vector<int64_t>(static_cast<size_t>(num_experts) * num_experts));
  }
  for (size_t w = first; w < first + n; ++w) {
    const RoutingWindow& window = windows[w];
    total.tokens += window.tokens;
    for (size_t li = 0; li < total.counts.size(); ++li) {
      for (size_t e = 0; e < total.counts[li].size(); ++e)
        total.counts[li][e] += window.counts[li][e];
    }
    for (size_t li = 0; li < total.transitions.size(); ++li) {
      for (size_t i = 0; i < total.transitions[li].size(); ++i) {
        total.transitions[li][i] += window.transitions[li][i];
      }
    }
  }
  return total;
}

Status RoutingTrace::Validate() const {
  if (num_experts <= 0) return Status::InvalidArgument("trace: num_experts must be positive");
  if (top_k <= 0 || top_k > num_experts) {
    return Status::InvalidArgument("trace: top_k must be in [1, num_experts]");
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || (i > 0 && layers[i] <= layers[i - 1])) {
      return Status::InvalidArgument("trace: layers must be non-negative and ascending");
    }
  }
  const size_t experts = static_cast<size_t>(num_experts);
  for (size_t w = 0; w < windows.size(); ++w) {
    const RoutingWindow& window = windows[w];
    const std::string where = "trace: window " + std::to_string(w);
    if (window.tokens < 0 || window.tokens > kMaxInt64 / top_k) {
      return Status::InvalidArgument(where + ": token count out of range");
    }
    if (window.counts.size() != layers.size()) {
      return Status::InvalidArgument(where + ": counts for " +
                                     std::to_string(window.counts.size()) +
                                     " layers, the trace has " + std::to_string(layers.size()));
    }
    for (size_t li = 0; li < window.counts.size(); ++li) {
      const std::vector<int64_t>& row = window.counts[li];
      if (row.size() != experts) {
        return Status::InvalidArgument(where + " layer " + std::to_string(layers[li]) +
                                       ": counts for " + std::to_string(row.size()) + " experts");
      }
      int64_t sum = 0;
      for (int64_t c : row) {
        if (c < 0 || c > kMaxInt64 - sum) {
          return Status::InvalidArgument(where + ": negative or overflowing count");
        }
        sum += c;
      }
      if (sum != window.tokens * top_k) {
        return Status::InvalidArgument(where + " layer " + std::to_string(layers[li]) +
                                       ": counts sum to " + std::to_string(sum) + ", expected " +
                                       "tokens * top_k = " + std::to_string(window.tokens * top_k));
      }
    }
    if (window.transitions.empty()) continue;
    if (window.transitions.size() + 1 != layers.size()) {
      return Status::InvalidArgument(where + ": transitions need num_layers - 1 matrices");
    }
    for (const std::vector<int64_t>& matrix : window.transitions) {
      if (matrix.size() != experts * experts) {
        return Status::InvalidArgument(where + ": a transition matrix is not E x E");
      }
      for (int64_t c : matrix) {
        if (c < 0) return Status::InvalidArgument(where + ": negative transition count");
      }
    }
  }
  return Status::Ok();
}

StatusOr<RoutingTrace> RoutingTrace::FromJson(const std::string& text) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::InvalidArgument("trace: not valid JSON");
  SY_ASSIGN_OR_RETURN(const json* format, jf::Member(doc, "format", "trace"));
  if (!format->is_string() || format->get<std::string>() != kRoutingFormat) {
    return jf::FieldError("trace.format", std::string("must be \"") + kRoutingFormat + "\"");
  }
  RoutingTrace trace;
  if (doc.contains("source")) {
    if (!doc["source"].is_string()) return jf::FieldError("trace.source", "must be a string");
    trace.source = doc["source"].get<std::string>();
  }
  // 4096 experts bounds the E x E transition matrices a file can declare.
  SY_ASSIGN_OR_RETURN(const int64_t experts, jf::IntMember(doc, "num_experts", "trace", 1, 4096));
  SY_ASSIGN_OR_RETURN(const int64_t top_k, jf::IntMember(doc, "top_k", "trace", 1, experts));
  trace.num_experts = static_cast<int32_t>(experts);
  trace.top_k = static_cast<int32_t>(top_k);
  SY_ASSIGN_OR_RETURN(const json* layers, jf::Member(doc, "layers", "trace"));
  SY_ASSIGN_OR_RETURN(const std::vector<int64_t> layer_ids,
                      jf::IntArray(*layers, "trace.layers", -1, 0, kMaxInt32));
  trace.layers.assign(layer_ids.begin(), layer_ids.end());
  SY_ASSIGN_OR_RETURN(const json* windows, jf::Member(doc, "windows", "trace"));
  SY_RETURN_IF_ERROR(jf::CheckArray(*windows, "trace.windows", -1));
  for (size_t w = 0; w < windows->size(); ++w) {
    SY_ASSIGN_OR_RETURN(RoutingWindow window,
                        WindowFromJson((*windows)[w], jf::IndexPath("trace.windows", w),
                                       trace.num_layers(), experts));
    trace.windows.push_back(std::move(window));
  }
  SY_RETURN_IF_ERROR(trace.Validate());
  return trace;
}

std::string RoutingTrace::ToJson() const {
  std::string out = std::string("{\n  \"format\": \"") + kRoutingFormat + "\",\n";
  out += "  \"source\": " + json(source).dump() + ",\n";
  out += "  \"num_experts\": " + std::to_string(num_experts) + ",\n";
  out += "  \"top_k\": " + std::to_string(top_k) + ",\n";
  out += "  \"layers\": ";
  AppendIntArray(layers, &out);
  out += ",\n  \"windows\": [";
  for (size_t w = 0; w < windows.size(); ++w) {
    const RoutingWindow& window = windows[w];
    out += w == 0 ? "\n" : ",\n";
    out += "    {\"tokens\": " + std::to_string(window.tokens) + ",\n     \"counts\": [";
    for (size_t li = 0; li < window.counts.size(); ++li) {
      out += li == 0 ? "\n      " : ",\n      ";
      AppendIntArray(window.counts[li], &out);
    }
    out += "]";
    if (!window.transitions.empty()) {
      out += ",\n     \"transitions\": [";
      for (size_t li = 0; li < window.transitions.size(); ++li) {
        out += li == 0 ? "\n      " : ",\n      ";
        AppendIntArray(window.transitions[li], &out);
      }
      out += "]";
    }
    out += "}";
  }
  out += "\n  ]\n}\n";
  return out;
}

StatusOr<RoutingTrace> RoutingTrace::Load(const std::string& path, const std::string& dataset) {
  SY_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  StatusOr<RoutingTrace> trace =
      dataset.empty() ? FromJson(text) : FromOlmoeRoutingAnalysis(text, dataset);
  if (!trace.ok()) return Status(trace.status().code(), path + ": " + trace.status().message());
  return trace;
}

Status RoutingTrace::Save(const std::string& path) const {
  return WriteStringToFile(path, ToJson());
}

}  // namespace sy
