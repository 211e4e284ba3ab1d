#include "engine/tokenizer/jinja/builtins.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <limits>
#include <map>

#include "engine/tokenizer/jinja/ops.h"
#include "engine/tokenizer/jinja/strings.h"
#include "engine/tokenizer/unicode.h"

namespace sy::jinja {
namespace {

// The widest |indent or |tojson(indent=...) a template may ask for.
constexpr int64_t kMaxIndentWidth = 1024;

using FilterFn = Value (*)(Args&);

const Value& Arg0(const Args& args) { return args.positional[0]; }

std::string StringArg(const Args& args, size_t i, const char* name, const std::string& fallback) {
  std::optional<Value> v = args.Get(i, name);
  return v ? v->ToString() : fallback;
}

bool ParseNumber(const std::string& text, bool integer, Value* out) {
  const std::string t = PyStrip(text, std::nullopt, StripSide::kBoth);
  if (t.empty()) return false;
  size_t used = 0;
  try {
    if (integer) {
      const int64_t i = std::stoll(t, &used, 10);
      if (used == t.size()) {
        *out = Value(i);
        return true;
      }
    }
    const double d = std::stod(t, &used);
    if (used != t.size()) return false;
    *out = integer ? Value(Value(d).as_int()) : Value(d);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

Value FilterInt(Args& args) {
  const Value& v = Arg0(args);
  const Value fallback = args.GetOr(1, "default", Value(int64_t{0}));
  if (v.is_int() || v.is_bool() || v.is_float()) return Value(v.as_int());
  Value out;
  if (v.is_string() && ParseNumber(v.str(), true, &out)) return out;
  return fallback;
}

Value FilterFloat(Args& args) {
  const Value& v = Arg0(args);
  const Value fallback = args.GetOr(1, "default", Value(0.0));
  if (v.is_number()) return Value(v.as_double());
  Value out;
  if (v.is_string() && ParseNumber(v.str(), false, &out)) return out;
  return fallback;
}

Value FilterLength(Args& args) {
  const Value& v = Arg0(args);
  if (v.is_string()) return Value(static_cast<int64_t>(tokenizer::Utf8Length(v.str())));
  if (v.is_list()) return Value(static_cast<int64_t>(v.list().size()));
  if (v.is_dict()) return Value(static_cast<int64_t>(v.dict().items.size()));
  if (v.is_undefined()) return Value(int64_t{0});
  throw Error("object of type '" + v.TypeName() + "' has no len()");
}

Value FilterToJson(Args& args) {
  args.Expect("tojson", 5, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions options;
  options.ensure_ascii = args.GetOr(1, "ensure_ascii", Value(false)).Truthy();
  const Value indent = args.GetOr(2, "indent", Value::None());
  if (indent.is_int()) {
    if (indent.as_int() > kMaxIndentWidth) throw Error("tojson indent too large");
    options.indent = static_cast<int>(std::max<int64_t>(indent.as_int(), 0));
  }
  const Value separators = args.GetOr(3, "separators", Value::None());
  if (separators.is_list() && separators.list().size() == 2) {
    options.separators = {separators.list()[0].ToString(), separators.list()[1].ToString()};
  }
  options.sort_keys = args.GetOr(4, "sort_keys", Value(false)).Truthy();
  return Value(ToJson(Arg0(args), options));
}

Value FilterDefault(Args& args) {
  const Value& v = Arg0(args);
  const bool boolean = args.GetOr(2, "boolean", Value(false)).Truthy();
  if (v.is_undefined() || (boolean && !v.Truthy())) {
    return args.GetOr(1, "default_value", Value(std::string()));
  }
  return v;
}

Value FilterJoin(Args& args) {
  const std::string sep = StringArg(args, 1, "d", "");
  std::optional<Value> attribute = args.Get(2, "attribute");
  std::string out;
  bool first = true;
  for (const Value& item : Iterate(Arg0(args))) {
    if (!first) out += sep;
    out += (attribute ? GetAttribute(item, attribute->ToString()) : item).ToString();
    first = false;
  }
  return Value(std::move(out));
}

Value FilterFirst(Args& args) {
  List items = Iterate(Arg0(args));
  return items.empty() ? Value::UndefinedWithMessage("No first item, sequence was empty.")
                       : items.front();
}

Value FilterLast(Args& args) {
  List items = Iterate(Arg0(args));
  return items.empty() ? Value::UndefinedWithMessage("No last item, sequence was empty.")
                       : items.back();
}

Value FilterList(Args& args) { return Value(Iterate(Arg0(args))); }

Value FilterItems(Args& args) {
  const Value& v = Arg0(args);
  if (v.is_undefined()) return Value(List{});
  if (!v.is_dict()) throw Error("items filter needs a mapping");
  List out;
  for (const auto& [k, x] : v.dict().items) out.emplace_back(List{Value(k), x}, true);
  return Value(std::move(out));
}

Value FilterTrim(Args& args) {
  std::optional<Value> chars = args.Get(1, "chars");
  return Value(PyStrip(Arg0(args).ToString(),
                       chars && !chars->is_none() ? std::optional(chars->ToString()) : std::nullopt,
                       StripSide::kBoth));
}

Value FilterUpper(Args& args) { return Value(PyUpper(Arg0(args).ToString())); }
Value FilterLower(Args& args) { return Value(PyLower(Arg0(args).ToString())); }
Value FilterTitle(Args& args) { return Value(JinjaTitle(Arg0(args).ToString())); }
Value FilterCapitalize(Args& args) { return Value(PyCapitalize(Arg0(args).ToString())); }
Value FilterString(Args& args) { return Value(Arg0(args).ToString()); }
Value FilterSafe(Args& args) { return Arg0(args); }

Value FilterReplace(Args& args) {
  return Value(PyReplace(
      Arg0(args).ToString(), StringArg(args, 1, "old", ""), StringArg(args, 2, "new", ""),
      args.GetOr(3, "count", Value::None()).is_int() ? args.GetOr(3, "count", Value()).as_int()
                                                     : -1));
}

Value FilterEscape(Args& args) {
  std::string out;
  for (const char c : Arg0(args).ToString()) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return Value(std::move(out));
}

Value FilterAbs(Args& args) {
  const Value& v = Arg0(args);
  if (v.is_float()) return Value(std::fabs(v.as_double()));
  if (v.is_number()) {
    if (v.as_int() == std::numeric_limits<int64_t>::min()) throw Error("integer overflow");
    return Value(static_cast<int64_t>(std::llabs(v.as_int())));
  }
  throw Error("bad operand type for abs(): '" + v.TypeName() + "'");
}

Value FilterRound(Args& args) {
  const Value& v = Arg0(args);
  const int64_t precision = args.GetOr(1, "precision", Value(int64_t{0})).as_int();
  const std::string method = StringArg(args, 2, "method", "common");
  if (!v.is_number()) throw Error("round filter needs a number");
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  double r;
  if (method == "ceil") {
    r = std::ceil(x);
  } else if (method == "floor") {
    r = std::floor(x);
  } else {
    // Python's round() rounds half to even.
    std::fesetround(FE_TONEAREST);
    r = std::nearbyint(x);
  }
  if (method == "common" && !v.is_float()) return Value(v.as_int());
  return Value(r / scale);
}

// Sort key for |sort, |dictsort, |min and |max: strings compare case-insensitively unless
// case_sensitive is set, as in jinja2.
Value SortKey(const Value& v, bool case_sensitive) {
  if (v.is_string() && !case_sensitive) return Value(PyLower(v.str()));
  return v;
}

Value FilterSort(Args& args) {
  const bool reverse = args.GetOr(1, "reverse", Value(false)).Truthy();
  const bool case_sensitive = args.GetOr(2, "case_sensitive", Value(false)).Truthy();
  std::optional<Value> attribute = args.Get(3, "attribute");
  List items = Iterate(Arg0(args));
  const auto key = [&](const Value& v) {
    return SortKey(attribute ? GetAttribute(v, attribute->ToString()) : v, case_sensitive);
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return reverse ? LessThan(key(b), key(a)) : LessThan(key(a), key(b));
  });
  return Value(std::move(items));
}

Value FilterDictsort(Args& args) {
  const bool case_sensitive = args.GetOr(1, "case_sensitive", Value(false)).Truthy();
  const bool by_value = StringArg(args, 2, "by", "key") == "value";
  const bool reverse = args.GetOr(3, "reverse", Value(false)).Truthy();
  Args items_args{{Arg0(args)}, {}};
  List items = FilterItems(items_args).list();
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    const Value ka = SortKey(a.list()[by_value ? 1 : 0], case_sensitive);
    const Value kb = SortKey(b.list()[by_value ? 1 : 0], case_sensitive);
    return reverse ? LessThan(kb, ka) : LessThan(ka, kb);
  });
  return Value(std::move(items));
}

Value FilterReverse(Args& args) {
  const Value& v = Arg0(args);
  if (v.is_string()) {
    std::vector<std::string> chars = tokenizer::Utf8Chars(v.str());
    std::string out;
    for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
    return Value(std::move(out));
  }
  List items = Iterate(v);
  std::reverse(items.begin(), items.end());
  return Value(std::move(items));
}

Value FilterUnique(Args& args) {
  List out;
  for (const Value& v : Iterate(Arg0(args))) {
    const bool seen = std::any_of(out.begin(), out.end(), [&](const Value& o) {
      return SortKey(o, false).Equals(SortKey(v, false));
    });
    if (!seen) out.push_back(v);
  }
  return Value(std::move(out));
}

Value MinMax(Args& args, bool max) {
  List items = Iterate(Arg0(args));
  if (items.empty()) return Value::UndefinedWithMessage("No aggregated item, sequence was empty.");
  const bool case_sensitive = args.GetOr(1, "case_sensitive", Value(false)).Truthy();
  Value best = items[0];
  for (const Value& v : items) {
    const bool better = max ? LessThan(SortKey(best, case_sensitive), SortKey(v, case_sensitive))
                            : LessThan(SortKey(v, case_sensitive), SortKey(best, case_sensitive));
    if (better) best = v;
  }
  return best;
}
Value FilterMin(Args& args) { return MinMax(args, false); }
Value FilterMax(Args& args) { return MinMax(args, true); }

Value FilterSum(Args& args) {
  std::optional<Value> attribute = args.Get(1, "attribute");
  Value total = args.GetOr(2, "start", Value(int64_t{0}));
  for (const Value& v : Iterate(Arg0(args))) {
    total = BinaryOp("+", total, attribute ? GetAttribute(v, attribute->ToString()) : v);
  }
  return total;
}

// |map('filter', args...) or |map(attribute='name', default=...).
Value FilterMap(Args& args) {
  List out;
  const List items = Iterate(Arg0(args));
  std::optional<Value> attribute;
  std::optional<Value> fallback;
  for (const auto& [k, v] : args.keyword) {
    if (k == "attribute") attribute = v;
    if (k == "default") fallback = v;
  }
  if (attribute) {
    for (const Value& item : items) {
      Value v = GetAttribute(item, attribute->ToString());
      out.push_back(v.is_undefined() && fallback ? *fallback : v);
    }
    return Value(std::move(out));
  }
  if (args.positional.size() < 2) throw Error("map filter needs a filter name or attribute=");
  const std::string filter = args.positional[1].ToString();
  if (!IsFilter(filter)) throw Error("no filter named '" + filter + "'");
  for (const Value& item : items) {
    Args call;
    call.positional.push_back(item);
    call.positional.insert(call.positional.end(), args.positional.begin() + 2,
                           args.positional.end());
    call.keyword = args.keyword;
    out.push_back(ApplyFilter(filter, call));
  }
  return Value(std::move(out));
}

// select / reject / selectattr / rejectattr.
Value Select(Args& args, bool by_attribute, bool keep) {
  const size_t first = by_attribute ? 2 : 1;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.size() < 2) throw Error("selectattr needs an attribute");
    attribute = args.positional[1].ToString();
  }
  std::optional<std::string> test;
  if (args.positional.size() > first) test = args.positional[first].ToString();
  if (test && !IsTest(*test)) throw Error("no test named '" + *test + "'");
  Args test_args;
  test_args.positional.assign(args.positional.begin() + std::min(args.positional.size(), first + 1),
                              args.positional.end());
  List out;
  for (const Value& item : Iterate(Arg0(args))) {
    const Value v = by_attribute ? GetAttribute(item, attribute) : item;
    const bool pass = test ? ApplyTest(*test, v, test_args) : v.Truthy();
    if (pass == keep) out.push_back(item);
  }
  return Value(std::move(out));
}
Value FilterSelect(Args& args) { return Select(args, false, true); }
Value FilterReject(Args& args) { return Select(args, false, false); }
Value FilterSelectattr(Args& args) { return Select(args, true, true); }
Value FilterRejectattr(Args& args) { return Select(args, true, false); }

