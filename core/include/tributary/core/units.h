// Sizes as people write them in configs and on command lines ("64M", "512K", "1G", "4096"),
// and back to text for humans.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tributary::core {

// Bytes, or nullopt if `text` is not a size. Units K, M, G (powers of 1024), optional "iB"/"B".
[[nodiscard]] std::optional<std::uint64_t> parse_size(std::string_view text) noexcept;
// "64.0 MiB", "512 B".
[[nodiscard]] std::string human_bytes(std::uint64_t bytes);

}  // namespace tributary::core
