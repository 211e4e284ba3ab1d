#include "engine/tokenizer/jinja/lexer.h"

#include <cctype>

#include "engine/tokenizer/jinja/value.h"
#include "engine/tokenizer/unicode.h"

namespace sy::jinja {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsNameChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Reads `digits` hex digits at s[i]; false if they are not all hex.
bool ReadHex(const std::string& s, size_t i, int digits, uint32_t* cp) {
  if (i + digits > s.size()) return false;
  *cp = 0;
  for (int k = 0; k < digits; ++k) {
    const char c = s[i + k];
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    *cp =
        *cp * 16 + (std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  return *cp <= 0x10FFFF;
}

// Jinja string literals are decoded with Python's "unicode-escape" codec.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    uint32_t cp = 0;
    switch (c) {
      case '\n':
        break;
      case '\\':
      case '\'':
      case '"':
        out += c;
        break;
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'v':
        out += '\v';
        break;
      case 'x':
      case 'u':
      case 'U': {
        const int digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        if (!ReadHex(s, i + 1, digits, &cp))
          throw Error("invalid \\" + std::string(1, c) + " escape");
        tokenizer::AppendUtf8(cp, &out);
        i += digits;
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          int n = 0;
          while (n < 3 && i < s.size() && s[i] >= '0' && s[i] <= '7')
            cp = cp * 8 + (s[i++] - '0'), ++n;
          --i;
          tokenizer::AppendUtf8(cp, &out);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(const std::string& raw) {
    // jinja2 normalizes newlines in template data and drops one trailing newline
    // (keep_trailing_newline=False).
    src_.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\r') {
        src_ += '\n';
        if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
      } else {
        src_ += raw[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> Run() {
    while (pos_ < src_.size()) {
      size_t open = FindOpener(pos_);
      std::string text = src_.substr(pos_, open - pos_);
      ApplyTrailingRules(&text);
      if (open == src_.size()) {
        EmitText(std::move(text));
        pos_ = open;
        break;
      }
      const char kind = src_[open + 1];
      const char modifier = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (modifier == '-') {
        while (!text.empty() && IsSpace(text.back())) text.pop_back();
      } else if (kind != '{' && modifier != '+') {
        LstripBlock(&text);
      }
      EmitText(std::move(text));
      pos_ = open + 2 + (modifier == '-' || modifier == '+' ? 1 : 0);
      if (kind == '#') {
        LexComment();
      } else {
        LexTag(kind);
      }
    }
    tokens_.push_back({Token::Type::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t FindOpener(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return src_.size();
  }

  // What the previous tag's closer asks of the text that follows it.
  void ApplyTrailingRules(std::string* text) {
    if (strip_next_) {
      size_t n = 0;
      while (n < text->size() && IsSpace((*text)[n])) ++n;
      text->erase(0, n);
    }
    strip_next_ = false;
  }

  // lstrip_blocks: whitespace between a line start and a block or comment tag goes.
  void LstripBlock(std::string* text) const {
    const size_t nl = text->rfind('\n');
    const size_t start = nl == std::string::npos ? 0 : nl + 1;
    if (nl == std::string::npos && !line_starting_) return;
    for (size_t i = start; i < text->size(); ++i) {
      if ((*text)[i] != ' ' && (*text)[i] != '\t') return;
    }
    text->resize(start);
  }

  void EmitText(std::string text) {
    for (const char c : text) line_ += c == '\n';
    if (!text.empty()) tokens_.push_back({Token::Type::kText, std::move(text), line_});
  }

  // After a block or comment closer: `-` strips all whitespace, else trim_blocks drops one
  // newline (unless `+`).
  void AfterBlockClose(char modifier) {
    line_starting_ = false;
    if (modifier == '-') {
      strip_next_ = true;
    } else if (modifier != '+' && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
      ++line_;
      line_starting_ = true;
    }
  }

  void LexComment() {
    const size_t close = src_.find("#}", pos_);
    if (close == std::string::npos)
      throw Error("line " + std::to_string(line_) + ": unclosed comment");
    for (size_t i = pos_; i < close; ++i) line_ += src_[i] == '\n';
    const char modifier = close > pos_ ? src_[close - 1] : '\0';
    pos_ = close + 2;
    AfterBlockClose(modifier == '-' || modifier == '+' ? modifier : '\0');
  }

  void LexTag(char kind) {
    const bool block = kind == '%';
    tokens_.push_back({block ? Token::Type::kBlockBegin : Token::Type::kVarBegin, "", line_});
    const size_t first = tokens_.size();
    int depth = 0;  // open brackets: `}}` inside a dict literal does not close the tag
    while (true) {
      while (pos_ < src_.size() && IsSpace(src_[pos_])) line_ += src_[pos_++] == '\n';
      if (pos_ >= src_.size()) throw Error("line " + std::to_string(line_) + ": unclosed tag");
      if (depth == 0 && CloseTag(block)) break;
      LexOne(&depth);
    }
    if (block && tokens_.size() == first + 2 && tokens_[first].type == Token::Type::kName &&
        tokens_[first].value == "raw") {
      LexRaw(first);
    }
  }

  // Consumes the tag closer if it is at pos_.
  bool CloseTag(bool block) {
    const char close_char = block ? '%' : '}';
    char modifier = '\0';
    size_t p = pos_;
    if ((src_[p] == '-' || (block && src_[p] == '+')) && p + 1 < src_.size()) modifier = src_[p++];
    if (p + 1 >= src_.size() || src_[p] != close_char || src_[p + 1] != '}') return false;
    pos_ = p + 2;
    tokens_.push_back({block ? Token::Type::kBlockEnd : Token::Type::kVarEnd, "", line_});
    if (block) {
      AfterBlockClose(modifier);
    } else {
      line_starting_ = false;
      strip_next_ = modifier == '-';
    }
    return true;
  }

  // `{% raw %}...{% endraw %}`: the body is text, untouched.
  void LexRaw(size_t first) {
    tokens_.resize(first - 1);
    size_t search = pos_;
    while (true) {
      const size_t open = src_.find("{%", search);
      if (open == std::string::npos)
        throw Error("line " + std::to_string(line_) + ": unclosed raw");
      size_t p = open + 2;
      const char modifier = p < src_.size() ? src_[p] : '\0';
      if (modifier == '-' || modifier == '+') ++p;
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      if (src_.compare(p, 6, "endraw") != 0) {
        search = open + 2;
        continue;
      }
      std::string body = src_.substr(pos_, open - pos_);
      if (modifier == '-') {
        while (!body.empty() && IsSpace(body.back())) body.pop_back();
      }
      EmitText(std::move(body));
      pos_ = p + 6;
      while (pos_ < src_.size() && IsSpace(src_[pos_])) ++pos_;
      if (!CloseTag(true)) throw Error("line " + std::to_string(line_) + ": bad endraw");
      tokens_.pop_back();  // the endraw's BlockEnd
      return;
    }
  }

  void LexOne(int* depth) {
    const char c = src_[pos_];
    if (c == '\'' || c == '"') {
      size_t p = pos_ + 1;
      while (p < src_.size() && src_[p] != c) p += src_[p] == '\\' ? 2 : 1;
      if (p >= src_.size()) throw Error("line " + std::to_string(line_) + ": unterminated string");
      const std::string body = src_.substr(pos_ + 1, p - pos_ - 1);
      tokens_.push_back({Token::Type::kString, Unescape(body), line_});
      for (const char ch : body) line_ += ch == '\n';
      pos_ = p + 1;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      LexNumber();
    } else if (IsNameStart(c)) {
      size_t p = pos_;
      while (p < src_.size() && IsNameChar(src_[p])) ++p;
      tokens_.push_back({Token::Type::kName, src_.substr(pos_, p - pos_), line_});
      pos_ = p;
    } else {
      static const char* const kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
      for (const char* op : kTwo) {
        if (src_.compare(pos_, 2, op) == 0) {
          tokens_.push_back({Token::Type::kOp, op, line_});
          pos_ += 2;
          return;
        }
      }
      if (std::string("+-*/%~<>=()[]{},.:|").find(c) == std::string::npos) {
        throw Error("line " + std::to_string(line_) + ": unexpected character '" +
                    std::string(1, c) + "'");
      }
      if (c == '(' || c == '[' || c == '{') ++*depth;
      if ((c == ')' || c == ']' || c == '}') && *depth > 0) --*depth;
      tokens_.push_back({Token::Type::kOp, std::string(1, c), line_});
      ++pos_;
    }
  }

  void LexNumber() {
    size_t p = pos_;
    const auto digits = [&] {
      while (p < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[p])) || src_[p] == '_'))
        ++p;
    };
    digits();
    bool is_float = false;
    if (p + 1 < src_.size() && src_[p] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[p + 1]))) {
      is_float = true;
      ++p;
      digits();
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
        is_float = true;
        p = q;
        digits();
      }
    }
    std::string text;
    for (size_t i = pos_; i < p; ++i) {
      if (src_[i] != '_') text += src_[i];
    }
    tokens_.push_back({is_float ? Token::Type::kFloat : Token::Type::kInt, text, line_});
    pos_ = p;
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool strip_next_ = false;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> Lex(const std::string& source) { return Lexer(source).Run(); }

}  // namespace sy::jinja
