#include "engine/tokenizer/jinja/eval.h"

#include <limits>
#include <string>

#include "engine/tokenizer/jinja/builtins.h"
#include "engine/tokenizer/jinja/ops.h"

namespace sy::jinja {
namespace {

// Macro recursion bound: a recursive macro in a hostile template must not exhaust the stack.
constexpr int kMaxCallDepth = 64;

std::optional<int64_t> SliceBound(const Value& v) {
  if (v.is_none() || v.is_undefined()) return std::nullopt;
  if (!v.is_int() && !v.is_bool()) throw Error("slice indices must be integers or None");
  return v.as_int();
}

}  // namespace

Renderer::Renderer(const Dict& context, const Dict& globals, const RenderLimits& limits)
    : context_(context), globals_(globals), limits_(limits) {}

void Renderer::Spend(int64_t steps) {
  steps_ += steps;
  if (steps_ > limits_.max_steps) {
    throw Error("template rendering exceeds its budget of " + std::to_string(limits_.max_steps) +
                " steps");
  }
}

void Renderer::CheckOutput(const std::string& out) const {
  if (static_cast<int64_t>(out.size()) > limits_.max_output_bytes) {
    throw Error("template output exceeds " + std::to_string(limits_.max_output_bytes) + " bytes");
  }
}

void Renderer::ChargeValue(const Value& v) {
  constexpr int64_t kBytesPerStep = 64;
  if (v.is_string()) {
    CheckOutput(v.str());
    Spend(static_cast<int64_t>(v.str().size()) / kBytesPerStep);
  } else if (v.is_list()) {
    // Building a list copies its strings.
    int64_t bytes = 0;
    for (const Value& item : v.list()) {
      if (item.is_string()) bytes += static_cast<int64_t>(item.str().size());
    }
    Spend(static_cast<int64_t>(v.list().size()) + bytes / kBytesPerStep);
  }
}

void Renderer::CheckStorable(const Value& value, const Dict* target) {
  struct Walk {
    Renderer* r;
    const Dict* target;
    void Visit(const Value& v, int depth) {
      if (!v.is_list() && !v.is_dict()) return;
      if (depth > kMaxStoredValueDepth) throw Error("value nested too deeply to store");
      r->Spend(1);
      if (v.is_dict()) {
        if (&v.dict() == target) throw Error("cannot store a namespace inside itself");
        for (const auto& [key, item] : v.dict().items) Visit(item, depth + 1);
      } else {
        for (const Value& item : v.list()) Visit(item, depth + 1);
      }
    }
  };
  Walk{this, target}.Visit(value, 1);
}

void Renderer::Render(const Body& body, std::string* out) {
  frames_.clear();
  frames_.emplace_back();
  Exec(body, out);
}

Renderer::Flow Renderer::Exec(const Body& body, std::string* out) {
  for (const NodePtr& node : body) {
    const Flow flow = ExecNode(*node, out);
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

Renderer::Flow Renderer::ExecNode(const Node& node, std::string* out) {
  Spend(1);
  switch (node.kind) {
    case Node::Kind::kText:
      *out += node.text;
      CheckOutput(*out);
      return Flow::kNormal;
    case Node::Kind::kOutput:
      *out += Eval(*node.expr).ToString();
      CheckOutput(*out);
      return Flow::kNormal;
    case Node::Kind::kIf:
      for (const auto& [cond, body] : node.branches) {
        if (Eval(*cond).Truthy()) return Exec(body, out);
      }
      return Exec(node.else_body, out);
    case Node::Kind::kFor:
      return ExecFor(node, out);
    case Node::Kind::kSet:
      ExecSet(node);
      return Flow::kNormal;
    case Node::Kind::kMacro:
      DefineMacro(node);
      return Flow::kNormal;
    case Node::Kind::kBreak:
      return Flow::kBreak;
    case Node::Kind::kContinue:
      return Flow::kContinue;
    case Node::Kind::kScope:
      return Exec(node.body, out);
  }
  return Flow::kNormal;
}

void Renderer::Bind(const std::vector<std::string>& targets, const Value& value, Frame* frame) {
  if (targets.size() == 1) {
    (*frame)[targets[0]] = value;
    return;
  }
  const List items = Iterate(value);
  if (items.size() != targets.size()) {
    throw Error("cannot unpack " + std::to_string(items.size()) + " values into " +
                std::to_string(targets.size()) + " names");
  }
  for (size_t i = 0; i < targets.size(); ++i) (*frame)[targets[i]] = items[i];
}

Renderer::Flow Renderer::ExecFor(const Node& node, std::string* out) {
  const Value iterable = Eval(*node.expr);
  if (iterable.is_none()) throw Error("'NoneType' object is not iterable");
  List items = Iterate(iterable);
  if (node.filter) {
    // The loop filter sees the loop target, before `loop` exists (as in jinja2).
    List kept;
    for (const Value& item : items) {
      Spend(1);
      frames_.emplace_back();
      Bind(node.targets, item, &frames_.back());
      const bool keep = Eval(*node.filter).Truthy();
      frames_.pop_back();
      if (keep) kept.push_back(item);
    }
    items = std::move(kept);
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    Spend(1);
    auto loop = std::make_shared<Dict>();
    loop->items = {{"index", Value(i + 1)},
                   {"index0", Value(i)},
                   {"revindex", Value(n - i)},
                   {"revindex0", Value(n - i - 1)},
                   {"first", Value(i == 0)},
                   {"last", Value(i == n - 1)},
                   {"length", Value(n)},
                   {"depth", Value(int64_t{1})},
                   {"depth0", Value(int64_t{0})},
                   {"previtem", i > 0 ? items[i - 1]
                                      : Value::UndefinedWithMessage("there is no previous item")},
                   {"nextitem", i + 1 < n ? items[i + 1]
                                          : Value::UndefinedWithMessage("there is no next item")}};
    loop->Set("cycle", Value::MakeFunction("cycle", [i](Args& args) {
                if (args.positional.empty()) throw Error("no items for cycling given");
                return args.positional[static_cast<size_t>(i) % args.positional.size()];
              }));
    frames_.emplace_back();
    frames_.back()["loop"] = Value(std::move(loop));
    Bind(node.targets, items[i], &frames_.back());
    const Flow flow = Exec(node.body, out);
    frames_.pop_back();
    if (flow == Flow::kBreak) break;
  }
  if (n == 0) return Exec(node.else_body, out);
  return Flow::kNormal;
}

void Renderer::ExecSet(const Node& node) {
  Value value;
  if (node.expr) {
    value = Eval(*node.expr);
  } else {
    std::string captured;
    Exec(node.body, &captured);
    value = Value(std::move(captured));
  }
  if (!node.attribute.empty()) {
    const Value target = Lookup(node.targets[0]);
    if (!target.is_dict() || !target.dict().is_namespace) {
      throw Error("cannot assign attribute on non-namespace object '" + node.targets[0] + "'");
    }
    CheckStorable(value, &target.dict());
    target.dict().Set(node.attribute, std::move(value));
    return;
  }
  CheckStorable(value, nullptr);
  Bind(node.targets, value, &frames_.back());
}

void Renderer::DefineMacro(const Node& node) {
  const Node* macro = &node;
  frames_.back()[node.text] =
      Value::MakeFunction(node.text, [this, macro](Args& args) { return CallMacro(*macro, args); });
}

Value Renderer::CallMacro(const Node& node, Args& args) {
  if (call_depth_ >= kMaxCallDepth) throw Error("macro recursion too deep");
  if (args.positional.size() > node.params.size()) {
    throw Error("macro '" + node.text + "' takes not more than " +
                std::to_string(node.params.size()) + " arguments");
  }
  // A macro sees the template's top-level names and its own parameters.
  std::vector<Frame> saved = std::move(frames_);
  frames_ = {saved.front(), Frame()};
  struct Restore {
    Renderer* r;
    std::vector<Frame>* saved;
    ~Restore() {
      r->frames_ = std::move(*saved);
      --r->call_depth_;
    }
  } restore{this, &saved};
  ++call_depth_;
  for (size_t i = 0; i < node.params.size(); ++i) {
    const auto& [name, fallback] = node.params[i];
    std::optional<Value> v = args.Get(i, name);
    frames_.back()[name] =
        v ? *v
        : fallback
            ? Eval(*fallback)
            : Value::UndefinedWithMessage("parameter " + ReprString(name) + " was not provided");
  }
  std::string out;
  Exec(node.body, &out);
  return Value(std::move(out));
}

Value Renderer::Lookup(const std::string& name) const {
  for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
    const auto found = it->find(name);
    if (found != it->end()) return found->second;
  }
  if (const Value* v = context_.Find(name)) return *v;
  if (const Value* v = globals_.Find(name)) return *v;
  return Value::Undefined(name);
}

void Renderer::EvalArgs(const Expr& e, size_t first, Args* args) {
  for (size_t i = first; i < e.children.size(); ++i)
    args->positional.push_back(Eval(*e.children[i]));
  for (const auto& [k, v] : e.kwargs) args->keyword.emplace_back(k, Eval(*v));
}

Value Renderer::EvalCall(const Expr& e) {
  const Value callee = Eval(*e.children[0]);
  if (callee.is_undefined()) {
    throw Error(callee.str().empty() ? "undefined value called" : callee.str());
  }
  Args args;
  EvalArgs(e, 1, &args);
  return callee.Call(args);
}

Value Renderer::Eval(const Expr& e) {
  Spend(1);
  Value v = EvalUncharged(e);
  // Strings are copied with every value; lists are shared, so only a new one costs.
  const bool builds = e.kind == Expr::Kind::kList || e.kind == Expr::Kind::kBinary ||
                      e.kind == Expr::Kind::kCall || e.kind == Expr::Kind::kFilter ||
                      e.kind == Expr::Kind::kSlice;
  if (v.is_string() || builds) ChargeValue(v);
  return v;
}

Value Renderer::EvalUncharged(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.value;
    case Expr::Kind::kName:
      return Lookup(e.name);
    case Expr::Kind::kList: {
      List items;
      items.reserve(e.children.size());
      for (const ExprPtr& c : e.children) items.push_back(Eval(*c));
      return Value(std::move(items), e.is_tuple);
    }
    case Expr::Kind::kDict: {
      auto d = std::make_shared<Dict>();
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        const Value key = Eval(*e.children[i]);
        if (!key.is_string()) throw Error("only string dict keys are supported");
        d->Set(key.str(), Eval(*e.children[i + 1]));
      }
      return Value(std::move(d));
    }
    case Expr::Kind::kGetAttr:
      return GetAttribute(Eval(*e.children[0]), e.name);
    case Expr::Kind::kGetItem:
      return GetItem(Eval(*e.children[0]), Eval(*e.children[1]));
    case Expr::Kind::kSlice: {
      const Value obj = Eval(*e.children[0]);
      std::optional<int64_t> bounds[3];
      for (int i = 0; i < 3; ++i) {
        if (e.children[i + 1]) bounds[i] = SliceBound(Eval(*e.children[i + 1]));
      }
      return Slice(obj, bounds[0], bounds[1], bounds[2]);
    }
    case Expr::Kind::kCall:
      return EvalCall(e);
    case Expr::Kind::kFilter: {
      Args args;
      EvalArgs(e, 0, &args);
      return ApplyFilter(e.name, args);
    }
    case Expr::Kind::kTest: {
      const Value v = Eval(*e.children[0]);
      Args args;
      EvalArgs(e, 1, &args);
      return Value(ApplyTest(e.name, v, args) != e.negated);
    }
    case Expr::Kind::kUnary: {
      const Value v = Eval(*e.children[0]);
      if (e.name == "not") return Value(!v.Truthy());
      if (!v.is_number())
        throw Error("bad operand type for unary " + e.name + ": '" + v.TypeName() + "'");
      if (e.name == "+") return v.is_float() ? v : Value(v.as_int());
      if (v.is_float()) return Value(-v.as_double());
      if (v.as_int() == std::numeric_limits<int64_t>::min()) throw Error("integer overflow");
      return Value(-v.as_int());
    }
    case Expr::Kind::kBinary: {
      const Value a = Eval(*e.children[0]);
      // Python's and/or return an operand, not a bool.
      if (e.name == "and") return a.Truthy() ? Eval(*e.children[1]) : a;
      if (e.name == "or") return a.Truthy() ? a : Eval(*e.children[1]);
      return BinaryOp(e.name, a, Eval(*e.children[1]));
    }
    case Expr::Kind::kCompare: {
      Value left = Eval(*e.children[0]);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = Eval(*e.children[i + 1]);
        if (!BinaryOp(e.ops[i], left, right).Truthy()) return Value(false);
        left = std::move(right);
      }
      return Value(true);
    }
    case Expr::Kind::kCondition:
      if (Eval(*e.children[0]).Truthy()) return Eval(*e.children[1]);
      if (e.children[2]) return Eval(*e.children[2]);
      return Value::UndefinedWithMessage("the inline if-expression on line " +
                                         std::to_string(e.line) +
                                         " evaluated to false and no else section was defined.");
  }
  return Value();
}

}  // namespace sy::jinja
