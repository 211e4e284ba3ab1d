// A first pass with a SAX handler that only counts depth and stops at the first container past
// the limit; nlohmann's parser keeps its own nesting on the heap, so neither pass recurses.
#include "engine/core/bounded_json.h"

namespace sy {
namespace {

using nlohmann::json;

class DepthCheck final : public nlohmann::json_sax<json> {
 public:
  explicit DepthCheck(int max_depth) : max_depth_(max_depth) {}

  bool too_deep() const { return too_deep_; }

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool key(string_t&) override { return true; }
  bool start_object(std::size_t) override { return Enter(); }
  bool end_object() override { return Leave(); }
  bool start_array(std::size_t) override { return Enter(); }
  bool end_array() override { return Leave(); }
  bool parse_error(std::size_t, const std::string&, const json::exception&) override {
    return false;
  }

 private:
  bool Enter() {
    if (++depth_ > max_depth_) too_deep_ = true;
    return !too_deep_;
  }
  bool Leave() {
    --depth_;
    return true;
  }

  const int max_depth_;
  int depth_ = 0;
  bool too_deep_ = false;
};

}  // namespace

StatusOr<json> ParseBoundedJson(std::string_view text, const std::string& subject, int max_depth) {
  DepthCheck check(max_depth);
  if (!json::sax_parse(text.begin(), text.end(), &check)) {
    if (check.too_deep()) {
      return Status::InvalidArgument(subject + " nests arrays and objects deeper than " +
                                     std::to_string(max_depth) + " levels");
    }
    return Status::InvalidArgument(subject + " is not valid JSON");
  }
  // Valid and shallow: building the value cannot fail or recurse deeply.
  return json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

}  // namespace sy
