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

// A channel file's mode as written ("0600", "0660"): octal digits only, read and write for the
// owner, nothing for others (the file holds the logs themselves); nullopt otherwise.
[[nodiscard]] std::optional<unsigned> parse_channel_mode(std::string_view text) noexcept;
inline constexpr const char* kChannelModeRule =
    "an octal mode with read and write for the owner and nothing for others, such as \"0600\" or \"0660\"";

}  // namespace tributary::core
