// BpeModel: the "BPE" model of a tokenizer.json (vocab, ranked merges) and the merge loop that
// turns one pre-token into ids, equal to Hugging Face tokenizers' BPE. Immutable after FromJson
// apart from an internal, mutex-guarded cache of encoded words; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/core/status.h"

namespace sy::tokenizer {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Largest token id accepted from a file (keeps id-indexed tables bounded).
inline constexpr int64_t kMaxTokenId = (1 << 24) - 1;

class BpeModel {
 public:
  // From the "model" object of a tokenizer.json (type BPE).
  static StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model);

  // Appends the ids of one pre-token written in the vocabulary's alphabet.
  void Encode(std::string_view word, std::vector<int32_t>* out) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token of `id`, or nullptr if the vocabulary has none.
  const std::string* IdToToken(int32_t id) const;
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  Status ParseMerges(const nlohmann::json& merges);
  void MergeWord(std::string_view word, std::vector<int32_t>* out) const;

  StringIdMap vocab_;
  std::vector<const std::string*> id_to_token_;  // points into vocab_ keys
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kCacheShardCapacity = 8192;
  struct CacheShard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> words;
  };
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace sy::tokenizer
