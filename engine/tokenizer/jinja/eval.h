// Renderer: executes a parsed template against a context, with jinja2's scoping (each loop
// iteration and macro call gets its own frame; `if` does not). One Renderer per render call;
// not thread-safe, but the syntax tree it reads is shared read-only.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/jinja/ast.h"

namespace sy::jinja {

class Renderer {
 public:
  // `context` and `globals` must outlive the Renderer.
  Renderer(const Dict& context, const Dict& globals);

  // Throws jinja::Error.
  void Render(const Body& body, std::string* out);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  using Frame = std::unordered_map<std::string, Value>;

  Flow Exec(const Body& body, std::string* out);
  Flow ExecNode(const Node& node, std::string* out);
  Flow ExecFor(const Node& node, std::string* out);
  void ExecSet(const Node& node);
  void DefineMacro(const Node& node);
  Value CallMacro(const Node& node, Args& args);
  void Bind(const std::vector<std::string>& targets, const Value& value, Frame* frame);

  Value Eval(const Expr& e);
  Value EvalCall(const Expr& e);
  void EvalArgs(const Expr& e, size_t first, Args* args);
  Value Lookup(const std::string& name) const;

  const Dict& context_;
  const Dict& globals_;
  std::vector<Frame> frames_;
  int call_depth_ = 0;
};

}  // namespace sy::jinja
