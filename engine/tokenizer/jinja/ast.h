// The syntax tree the parser builds and the evaluator walks: expressions (Expr) and statements
// (Node). Plain immutable data once parsed; shared by concurrent renders.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/jinja/value.h"

namespace sy::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // children; tuple when is_tuple
    kDict,       // children alternate key, value
    kGetAttr,    // children[0] . name
    kGetItem,    // children[0] [ children[1] ]
    kSlice,      // children[0] [ children[1] : children[2] : children[3] ] (null parts omitted)
    kCall,       // children[0] ( children[1..] , kwargs )
    kFilter,     // name, children[0] is the operand, then arguments; kwargs
    kTest,       // name, children[0] is the operand, then arguments; negated
    kUnary,      // op ("-", "+", "not"), children[0]
    kBinary,     // op, children[0], children[1] ("and"/"or" short-circuit)
    kCompare,    // children[0] then (ops[i], children[i + 1]) pairs, chained as in Python
    kCondition,  // children[1] if children[0] else children[2] (children[2] may be null)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;  // name, attribute, filter or test name, or operator
  std::vector<std::string> ops;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool is_tuple = false;
  bool negated = false;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class Kind {
    kText,    // text
    kOutput,  // {{ expr }}
    kIf,      // branches: (condition, body)...; else_body
    kFor,     // targets in expr [if filter] body [else else_body]
    kSet,     // targets = expr, or attr_target.attribute = expr, or block body when !expr
    kMacro,   // name(params) body
    kBreak,
    kContinue,
    kScope,  // a body with no semantics of its own ({% generation %})
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::string> targets;
  std::string attribute;  // for `set ns.attribute = ...`
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  // Macro parameters with optional defaults.
  std::vector<std::pair<std::string, ExprPtr>> params;
};

}  // namespace sy::jinja
