#include "tributary/core/json.h"

#include <cstdint>
#include <cstring>

namespace tributary::core {
namespace {

// Length of the valid UTF-8 sequence at s[i] (1-4), or 0 if it is not one (RFC 3629:
// no overlongs, no surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<std::uint8_t>(s[i + k]); };
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const std::uint8_t c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// True when none of the 8 bytes needs escaping or UTF-8 checking: no byte >= 0x80, < 0x20,
// '"' or '\\' (the exact "has less / has zero" bit tests, 8 bytes per step).
inline bool plain8(const char* p) {
  std::uint64_t x;
  std::memcpy(&x, p, 8);
  constexpr std::uint64_t k01 = 0x0101010101010101ull, k80 = 0x8080808080808080ull;
  const std::uint64_t q = x ^ (k01 * '"'), b = x ^ (k01 * '\\');
  return ((x | ((x - k01 * 0x20) & ~x) | ((q - k01) & ~q) | ((b - k01) & ~b)) & k80) == 0;
}

inline bool plain(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

}  // namespace

bool append_json_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  bool valid = true;
  out.reserve(out.size() + text.size() + 2);
  out += '"';
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (plain(c)) {  // the common case: a run of plain ASCII, 8 bytes at a time
      std::size_t j = i + 1;
      while (j + 8 <= text.size() && plain8(text.data() + j)) j += 8;
      while (j < text.size() && plain(static_cast<unsigned char>(text[j]))) ++j;
      out.append(text.data() + i, j - i);
      i = j;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; ++i; continue;
      case '\\': out += "\\\\"; ++i; continue;
      case '\n': out += "\\n"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      case '\t': out += "\\t"; ++i; continue;
      default: break;
    }
    if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
      ++i;
      continue;
    }
    const std::size_t n = utf8_sequence(text, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD for the byte that starts no valid sequence
      valid = false;
      ++i;
      continue;
    }
    out.append(text.data() + i, n);
    i += n;
  }
  out += '"';
  return valid;
}

}  // namespace tributary::core
