#include "engine/moe/int_array_json.h"

namespace sy {
namespace {

template <typename T>
void AppendInts(std::span<const T> values, std::string* out) {
  out->push_back('[');
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out->push_back(',');
    out->append(std::to_string(values[i]));
  }
  out->push_back(']');
}

}  // namespace

void AppendIntArray(std::span<const int64_t> values, std::string* out) { AppendInts(values, out); }
void AppendIntArray(std::span<const int32_t> values, std::string* out) { AppendInts(values, out); }

}  // namespace sy
