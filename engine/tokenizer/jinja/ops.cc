#include "engine/tokenizer/jinja/ops.h"

#include <cmath>
#include <limits>

#include "engine/tokenizer/jinja/builtins.h"
#include "engine/tokenizer/unicode.h"

namespace sy::jinja {
namespace {

// jinja2 raises an undefined value's own message whatever the misuse.
[[noreturn]] void FailUndefined(const Value& v) {
  throw Error(v.str().empty() ? "undefined value used" : v.str());
}

// What jinja2's getattr and getitem return for a missing attribute or element.
Value MissingAttribute(const Value& obj, const std::string& name) {
  return Value::UndefinedWithMessage(ReprString(obj.ObjectTypeRepr()) + " has no attribute " +
                                     ReprString(name));
}

Value MissingElement(const Value& obj, const Value& key) {
  return Value::UndefinedWithMessage(obj.ObjectTypeRepr() + " has no element " + key.Repr());
}

[[noreturn]] void FailOperands(const std::string& op, const Value& a, const Value& b) {
  throw Error("unsupported operand type(s) for " + op + ": '" + a.TypeName() + "' and '" +
              b.TypeName() + "'");
}

// The most characters or items `seq * n` may produce: templates repeat indentation, not data.
constexpr int64_t kMaxRepeatSize = int64_t{1} << 24;

constexpr size_t kMaxIteratedStringBytes = size_t{1} << 20;

// Python ints are unbounded; ours are int64, and a result that does not fit is an error rather
// than undefined behaviour.
[[noreturn]] void FailOverflow() { throw Error("integer overflow"); }

int64_t FloorDiv(int64_t a, int64_t b) {
  if (a == std::numeric_limits<int64_t>::min() && b == -1) FailOverflow();
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

Value Repeat(const Value& seq, int64_t n) {
  const int64_t unit = static_cast<int64_t>(seq.is_string() ? seq.str().size() : seq.list().size());
  if (n > 0 && unit > kMaxRepeatSize / n) throw Error("repetition result too large");
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return Value(std::move(out));
  }
  List out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.list().begin(), seq.list().end());
  return Value(std::move(out));
}

Value Arithmetic(const std::string& op, const Value& a, const Value& b) {
  const bool floats = a.is_float() || b.is_float();
  int64_t r = 0;
  if (op == "+") {
    if (floats) return Value(a.as_double() + b.as_double());
    if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) FailOverflow();
    return Value(r);
  }
  if (op == "-") {
    if (floats) return Value(a.as_double() - b.as_double());
    if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) FailOverflow();
    return Value(r);
  }
  if (op == "*") {
    if (floats) return Value(a.as_double() * b.as_double());
    if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) FailOverflow();
    return Value(r);
  }
  if (op == "**") {
    if (!floats && b.as_int() >= 0) {
      const int64_t base = a.as_int();
      const int64_t exponent = b.as_int();
      if (base == 0) return Value(int64_t{exponent == 0 ? 1 : 0});
      if (base == 1) return Value(int64_t{1});
      if (base == -1) return Value(int64_t{exponent % 2 == 0 ? 1 : -1});
      // |base| >= 2 overflows within 63 steps.
      r = 1;
      for (int64_t i = 0; i < exponent; ++i) {
        if (__builtin_mul_overflow(r, base, &r)) FailOverflow();
      }
      return Value(r);
    }
    return Value(std::pow(a.as_double(), b.as_double()));
  }
  if ((floats ? b.as_double() == 0.0 : b.as_int() == 0)) throw Error("division by zero");
  if (op == "/") return Value(a.as_double() / b.as_double());
  if (op == "//") {
    if (floats) return Value(std::floor(a.as_double() / b.as_double()));
    return Value(FloorDiv(a.as_int(), b.as_int()));
  }
  // %: the result takes the divisor's sign, as in Python.
  if (floats) {
    double r = std::fmod(a.as_double(), b.as_double());
    if (r != 0 && ((r < 0) != (b.as_double() < 0))) r += b.as_double();
    return Value(r);
  }
  if (b.as_int() == -1) return Value(int64_t{0});  // INT64_MIN % -1 would trap
  int64_t remainder = a.as_int() % b.as_int();
  if (remainder != 0 && ((remainder < 0) != (b.as_int() < 0))) remainder += b.as_int();
  return Value(remainder);
}

}  // namespace

bool LessThan(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list()) {
    const List& x = a.list();
    const List& y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!x[i].Equals(y[i])) return LessThan(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  if (a.is_undefined()) FailUndefined(a);
  if (b.is_undefined()) FailUndefined(b);
  FailOperands("<", a, b);
}

