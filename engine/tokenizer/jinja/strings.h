// Python's str methods on UTF-8 text, as chat templates call them (strip, split, title, ...).
// Whitespace and letters follow Unicode categories; case mapping is ASCII-only (non-ASCII
// letters keep their case). Stateless free functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sy::jinja {

enum class StripSide { kBoth, kLeft, kRight };
// str.strip(chars): chars nullopt strips Unicode whitespace.
std::string PyStrip(std::string_view s, const std::optional<std::string>& chars, StripSide side);
// str.split(sep, maxsplit): sep nullopt splits on whitespace runs; maxsplit < 0 is unlimited.
std::vector<std::string> PySplit(std::string_view s, const std::optional<std::string>& sep,
                                 int64_t maxsplit);
std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
// str.title() and str.capitalize().
std::string PyTitle(std::string_view s);
std::string PyCapitalize(std::string_view s);
// jinja2's |title filter: capitalizes words split at whitespace and -([{<.
std::string JinjaTitle(std::string_view s);
// str.replace(old, new, count); count < 0 replaces all.
std::string PyReplace(std::string_view s, std::string_view old, std::string_view repl,
                      int64_t count);

}  // namespace sy::jinja