Value FilterIndent(Args& args) {
  const Value width = args.GetOr(1, "width", Value(int64_t{4}));
  // Python's " " * width: empty when negative; a width no template needs is an error.
  if (!width.is_string() && width.as_int() > kMaxIndentWidth) throw Error("indent width too large");
  const std::string pad =
      width.is_string() ? width.str() : std::string(std::max<int64_t>(width.as_int(), 0), ' ');
  const bool first = args.GetOr(2, "first", Value(false)).Truthy();
  const bool blank = args.GetOr(3, "blank", Value(false)).Truthy();
  const std::vector<std::string> lines = PySplit(Arg0(args).ToString(), std::string("\n"), -1);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += '\n';
    if ((i > 0 || first) && (blank || !PyStrip(lines[i], std::nullopt, StripSide::kBoth).empty())) {
      out += pad;
    }
    out += lines[i];
  }
  return Value(std::move(out));
}

const std::map<std::string, FilterFn, std::less<>>& Filters() {
  static const auto* const kFilters = new std::map<std::string, FilterFn, std::less<>>{
      {"abs", FilterAbs},
      {"capitalize", FilterCapitalize},
      {"count", FilterLength},
      {"d", FilterDefault},
      {"default", FilterDefault},
      {"dictsort", FilterDictsort},
      {"e", FilterEscape},
      {"escape", FilterEscape},
      {"first", FilterFirst},
      {"float", FilterFloat},
      {"indent", FilterIndent},
      {"int", FilterInt},
      {"items", FilterItems},
      {"join", FilterJoin},
      {"last", FilterLast},
      {"length", FilterLength},
      {"list", FilterList},
      {"lower", FilterLower},
      {"map", FilterMap},
      {"max", FilterMax},
      {"min", FilterMin},
      {"reject", FilterReject},
      {"rejectattr", FilterRejectattr},
      {"replace", FilterReplace},
      {"reverse", FilterReverse},
      {"round", FilterRound},
      {"safe", FilterSafe},
      {"select", FilterSelect},
      {"selectattr", FilterSelectattr},
      {"sort", FilterSort},
      {"string", FilterString},
      {"sum", FilterSum},
      {"title", FilterTitle},
      {"tojson", FilterToJson},
      {"trim", FilterTrim},
      {"unique", FilterUnique},
      {"upper", FilterUpper},
  };
  return *kFilters;
}

