#include "engine/tokenizer/sp_encoder.h"

#include <algorithm>
#include <cfloat>
#include <cstdio>
#include <queue>

#include "engine/tokenizer/unicode.h"

namespace sy::tokenizer {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, sentencepiece's space
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
// sentencepiece's Unigram scores an unknown character this far below the worst piece.
constexpr float kUnkPenalty = 10.0f;

// sentencepiece's OneCharLen: the length a UTF-8 lead byte announces (1 for stray bytes).
size_t OneCharLen(std::string_view text) {
  constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return std::min<size_t>(text.size(), kLengths[static_cast<uint8_t>(text[0]) >> 4]);
}

std::string ByteToPiece(int byte) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "<0x%02X>", byte);
  return buf;
}

bool IsNormalType(SpPieceType type) {
  return type == SpPieceType::kNormal || type == SpPieceType::kUserDefined ||
         type == SpPieceType::kUnused;
}

}  // namespace

StatusOr<std::unique_ptr<SpEncoder>> SpEncoder::Create(SpModel model) {
  auto encoder = std::unique_ptr<SpEncoder>(new SpEncoder(std::move(model)));
  SY_RETURN_IF_ERROR(encoder->Init());
  return encoder;
}

Status SpEncoder::Init() {
  if (model_.model_type != SpModelType::kBpe && model_.model_type != SpModelType::kUnigram) {
    return Status::Unimplemented(std::string("sentencepiece model type ") +
                                 (model_.model_type == SpModelType::kWord ? "WORD" : "CHAR") +
                                 " is not supported (only BPE and UNIGRAM are)");
  }
  if (!model_.precompiled_charsmap.empty()) {
    return Status::Unimplemented("sentencepiece normalizer \"" + model_.normalizer_name +
                                 "\" (a precompiled charsmap) is not supported; only identity "
                                 "normalization is");
  }
  std::array<bool, 256> byte_found{};
  min_score_ = FLT_MAX;
  max_score_ = FLT_MIN;  // sentencepiece's starting value, so user-defined bonuses stay >= 0
  for (int32_t id = 0; id < size(); ++id) {
    const SpPiece& piece = model_.pieces[id];
    const std::string where = "sentencepiece model: piece " + std::to_string(id);
    if (piece.piece.empty()) return Status::DataLoss(where + " is empty");
    // Decoding copies pieces into the text, which must stay valid UTF-8 (HF rejects such too).
    if (!IsValidUtf8(piece.piece)) return Status::DataLoss(where + " is not valid UTF-8");
    // Like sentencepiece, uniqueness is per group: PieceToId looks in the reserved group first.
    PieceMap& group = IsNormalType(piece.type) ? normal_ : reserved_;
    if (!group.emplace(piece.piece, id).second) {
      return Status::DataLoss(where + " \"" + piece.piece + "\" is defined twice");
    }
    if (IsNormalType(piece.type)) max_piece_len_ = std::max(max_piece_len_, piece.piece.size());
    switch (piece.type) {
      case SpPieceType::kNormal:
        min_score_ = std::min(min_score_, piece.score);
        max_score_ = std::max(max_score_, piece.score);
        break;
      case SpPieceType::kUserDefined:
        user_defined_.insert(piece.piece);
        max_user_defined_len_ = std::max(max_user_defined_len_, piece.piece.size());
        break;
      case SpPieceType::kUnknown:
        if (unk_id_ >= 0) return Status::DataLoss(where + ": a second unknown piece");
        unk_id_ = id;
        break;
      case SpPieceType::kByte: {
        if (!model_.byte_fallback) {
          return Status::DataLoss(where + " is a byte piece but byte_fallback is off");
        }
        int byte = -1;
        for (int b = 0; b < 256 && byte < 0; ++b) {
          if (piece.piece == ByteToPiece(b)) byte = b;
        }
        if (byte < 0) return Status::DataLoss(where + " \"" + piece.piece + "\" is no <0xHH>");
        byte_found[byte] = true;
        byte_ids_[byte] = id;
        break;
      }
      default:
        break;
    }
  }
  if (unk_id_ < 0) return Status::DataLoss("sentencepiece model has no unknown piece");
  if (model_.byte_fallback && std::count(byte_found.begin(), byte_found.end(), true) != 256) {
    return Status::DataLoss("sentencepiece model has byte_fallback but not all 256 byte pieces");
  }
  return Status::Ok();
}

