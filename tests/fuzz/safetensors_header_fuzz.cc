// Fuzzes ParseSafetensorsHeader with arbitrary file bytes: it must never crash, and whatever it
// accepts must lie inside the bytes it was given.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/core/check.h"
#include "engine/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto header = sy::ParseSafetensorsHeader(bytes, "fuzz.safetensors");
  if (!header.ok()) {
    SY_CHECK(header.status().code() == sy::StatusCode::kDataLoss ||
             header.status().code() == sy::StatusCode::kUnimplemented);
    return 0;
  }
  SY_CHECK(header->data_start >= 8 && header->data_start <= size);
  const uint64_t data_size = size - header->data_start;
  for (const auto& [name, entry] : header->tensors) {
    SY_CHECK(entry.begin <= entry.end && entry.end <= data_size);
    uint64_t numel = 1;
    for (int64_t d : entry.shape) {
      SY_CHECK(d >= 0);
      numel *= static_cast<uint64_t>(d);
    }
    SY_CHECK(entry.end - entry.begin == numel * sy::dtype_size(entry.dtype));
  }
  return 0;
}
