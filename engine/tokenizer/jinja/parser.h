// jinja::ParseTemplate: builds the syntax tree of a template from its tokens, checking at parse
// time (as jinja2 does at compile time) that every filter and test it names exists.
#pragma once

#include <string>

#include "engine/tokenizer/jinja/ast.h"

namespace sy::jinja {

// Throws jinja::Error (with the line) on a syntax error or an unknown filter, test or tag.
Body ParseTemplate(const std::string& source);

}  // namespace sy::jinja
