// jinja::Value: the dynamically typed value a Jinja template computes with, following Python's
// semantics (what jinja2 inherits), e.g. str(), ==, truthiness and json.dumps. Lists and dicts
// are shared and treated as immutable (the sandbox transformers uses forbids mutation), except
// namespace objects, whose attributes `{% set ns.x = ... %}` writes. Thread-compatible.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sy::jinja {

// A template error raised while parsing or rendering. It never leaves the jinja module:
// Template::Parse and Template::Render turn it into a Status. Throwing keeps the deeply
// recursive evaluator readable; every path out of the module is a Status.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, bool raised = false)
      : std::runtime_error(message), raised_(raised) {}
  // True for raise_exception(msg) called by the template itself.
  bool raised() const { return raised_; }

 private:
  bool raised_;
};

class Value;
struct Dict;
struct Args;
using List = std::vector<Value>;
using ListPtr = std::shared_ptr<List>;
using DictPtr = std::shared_ptr<Dict>;
using Function = std::function<Value(Args&)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };

  Value() = default;  // undefined
  // An undefined value carries the message jinja2's Undefined raises when a template misuses it
  // (calls it, does arithmetic with it, reads its attributes): for the variable `name`,
  // "'name' is undefined".
  static Value Undefined(std::string name = "");
  // An undefined value with that message given, e.g. "'str object' has no attribute 'items'".
  static Value UndefinedWithMessage(std::string message);
  static Value None();
  Value(bool b);     // NOLINT: implicit by design, like Python literals
  Value(int64_t i);  // NOLINT
  Value(int i) : Value(static_cast<int64_t>(i)) {}  // NOLINT
  Value(double d);                                  // NOLINT
  Value(std::string s);                             // NOLINT
  Value(const char* s) : Value(std::string(s)) {}   // NOLINT
  Value(List list, bool tuple = false);             // NOLINT
  Value(DictPtr dict);                              // NOLINT
  static Value MakeFunction(std::string name, Function fn);
  static Value FromJson(const nlohmann::ordered_json& j);
  static Value FromJson(const nlohmann::json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  // Python numbers: bool is an int subclass.
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_function() const { return kind_ == Kind::kFunction; }

  bool as_bool() const { return b_; }
  int64_t as_int() const;  // bool, int (float truncates)
  double as_double() const;
  const std::string& str() const { return s_; }  // string value, or undefined's message
  const List& list() const { return *list_; }
  const ListPtr& list_ptr() const { return list_; }
  Dict& dict() const { return *dict_; }
  const DictPtr& dict_ptr() const { return dict_; }
  Value Call(Args& args) const;
  const std::string& function_name() const { return s_; }

  bool Truthy() const;
  // Python str(): what {{ value }} prints (undefined prints nothing).
  std::string ToString() const;
  // Python repr(), used for items inside printed lists and dicts.
  std::string Repr() const;
  // Python ==.
  bool Equals(const Value& other) const;
  // A type name for error messages ("str", "int", "list", ...).
  std::string TypeName() const;
  // jinja2's object_type_repr: "str object", "dict object", ..., "None".
  std::string ObjectTypeRepr() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  bool tuple_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  ListPtr list_;
  DictPtr dict_;
  std::shared_ptr<Function> fn_;
};

// An insertion-ordered string-keyed map (Python dicts keep insertion order). Linear lookup:
// template dicts are small.
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;

  const Value* Find(std::string_view key) const;
  void Set(const std::string& key, Value value);
};

// Positional and keyword arguments of a call.
struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument at `index` or named `name`; nullopt when neither was passed.
  std::optional<Value> Get(size_t index, std::string_view name) const;
  Value GetOr(size_t index, std::string_view name, Value fallback) const;
  // Errors on too many positionals or an unknown keyword.
  void Expect(const char* fn, size_t max_positional,
              std::initializer_list<const char*> names) const;
};

// Python float repr: shortest round-trip digits, "1e-05", "1e+16", "2.0", "inf", "nan".
std::string FormatFloat(double d);
// Python repr() of a string (quotes chosen as Python does).
std::string ReprString(std::string_view s);

// json.dumps(value, ensure_ascii, indent, separators, sort_keys) as Python writes it.
struct JsonOptions {
  bool ensure_ascii = false;
  std::optional<int> indent;  // nullopt: one line
  std::optional<std::pair<std::string, std::string>> separators;
  bool sort_keys = false;
};
std::string ToJson(const Value& value, const JsonOptions& options);

}  // namespace sy::jinja
