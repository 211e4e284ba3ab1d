#include "engine/tokenizer/added_vocab.h"

#include <algorithm>

#include "engine/tokenizer/unicode.h"

namespace sy::tokenizer {
namespace {

// The code point that ends text[0, end), or 0 if empty.
uint32_t LastChar(std::string_view text, size_t end) {
  if (end == 0) return 0;
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) {
    --start;
  }
  size_t pos = start;
  const uint32_t cp = DecodeUtf8(text, &pos);
  return pos == end ? cp : kInvalidByte;
}

// Rust regex's \w, which Hugging Face uses for single_word: letters, marks, Nd, Nl, Pc, the
// join controls and the symbol-category letters that are Alphabetic (circled, squared).
bool IsWordChar(uint32_t cp) {
  if (cp == kInvalidByte) return false;
  if (CharFlags(cp) & (kFlagLetter | kFlagMark)) return true;
  const GeneralCategory cat = CategoryOf(cp);
  return cat == GeneralCategory::kNd || cat == GeneralCategory::kNl ||
         cat == GeneralCategory::kPc || cp == 0x200C || cp == 0x200D ||
         (cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
         (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189);
}

bool IsSpace(uint32_t cp) { return cp != kInvalidByte && (CharFlags(cp) & kFlagSpace); }

// Start of the whitespace that ends text[0, end).
size_t TrailingSpaceStart(std::string_view text, size_t end) {
  while (end > 0) {
    const uint32_t cp = LastChar(text, end);
    if (!IsSpace(cp)) break;
    size_t len = 1;
    while (len < end && (static_cast<uint8_t>(text[end - len]) & 0xC0) == 0x80) ++len;
    end -= len;
  }
  return end;
}

// End of the whitespace that starts text[begin, ...).
size_t LeadingSpaceEnd(std::string_view text, size_t begin) {
  while (begin < text.size()) {
    size_t pos = begin;
    if (!IsSpace(DecodeUtf8(text, &pos))) break;
    begin = pos;
  }
  return begin;
}

}  // namespace

void AddedVocabulary::Trie::Insert(std::string_view key, int32_t token) {
  if (nodes.empty()) nodes.emplace_back();
  if (key.empty()) return;
  first_byte[static_cast<uint8_t>(key[0])] = true;
  int32_t node = 0;
  for (char ch : key) {
    const uint8_t b = static_cast<uint8_t>(ch);
    auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(b, INT32_MIN));
    if (it == children.end() || it->first != b) {
      const int32_t child = static_cast<int32_t>(nodes.size());
      children.insert(it, {b, child});
      nodes.emplace_back();
      node = child;
    } else {
      node = it->second;
    }
  }
  nodes[node].token = token;
}

std::pair<int32_t, size_t> AddedVocabulary::Trie::LongestAt(std::string_view text,
                                                            size_t pos) const {
  std::pair<int32_t, size_t> best = {-1, 0};
  if (nodes.empty() || !first_byte[static_cast<uint8_t>(text[pos])]) return best;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const uint8_t b = static_cast<uint8_t>(text[i]);
    const auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(b, INT32_MIN));
    if (it == children.end() || it->first != b) break;
    node = it->second;
    if (nodes[node].token >= 0) best = {nodes[node].token, i + 1 - pos};
  }
  return best;
}

void AddedVocabulary::Add(const AddedTokenDecl& token) {
  if (const auto it = by_id_.find(token.id); it != by_id_.end()) {
    by_content_.erase(tokens_[it->second].content);
    tokens_[it->second] = token;
    by_content_[token.content] = it->second;
    return;
  }
  if (const auto it = by_content_.find(token.content); it != by_content_.end()) {
    by_id_.erase(tokens_[it->second].id);
    tokens_[it->second] = token;
    by_id_[token.id] = it->second;
    return;
  }
  by_id_[token.id] = tokens_.size();
  by_content_[token.content] = tokens_.size();
  tokens_.push_back(token);
}

void AddedVocabulary::Build(std::string (*normalize)(std::string_view)) {
  raw_trie_ = Trie();
  normalized_trie_ = Trie();
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedTokenDecl& t = tokens_[i];
    if (t.normalized) {
      normalized_trie_.Insert(normalize ? normalize(t.content) : t.content,
                              static_cast<int32_t>(i));
    } else {
      raw_trie_.Insert(t.content, static_cast<int32_t>(i));
    }
  }
}

void AddedVocabulary::Split(std::string_view text, bool normalized,
                            std::vector<TextSegment>* out) const {
  const Trie& trie = normalized ? normalized_trie_ : raw_trie_;
  size_t done = 0;  // text[0, done) is already in *out
  for (size_t pos = 0; pos < text.size();) {
    const auto [index, len] = trie.LongestAt(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedTokenDecl& tok = tokens_[index];
    // Like Hugging Face's find_iter, the next search starts after this match even if it is
    // rejected or its span grows by rstrip.
    const size_t match_end = pos + len;
    pos = match_end;
    size_t start = match_end - len, stop = match_end;
    if (tok.single_word) {
      size_t after = stop;
      const bool word_after = stop < text.size() && IsWordChar(DecodeUtf8(text, &after));
      if (word_after || IsWordChar(LastChar(text, start))) continue;
    }
    if (tok.lstrip) start = TrailingSpaceStart(text, start);
    if (tok.rstrip) stop = LeadingSpaceEnd(text, stop);
    start = std::max(start, done);
    if (stop <= start) continue;
    if (done < start) out->push_back({-1, done, start});
    out->push_back({tok.id, start, stop});
    done = stop;
  }
  if (done < text.size()) out->push_back({-1, done, text.size()});
}

std::optional<int32_t> AddedVocabulary::Find(std::string_view content) const {
  const auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

const AddedTokenDecl* AddedVocabulary::ById(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

}  // namespace sy::tokenizer
