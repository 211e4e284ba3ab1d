#include "engine/tokenizer/jinja/parser.h"

#include <charconv>
#include <cstdlib>
#include <initializer_list>

#include "engine/tokenizer/jinja/builtins.h"
#include "engine/tokenizer/jinja/lexer.h"

namespace sy::jinja {
namespace {

using T = Token::Type;

// Deep nesting would exhaust the stack of the recursive descent and of the evaluator.
constexpr int kMaxDepth = 200;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Body ParseAll() {
    std::string end;
    Body body = ParseBody({}, &end);
    if (Peek().type != T::kEnd) Fail("unexpected tag");
    return body;
  }

 private:
  const Token& Peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  const Token& Next() {
    const Token& tok = t_[i_];
    if (i_ + 1 < t_.size()) ++i_;
    return tok;
  }
  // The next token, an integer literal; Python's ints are unbounded, ours int64.
  int64_t IntLiteral() {
    const std::string& text = Next().value;
    int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size()) {
      Fail("integer literal out of range: " + text);
    }
    return value;
  }
  [[noreturn]] void Fail(const std::string& message) const {
    throw Error("template syntax error (line " + std::to_string(Peek().line) + "): " + message);
  }
  bool IsOp(const char* op, size_t ahead = 0) const {
    return Peek(ahead).type == T::kOp && Peek(ahead).value == op;
  }
  bool IsName(const char* name, size_t ahead = 0) const {
    return Peek(ahead).type == T::kName && Peek(ahead).value == name;
  }
  bool AcceptOp(const char* op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool AcceptName(const char* name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }
  void ExpectOp(const char* op) {
    if (!AcceptOp(op)) Fail(std::string("expected '") + op + "'");
  }
  void Expect(T type, const char* what) {
    if (Peek().type != type) Fail(std::string("expected ") + what);
    Next();
  }
  std::string ExpectName() {
    if (Peek().type != T::kName) Fail("expected a name");
    return Next().value;
  }

  // Statements until `{% <one of end_tags>`, whose name is stored in *end (the rest of that
  // tag is left for the caller).
  Body ParseBody(std::initializer_list<const char*> end_tags, std::string* end) {
    if (++depth_ > kMaxDepth) Fail("blocks nested too deeply");
    Body body;
    while (Peek().type != T::kEnd) {
      if (Peek().type == T::kBlockBegin && Peek(1).type == T::kName) {
        bool is_end = false;
        for (const char* tag : end_tags) is_end = is_end || Peek(1).value == tag;
        if (is_end) {
          Next();
          *end = Next().value;
          --depth_;
          return body;
        }
      }
      body.push_back(ParseStatement());
    }
    if (end_tags.size() > 0) Fail(std::string("missing {% ") + *end_tags.begin() + " %}");
    --depth_;
    return body;
  }

  NodePtr MakeNode(Node::Kind kind) {
    auto node = std::make_unique<Node>();
    node->kind = kind;
    node->line = Peek().line;
    return node;
  }

  NodePtr ParseStatement() {
    const Token& tok = Peek();
    if (tok.type == T::kText) {
      NodePtr node = MakeNode(Node::Kind::kText);
      node->text = Next().value;
      return node;
    }
    if (tok.type == T::kVarBegin) {
      Next();
      NodePtr node = MakeNode(Node::Kind::kOutput);
      node->expr = ParseExpression();
      Expect(T::kVarEnd, "'}}'");
      return node;
    }
    if (tok.type != T::kBlockBegin) Fail("unexpected '" + tok.value + "'");
    Next();
    const std::string tag = ExpectName();
    if (tag == "if") return ParseIf();
    if (tag == "for") return ParseFor();
    if (tag == "set") return ParseSet();
    if (tag == "macro") return ParseMacro();
    if (tag == "break" || tag == "continue") {
      NodePtr node = MakeNode(tag == "break" ? Node::Kind::kBreak : Node::Kind::kContinue);
      Expect(T::kBlockEnd, "'%}'");
      return node;
    }
    if (tag == "generation") {
      NodePtr node = MakeNode(Node::Kind::kScope);
      Expect(T::kBlockEnd, "'%}'");
      std::string end;
      node->body = ParseBody({"endgeneration"}, &end);
      Expect(T::kBlockEnd, "'%}'");
      return node;
    }
    Fail("unknown tag '" + tag + "'");
  }

  NodePtr ParseIf() {
    NodePtr node = MakeNode(Node::Kind::kIf);
    while (true) {
      ExprPtr cond = ParseExpression();
      Expect(T::kBlockEnd, "'%}'");
      std::string end;
      Body body = ParseBody({"elif", "else", "endif"}, &end);
      node->branches.emplace_back(std::move(cond), std::move(body));
      if (end == "elif") continue;
      if (end == "else") {
        Expect(T::kBlockEnd, "'%}'");
        node->else_body = ParseBody({"endif"}, &end);
      }
      Expect(T::kBlockEnd, "'%}'");
      return node;
    }
  }

  std::vector<std::string> ParseTargets() {
    std::vector<std::string> targets;
    const bool paren = AcceptOp("(");
    do {
      targets.push_back(ExpectName());
    } while (AcceptOp(","));
    if (paren) ExpectOp(")");
    return targets;
  }

  NodePtr ParseFor() {
    NodePtr node = MakeNode(Node::Kind::kFor);
    node->targets = ParseTargets();
    if (!AcceptName("in")) Fail("expected 'in'");
    node->expr = ParseExpression(/*with_condexpr=*/false);
    if (AcceptName("if")) node->filter = ParseExpression();
    if (IsName("recursive")) Fail("recursive loops are not supported");
    Expect(T::kBlockEnd, "'%}'");
    std::string end;
    node->body = ParseBody({"else", "endfor"}, &end);
    if (end == "else") {
      Expect(T::kBlockEnd, "'%}'");
      node->else_body = ParseBody({"endfor"}, &end);
    }
    Expect(T::kBlockEnd, "'%}'");
    return node;
  }

  NodePtr ParseSet() {
    NodePtr node = MakeNode(Node::Kind::kSet);
    if (Peek().type == T::kName && IsOp(".", 1)) {
      node->targets.push_back(Next().value);
      Next();
      node->attribute = ExpectName();
    } else {
      node->targets = ParseTargets();
    }
    if (AcceptOp("=")) {
      node->expr = ParseExpression();
      if (IsOp(",")) {
        std::vector<ExprPtr> items;
        items.push_back(std::move(node->expr));
        while (AcceptOp(",")) items.push_back(ParseExpression());
        node->expr = MakeList(std::move(items), /*tuple=*/true);
      }
      Expect(T::kBlockEnd, "'%}'");
      return node;
    }
    if (!node->attribute.empty() || node->targets.size() != 1) Fail("expected '='");
    Expect(T::kBlockEnd, "'%}'");
    std::string end;
    node->body = ParseBody({"endset"}, &end);
    Expect(T::kBlockEnd, "'%}'");
    return node;
  }

  NodePtr ParseMacro() {
    NodePtr node = MakeNode(Node::Kind::kMacro);
    node->text = ExpectName();
    ExpectOp("(");
    while (!IsOp(")")) {
      std::string param = ExpectName();
      ExprPtr fallback;
      if (AcceptOp("=")) fallback = ParseExpression();
      node->params.emplace_back(std::move(param), std::move(fallback));
      if (!AcceptOp(",")) break;
    }
    ExpectOp(")");
    Expect(T::kBlockEnd, "'%}'");
    std::string end;
    node->body = ParseBody({"endmacro"}, &end);
    if (Peek().type == T::kName) Next();  // {% endmacro name %}
    Expect(T::kBlockEnd, "'%}'");
    return node;
  }

  // --- expressions, in jinja2's precedence order ---

  ExprPtr Make(Expr::Kind kind) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = Peek().line;
    return e;
  }
  ExprPtr MakeList(std::vector<ExprPtr> items, bool tuple) {
    ExprPtr e = Make(Expr::Kind::kList);
    e->children = std::move(items);
    e->is_tuple = tuple;
    return e;
  }
  ExprPtr MakeBinary(std::string op, ExprPtr a, ExprPtr b) {
    ExprPtr e = Make(Expr::Kind::kBinary);
    e->name = std::move(op);
    e->children.push_back(std::move(a));
    e->children.push_back(std::move(b));
    return e;
  }

