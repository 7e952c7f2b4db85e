#include "tributary/analytics/filter.h"

#include <cctype>
#include <fmt/format.h>

#include "text.h"
#include "tributary/core/error.h"

namespace tributary::analytics {

class FilterParser {
 public:
  FilterParser(std::string_view text, const FilterExpr::Resolve& resolve, FilterExpr& out)
      : s_(text), resolve_(resolve), out_(out) {}

  void run() {
    out_.root_ = parse_or();
    skip();
    if (i_ != s_.size()) fail("unexpected '" + std::string(s_.substr(i_, 12)) + "'");
  }

 private:
  using Node = FilterExpr::Node;
  using Kind = FilterExpr::Kind;
  using Op = FilterExpr::Op;

  [[noreturn]] void fail(const std::string& what) const {
    throw core::Error(fmt::format("column {}: {}", i_ + 1, what));
  }
  void skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  static bool word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }
  // The next word (identifier or keyword) without consuming it.
  std::string_view peek_word() {
    skip();
    std::size_t j = i_;
    while (j < s_.size() && word_char(s_[j])) ++j;
    return s_.substr(i_, j - i_);
  }
  bool keyword(std::string_view k) {
    if (peek_word() != k) return false;
    i_ += k.size();
    return true;
  }
  bool punct(std::string_view p) {
    skip();
    if (s_.substr(i_, p.size()) != p) return false;
    i_ += p.size();
    return true;
  }
  std::size_t add(Node n) {
    // Evaluation recurses through the tree (an "and" chain is as deep as it is long): bounded
    // here, so that no expression overflows the stack at parse or at evaluation.
    if (out_.nodes_.size() >= FilterExpr::kMaxNodes)
      fail(fmt::format("the expression has more than {} terms and operators (a list of values is one `in [...]`)",
                       FilterExpr::kMaxNodes));
    out_.nodes_.push_back(std::move(n));
    return out_.nodes_.size() - 1;
  }
  // Entered for each "(" and "not" (the one at `at`): the parser's recursion, bounded likewise.
  struct Nested {
    Nested(FilterParser& p, std::size_t at) : p_(p) {
      if (++p_.depth_ > FilterExpr::kMaxDepth) {
        p_.i_ = at;  // the error names the column of the "(" or "not" one too deep
        p_.fail(fmt::format("nested deeper than {} levels of parentheses and not", FilterExpr::kMaxDepth));
      }
    }
    ~Nested() { --p_.depth_; }
    Nested(const Nested&) = delete;
    Nested& operator=(const Nested&) = delete;
    FilterParser& p_;
  };

