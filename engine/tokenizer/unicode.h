// Unicode helpers for the tokenizers: UTF-8 decoding that tolerates invalid bytes, general
// categories and the character classes the pre-tokenizer patterns use, NFC normalisation and
// the GPT-2 byte-level alphabet. Stateless functions over immutable tables; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sy::tokenizer {

// Order matches CATEGORIES in scripts/gen_unicode_tables.py.
enum class GeneralCategory : uint8_t {
  kCn,
  kLu,
  kLl,
  kLt,
  kLm,
  kLo,
  kMn,
  kMc,
  kMe,
  kNd,
  kNl,
  kNo,
  kPc,
  kPd,
  kPs,
  kPe,
  kPi,
  kPf,
  kPo,
  kSm,
  kSc,
  kSk,
  kSo,
  kZs,
  kZl,
  kZp,
  kCc,
  kCf,
  kCs,
  kCo,
};

// Character-class bits; a code point's flags are CharFlags(cp).
enum CharFlag : uint16_t {
  kFlagLetter = 1 << 0,        // \p{L}
  kFlagNumber = 1 << 1,        // \p{N}
  kFlagSpace = 1 << 2,         // \s
  kFlagPunct = 1 << 3,         // \p{P}
  kFlagSymbol = 1 << 4,        // \p{S}
  kFlagMark = 1 << 5,          // \p{M}
  kFlagUpper = 1 << 6,         // \p{Lu}
  kFlagLower = 1 << 7,         // \p{Ll}
  kFlagTitle = 1 << 8,         // \p{Lt}
  kFlagModifier = 1 << 9,      // \p{Lm}
  kFlagOtherLetter = 1 << 10,  // \p{Lo}
  kFlagCrLf = 1 << 11,         // '\r' or '\n'
};

// A code point that stands for one byte of invalid UTF-8 in the input (never a real one).
inline constexpr uint32_t kInvalidByte = 0x110000;

GeneralCategory CategoryOf(uint32_t cp);
uint16_t CharFlags(uint32_t cp);

// Decodes the code point at text[*pos] and advances *pos past it. A byte that does not start a
// valid sequence yields kInvalidByte and advances one byte.
uint32_t DecodeUtf8(std::string_view text, size_t* pos);
void AppendUtf8(uint32_t cp, std::string* out);
// Replaces invalid UTF-8 by U+FFFD, one per maximal invalid subpart (as Rust's
// String::from_utf8_lossy does).
std::string Utf8Lossy(std::string_view bytes);
// Whether `text` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool IsValidUtf8(std::string_view text);
// Characters as Python counts them (len()) after decoding with errors="replace": a valid
// sequence is one, and so is each maximal invalid subpart (one U+FFFD in Utf8Lossy).
size_t Utf8Length(std::string_view text);
// `text` split into those characters, each with its own bytes (Python's list(str)).
std::vector<std::string> Utf8Chars(std::string_view text);

// Canonical composition (NFC). Invalid bytes pass through unchanged.
std::string Nfc(std::string_view text);

// The GPT-2 byte-to-character map: the UTF-8 text of the character standing for byte b.
const std::string& ByteToChar(uint8_t b);
// The byte a byte-level character stands for, or -1 if cp is not one.
int CharToByte(uint32_t cp);

}  // namespace sy::tokenizer
