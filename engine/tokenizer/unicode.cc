#include "engine/tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <cstdlib>

#include "engine/tokenizer/unicode_tables.h"

namespace sy::tokenizer {
namespace {

constexpr uint32_t kReplacementChar = 0xFFFD;
constexpr uint32_t kHangulSBase = 0xAC00, kHangulLBase = 0x1100, kHangulVBase = 0x1161,
                   kHangulTBase = 0x11A7;
constexpr uint32_t kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr uint32_t kHangulNCount = kHangulVCount * kHangulTCount;
constexpr uint32_t kHangulSCount = kHangulLCount * kHangulNCount;
// Code points below this have their flags in a direct lookup table.
constexpr uint32_t kFlagTableSize = 0x3000;

GeneralCategory CategoryFromTables(uint32_t cp) {
  if (cp >= 0x110000) return GeneralCategory::kCn;
  const uint32_t key = (cp << 5) | 31;
  const uint32_t* end = tables::kCategoryRuns + tables::kCategoryRunsSize;
  const uint32_t* it = std::upper_bound(tables::kCategoryRuns, end, key);
  return static_cast<GeneralCategory>(it[-1] & 31);
}

bool IsWhiteSpace(uint32_t cp) {
  const uint32_t* end = tables::kWhiteSpace + tables::kWhiteSpaceSize;
  return std::binary_search(tables::kWhiteSpace, end, cp);
}

uint16_t FlagsFromCategory(GeneralCategory c) {
  using G = GeneralCategory;
  switch (c) {
    case G::kLu:
      return kFlagLetter | kFlagUpper;
    case G::kLl:
      return kFlagLetter | kFlagLower;
    case G::kLt:
      return kFlagLetter | kFlagTitle;
    case G::kLm:
      return kFlagLetter | kFlagModifier;
    case G::kLo:
      return kFlagLetter | kFlagOtherLetter;
    case G::kMn:
    case G::kMc:
    case G::kMe:
      return kFlagMark;
    case G::kNd:
    case G::kNl:
    case G::kNo:
      return kFlagNumber;
    case G::kPc:
    case G::kPd:
    case G::kPs:
    case G::kPe:
    case G::kPi:
    case G::kPf:
    case G::kPo:
      return kFlagPunct;
    case G::kSm:
    case G::kSc:
    case G::kSk:
    case G::kSo:
      return kFlagSymbol;
    default:
      return 0;
  }
}

uint16_t ComputeFlags(uint32_t cp) {
  if (cp >= 0x110000) return 0;
  uint16_t flags = FlagsFromCategory(CategoryFromTables(cp));
  if (IsWhiteSpace(cp)) flags |= kFlagSpace;
  if (cp == '\r' || cp == '\n') flags |= kFlagCrLf;
  return flags;
}

const std::array<uint16_t, kFlagTableSize>& FlagTable() {
  static const auto* table = [] {
    auto* t = new std::array<uint16_t, kFlagTableSize>();
    for (uint32_t cp = 0; cp < kFlagTableSize; ++cp) (*t)[cp] = ComputeFlags(cp);
    return t;
  }();
  return *table;
}

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Length of the valid sequence at text[pos] (its code point in *cp), or, if invalid, the
// negated length of its maximal invalid subpart.
int SequenceAt(std::string_view text, size_t pos, uint32_t* cp) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t b0 = byte(pos);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  int len;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  uint32_t value = b0 & (0x7F >> len);
  for (int i = 1; i < len; ++i) {
    if (pos + i >= text.size()) return -i;
    const uint8_t b = byte(pos + i);
    if (i == 1 ? (b < lo || b > hi) : !IsContinuation(b)) return -i;
    value = (value << 6) | (b & 0x3F);
  }
  *cp = value;
  return len;
}

uint8_t CombiningClass(uint32_t cp) {
  if (cp < 0x300 || cp >= 0x110000) return 0;
  const uint32_t* runs = tables::kCombiningClassRuns;
  size_t lo = 0, hi = tables::kCombiningClassRunsSize / 3;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (runs[3 * mid + 1] < cp) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < tables::kCombiningClassRunsSize / 3 && runs[3 * lo] <= cp) {
    return static_cast<uint8_t>(runs[3 * lo + 2]);
  }
  return 0;
}

void Decompose(uint32_t cp, std::vector<uint32_t>* out) {
  if (cp >= kHangulSBase && cp < kHangulSBase + kHangulSCount) {
    const uint32_t s = cp - kHangulSBase;
    out->push_back(kHangulLBase + s / kHangulNCount);
    out->push_back(kHangulVBase + (s % kHangulNCount) / kHangulTCount);
    if (s % kHangulTCount != 0) out->push_back(kHangulTBase + s % kHangulTCount);
    return;
  }
  const uint32_t* index = tables::kDecompositionIndex;
  size_t lo = 0, hi = tables::kDecompositionIndexSize / 2;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if ((index[2 * mid] >> 8) < cp) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < tables::kDecompositionIndexSize / 2 && (index[2 * lo] >> 8) == cp) {
    const uint32_t len = index[2 * lo] & 0xFF;
    const uint32_t* data = tables::kDecompositionData + index[2 * lo + 1];
    out->insert(out->end(), data, data + len);
    return;
  }
  out->push_back(cp);
}