bool IsLowerOrUpper(const Value& v, bool upper) {
  if (!v.is_string()) return false;
  return upper ? PyUpper(v.str()) == v.str() && PyLower(v.str()) != v.str()
               : PyLower(v.str()) == v.str() && PyUpper(v.str()) != v.str();
}

const Value& TestArg(const Args& args) {
  if (args.positional.empty()) throw Error("test needs an argument");
  return args.positional[0];
}

const char* const kTests[] = {
    "boolean",  "callable", "defined", "divisibleby", "eq",      "equalto", "escaped",
    "even",     "false",    "float",   "ge",          "gt",      "in",      "integer",
    "iterable", "le",       "lower",   "lt",          "mapping", "ne",      "none",
    "number",   "odd",      "sameas",  "sequence",    "string",  "true",    "undefined",
    "upper",    "==",       "!=",      "<",           ">",       "<=",      ">="};

}  // namespace

bool IsFilter(std::string_view name) { return Filters().find(name) != Filters().end(); }

bool IsTest(std::string_view name) {
  return std::any_of(std::begin(kTests), std::end(kTests),
                     [&](const char* t) { return name == t; });
}

Value ApplyFilter(const std::string& name, Args& args) {
  const auto it = Filters().find(name);
  if (it == Filters().end()) throw Error("no filter named '" + name + "'");
  if (args.positional.empty()) throw Error("filter '" + name + "' needs a value");
  return it->second(args);
}

