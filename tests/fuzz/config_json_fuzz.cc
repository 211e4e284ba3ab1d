// Fuzzes ParseModelConfig with arbitrary text: it must never crash, a config it accepts must be
// self-consistent, and writing it back with ModelConfigToJson must parse to the same config.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "engine/core/check.h"
#include "engine/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto config = sy::ParseModelConfig(text);
  if (!config.ok()) {
    SY_CHECK(config.status().code() == sy::StatusCode::kInvalidArgument ||
             config.status().code() == sy::StatusCode::kUnimplemented);
    return 0;
  }
  const sy::ModelConfig& c = config.value();
  SY_CHECK(c.num_layers > 0 && c.num_heads > 0 && c.num_kv_heads > 0 && c.head_dim > 0);
  SY_CHECK(c.num_heads % c.num_kv_heads == 0);
  SY_CHECK(c.num_experts_per_tok >= 1 && c.num_experts_per_tok <= c.num_experts);
  SY_CHECK(c.layer_is_moe.size() == static_cast<size_t>(c.num_layers));
  SY_CHECK(c.layer_uses_sliding_window.size() == static_cast<size_t>(c.num_layers));
  const std::string written = sy::ModelConfigToJson(c).dump();
  const auto reparsed = sy::ParseModelConfig(written);
  SY_CHECK_MSG(reparsed.ok(), "%s\n%s", reparsed.status().ToString().c_str(), written.c_str());
  SY_CHECK_MSG(reparsed.value() == c, "%s", written.c_str());
  return 0;
}
