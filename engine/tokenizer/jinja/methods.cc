// GetMethod: the str and dict methods templates call (message.content.split('</think>'),
// tool.get('name'), ...), bound to their object.
#include <algorithm>
#include <charconv>

#include "engine/tokenizer/jinja/builtins.h"
#include "engine/tokenizer/jinja/ops.h"
#include "engine/tokenizer/jinja/strings.h"
#include "engine/tokenizer/unicode.h"

namespace sy::jinja {
namespace {

std::optional<std::string> OptionalString(const Args& args, size_t index, const char* name,
                                          const char* fn) {
  std::optional<Value> v = args.Get(index, name);
  if (!v || v->is_none()) return std::nullopt;
  if (!v->is_string()) throw Error(std::string(fn) + "() argument must be str or None");
  return v->str();
}

std::string RequireString(const Args& args, size_t index, const char* name, const char* fn) {
  std::optional<Value> v = args.Get(index, name);
  if (!v || !v->is_string()) throw Error(std::string(fn) + "() needs a str argument");
  return v->str();
}

// str.startswith / str.endswith: the argument may be a tuple of alternatives.
bool AffixMatch(const std::string& s, const Value& arg, bool prefix) {
  if (arg.is_list()) {
    return std::any_of(arg.list().begin(), arg.list().end(),
                       [&](const Value& v) { return AffixMatch(s, v, prefix); });
  }
  if (!arg.is_string()) throw Error("startswith/endswith first arg must be str or a tuple of str");
  const std::string& a = arg.str();
  if (a.size() > s.size()) return false;
  return prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
}

// str.format with {} / {0} / {name} fields (no format specs).
std::string Format(const std::string& fmt, const Args& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if ((c == '{' || c == '}') && i + 1 < fmt.size() && fmt[i + 1] == c) {
      out += c;
      ++i;
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) throw Error("Single '{' encountered in format string");
    const std::string field = fmt.substr(i + 1, close - i - 1);
    std::optional<Value> v;
    if (field.empty()) {
      v = args.Get(auto_index++, "");
    } else if (std::all_of(field.begin(), field.end(),
                           [](char d) { return d >= '0' && d <= '9'; })) {
      size_t index = 0;
      const auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), index);
      if (error != std::errc()) throw Error("format field index out of range: " + field);
      v = args.Get(index, "");
    } else {
      v = args.Get(SIZE_MAX, field);
    }
    if (!v) throw Error("format field '" + field + "' has no argument");
    out += v->ToString();
    i = close;
  }
  return out;
}

Value StringMethod(const std::string& s, const std::string& name, Args& args) {
  if (name == "startswith" || name == "endswith") {
    std::optional<Value> arg = args.Get(0, "prefix");
    if (!arg) throw Error(name + "() takes at least 1 argument");
    return Value(AffixMatch(s, *arg, name == "startswith"));
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const StripSide side = name == "strip"    ? StripSide::kBoth
                           : name == "lstrip" ? StripSide::kLeft
                                              : StripSide::kRight;
    return Value(PyStrip(s, OptionalString(args, 0, "chars", name.c_str()), side));
  }
  if (name == "split") {
    const int64_t maxsplit = args.GetOr(1, "maxsplit", Value(int64_t{-1})).as_int();
    List out;
    for (std::string& part : PySplit(s, OptionalString(args, 0, "sep", "split"), maxsplit)) {
      out.emplace_back(std::move(part));
    }
    return Value(std::move(out));
  }
  if (name == "splitlines") {
    List out;
    for (std::string& part : PySplit(s, std::string("\n"), -1)) out.emplace_back(std::move(part));
    if (!out.empty() && out.back().str().empty()) out.pop_back();
    return Value(std::move(out));
  }
  if (name == "upper") return Value(PyUpper(s));
  if (name == "lower") return Value(PyLower(s));
  if (name == "title") return Value(PyTitle(s));
  if (name == "capitalize") return Value(PyCapitalize(s));
  if (name == "replace") {
    return Value(PyReplace(s, RequireString(args, 0, "old", "replace"),
                           RequireString(args, 1, "new", "replace"),
                           args.GetOr(2, "count", Value(int64_t{-1})).as_int()));
  }
  if (name == "format") return Value(Format(s, args));
  if (name == "join") {
    std::optional<Value> items = args.Get(0, "iterable");
    if (!items) throw Error("join() takes exactly one argument");
    std::string out;
    bool first = true;
    for (const Value& v : Iterate(*items)) {
      if (!v.is_string())
        throw Error("sequence item: expected str instance, " + v.TypeName() + " found");
      if (!first) out += s;
      out += v.str();
      first = false;
    }
    return Value(std::move(out));
  }
  if (name == "find" || name == "count") {
    const std::string sub = RequireString(args, 0, "sub", name.c_str());
    if (name == "find") {
      const size_t at = s.find(sub);
      return Value(at == std::string::npos
                       ? int64_t{-1}
                       : static_cast<int64_t>(tokenizer::Utf8Length(s.substr(0, at))));
    }
    if (sub.empty()) return Value(static_cast<int64_t>(tokenizer::Utf8Length(s) + 1));
    int64_t n = 0;
    for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
    return Value(n);
  }
  throw Error("str has no method '" + name + "'");
}

Value DictMethod(const DictPtr& d, const std::string& name, Args& args) {
  if (name == "get") {
    std::optional<Value> key = args.Get(0, "key");
    if (!key) throw Error("get() takes at least 1 argument");
    const Value* v = key->is_string() ? d->Find(key->str()) : nullptr;
    return v ? *v : args.GetOr(1, "default", Value::None());
  }
  List out;
  for (const auto& [k, v] : d->items) {
    if (name == "items") {
      out.emplace_back(List{Value(k), v}, /*tuple=*/true);
    } else if (name == "keys") {
      out.emplace_back(k);
    } else {
      out.push_back(v);
    }
  }
  return Value(std::move(out));
}

bool IsStringMethod(const std::string& name) {
  static const char* const kNames[] = {
      "startswith", "endswith", "strip",      "lstrip",  "rstrip", "split", "splitlines", "upper",
      "lower",      "title",    "capitalize", "replace", "format", "join",  "find",       "count"};
  return std::any_of(std::begin(kNames), std::end(kNames),
                     [&](const char* n) { return name == n; });
}

}  // namespace

std::optional<Value> GetMethod(const Value& obj, const std::string& name) {
  if (obj.is_string() && IsStringMethod(name)) {
    const std::string s = obj.str();
    return Value::MakeFunction(name, [s, name](Args& args) { return StringMethod(s, name, args); });
  }
  if (obj.is_dict() && !obj.dict().is_namespace &&
      (name == "get" || name == "items" || name == "keys" || name == "values")) {
    const DictPtr d = obj.dict_ptr();
    return Value::MakeFunction(name, [d, name](Args& args) { return DictMethod(d, name, args); });
  }
  return std::nullopt;
}

}  // namespace sy::jinja