bool ApplyTest(const std::string& name, const Value& v, const Args& args) {
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_string() || v.is_dict() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_string() || v.is_dict();
  if (name == "callable") return v.is_function();
  if (name == "escaped") return false;
  if (name == "lower") return IsLowerOrUpper(v, false);
  if (name == "upper") return IsLowerOrUpper(v, true);
  if (name == "even" || name == "odd") {
    if (!v.is_number()) throw Error("even/odd test needs a number");
    const int64_t r = v.as_int() % 2;
    return (r == 0) == (name == "even");
  }
  if (name == "divisibleby") {
    const int64_t d = TestArg(args).as_int();
    if (d == 0) throw Error("division by zero");
    return v.as_int() % d == 0;
  }
  if (name == "sameas") {
    const Value& o = TestArg(args);
    return v.kind() == o.kind() && v.Equals(o);
  }
  static const std::map<std::string, std::string, std::less<>> kCompare = {
      {"eq", "=="}, {"equalto", "=="}, {"==", "=="}, {"ne", "!="}, {"!=", "!="},
      {"lt", "<"},  {"<", "<"},        {"le", "<="}, {"<=", "<="}, {"gt", ">"},
      {">", ">"},   {"ge", ">="},      {">=", ">="}, {"in", "in"}};
  const auto it = kCompare.find(name);
  if (it == kCompare.end()) throw Error("no test named '" + name + "'");
  return BinaryOp(it->second, v, TestArg(args)).Truthy();
}