Value BinaryOp(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value(a.ToString() + b.ToString());
  if (op == "==") return Value(a.Equals(b));
  if (op == "!=") return Value(!a.Equals(b));
  if (op == "<") return Value(LessThan(a, b));
  if (op == ">") return Value(LessThan(b, a));
  if (op == "<=") return Value(!LessThan(b, a));
  if (op == ">=") return Value(!LessThan(a, b));
  if (op == "in") return Value(Contains(b, a));
  if (op == "not in") return Value(!Contains(b, a));
  if (a.is_undefined()) FailUndefined(a);
  if (b.is_undefined()) FailUndefined(b);
  if (a.is_number() && b.is_number()) return Arithmetic(op, a, b);
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value(a.str() + b.str());
    if (a.is_list() && b.is_list()) {
      List out = a.list();
      out.insert(out.end(), b.list().begin(), b.list().end());
      return Value(std::move(out), a.is_tuple());
    }
  }
  if (op == "*") {
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) return Repeat(a, b.as_int());
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) return Repeat(b, a.as_int());
  }
  FailOperands(op, a, b);
}

bool Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kString:
      if (!item.is_string()) {
        throw Error("'in <string>' requires string as left operand, not " + item.TypeName());
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& v : container.list()) {
        if (v.Equals(item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      return item.is_string() && container.dict().Find(item.str()) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    default:
      throw Error("argument of type '" + container.TypeName() + "' is not iterable");
  }
}

List Iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return value.list();
    case Value::Kind::kString: {
      // One Value per character is ~100 times the string's size.
      if (value.str().size() > kMaxIteratedStringBytes) throw Error("string too long to iterate");
      List out;
      for (std::string& c : tokenizer::Utf8Chars(value.str())) out.emplace_back(std::move(c));
      return out;
    }
    case Value::Kind::kDict: {
      if (value.dict().is_namespace) break;
      List out;
      for (const auto& [k, v] : value.dict().items) out.emplace_back(k);
      return out;
    }
    default:
      break;
  }
  throw Error("'" + value.TypeName() + "' object is not iterable");
}

Value GetAttribute(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) FailUndefined(obj);
  if (obj.is_dict() && obj.dict().is_namespace) {
    const Value* v = obj.dict().Find(name);
    return v ? *v : MissingAttribute(obj, name);
  }
  if (std::optional<Value> method = GetMethod(obj, name)) return *method;
  if (obj.is_dict()) {
    const Value* v = obj.dict().Find(name);
    if (v != nullptr) return *v;
  }
  return MissingAttribute(obj, name);
}

Value GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) FailUndefined(obj);
  if (obj.is_dict() && key.is_string()) {
    const Value* v = obj.dict().Find(key.str());
    if (v != nullptr) return *v;
    return GetAttribute(obj, key.str());
  }
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      const int64_t n = static_cast<int64_t>(obj.list().size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return MissingElement(obj, key);
      return obj.list()[static_cast<size_t>(i)];
    }
    std::vector<std::string> chars = tokenizer::Utf8Chars(obj.str());
    const int64_t n = static_cast<int64_t>(chars.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return MissingElement(obj, key);
    return Value(std::move(chars[static_cast<size_t>(i)]));
  }
  if (key.is_string()) return GetAttribute(obj, key.str());
  return MissingElement(obj, key);
}

Value Slice(const Value& obj, const std::optional<int64_t>& start,
            const std::optional<int64_t>& stop, const std::optional<int64_t>& step_arg) {
  if (obj.is_undefined()) FailUndefined(obj);
  const int64_t step = step_arg.value_or(1);
  if (step == 0) throw Error("slice step cannot be zero");
  std::vector<std::string> chars;
  int64_t n = 0;
  if (obj.is_string()) {
    chars = tokenizer::Utf8Chars(obj.str());
    n = static_cast<int64_t>(chars.size());
  } else if (obj.is_list()) {
    n = static_cast<int64_t>(obj.list().size());
  } else {
    throw Error("'" + obj.TypeName() + "' object is not subscriptable");
  }
  // Python's slice index adjustment.
  const auto adjust = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t i = *v;
    if (i < 0) i = std::max<int64_t>(i + n, step < 0 ? -1 : 0);
    return std::min<int64_t>(i, step < 0 ? n - 1 : n);
  };
  const int64_t lo = adjust(start, step < 0 ? n - 1 : 0);
  const int64_t hi = adjust(stop, step < 0 ? -1 : n);
  std::string s;
  List list;
  for (int64_t i = lo; step > 0 ? i < hi : i > hi;) {
    if (obj.is_string()) {
      s += chars[static_cast<size_t>(i)];
    } else {
      list.push_back(obj.list()[static_cast<size_t>(i)]);
    }
    if (__builtin_add_overflow(i, step, &i)) break;  // past either end
  }
  if (obj.is_string()) return Value(std::move(s));
  return Value(std::move(list), obj.is_tuple());
}

}  // namespace sy::jinja
