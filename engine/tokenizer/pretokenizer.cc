#include "engine/tokenizer/pretokenizer.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <utility>

#include "engine/core/json_fields.h"
#include "engine/tokenizer/unicode.h"

namespace sy::tokenizer {
namespace {

constexpr size_t kNoMatch = static_cast<size_t>(-1);

// Code points of one piece with their class flags; positions past the end read as flags 0.
struct Chars {
  std::vector<uint32_t> cp;
  std::vector<uint16_t> flags;
  std::vector<uint32_t> offset;  // byte offset of each code point, plus the total size

  size_t n() const { return cp.size(); }
  uint32_t at(size_t i) const { return i < cp.size() ? cp[i] : 0xFFFFFFFF; }
  uint16_t fl(size_t i) const { return i < cp.size() ? flags[i] : 0; }
  bool Has(size_t i, uint16_t mask) const { return (fl(i) & mask) != 0; }
  bool Letter(size_t i) const { return Has(i, kFlagLetter); }
  bool Number(size_t i) const { return Has(i, kFlagNumber); }
  bool Space(size_t i) const { return Has(i, kFlagSpace); }
  bool CrLf(size_t i) const { return Has(i, kFlagCrLf); }
  // [^\s\p{L}\p{N}]
  bool Other(size_t i) const {
    return i < cp.size() && !Has(i, kFlagSpace | kFlagLetter | kFlagNumber);
  }
  // [^\r\n\p{L}\p{N}]
  bool NotCrLfLetterNumber(size_t i) const {
    return i < cp.size() && !Has(i, kFlagCrLf | kFlagLetter | kFlagNumber);
  }
  size_t RunOf(size_t i, uint16_t mask) const {
    while (Has(i, mask)) ++i;
    return i;
  }
};

void Decode(std::string_view text, Chars* c) {
  c->cp.clear();
  c->flags.clear();
  c->offset.clear();
  for (size_t pos = 0; pos < text.size();) {
    c->offset.push_back(static_cast<uint32_t>(pos));
    const uint32_t cp = DecodeUtf8(text, &pos);
    c->cp.push_back(cp);
    c->flags.push_back(cp == kInvalidByte ? 0 : CharFlags(cp));
  }
  c->offset.push_back(static_cast<uint32_t>(text.size()));
}

// Case folding as far as the contractions need it (Oniguruma folds U+017F LONG S to 's').
uint32_t Fold(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  return cp == 0x17F ? 's' : cp;
}

// 's|'t|'re|'ve|'m|'ll|'d at i (ignoring case if `fold`): its length, or 0.
size_t Contraction(const Chars& c, size_t i, bool fold) {
  if (c.at(i) != '\'') return 0;
  const auto ch = [&](size_t k) { return fold ? Fold(c.at(k)) : c.at(k); };
  const uint32_t a = ch(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  const uint32_t b = ch(i + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// \s*[\r\n]+|\s+(?!\S)|\s+ at a whitespace position i (the first alternative only if
// `newline_runs`): the length of the match.
size_t Whitespace(const Chars& c, size_t i, bool newline_runs) {
  const size_t end = c.RunOf(i, kFlagSpace);
  if (newline_runs) {
    for (size_t p = end; p > i; --p) {
      if (c.CrLf(p - 1)) return p - i;
    }
  }
  if (end == c.n() || end - i == 1) return end - i;
  return end - i - 1;
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t MatchGpt2(const Chars& c, size_t i) {
  if (size_t len = Contraction(c, i, false)) return len;
  const size_t j = c.at(i) == ' ' ? i + 1 : i;
  if (c.Letter(j)) return c.RunOf(j, kFlagLetter) - i;
  if (c.Number(j)) return c.RunOf(j, kFlagNumber) - i;
  if (c.Other(j)) {
    size_t k = j;
    while (c.Other(k)) ++k;
    return k - i;
  }
  if (c.Space(i)) return Whitespace(c, i, false);
  return 0;
}

// Qwen2 (max_digits 1) and Llama-3 (max_digits 3):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t MatchQwen2(const Chars& c, size_t i, size_t max_digits) {
  if (size_t len = Contraction(c, i, true)) return len;
  if (c.NotCrLfLetterNumber(i) && c.Letter(i + 1)) return c.RunOf(i + 1, kFlagLetter) - i;
  if (c.Letter(i)) return c.RunOf(i, kFlagLetter) - i;
  if (c.Number(i)) {
    size_t k = i;
    while (c.Number(k) && k - i < max_digits) ++k;
    return k - i;
  }
  const size_t j = (c.at(i) == ' ' && c.Other(i + 1)) ? i + 1 : i;
  if (c.Other(j)) {
    size_t k = j;
    while (c.Other(k)) ++k;
    return c.RunOf(k, kFlagCrLf) - i;
  }
  if (c.Space(i)) return Whitespace(c, i, true);
  return 0;
}

constexpr uint16_t kUpperish =
    kFlagUpper | kFlagTitle | kFlagModifier | kFlagOtherLetter | kFlagMark;
constexpr uint16_t kLowerish = kFlagLower | kFlagModifier | kFlagOtherLetter | kFlagMark;

// [Upperish]*[Lowerish]+ from s: the end, or kNoMatch.
size_t UpperThenLower(const Chars& c, size_t s) {
  const size_t a_end = c.RunOf(s, kUpperish);
  for (size_t p = a_end;; --p) {
    if (c.Has(p, kLowerish)) return c.RunOf(p, kLowerish);
    if (p == s) return kNoMatch;
  }
}

// [Upperish]+[Lowerish]* from s: the end, or kNoMatch.
size_t UpperRun(const Chars& c, size_t s) {
  if (!c.Has(s, kUpperish)) return kNoMatch;
  return c.RunOf(c.RunOf(s, kUpperish), kLowerish);
}

// GPT-4o (o200k):
// [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?|
// [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)?|
// \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t MatchGpt4o(const Chars& c, size_t i) {
  const bool prefix = c.NotCrLfLetterNumber(i);
  for (auto alternative : {UpperThenLower, UpperRun}) {
    size_t end = prefix ? alternative(c, i + 1) : kNoMatch;
    if (end == kNoMatch) end = alternative(c, i);
    if (end != kNoMatch) return end + Contraction(c, end, true) - i;
  }
  if (c.Number(i)) {
    size_t k = i;
    while (c.Number(k) && k - i < 3) ++k;
    return k - i;
  }
  const size_t j = (c.at(i) == ' ' && c.Other(i + 1)) ? i + 1 : i;
  if (c.Other(j)) {
    size_t k = j;
    while (c.Other(k)) ++k;
    while (c.CrLf(k) || c.at(k) == '/') ++k;
    return k - i;
  }
  if (c.Space(i)) return Whitespace(c, i, true);
  return 0;
}

bool IsDeepSeekCjk(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x3040 && cp <= 0x30FF);
}

bool IsAsciiPunct(uint32_t cp) {
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
         (cp >= 123 && cp <= 126);
}

bool IsAsciiLetter(uint32_t cp) { return (cp | 32) >= 'a' && (cp | 32) <= 'z'; }

// DeepSeek-V3's third split:
// [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|
//  ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t MatchDeepSeekV3Words(const Chars& c, size_t i) {
  if (IsAsciiPunct(c.at(i)) && IsAsciiLetter(c.at(i + 1))) {
    size_t k = i + 1;
    while (IsAsciiLetter(c.at(k))) ++k;
    return k - i;
  }
  constexpr uint16_t kLetterMark = kFlagLetter | kFlagMark;
  constexpr uint16_t kPunctSymbol = kFlagPunct | kFlagSymbol;
  const bool prefix = i < c.n() && !c.Has(i, kFlagCrLf | kFlagLetter | kPunctSymbol);
  if (prefix && c.Has(i + 1, kLetterMark)) return c.RunOf(i + 1, kLetterMark) - i;
  if (c.Has(i, kLetterMark)) return c.RunOf(i, kLetterMark) - i;
  const size_t j = (c.at(i) == ' ' && c.Has(i + 1, kPunctSymbol)) ? i + 1 : i;
  if (c.Has(j, kPunctSymbol)) return c.RunOf(c.RunOf(j, kPunctSymbol), kFlagCrLf) - i;
  if (c.Space(i)) return Whitespace(c, i, true);
  return 0;
}

// (\s?)ATOM(+) at i: the length of the match.
size_t MatchClass(const SplitRule& rule, const Chars& c, size_t i) {
  const CharClass& cls = *rule.char_class;
  const auto in = [&](size_t k) { return k < c.n() && cls.Contains(c.cp[k], c.flags[k]); };
  size_t start = i;
  if (rule.optional_space && c.Space(i) && in(i + 1)) {
    start = i + 1;
  } else if (!in(i)) {
    return 0;
  }
  size_t end = start + 1;
  while (rule.repeat && in(end)) ++end;
  return end - i;
}

size_t MatchAt(const SplitRule& rule, const Chars& c, size_t i) {
  switch (rule.pattern) {
    case SplitPattern::kGpt2:
      return MatchGpt2(c, i);
    case SplitPattern::kQwen2:
      return MatchQwen2(c, i, 1);
    case SplitPattern::kLlama3:
      return MatchQwen2(c, i, 3);
    case SplitPattern::kGpt4o:
      return MatchGpt4o(c, i);
    case SplitPattern::kDeepSeekV3Digits: {
      size_t k = i;
      while (c.Number(k) && k - i < 3) ++k;
      return k - i;
    }
    case SplitPattern::kDeepSeekV3Cjk: {
      size_t k = i;
      while (k < c.n() && IsDeepSeekCjk(c.cp[k])) ++k;
      return k - i;
    }
    case SplitPattern::kDeepSeekV3Words:
      return MatchDeepSeekV3Words(c, i);
    case SplitPattern::kDigits:
      return c.RunOf(i, kFlagNumber) - i;
    case SplitPattern::kIndividualDigits:
      return c.Number(i) ? 1 : 0;
    case SplitPattern::kClass:
      return MatchClass(rule, c, i);
    case SplitPattern::kTrailingSpace: {
      const size_t end = c.RunOf(i, kFlagSpace);
      return end == c.n() ? end - i : 0;
    }
  }
  return 0;
}

uint16_t CategoryFlag(std::string_view name) {
  if (name == "L") return kFlagLetter;
  if (name == "N") return kFlagNumber;
  if (name == "P") return kFlagPunct;
  if (name == "S") return kFlagSymbol;
  if (name == "M") return kFlagMark;
  return 0;
}

int HexValue(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

// One member character of a bracket expression at re[*pos]: a literal, or an escape that
// stands for one character. kInvalidByte if it is anything else.
uint32_t ParseClassChar(std::string_view re, size_t* pos) {
  if (re[*pos] != '\\') {
    const uint32_t cp = DecodeUtf8(re, pos);
    return (cp == '[' || cp == ']') ? kInvalidByte : cp;
  }
  if (++*pos >= re.size()) return kInvalidByte;
  const char e = re[(*pos)++];
  switch (e) {
    case 'r':
      return '\r';
    case 'n':
      return '\n';
    case 't':
      return '\t';
    case 'f':
      return '\f';
    case 'v':
      return '\v';
    case 'x':
    case 'u': {
      const bool braced = *pos < re.size() && re[*pos] == '{';
      if (braced) ++*pos;
      uint32_t value = 0;
      size_t digits = 0;
      while (*pos < re.size() && HexValue(re[*pos]) >= 0 &&
             digits < (braced ? 6 : (e == 'x' ? 2 : 4))) {
        value = value * 16 + HexValue(re[(*pos)++]);
        ++digits;
      }
      const bool closed = !braced || (*pos < re.size() && re[(*pos)++] == '}');
      if (digits == 0 || !closed) return kInvalidByte;
      return value < 0x110000 ? value : kInvalidByte;
    }
    default:
      // An escaped ASCII punctuation character stands for itself; \s, \d, \p{..} etc. do not.
      return (e > ' ' && e < 0x7F && !std::isalnum(static_cast<unsigned char>(e))) ? e
                                                                                   : kInvalidByte;
  }
}

// Parses the one-class regexes of the DeepSeek LLM/V2/Coder splits: "\s+$", or
// (\s?)(\p{X}|[...])(+) where the bracket expression holds literals, escapes and ranges.
std::optional<SplitRule> ParseOneClassRegex(std::string_view re) {
  if (re == "\\s+$") return SplitRule(SplitPattern::kTrailingSpace);
  SplitRule rule(SplitPattern::kClass);
  auto cls = std::make_shared<CharClass>();
  size_t pos = 0;
  if (re.substr(0, 3) == "\\s?") {
    rule.optional_space = true;
    pos = 3;
  }
  if (re.substr(pos, 3) == "\\p{") {
    const size_t close = re.find('}', pos);
    if (close == std::string_view::npos) return std::nullopt;
    cls->flags = CategoryFlag(re.substr(pos + 3, close - pos - 3));
    if (cls->flags == 0) return std::nullopt;
    pos = close + 1;
  } else if (pos < re.size() && re[pos] == '[') {
    ++pos;
    if (pos < re.size() && re[pos] == '^') return std::nullopt;
    while (pos < re.size() && re[pos] != ']') {
      const uint32_t lo = ParseClassChar(re, &pos);
      if (lo == kInvalidByte || pos >= re.size()) return std::nullopt;
      uint32_t hi = lo;
      if (re[pos] == '-' && pos + 1 < re.size() && re[pos + 1] != ']') {
        ++pos;
        hi = ParseClassChar(re, &pos);
        if (hi == kInvalidByte || hi < lo) return std::nullopt;
      }
      cls->ranges.push_back({lo, hi});
    }
    if (pos >= re.size() || cls->ranges.empty()) return std::nullopt;
    ++pos;  // ']'
  } else {
    return std::nullopt;
  }
  if (pos < re.size() && re[pos] == '+') {
    rule.repeat = true;
    ++pos;
  }
  if (pos != re.size()) return std::nullopt;
  std::sort(cls->ranges.begin(), cls->ranges.end());
  rule.char_class = std::move(cls);
  return rule;
}

// Tokenizer.json regexes keep \r and \n either escaped or as raw characters; compare escaped.
std::string CanonicalRegex(std::string_view regex) {
  std::string out;
  for (char ch : regex) {
    if (ch == '\r') {
      out += "\\r";
    } else if (ch == '\n') {
      out += "\\n";
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace

bool CharClass::Contains(uint32_t cp, uint16_t cp_flags) const {
  if (cp_flags & flags) return true;
  for (const auto& [lo, hi] : ranges) {
    if (cp < lo) return false;
    if (cp <= hi) return true;
  }
  return false;
}

StatusOr<SplitRule> RuleFromRegex(std::string_view regex) {
  static const std::pair<const char*, SplitPattern> kKnown[] = {
      {R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)",
       SplitPattern::kGpt2},
      {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
       SplitPattern::kQwen2},
      {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
       SplitPattern::kLlama3},
      {R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
       SplitPattern::kGpt4o},
      {R"(\p{N}{1,3})", SplitPattern::kDeepSeekV3Digits},
      {"[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+", SplitPattern::kDeepSeekV3Cjk},
      {R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
       SplitPattern::kDeepSeekV3Words},
  };
  const std::string canonical = CanonicalRegex(regex);
  for (const auto& [text, pattern] : kKnown) {
    if (canonical == text) return SplitRule(pattern);
  }
  if (std::optional<SplitRule> rule = ParseOneClassRegex(regex)) return *rule;
  return Status::Unimplemented("unsupported pre-tokenizer split regex: " + std::string(regex));
}

void SplitIsolated(const SplitRule& rule, std::string_view text,
                   std::vector<std::string_view>* out) {
  thread_local Chars chars;
  Decode(text, &chars);
  const auto emit = [&](size_t from, size_t to) {
    if (to > from) {
      const size_t b = chars.offset[from];
      out->push_back(text.substr(b, chars.offset[to] - b));
    }
  };
  size_t gap = 0;
  for (size_t i = 0; i < chars.n();) {
    const size_t len = MatchAt(rule, chars, i);
    if (len == 0) {
      ++i;
      continue;
    }
    emit(gap, i);
    emit(i, i + len);
    i += len;
    gap = i;
  }
  emit(gap, chars.n());
}

StatusOr<PreTokenizer> PreTokenizer::FromJson(const nlohmann::json& j) {
  PreTokenizer pre;
  if (j.is_null()) return pre;
  SY_RETURN_IF_ERROR(pre.AddJson(j, true));
  return pre;
}

Status PreTokenizer::AddJson(const nlohmann::json& j, bool last) {
  const std::optional<std::string> type = json_fields::LenientString(j, "type");
  if (!type) return Status::DataLoss("pre_tokenizer without a \"type\"");
  if (byte_level_) {
    return Status::Unimplemented("pre_tokenizer steps after ByteLevel are not supported");
  }
  if (*type == "Sequence") {
    const nlohmann::json* list = json_fields::FindMember(j, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return Status::DataLoss("Sequence pre_tokenizer without a \"pretokenizers\" list");
    }
    for (size_t k = 0; k < list->size(); ++k) {
      SY_RETURN_IF_ERROR(AddJson((*list)[k], last && k + 1 == list->size()));
    }
    return Status::Ok();
  }
  if (*type == "ByteLevel") {
    if (json_fields::LenientBool(j, "add_prefix_space", false)) {
      Step prefix;
      prefix.prefix_space = true;
      steps_.push_back(prefix);
    }
    if (json_fields::LenientBool(j, "use_regex", true))
      steps_.push_back({.rule = SplitPattern::kGpt2});
    byte_level_ = true;
    return Status::Ok();
  }
  if (*type == "Digits") {
    const bool individual = json_fields::LenientBool(j, "individual_digits", false);
    steps_.push_back(
        {.rule = individual ? SplitPattern::kIndividualDigits : SplitPattern::kDigits});
    return Status::Ok();
  }
  if (*type == "Split") {
    const std::optional<std::string> behavior = json_fields::LenientString(j, "behavior");
    if (behavior != "Isolated" || json_fields::LenientBool(j, "invert", false)) {
      return Status::Unimplemented("Split pre_tokenizer supports only behavior Isolated, got " +
                                   behavior.value_or("none"));
    }
    const nlohmann::json* pattern = json_fields::FindMember(j, "pattern");
    const std::optional<std::string> regex =
        pattern ? json_fields::LenientString(*pattern, "Regex") : std::nullopt;
    if (!regex)
      return Status::Unimplemented("Split pre_tokenizer needs a {\"Regex\": ...} pattern");
    SY_ASSIGN_OR_RETURN(SplitRule rule, RuleFromRegex(*regex));
    steps_.push_back({.rule = std::move(rule)});
    return Status::Ok();
  }
  return Status::Unimplemented("unsupported pre_tokenizer type: " + *type);
}

void PreTokenizer::Run(std::string_view text, std::deque<std::string>* arena,
                       std::vector<std::string_view>* out) const {
  std::vector<std::string_view> pieces = {text};
  std::vector<std::string_view> next;
  for (const Step& step : steps_) {
    next.clear();
    for (std::string_view piece : pieces) {
      if (!step.prefix_space) {
        SplitIsolated(step.rule, piece, &next);
      } else if (!piece.empty() && piece.front() == ' ') {
        next.push_back(piece);
      } else {
        std::string& prefixed = arena->emplace_back(1, ' ');
        prefixed.append(piece);
        next.push_back(prefixed);
      }
    }
    pieces.swap(next);
  }
  for (std::string_view piece : pieces) {
    if (!piece.empty()) out->push_back(piece);
  }
}

}  // namespace sy::tokenizer
