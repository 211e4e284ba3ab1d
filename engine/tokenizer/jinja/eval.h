// Renderer: executes a parsed template against a context, with jinja2's scoping (each loop
// iteration and macro call gets its own frame; `if` does not). One Renderer per render call;
// not thread-safe, but the syntax tree it reads is shared read-only.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/jinja/ast.h"

namespace sy::jinja {

// What one render may spend, so a hostile template (nested loops, string doubling, values nested
// in themselves) ends with an error instead of hanging or exhausting memory. A step is one
// statement, expression or loop iteration, plus one per 64 bytes of a string an expression yields
// and one per item of a list it builds. The real templates of tests/golden/chat_templates take at
// most ~50 steps per message, so the default covers an 8 MiB body of the smallest messages
// (~200k) and stops any render after about a second of CPU.
struct RenderLimits {
  int64_t max_steps = 20'000'000;
  // Of the output, and of any one string the template builds.
  int64_t max_output_bytes = int64_t{32} << 20;
};
// How deeply a value the template stores (`set`) may nest lists and dicts: printing, comparing and
// freeing values recurse.
inline constexpr int kMaxStoredValueDepth = 128;

class Renderer {
 public:
  // `context` and `globals` must outlive the Renderer.
  Renderer(const Dict& context, const Dict& globals, const RenderLimits& limits);

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

  // Evaluates and charges the result to the budget.
  Value Eval(const Expr& e);
  Value EvalUncharged(const Expr& e);
  Value EvalCall(const Expr& e);
  void EvalArgs(const Expr& e, size_t first, Args* args);
  Value Lookup(const std::string& name) const;

  // Counts `steps` against the budget; throws once it is spent.
  void Spend(int64_t steps);
  // Charges for a value an expression produced (its size), and refuses an oversized string.
  void ChargeValue(const Value& v);
  void CheckOutput(const std::string& out) const;
  // Refuses storing `value` in a variable, or in namespace `target` (null for a variable), when
  // that nests lists and dicts too deeply or puts the namespace inside itself.
  void CheckStorable(const Value& value, const Dict* target);

  const Dict& context_;
  const Dict& globals_;
  std::vector<Frame> frames_;
  int call_depth_ = 0;
  RenderLimits limits_;
  int64_t steps_ = 0;
};

}  // namespace sy::jinja
