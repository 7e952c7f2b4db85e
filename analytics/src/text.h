// Text helpers of the analyzer: a short-text comparison for the per-event path, and the
// checkpoint format: one record per line, tab-separated columns, strings escaped so that tabs
// and newlines in keys and labels cannot break it.
#pragma once

#include <charconv>
#include <string>
#include <string_view>
#include <vector>

namespace tributary::analytics::detail {

// a == b, without a call to memcmp for the short texts of field values and keys.
inline bool same_text(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.size() > 16) return a == b;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

struct SameText {
  bool operator()(std::string_view a, std::string_view b) const noexcept { return same_text(a, b); }
};

inline std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\t') out += "\\t";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

inline std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char n = s[++i];
      out += n == 't' ? '\t' : n == 'n' ? '\n' : n;
    } else {
      out += s[i];
    }
  }
  return out;
}

inline std::vector<std::string_view> columns(std::string_view line) {
  std::vector<std::string_view> c;
  std::size_t s = 0;
  for (;;) {
    const auto t = line.find('\t', s);
    c.push_back(line.substr(s, t == std::string_view::npos ? std::string_view::npos : t - s));
    if (t == std::string_view::npos) return c;
    s = t + 1;
  }
}

template <class T>
bool parse_number(std::string_view s, T& v) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && p == s.data() + s.size() && !s.empty();
}

}  // namespace tributary::analytics::detail
