// Size parsing and formatting shared by the command line and the config loader.
#include "tributary/core/units.h"

#include <charconv>
#include <fmt/format.h>

namespace tributary::core {

std::optional<std::uint64_t> parse_size(std::string_view text) noexcept {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end == text.data()) return std::nullopt;
  std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  int shift = 0;
  if (!unit.empty() && (unit[0] == 'K' || unit[0] == 'k')) {
    shift = 10;
  } else if (!unit.empty() && unit[0] == 'M') {
    shift = 20;
  } else if (!unit.empty() && unit[0] == 'G') {
    shift = 30;
  }
  if (shift != 0) unit.remove_prefix(1);
  if (unit == "iB" || unit == "B") unit = {};
  if (!unit.empty()) return std::nullopt;
  if (shift != 0 && v > (UINT64_MAX >> shift)) return std::nullopt;
  return v << shift;
}

std::string human_bytes(std::uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.1f} GiB", double(b) / double(1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.1f} MiB", double(b) / double(1ull << 20));
  if (b >= (1ull << 10)) return fmt::format("{:.1f} KiB", double(b) / double(1ull << 10));
  return fmt::format("{} B", b);
}

std::optional<unsigned> parse_channel_mode(std::string_view text) noexcept {
  if (text.empty() || text.size() > 4) return std::nullopt;
  unsigned bits = 0;
  for (const char c : text) {
    if (c < '0' || c > '7') return std::nullopt;
    bits = bits * 8 + static_cast<unsigned>(c - '0');
  }
  if (bits > 0777 || (bits & 0600) != 0600 || (bits & 07) != 0) return std::nullopt;
  return bits;
}

}  // namespace tributary::core