  ExprPtr ParseExpression(bool with_condexpr = true) {
    if (++depth_ > kMaxDepth) Fail("expression nested too deeply");
    ExprPtr e = ParseOr();
    while (with_condexpr && AcceptName("if")) {
      ExprPtr cond = Make(Expr::Kind::kCondition);
      cond->children.push_back(ParseOr());
      cond->children.push_back(std::move(e));
      cond->children.push_back(AcceptName("else") ? ParseExpression() : nullptr);
      e = std::move(cond);
    }
    --depth_;
    return e;
  }

  ExprPtr ParseOr() {
    ExprPtr e = ParseAnd();
    while (AcceptName("or")) e = MakeBinary("or", std::move(e), ParseAnd());
    return e;
  }

  ExprPtr ParseAnd() {
    ExprPtr e = ParseNot();
    while (AcceptName("and")) e = MakeBinary("and", std::move(e), ParseNot());
    return e;
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      Next();
      ExprPtr e = Make(Expr::Kind::kUnary);
      e->name = "not";
      e->children.push_back(ParseNot());
      return e;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    ExprPtr first = ParseMath1();
    ExprPtr e;
    while (true) {
      std::string op;
      if (Peek().type == T::kOp &&
          (Peek().value == "==" || Peek().value == "!=" || Peek().value == "<" ||
           Peek().value == ">" || Peek().value == "<=" || Peek().value == ">=")) {
        op = Next().value;
      } else if (AcceptName("in")) {
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        op = "not in";
      } else {
        break;
      }
      if (!e) {
        e = Make(Expr::Kind::kCompare);
        e->children.push_back(std::move(first));
      }
      e->ops.push_back(op);
      e->children.push_back(ParseMath1());
    }
    return e ? std::move(e) : std::move(first);
  }

