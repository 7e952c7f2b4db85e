// Line framing shared by the line-oriented sources (tail, stdin, exec, tcp): find the next
// newline-terminated line in a buffer, bounded by max_line. Bytes pass through untouched
// (invalid UTF-8 and NUL included); only the terminating '\n' is removed.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>

namespace tributary::ingest::detail {

enum class LineKind { kLine, kPartial, kOversize };

struct NextLine {
  LineKind kind;
  std::size_t length;    // bytes of the line (kLine), or max_line (kOversize)
  std::size_t consumed;  // bytes to advance: length + 1 for kLine (the '\n')
};

// kLine: a complete line of at most max_line bytes. kOversize: no '\n' within max_line bytes
// (the caller splits or rejects). kPartial: no '\n' yet and fewer than max_line bytes.
[[nodiscard]] inline NextLine next_line(std::span<const char> buf, std::size_t max_line) noexcept {
  const std::size_t look = buf.size() < max_line + 1 ? buf.size() : max_line + 1;
  const void* nl = look == 0 ? nullptr : std::memchr(buf.data(), '\n', look);
  if (nl != nullptr) {
    const auto len = static_cast<std::size_t>(static_cast<const char*>(nl) - buf.data());
    return {LineKind::kLine, len, len + 1};
  }
  if (buf.size() > max_line) return {LineKind::kOversize, max_line, max_line};
  return {LineKind::kPartial, 0, 0};
}

}  // namespace tributary::ingest::detail
