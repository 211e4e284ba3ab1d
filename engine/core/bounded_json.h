// Parses JSON that a client sent (request bodies, placements) with a bound on nesting, so no later
// recursive walk (copy, dump, destruction, conversion) can exhaust the stack on a hostile document.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "engine/core/status.h"

namespace sy {

// The deepest nesting of arrays and objects a client's JSON may have; `{"a": [1]}` nests 2 levels.
// Chat requests need a handful (messages[i].content[j], tools[i].function.parameters...).
constexpr int kMaxUserJsonDepth = 64;

// Parses `text`, rejecting it before building anything when arrays and objects nest deeper than
// `max_depth`. InvalidArgument "<subject> is not valid JSON" or "<subject> nests arrays and objects
// deeper than <max_depth> levels".
StatusOr<nlohmann::json> ParseBoundedJson(std::string_view text, const std::string& subject,
                                          int max_depth = kMaxUserJsonDepth);

}  // namespace sy
