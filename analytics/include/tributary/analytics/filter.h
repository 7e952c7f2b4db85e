// The analyzer's filter language (`where = "..."` in analyze.toml): which events are counted.
//
//   where = 'action_type == 2 and (age_range in ["5", "6"] or not exists(gender))'
//
//   expr    := or ;  or := and ("or" and)* ;  and := unary ("and" unary)*
//   unary   := "not" unary | "(" expr ")" | "exists" "(" NAME ")" | NAME op literal
//            | NAME "in" "[" literal ("," literal)* "]"
//   op      := "==" | "!=" | "<" | "<=" | ">" | ">="
//   literal := "text" (or 'text') | a number
//
// NAME is a [fields] name or a joined column. A number literal compares numerically (a field
// that is not a number fails the comparison); a text literal compares bytes. A comparison on
// an absent field (missing in the event, or a key not in the join table) is false, so
// `not (x == 1)` holds for an event without x; `exists(x)` tests presence. Parsing happens
// once, at start-up; evaluation allocates nothing. An expression has at most kMaxNodes terms
// and operators and kMaxDepth levels of parentheses and `not` (both far above any real filter;
// beyond them it is refused with its column, instead of recursing without bound).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tributary::analytics {

struct FieldRef {
  bool joined = false;    // a joined column (else an event field)
  std::size_t index = 0;  // field index, or joined column index
  bool operator==(const FieldRef&) const = default;
};

class FilterExpr {
 public:
  static constexpr std::size_t kMaxNodes = 4096;
  static constexpr int kMaxDepth = 64;
  using Resolve = std::function<std::optional<FieldRef>(std::string_view name)>;
  // Throws core::Error: "column N: what is wrong".
  [[nodiscard]] static FilterExpr parse(std::string_view text, const Resolve& resolve);

  // `value(ref)`: the field's text, or nullopt when absent.
  using Lookup = std::function<std::optional<std::string_view>(const FieldRef&)>;
  [[nodiscard]] bool eval(const Lookup& value) const;

  // Fields named in exists(...): they may be absent without the event being malformed.
  [[nodiscard]] std::vector<FieldRef> exists_fields() const;

 private:
  enum class Kind : std::uint8_t { kAnd, kOr, kNot, kCompare, kIn, kExists };
  enum class Op : std::uint8_t { kEq, kNe, kLt, kLe, kGt, kGe };
  struct Node {
    Kind kind;
    Op op = Op::kEq;
    FieldRef field;
    std::size_t a = 0, b = 0;          // children (and/or: a, b; not: a)
    std::vector<std::string> text;     // literal(s)
    std::vector<double> number;        // numeric literal(s), when numeric
    bool numeric = false;
  };
  bool eval_node(std::size_t n, const Lookup& value) const;
  friend class FilterParser;
  std::vector<Node> nodes_;
  std::size_t root_ = 0;
};

}  // namespace tributary::analytics