  ExprPtr ParseMath1() {
    ExprPtr e = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      std::string op = Next().value;
      e = MakeBinary(op, std::move(e), ParseConcat());
    }
    return e;
  }

  ExprPtr ParseConcat() {
    ExprPtr e = ParseMath2();
    while (AcceptOp("~")) e = MakeBinary("~", std::move(e), ParseMath2());
    return e;
  }

  ExprPtr ParseMath2() {
    ExprPtr e = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = Next().value;
      e = MakeBinary(op, std::move(e), ParsePow());
    }
    return e;
  }

  ExprPtr ParsePow() {
    ExprPtr e = ParseUnary();
    while (AcceptOp("**")) e = MakeBinary("**", std::move(e), ParseUnary());
    return e;
  }

  ExprPtr ParseUnary(bool with_filter = true) {
    if (++depth_ > kMaxDepth) Fail("expression nested too deeply");
    ExprPtr e;
    if (IsOp("-") || IsOp("+")) {
      e = Make(Expr::Kind::kUnary);
      e->name = Next().value;
      e->children.push_back(ParseUnary(false));
    } else {
      e = ParsePrimary();
    }
    e = ParsePostfix(std::move(e));
    if (with_filter) e = ParseFilters(std::move(e));
    --depth_;
    return e;
  }

  ExprPtr ParsePrimary() {
    const Token& tok = Peek();
    ExprPtr e = Make(Expr::Kind::kLiteral);
    switch (tok.type) {
      case T::kName: {
        const std::string& n = tok.value;
        if (n == "true" || n == "True") {
          e->value = Value(true);
        } else if (n == "false" || n == "False") {
          e->value = Value(false);
        } else if (n == "none" || n == "None") {
          e->value = Value::None();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = n;
        }
        Next();
        return e;
      }
      case T::kString: {
        std::string s;
        while (Peek().type == T::kString) s += Next().value;
        e->value = Value(std::move(s));
        return e;
      }
      case T::kInt:
        e->value = Value(IntLiteral());
        return e;
      case T::kFloat:
        // strtod, not stod: 1e999 is inf and 1e-999 is 0.0 as in Python, not an exception.
        e->value = Value(std::strtod(Next().value.c_str(), nullptr));
        return e;
      case T::kOp:
        if (AcceptOp("(")) return ParseParenthesized();
        if (AcceptOp("[")) return ParseListLiteral();
        if (AcceptOp("{")) return ParseDictLiteral();
        break;
      default:
        break;
    }
    Fail("unexpected '" + tok.value + "'");
  }

  ExprPtr ParseParenthesized() {
    if (AcceptOp(")")) return MakeList({}, true);
    ExprPtr e = ParseExpression();
    if (!IsOp(",")) {
      ExpectOp(")");
      return e;
    }
    std::vector<ExprPtr> items;
    items.push_back(std::move(e));
    while (AcceptOp(",") && !IsOp(")")) items.push_back(ParseExpression());
    ExpectOp(")");
    return MakeList(std::move(items), true);
  }

  ExprPtr ParseListLiteral() {
    std::vector<ExprPtr> items;
    while (!IsOp("]")) {
      items.push_back(ParseExpression());
      if (!AcceptOp(",")) break;
    }
    ExpectOp("]");
    return MakeList(std::move(items), false);
  }

  ExprPtr ParseDictLiteral() {
    ExprPtr e = Make(Expr::Kind::kDict);
    while (!IsOp("}")) {
      e->children.push_back(ParseExpression());
      ExpectOp(":");
      e->children.push_back(ParseExpression());
      if (!AcceptOp(",")) break;
    }
    ExpectOp("}");
    return e;
  }

  ExprPtr ParsePostfix(ExprPtr e) {
    while (true) {
      if (AcceptOp(".")) {
        ExprPtr attr = Make(Expr::Kind::kGetAttr);
        if (Peek().type == T::kInt) {
          attr->kind = Expr::Kind::kGetItem;
          attr->children.push_back(std::move(e));
          ExprPtr index = Make(Expr::Kind::kLiteral);
          index->value = Value(IntLiteral());
          attr->children.push_back(std::move(index));
        } else {
          attr->name = ExpectName();
          attr->children.push_back(std::move(e));
        }
        e = std::move(attr);
      } else if (AcceptOp("[")) {
        e = ParseSubscript(std::move(e));
      } else if (IsOp("(")) {
        e = ParseCall(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr target) {
    std::vector<ExprPtr> parts;
    bool is_slice = false;
    parts.push_back(IsOp(":") ? nullptr : ParseExpression());
    while (AcceptOp(":")) {
      is_slice = true;
      parts.push_back(IsOp(":") || IsOp("]") ? nullptr : ParseExpression());
    }
    ExpectOp("]");
    if (parts.size() > 3) Fail("bad slice");
    ExprPtr e = Make(is_slice ? Expr::Kind::kSlice : Expr::Kind::kGetItem);
    e->children.push_back(std::move(target));
    for (auto& p : parts) e->children.push_back(std::move(p));
    while (is_slice && e->children.size() < 4) e->children.push_back(nullptr);
    return e;
  }

  // `(args)` after a callee: positional then keyword arguments.
  void ParseArgs(Expr* e) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (Peek().type == T::kName && IsOp("=", 1)) {
        std::string key = Next().value;
        Next();
        e->kwargs.emplace_back(std::move(key), ParseExpression());
      } else {
        if (!e->kwargs.empty()) Fail("positional argument after keyword argument");
        e->children.push_back(ParseExpression());
      }
      if (!AcceptOp(",")) break;
    }
    ExpectOp(")");
  }

  ExprPtr ParseCall(ExprPtr callee) {
    ExprPtr e = Make(Expr::Kind::kCall);
    e->children.push_back(std::move(callee));
    ParseArgs(e.get());
    return e;
  }

  ExprPtr ParseFilters(ExprPtr e) {
    while (true) {
      if (AcceptOp("|")) {
        ExprPtr f = Make(Expr::Kind::kFilter);
        f->name = ExpectName();
        if (!IsFilter(f->name)) Fail("no filter named '" + f->name + "'");
        f->children.push_back(std::move(e));
        if (IsOp("(")) ParseArgs(f.get());
        e = std::move(f);
      } else if (AcceptName("is")) {
        ExprPtr test = Make(Expr::Kind::kTest);
        test->negated = AcceptName("not");
        test->name = ExpectName();
        if (!IsTest(test->name)) Fail("no test named '" + test->name + "'");
        test->children.push_back(std::move(e));
        const Token& tok = Peek();
        if (IsOp("(")) {
          ParseArgs(test.get());
        } else if ((tok.type == T::kName && tok.value != "else" && tok.value != "or" &&
                    tok.value != "and" && tok.value != "if") ||
                   tok.type == T::kString || tok.type == T::kInt || tok.type == T::kFloat ||
                   IsOp("[") || IsOp("{")) {
          test->children.push_back(ParsePostfix(ParsePrimary()));
        }
        e = std::move(test);
      } else if (IsOp("(")) {
        e = ParseCall(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

Body ParseTemplate(const std::string& source) { return Parser(Lex(source)).ParseAll(); }

}  // namespace sy::jinja