// The primary composite of (a, b), or 0 if none.
uint32_t Compose(uint32_t a, uint32_t b) {
  if (a >= kHangulLBase && a < kHangulLBase + kHangulLCount && b >= kHangulVBase &&
      b < kHangulVBase + kHangulVCount) {
    return kHangulSBase + ((a - kHangulLBase) * kHangulVCount + (b - kHangulVBase)) * kHangulTCount;
  }
  if (a >= kHangulSBase && a < kHangulSBase + kHangulSCount &&
      (a - kHangulSBase) % kHangulTCount == 0 && b > kHangulTBase &&
      b < kHangulTBase + kHangulTCount) {
    return a + (b - kHangulTBase);
  }
  const uint32_t* comps = tables::kCompositions;
  size_t lo = 0, hi = tables::kCompositionsSize / 3;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    const uint32_t ma = comps[3 * mid], mb = comps[3 * mid + 1];
    if (ma < a || (ma == a && mb < b)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < tables::kCompositionsSize / 3 && comps[3 * lo] == a && comps[3 * lo + 1] == b) {
    return comps[3 * lo + 2];
  }
  return 0;
}

void CanonicalOrder(std::vector<uint32_t>* cps) {
  std::vector<uint32_t>& v = *cps;
  size_t i = 0;
  while (i < v.size()) {
    if (CombiningClass(v[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < v.size() && CombiningClass(v[j]) != 0) ++j;
    std::stable_sort(v.begin() + i, v.begin() + j,
                     [](uint32_t a, uint32_t b) { return CombiningClass(a) < CombiningClass(b); });
    i = j;
  }
}

void ComposeInPlace(std::vector<uint32_t>* cps) {
  std::vector<uint32_t>& v = *cps;
  if (v.empty()) return;
  size_t starter = 0;
  int last_class = CombiningClass(v[0]) == 0 ? 0 : 256;
  size_t kept = 1;
  for (size_t i = 1; i < v.size(); ++i) {
    const uint32_t c = v[i];
    const int cls = CombiningClass(c);
    const uint32_t composite = last_class == 256 ? 0 : Compose(v[starter], c);
    if (composite != 0 && (last_class < cls || last_class == 0)) {
      v[starter] = composite;
      continue;
    }
    if (cls == 0) starter = kept;
    last_class = cls;
    v[kept++] = c;
  }
  v.resize(kept);
}

struct ByteLevelMaps {
  std::array<std::string, 256> byte_to_char;
  std::array<int16_t, 324> char_to_byte;
};

const ByteLevelMaps& ByteMaps() {
  static const auto* maps = [] {
    auto* m = new ByteLevelMaps();
    m->char_to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      const uint32_t cp = printable ? b : next++;
      AppendUtf8(cp, &m->byte_to_char[b]);
      m->char_to_byte[cp] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return *maps;
}

}  // namespace

GeneralCategory CategoryOf(uint32_t cp) { return CategoryFromTables(cp); }

uint16_t CharFlags(uint32_t cp) {
  if (cp < kFlagTableSize) return FlagTable()[cp];
  return ComputeFlags(cp);
}

uint32_t DecodeUtf8(std::string_view text, size_t* pos) {
  uint32_t cp = 0;
  const int n = SequenceAt(text, *pos, &cp);
  if (n < 0) {
    *pos += 1;
    return kInvalidByte;
  }
  *pos += n;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    uint32_t cp = 0;
    const int n = SequenceAt(bytes, pos, &cp);
    if (n > 0) {
      out.append(bytes.substr(pos, n));
      pos += n;
    } else {
      AppendUtf8(kReplacementChar, &out);
      pos += -n;
    }
  }
  return out;
}

bool IsValidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    uint32_t cp = 0;
    const int n = SequenceAt(text, pos, &cp);
    if (n < 0) return false;
    pos += n;
  }
  return true;
}

size_t Utf8Length(std::string_view text) {
  size_t n = 0;
  uint32_t cp = 0;
  for (size_t pos = 0; pos < text.size(); ++n) pos += std::abs(SequenceAt(text, pos, &cp));
  return n;
}

std::vector<std::string> Utf8Chars(std::string_view text) {
  std::vector<std::string> out;
  uint32_t cp = 0;
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = std::abs(SequenceAt(text, pos, &cp));
    out.emplace_back(text.substr(pos, len));
    pos += len;
  }
  return out;
}

std::string Nfc(std::string_view text) {
  bool stable = true;
  for (size_t pos = 0; pos < text.size() && stable;) {
    stable = DecodeUtf8(text, &pos) < tables::kNfcStableBelow;
  }
  if (stable) return std::string(text);
  // Invalid bytes travel as kInvalidByte + byte, which no table knows.
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    const uint32_t cp = DecodeUtf8(text, &pos);
    if (cp == kInvalidByte) {
      cps.push_back(kInvalidByte + static_cast<uint8_t>(text[start]));
    } else {
      Decompose(cp, &cps);
    }
  }
  CanonicalOrder(&cps);
  ComposeInPlace(&cps);
  std::string out;
  out.reserve(text.size());
  for (uint32_t cp : cps) {
    if (cp >= kInvalidByte) {
      out.push_back(static_cast<char>(cp - kInvalidByte));
    } else {
      AppendUtf8(cp, &out);
    }
  }
  return out;
}

const std::string& ByteToChar(uint8_t b) { return ByteMaps().byte_to_char[b]; }

int CharToByte(uint32_t cp) {
  if (cp >= ByteMaps().char_to_byte.size()) return -1;
  return ByteMaps().char_to_byte[cp];
}

}  // namespace sy::tokenizer