Dict MakeGlobals(const std::tm& now) {
  Dict g;
  g.Set("range", Value::MakeFunction("range", [](Args& args) {
          if (args.positional.empty() || args.positional.size() > 3) {
            throw Error("range expected 1 to 3 arguments");
          }
          int64_t start = 0;
          int64_t stop = args.positional[0].as_int();
          int64_t step = 1;
          if (args.positional.size() >= 2) {
            start = stop;
            stop = args.positional[1].as_int();
          }
          if (args.positional.size() == 3) step = args.positional[2].as_int();
          if (step == 0) throw Error("range() arg 3 must not be zero");
          List out;
          for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
            if (out.size() >= 100'000) throw Error("range too large");
            out.emplace_back(i);
            if (__builtin_add_overflow(i, step, &i)) break;  // past stop
          }
          return Value(std::move(out));
        }));
  const auto make_dict = [](Args& args, bool is_namespace) {
    auto d = std::make_shared<Dict>();
    d->is_namespace = is_namespace;
    for (const Value& p : args.positional) {
      if (!p.is_dict()) throw Error("dict/namespace positional argument must be a mapping");
      for (const auto& [k, v] : p.dict().items) d->Set(k, v);
    }
    for (const auto& [k, v] : args.keyword) d->Set(k, v);
    return Value(std::move(d));
  };
  g.Set("namespace", Value::MakeFunction(
                         "namespace", [make_dict](Args& args) { return make_dict(args, true); }));
  g.Set("dict",
        Value::MakeFunction("dict", [make_dict](Args& args) { return make_dict(args, false); }));
  g.Set("raise_exception", Value::MakeFunction("raise_exception", [](Args& args) -> Value {
          throw Error(args.GetOr(0, "message", Value(std::string())).ToString(), true);
        }));
  g.Set("strftime_now", Value::MakeFunction("strftime_now", [now](Args& args) {
          const std::string fmt = args.GetOr(0, "format", Value()).ToString();
          if (fmt.empty()) return Value(std::string());
          char buf[512];
          const size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &now);
          return Value(std::string(buf, n));
        }));
  return g;
}

}  // namespace sy::jinja
