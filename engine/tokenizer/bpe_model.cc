#include "engine/tokenizer/bpe_model.h"

#include <queue>

#include "engine/core/json_fields.h"
#include "engine/tokenizer/unicode.h"

namespace sy::tokenizer {
namespace {

using nlohmann::json;

// Words longer than this are not cached (they are rare and would crowd the cache).
constexpr size_t kMaxCachedWordBytes = 64;

size_t Utf8CharLength(std::string_view s, size_t pos) {
  size_t next = pos;
  DecodeUtf8(s, &next);
  return next - pos;
}

}  // namespace

StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const json& model) {
  auto bpe = std::unique_ptr<BpeModel>(new BpeModel());
  const json* vocab = json_fields::FindMember(model, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return Status::DataLoss("BPE model without a \"vocab\" object");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const std::optional<std::string> v = json_fields::LenientString(model, key);
    if (v && !v->empty())
      return Status::Unimplemented(std::string("BPE ") + key + " is not supported");
  }
  if (json_fields::LenientBool(model, "byte_fallback", false)) {
    return Status::Unimplemented("BPE byte_fallback is not supported for tokenizer.json");
  }
  if (const json* dropout = json_fields::FindMember(model, "dropout");
      dropout && !dropout->is_null()) {
    if (!dropout->is_number() || dropout->get<double>() != 0.0) {
      return Status::Unimplemented("BPE dropout is not supported");
    }
  }
  bpe->vocab_.reserve(vocab->size());
  int64_t max_id = -1;
  for (const auto& [token, value] : vocab->items()) {
    const std::optional<int64_t> id = json_fields::AsInt(value);
    if (!id || *id < 0 || *id > kMaxTokenId) {
      return Status::DataLoss("BPE vocab entry \"" + token + "\" has a bad id");
    }
    bpe->vocab_[token] = static_cast<int32_t>(*id);
    max_id = std::max(max_id, *id);
  }
  if (max_id >= 4 * static_cast<int64_t>(bpe->vocab_.size()) + 1024) {
    return Status::DataLoss("BPE vocab ids are too sparse (max id " + std::to_string(max_id) +
                            " for " + std::to_string(bpe->vocab_.size()) + " tokens)");
  }
  bpe->id_to_token_.assign(max_id + 1, nullptr);
  for (const auto& [token, id] : bpe->vocab_) {
    if (bpe->id_to_token_[id] == nullptr || token < *bpe->id_to_token_[id]) {
      bpe->id_to_token_[id] = &token;
    }
  }
  if (const json* merges = json_fields::FindMember(model, "merges"); merges && !merges->is_null()) {
    SY_RETURN_IF_ERROR(bpe->ParseMerges(*merges));
  }
  if (const std::optional<std::string> unk = json_fields::LenientString(model, "unk_token")) {
    bpe->unk_id_ = bpe->TokenToId(*unk);
    if (!bpe->unk_id_) return Status::DataLoss("BPE unk_token \"" + *unk + "\" is not in vocab");
  }
  bpe->fuse_unk_ = json_fields::LenientBool(model, "fuse_unk", false);
  bpe->ignore_merges_ = json_fields::LenientBool(model, "ignore_merges", false);
  return bpe;
}

Status BpeModel::ParseMerges(const json& merges) {
  if (!merges.is_array()) return Status::DataLoss("BPE \"merges\" is not a list");
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    std::string_view left, right;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return Status::DataLoss("BPE merge #" + std::to_string(rank) + " \"" + s +
                                "\" is not two tokens separated by one space");
      }
      left = std::string_view(s).substr(0, space);
      right = std::string_view(s).substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get_ref<const std::string&>();
      right = m[1].get_ref<const std::string&>();
    } else {
      return Status::DataLoss("BPE merge #" + std::to_string(rank) + " is malformed");
    }
    const std::optional<int32_t> a = TokenToId(left), b = TokenToId(right);
    const std::string joined = std::string(left) + std::string(right);
    const std::optional<int32_t> result = TokenToId(joined);
    if (!a || !b || !result) {
      return Status::DataLoss("BPE merge #" + std::to_string(rank) + " (" + std::string(left) +
                              " " + std::string(right) + ") uses a token not in vocab");
    }
    // Like Hugging Face, a repeated pair keeps the rank of its last occurrence.
    merges_[PairKey(*a, *b)] = Merge{static_cast<int32_t>(rank), *result};
  }
  return Status::Ok();
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return nullptr;
  return id_to_token_[id];
}

void BpeModel::Encode(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const std::optional<int32_t> id = TokenToId(word)) {
      out->push_back(*id);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    MergeWord(word, out);
    return;
  }
  CacheShard& shard = cache_[std::hash<std::string_view>()(word) % kCacheShards];
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    const auto it = shard.words.find(word);
    if (it != shard.words.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out->size();
  MergeWord(word, out);
  std::lock_guard<std::mutex> lock(shard.mu);
  if (shard.words.size() < kCacheShardCapacity) {
    shard.words.emplace(std::string(word), std::vector<int32_t>(out->begin() + start, out->end()));
  }
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>* out) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  bool last_was_unk = false;
  for (size_t pos = 0; pos < word.size();) {
    const size_t len = Utf8CharLength(word, pos);
    const std::optional<int32_t> id = TokenToId(word.substr(pos, len));
    pos += len;
    if (!id && !unk_id_) continue;  // no unk token: the character is dropped, as in HF
    if (!id && fuse_unk_ && last_was_unk) continue;
    last_was_unk = !id;
    const int32_t n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id.value_or(unk_id_.value_or(0)), n - 1, n + 1, true});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  const auto push_pair = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const auto it = merges_.find(PairKey(symbols[left].id, symbols[symbols[left].next].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.result});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    const auto it = merges_.find(PairKey(left.id, symbols[left.next].id));
    if (it == merges_.end() || it->second.result != top.result) continue;
    Symbol& right = symbols[left.next];
    left.id = top.result;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out->push_back(symbols[i].id);
}

}  // namespace sy::tokenizer
