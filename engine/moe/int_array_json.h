// The compact integer-array writer of the placement and routing-trace files: long count
// vectors stay on one line. (They are read with engine/core/json_fields.h.)
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace sy {

// Appends "[a,b,c]".
void AppendIntArray(std::span<const int64_t> values, std::string* out);
void AppendIntArray(std::span<const int32_t> values, std::string* out);

}  // namespace sy
