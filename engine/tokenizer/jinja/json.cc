// ToJson: Python's json.dumps, which transformers' tojson filter calls.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/tokenizer/jinja/value.h"
#include "engine/tokenizer/unicode.h"

namespace sy::jinja {
namespace {

void AppendEscape(uint32_t unit, std::string* out) {
  char buf[16];  // "\\u" and 4 hex digits; room for 8 should a unit ever exceed 16 bits
  std::snprintf(buf, sizeof(buf), "\\u%04x", unit);
  *out += buf;
}

void AppendString(std::string_view s, bool ensure_ascii, std::string* out) {
  *out += '"';
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80 && ensure_ascii) {
      uint32_t cp = tokenizer::DecodeUtf8(s, &i);
      if (cp == tokenizer::kInvalidByte) cp = 0xFFFD;
      if (cp >= 0x10000) {
        AppendEscape(0xD800 + ((cp - 0x10000) >> 10), out);
        AppendEscape(0xDC00 + ((cp - 0x10000) & 0x3FF), out);
      } else {
        AppendEscape(cp, out);
      }
      continue;
    }
    ++i;
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (u < 0x20 || (ensure_ascii && u == 0x7f)) {
          AppendEscape(u, out);
        } else {
          *out += c;
        }
    }
  }
  *out += '"';
}

class JsonWriter {
 public:
  explicit JsonWriter(const JsonOptions& options) : options_(options) {
    if (options.separators) {
      item_sep_ = options.separators->first;
      key_sep_ = options.separators->second;
    } else {
      item_sep_ = options.indent ? "," : ", ";
      key_sep_ = ": ";
    }
  }

  void Write(const Value& v, int depth, std::string* out) {
    if (depth > 512) throw Error("tojson: value nested too deeply");
    switch (v.kind()) {
      case Value::Kind::kNone:
        *out += "null";
        return;
      case Value::Kind::kBool:
        *out += v.as_bool() ? "true" : "false";
        return;
      case Value::Kind::kInt:
        *out += std::to_string(v.as_int());
        return;
      case Value::Kind::kFloat: {
        const double d = v.as_double();
        if (std::isnan(d)) {
          *out += "NaN";
        } else if (std::isinf(d)) {
          *out += d > 0 ? "Infinity" : "-Infinity";
        } else {
          *out += FormatFloat(d);
        }
        return;
      }
      case Value::Kind::kString:
        AppendString(v.str(), options_.ensure_ascii, out);
        return;
      case Value::Kind::kList:
        WriteList(v.list(), depth, out);
        return;
      case Value::Kind::kDict:
        if (!v.dict().is_namespace) {
          WriteDict(v.dict(), depth, out);
          return;
        }
        break;
      default:
        break;
    }
    throw Error("Object of type " + v.TypeName() + " is not JSON serializable");
  }

 private:
  void Newline(int depth, std::string* out) {
    if (!options_.indent) return;
    *out += '\n';
    out->append(static_cast<size_t>(std::max(0, *options_.indent) * depth), ' ');
  }

  void WriteList(const List& list, int depth, std::string* out) {
    if (list.empty()) {
      *out += "[]";
      return;
    }
    *out += '[';
    for (size_t i = 0; i < list.size(); ++i) {
      if (i > 0) *out += item_sep_;
      Newline(depth + 1, out);
      Write(list[i], depth + 1, out);
    }
    Newline(depth, out);
    *out += ']';
  }

  void WriteDict(const Dict& dict, int depth, std::string* out) {
    if (dict.items.empty()) {
      *out += "{}";
      return;
    }
    std::vector<const std::pair<std::string, Value>*> items;
    for (const auto& item : dict.items) items.push_back(&item);
    if (options_.sort_keys) {
      std::stable_sort(items.begin(), items.end(),
                       [](const auto* a, const auto* b) { return a->first < b->first; });
    }
    *out += '{';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) *out += item_sep_;
      Newline(depth + 1, out);
      AppendString(items[i]->first, options_.ensure_ascii, out);
      *out += key_sep_;
      Write(items[i]->second, depth + 1, out);
    }
    Newline(depth, out);
    *out += '}';
  }

  const JsonOptions& options_;
  std::string item_sep_;
  std::string key_sep_;
};

}  // namespace

std::string ToJson(const Value& value, const JsonOptions& options) {
  std::string out;
  JsonWriter(options).Write(value, 0, &out);
  return out;
}

}  // namespace sy::jinja