std::optional<int32_t> SpEncoder::PieceToId(std::string_view piece) const {
  if (const auto it = reserved_.find(piece); it != reserved_.end()) return it->second;
  if (const auto it = normal_.find(piece); it != normal_.end()) return it->second;
  return std::nullopt;
}

int32_t SpEncoder::Lookup(std::string_view piece) const {
  return PieceToId(piece).value_or(unk_id_);
}

size_t SpEncoder::PrefixMatch(std::string_view text, bool* user_defined) const {
  for (size_t len = std::min(max_user_defined_len_, text.size()); len > 0; --len) {
    if (user_defined_.contains(text.substr(0, len))) {
      *user_defined = true;
      return len;
    }
  }
  *user_defined = false;
  return OneCharLen(text);
}

std::string SpEncoder::Normalize(std::string_view input) const {
  // The next unit of input and what it normalizes to: a user-defined piece as is, else one
  // character, with each invalid byte read as U+FFFD.
  const auto next_unit = [this](std::string_view in) -> std::pair<std::string_view, size_t> {
    bool user_defined = false;
    if (const size_t len = PrefixMatch(in, &user_defined); user_defined) {
      return {in.substr(0, len), len};
    }
    size_t pos = 0;
    if (DecodeUtf8(in, &pos) == kInvalidByte) return {kReplacement, 1};
    return {in.substr(0, pos), pos};
  };
  const bool remove_extra = model_.remove_extra_whitespaces;
  if (remove_extra) {
    while (!input.empty()) {
      const auto [unit, consumed] = next_unit(input);
      if (unit != " ") break;
      input.remove_prefix(consumed);
    }
  }
  std::string out;
  if (input.empty()) return out;
  const std::string_view space = model_.escape_whitespaces ? kSpaceMarker : " ";
  const bool suffix = model_.treat_whitespace_as_suffix;
  if (!suffix && model_.add_dummy_prefix) out.append(space);
  bool prev_space = remove_extra;
  while (!input.empty()) {
    auto [unit, consumed] = next_unit(input);
    if (prev_space) {
      while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
    }
    if (!unit.empty()) {
      for (char ch : unit) {
        if (ch == ' ') {
          out.append(space);
        } else {
          out.push_back(ch);
        }
      }
      prev_space = remove_extra && unit.back() == ' ';
    }
    input.remove_prefix(consumed);
  }
  if (remove_extra) {
    while (out.ends_with(space)) out.erase(out.size() - space.size());
  }
  if (suffix && model_.add_dummy_prefix) out.append(space);
  return out;
}

std::vector<int32_t> SpEncoder::Encode(std::string_view text) const {
  const std::string normalized = Normalize(text);
  if (normalized.empty()) return {};
  const std::vector<Segment> segments =
      model_.model_type == SpModelType::kBpe ? SegmentBpe(normalized) : SegmentUnigram(normalized);
  std::vector<int32_t> ids;
  ids.reserve(segments.size());
  bool prev_unknown = false;
  for (const auto& [piece, id] : segments) {
    const bool unknown = id == unk_id_;
    if (unknown && model_.byte_fallback) {
      for (char ch : piece) ids.push_back(byte_ids_[static_cast<uint8_t>(ch)]);
    } else if (!(unknown && prev_unknown)) {
      ids.push_back(id);  // a run of unknown pieces becomes one <unk>
    }
    prev_unknown = unknown;
  }
  return ids;
}

