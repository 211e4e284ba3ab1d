// The built-in filters, tests, globals and methods templates can call, with Python's and
// jinja2's semantics (e.g. `|title`, `str.split`, `|tojson` as transformers defines it).
// Stateless free functions; thread-safe.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

#include "engine/tokenizer/jinja/value.h"

namespace sy::jinja {

bool IsFilter(std::string_view name);
bool IsTest(std::string_view name);

// `args.positional[0]` is the filtered value. Throws jinja::Error.
Value ApplyFilter(const std::string& name, Args& args);
bool ApplyTest(const std::string& name, const Value& value, const Args& args);

// obj.name as jinja2's sandboxed getattr sees it: a bound method of a str or dict, or nullopt.
std::optional<Value> GetMethod(const Value& obj, const std::string& name);

// The globals transformers' environment defines: range, namespace, dict, raise_exception,
// strftime_now (formatting `now`) and the loop-less helpers.
Dict MakeGlobals(const std::tm& now);

}  // namespace sy::jinja
