// jinja::Lex: splits template source into tokens (raw text, tag delimiters and expression
// tokens), applying the whitespace rules transformers renders with: `-` markers, trim_blocks,
// lstrip_blocks, newline normalization and the dropped final newline. Pure function.
#pragma once

#include <string>
#include <vector>

namespace sy::jinja {

struct Token {
  enum class Type {
    kText,        // literal template text
    kVarBegin,    // {{
    kVarEnd,      // }}
    kBlockBegin,  // {%
    kBlockEnd,    // %}
    kName,
    kString,  // value: the unescaped string
    kInt,
    kFloat,
    kOp,  // value: the operator or punctuation, e.g. "==", "(", "|"
    kEnd,
  };
  Type type;
  std::string value;
  int line = 1;
};

// Throws jinja::Error on unterminated tags, strings or comments.
std::vector<Token> Lex(const std::string& source);

}  // namespace sy::jinja
