#include "server/bench/bench_dataset.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

namespace sy::bench {
namespace {

int64_t DrawLength(int64_t len, double ratio, std::mt19937_64& rng) {
  const auto lo = std::max<int64_t>(1, static_cast<int64_t>(std::floor(len * (1 - ratio))));
  const auto hi = std::max<int64_t>(lo, static_cast<int64_t>(std::ceil(len * (1 + ratio))));
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

bool IsHumanRole(const std::string& from) { return from == "human" || from == "user"; }
bool IsModelRole(const std::string& from) {
  return from == "gpt" || from == "chatgpt" || from == "assistant";
}

// SAX consumer for [ {"conversations": [ {"from": .., "value": ..}, .. ], ..}, .. ]. Tracks the
// open containers and, for each object, the key being read; everything else is skipped.
class ShareGptSax : public nlohmann::json::json_sax_t {
 public:
  explicit ShareGptSax(std::vector<ShareGptPair>* out) : out_(out) {}

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }

  bool string(string_t& val) override {
    if (!InTurn()) return true;
    if (stack_.back().key == "from") from_ = val;
    if (stack_.back().key == "value") value_ = std::move(val);
    return true;
  }
  bool key(string_t& val) override {
    stack_.back().key = val;
    return true;
  }
  bool start_object(std::size_t) override {
    stack_.push_back({true, ""});
    if (InTurn()) {
      from_.clear();
      value_.clear();
    }
    if (stack_.size() == 2) have_prompt_ = have_pair_ = false;
    return true;
  }
  bool end_object() override {
    if (InTurn()) EndTurn();
    if (stack_.size() == 2 && have_pair_) out_->push_back(std::move(pair_));
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (stack_.empty()) saw_list_ = true;
    stack_.push_back({false, ""});
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    error_ = "ShareGPT JSON: " + std::string(ex.what());
    return false;
  }

  const std::string& error() const { return error_; }
  bool saw_list() const { return saw_list_; }

 private:
  struct Frame {
    bool is_object;
    std::string key;  // the key whose value is being read (objects only)
  };

  // Inside a turn object: list > entry{"conversations"} > list > turn.
  bool InTurn() const {
    return stack_.size() == 4 && !stack_[0].is_object && stack_[1].is_object &&
           stack_[1].key == "conversations" && !stack_[2].is_object && stack_[3].is_object;
  }

  void EndTurn() {
    if (have_pair_) return;
    if (!have_prompt_ && IsHumanRole(from_)) {
      pair_.prompt = std::move(value_);
      have_prompt_ = true;
    } else if (have_prompt_ && IsModelRole(from_)) {
      pair_.completion = std::move(value_);
      have_pair_ = true;
    }
  }

  std::vector<ShareGptPair>* out_;
  std::vector<Frame> stack_;
  std::string from_, value_, error_;
  ShareGptPair pair_;
  bool have_prompt_ = false, have_pair_ = false, saw_list_ = false;
};

}  // namespace

StatusOr<std::vector<BenchRequest>> MakeRandomRequests(const RandomDatasetOptions& opts) {
  if (opts.num_prompts <= 0) return Status::InvalidArgument("--num-prompts must be positive");
  if (opts.input_len <= 0 || opts.output_len <= 0) {
    return Status::InvalidArgument("--input-len and --output-len must be positive");
  }
  if (!(opts.range_ratio >= 0 && opts.range_ratio < 1)) {
    return Status::InvalidArgument("--range-ratio must be in [0, 1)");
  }
  if (opts.vocab_size <= 0) return Status::InvalidArgument("--vocab-size must be positive");
  std::mt19937_64 rng(opts.seed);
  std::uniform_int_distribution<int64_t> token(0, opts.vocab_size - 1);
  std::vector<BenchRequest> out;
  out.reserve(static_cast<size_t>(opts.num_prompts));
  for (int64_t i = 0; i < opts.num_prompts; ++i) {
    BenchRequest r;
    r.prompt_len = DrawLength(opts.input_len, opts.range_ratio, rng);
    r.output_len = DrawLength(opts.output_len, opts.range_ratio, rng);
    r.prompt = nlohmann::json::array();
    for (int64_t t = 0; t < r.prompt_len; ++t) r.prompt.push_back(token(rng));
    out.push_back(std::move(r));
  }
  return out;
}

StatusOr<std::vector<ShareGptPair>> ParseShareGpt(std::istream& in) {
  std::vector<ShareGptPair> pairs;
  ShareGptSax sax(&pairs);
  if (!nlohmann::json::sax_parse(in, &sax)) return Status::InvalidArgument(sax.error());
  if (!sax.saw_list()) return Status::InvalidArgument("ShareGPT JSON must be a list");
  return pairs;
}

StatusOr<std::vector<ShareGptPair>> LoadShareGpt(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open dataset " + path);
  return ParseShareGpt(in);
}

int64_t EstimateTokens(const std::string& text) {
  return std::max<int64_t>(1, static_cast<int64_t>((text.size() + 3) / 4));
}

StatusOr<std::vector<BenchRequest>> MakeShareGptRequests(const std::vector<ShareGptPair>& pairs,
                                                         const ShareGptOptions& opts,
                                                         const TokenCounter& count_tokens) {
  if (opts.num_prompts <= 0) return Status::InvalidArgument("--num-prompts must be positive");
  std::vector<size_t> order(pairs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(opts.seed);
  std::shuffle(order.begin(), order.end(), rng);

  std::vector<BenchRequest> kept;
  for (size_t i : order) {
    if (static_cast<int64_t>(kept.size()) == opts.num_prompts) break;
    SY_ASSIGN_OR_RETURN(const int64_t prompt_len, count_tokens(pairs[i].prompt));
    int64_t output_len = 0;
    if (opts.output_len) {
      output_len = *opts.output_len;
    } else {
      SY_ASSIGN_OR_RETURN(output_len, count_tokens(pairs[i].completion));
    }
    const bool output_ok = opts.output_len || output_len >= 4;
    if (prompt_len < 4 || !output_ok || prompt_len > 1024 || prompt_len + output_len > 2048) {
      continue;
    }
    kept.push_back({pairs[i].prompt, prompt_len, output_len});
  }
  if (kept.empty()) return Status::InvalidArgument("no usable conversation in the dataset");
  for (size_t i = 0; static_cast<int64_t>(kept.size()) < opts.num_prompts; ++i) {
    BenchRequest again = kept[i];
    kept.push_back(std::move(again));
  }
  return kept;
}

}  // namespace sy::bench
