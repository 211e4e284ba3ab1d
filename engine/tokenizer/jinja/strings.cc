#include "engine/tokenizer/jinja/strings.h"

#include "engine/tokenizer/jinja/value.h"
#include "engine/tokenizer/unicode.h"

namespace sy::jinja {
namespace {

using tokenizer::CharFlags;
using tokenizer::DecodeUtf8;

bool IsPySpace(uint32_t cp) {
  // Python's str.isspace(): the Unicode whitespace class plus the ASCII separators 0x1c-0x1f.
  return (cp >= 0x1c && cp <= 0x1f) || (CharFlags(cp) & tokenizer::kFlagSpace) != 0;
}

bool IsCased(uint32_t cp) {
  return (CharFlags(cp) &
          (tokenizer::kFlagUpper | tokenizer::kFlagLower | tokenizer::kFlagTitle)) != 0;
}

char Upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c; }
char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

// The code points of s with their byte offsets.
struct CodePoint {
  uint32_t cp;
  size_t begin;
  size_t end;
};
std::vector<CodePoint> Decode(std::string_view s) {
  std::vector<CodePoint> out;
  for (size_t pos = 0; pos < s.size();) {
    const size_t begin = pos;
    const uint32_t cp = DecodeUtf8(s, &pos);
    out.push_back({cp, begin, pos});
  }
  return out;
}

}  // namespace

std::string PyStrip(std::string_view s, const std::optional<std::string>& chars, StripSide side) {
  const std::vector<CodePoint> cps = Decode(s);
  std::vector<uint32_t> set;
  if (chars) {
    for (const CodePoint& c : Decode(*chars)) set.push_back(c.cp);
  }
  const auto strip = [&](uint32_t cp) {
    if (!chars) return IsPySpace(cp);
    for (uint32_t x : set) {
      if (x == cp) return true;
    }
    return false;
  };
  size_t lo = 0;
  size_t hi = cps.size();
  if (side != StripSide::kRight) {
    while (lo < hi && strip(cps[lo].cp)) ++lo;
  }
  if (side != StripSide::kLeft) {
    while (hi > lo && strip(cps[hi - 1].cp)) --hi;
  }
  if (lo == hi) return "";
  return std::string(s.substr(cps[lo].begin, cps[hi - 1].end - cps[lo].begin));
}

std::vector<std::string> PySplit(std::string_view s, const std::optional<std::string>& sep,
                                 int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) throw Error("empty separator");
    size_t start = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      const size_t at = s.find(*sep, start);
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    out.emplace_back(s.substr(start));
    return out;
  }
  const std::vector<CodePoint> cps = Decode(s);
  size_t i = 0;
  while (i < cps.size()) {
    while (i < cps.size() && IsPySpace(cps[i].cp)) ++i;
    if (i == cps.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      // The rest, with trailing whitespace stripped, is the last item.
      size_t hi = cps.size();
      while (hi > i && IsPySpace(cps[hi - 1].cp)) --hi;
      out.emplace_back(s.substr(cps[i].begin, cps[hi - 1].end - cps[i].begin));
      break;
    }
    const size_t begin = i;
    while (i < cps.size() && !IsPySpace(cps[i].cp)) ++i;
    out.emplace_back(s.substr(cps[begin].begin, cps[i - 1].end - cps[begin].begin));
  }
  return out;
}

std::string PyUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Upper(c);
  return out;
}

std::string PyLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

std::string PyTitle(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (const CodePoint& c : Decode(s)) {
    std::string piece(s.substr(c.begin, c.end - c.begin));
    if (c.cp < 0x80) piece[0] = previous_cased ? Lower(piece[0]) : Upper(piece[0]);
    out += piece;
    previous_cased = IsCased(c.cp);
  }
  return out;
}

std::string PyCapitalize(std::string_view s) {
  std::string out = PyLower(s);
  if (!out.empty()) out[0] = Upper(out[0]);
  return out;
}

std::string JinjaTitle(std::string_view s) {
  // jinja2: "".join(w[0].upper() + w[1:].lower() for w in re.split(r"([-\s({\[<]+)", s) if w)
  std::string out;
  bool word_start = true;
  for (const CodePoint& c : Decode(s)) {
    std::string piece(s.substr(c.begin, c.end - c.begin));
    const bool separator =
        IsPySpace(c.cp) || (c.cp < 0x80 && std::string_view("-({[<").find(
                                               static_cast<char>(c.cp)) != std::string_view::npos);
    if (separator) {
      word_start = true;
    } else {
      if (c.cp < 0x80) piece[0] = word_start ? Upper(piece[0]) : Lower(piece[0]);
      word_start = false;
    }
    out += piece;
  }
  return out;
}

std::string PyReplace(std::string_view s, std::string_view old, std::string_view repl,
                      int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts repl between every character and at both ends.
    const std::vector<CodePoint> cps = Decode(s);
    int64_t done = 0;
    for (const CodePoint& c : cps) {
      if (count < 0 || done < count) out += repl, ++done;
      out += s.substr(c.begin, c.end - c.begin);
    }
    if (count < 0 || done < count) out += repl;
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old, start);
    if (at == std::string_view::npos) break;
    out += s.substr(start, at - start);
    out += repl;
    start = at + old.size();
    ++done;
  }
  out += s.substr(start);
  return out;
}

}  // namespace sy::jinja