  std::size_t parse_or() {
    std::size_t left = parse_and();
    while (keyword("or")) {
      const std::size_t right = parse_and();
      left = add({Kind::kOr, Op::kEq, {}, left, right, {}, {}, false});
    }
    return left;
  }
  std::size_t parse_and() {
    std::size_t left = parse_unary();
    while (keyword("and")) {
      const std::size_t right = parse_unary();
      left = add({Kind::kAnd, Op::kEq, {}, left, right, {}, {}, false});
    }
    return left;
  }
  FieldRef field() {
    const std::string_view name = peek_word();
    if (name.empty()) fail("expected a field name");
    const auto ref = resolve_(name);
    if (!ref) fail(fmt::format("'{}' is neither a field nor a joined column", name));
    i_ += name.size();
    return *ref;
  }
  // A literal: its text, and its value if it is an unquoted number.
  std::pair<std::string, std::optional<double>> literal() {
    skip();
    if (i_ < s_.size() && (s_[i_] == '"' || s_[i_] == '\'')) {
      const char q = s_[i_++];
      std::string v;
      while (i_ < s_.size() && s_[i_] != q) {
        if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
        v += s_[i_++];
      }
      if (i_ >= s_.size()) fail("unterminated string");
      ++i_;
      return {v, std::nullopt};
    }
    std::size_t j = i_;
    while (j < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[j])) || s_[j] == '.' || s_[j] == '-' ||
                             s_[j] == '+'))
      ++j;
    const std::string_view tok = s_.substr(i_, j - i_);
    double d = 0;
    if (tok.empty() || !detail::parse_number(tok, d)) fail("expected a number or a \"quoted\" text");
    i_ = j;
    return {std::string(tok), d};
  }
  std::size_t parse_unary() {
    skip();
    const std::size_t at = i_;
    if (keyword("not")) {
      const Nested nested(*this, at);
      const std::size_t a = parse_unary();
      return add({Kind::kNot, Op::kEq, {}, a, 0, {}, {}, false});
    }
    if (punct("(")) {
      const Nested nested(*this, at);
      const std::size_t e = parse_or();
      if (!punct(")")) fail("expected ')'");
      return e;
    }
    if (keyword("exists")) {
      if (!punct("(")) fail("expected '(' after exists");
      const FieldRef f = field();
      if (!punct(")")) fail("expected ')'");
      return add({Kind::kExists, Op::kEq, f, 0, 0, {}, {}, false});
    }
    const FieldRef f = field();
    if (keyword("in")) {
      if (!punct("[")) fail("expected '[' after in");
      Node n{Kind::kIn, Op::kEq, f, 0, 0, {}, {}, true};
      do {
        auto [text, num] = literal();
        n.text.push_back(std::move(text));
        n.number.push_back(num.value_or(0));
        n.numeric = n.numeric && num.has_value();
      } while (punct(","));
      if (!punct("]")) fail("expected ']'");
      return add(std::move(n));
    }
    static constexpr std::pair<std::string_view, Op> kOps[] = {{"==", Op::kEq}, {"!=", Op::kNe}, {"<=", Op::kLe},
                                                               {">=", Op::kGe}, {"<", Op::kLt},  {">", Op::kGt}};
    for (const auto& [text, op] : kOps) {
      if (!punct(text)) continue;
      auto [lit, num] = literal();
      Node n{Kind::kCompare, op, f, 0, 0, {std::move(lit)}, {num.value_or(0)}, num.has_value()};
      return add(std::move(n));
    }
    fail("expected a comparison (== != < <= > >=), in [...], or exists(...)");
  }

  std::string_view s_;
  std::size_t i_ = 0;
  int depth_ = 0;  // "(" and "not" open around the current position
  const FilterExpr::Resolve& resolve_;
  FilterExpr& out_;
};

FilterExpr FilterExpr::parse(std::string_view text, const Resolve& resolve) {
  FilterExpr e;
  FilterParser(text, resolve, e).run();
  return e;
}

namespace {
template <class T>
bool compare(const T& a, const T& b, int op) {
  switch (op) {
    case 0: return a == b;
    case 1: return a != b;
    case 2: return a < b;
    case 3: return a <= b;
    case 4: return a > b;
    default: return a >= b;
  }
}
}  // namespace

bool FilterExpr::eval_node(std::size_t i, const Lookup& value) const {
  const Node& n = nodes_[i];
  switch (n.kind) {
    case Kind::kAnd: return eval_node(n.a, value) && eval_node(n.b, value);
    case Kind::kOr: return eval_node(n.a, value) || eval_node(n.b, value);
    case Kind::kNot: return !eval_node(n.a, value);
    case Kind::kExists: return value(n.field).has_value();
    case Kind::kCompare: {
      const auto v = value(n.field);
      if (!v) return false;
      if (n.numeric) {
        double d = 0;
        return detail::parse_number(*v, d) && compare(d, n.number[0], static_cast<int>(n.op));
      }
      return compare(*v, std::string_view(n.text[0]), static_cast<int>(n.op));
    }
    case Kind::kIn: {
      const auto v = value(n.field);
      if (!v) return false;
      double d = 0;
      const bool is_number = n.numeric && detail::parse_number(*v, d);
      for (std::size_t k = 0; k < n.text.size(); ++k) {
        if (n.numeric ? (is_number && d == n.number[k]) : *v == n.text[k]) return true;
      }
      return false;
    }
  }
  return false;
}

bool FilterExpr::eval(const Lookup& value) const { return nodes_.empty() || eval_node(root_, value); }

std::vector<FieldRef> FilterExpr::exists_fields() const {
  std::vector<FieldRef> out;
  for (const Node& n : nodes_)
    if (n.kind == Kind::kExists) out.push_back(n.field);
  return out;
}

}  // namespace tributary::analytics
