// Python's operators and item access on jinja::Value: arithmetic, comparison, `in`, iteration,
// attribute and subscript lookup and slicing, with jinja2's rules for undefined values.
// Stateless free functions; thread-safe. All throw jinja::Error on a type error.
#pragma once

#include <optional>
#include <string>

#include "engine/tokenizer/jinja/value.h"

namespace sy::jinja {

// op is one of + - * / // % ** ~ == != < > <= >= in "not in".
Value BinaryOp(const std::string& op, const Value& a, const Value& b);
// Python's `a in b`.
bool Contains(const Value& container, const Value& item);
// Items iterated by `for x in value` (dict keys, string characters; undefined is empty).
List Iterate(const Value& value);
// Python's <; throws on unorderable types.
bool LessThan(const Value& a, const Value& b);
// obj.name: a method (see GetMethod), else the dict entry, else undefined.
Value GetAttribute(const Value& obj, const std::string& name);
// obj[key]: entry or element, else undefined; negative indices count from the end.
Value GetItem(const Value& obj, const Value& key);
// obj[start:stop:step] of a list or string.
Value Slice(const Value& obj, const std::optional<int64_t>& start,
            const std::optional<int64_t>& stop, const std::optional<int64_t>& step);

}  // namespace sy::jinja