std::vector<SpEncoder::Segment> SpEncoder::SegmentBpe(std::string_view text) const {
  struct Symbol {
    int prev;
    int next;
    bool frozen;  // a user-defined piece: never merged
    std::string_view piece;
  };
  // A candidate merge of adjacent symbols; `size` tells whether it is stale.
  struct Merge {
    int left;
    int right;
    float score;
    size_t size;
  };
  // Highest score first; ties go to the leftmost pair.
  const auto lower = [](const Merge& a, const Merge& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Merge, std::vector<Merge>, decltype(lower)> agenda(lower);
  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < text.size();) {
    Symbol s;
    const size_t len = PrefixMatch(text.substr(pos), &s.frozen);
    s.piece = text.substr(pos, len);
    s.prev = static_cast<int>(symbols.size()) - 1;
    pos += len;
    s.next = pos < text.size() ? static_cast<int>(symbols.size()) + 1 : -1;
    symbols.push_back(s);
  }
  // An UNUSED piece may be formed on the way but is split back into the pieces it came from.
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> unmerge;
  const auto maybe_add = [&](int left, int right) {
    if (left < 0 || right < 0 || symbols[left].frozen || symbols[right].frozen) return;
    const std::string_view merged(symbols[left].piece.data(),
                                  symbols[left].piece.size() + symbols[right].piece.size());
    const auto it = normal_.find(merged);
    if (it == normal_.end()) return;
    const SpPiece& piece = model_.pieces[it->second];
    agenda.push({left, right, piece.score, merged.size()});
    if (piece.type == SpPieceType::kUnused) {
      unmerge[merged] = {symbols[left].piece, symbols[right].piece};
    }
  };
  for (size_t i = 1; i < symbols.size(); ++i) maybe_add(static_cast<int>(i) - 1, i);
  while (!agenda.empty()) {
    const Merge top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.piece.empty() || right.piece.empty() ||
        left.piece.size() + right.piece.size() != top.size) {
      continue;
    }
    left.piece = std::string_view(left.piece.data(), top.size);
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    right.piece = {};
    maybe_add(left.prev, top.left);
    maybe_add(top.left, left.next);
  }
  std::vector<Segment> out;
  std::vector<std::string_view> stack;
  for (int i = 0; i != -1; i = symbols[i].next) {
    stack.push_back(symbols[i].piece);
    while (!stack.empty()) {
      const std::string_view piece = stack.back();
      stack.pop_back();
      const int32_t id = Lookup(piece);
      const auto split = unmerge.find(piece);
      if (model_.pieces[id].type != SpPieceType::kUnused || split == unmerge.end()) {
        out.emplace_back(piece, id);
        continue;
      }
      stack.push_back(split->second.second);
      stack.push_back(split->second.first);
    }
  }
  return out;
}

std::vector<SpEncoder::Segment> SpEncoder::SegmentUnigram(std::string_view text) const {
  // Viterbi over the pieces that match at each character boundary.
  struct Best {
    int32_t id = -1;
    float score = 0.0f;
    int64_t starts_at = -1;
  };
  const size_t size = text.size();
  const float unk_score = min_score_ - kUnkPenalty;
  std::vector<Best> best(size + 1);
  // Path scores are floats; a piece's score is added in double as sentencepiece does, an
  // unknown character's in float.
  const auto relax = [&best](size_t start, size_t end, int32_t id, double candidate) {
    Best& target = best[end];
    if (target.starts_at == -1 || candidate > target.score) {
      target.score = static_cast<float>(candidate);
      target.starts_at = static_cast<int64_t>(start);
      target.id = id;
    }
  };
  for (size_t start = 0; start < size;) {
    const size_t char_len = OneCharLen(text.substr(start));
    bool has_single_char = false;
    const size_t max_len = std::min(max_piece_len_, size - start);
    for (size_t len = 1; len <= max_len; ++len) {
      const auto it = normal_.find(text.substr(start, len));
      if (it == normal_.end()) continue;
      const SpPiece& piece = model_.pieces[it->second];
      if (piece.type == SpPieceType::kUnused) continue;
      // User-defined pieces get a bonus that beats any segmentation of the same bytes.
      const double score = piece.type == SpPieceType::kUserDefined
                               ? static_cast<float>(len) * max_score_ - 0.1
                               : static_cast<double>(piece.score);
      relax(start, start + len, it->second, score + best[start].score);
      has_single_char = has_single_char || len == char_len;
    }
    if (!has_single_char) relax(start, start + char_len, unk_id_, unk_score + best[start].score);
    start += char_len;
  }
  std::vector<Segment> out;
  for (size_t end = size; end > 0 && best[end].starts_at >= 0;) {
    const size_t start = static_cast<size_t>(best[end].starts_at);
    out.emplace_back(text.substr(start, end - start), best[end].id);
    end = start;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace sy::tokenizer
