// CRC32C (Castagnoli), the checksum of every channel record.
// Uses the SSE4.2 crc32 instruction, three streams interleaved for long buffers, when the
// CPU has it (checked once), and a table-driven software path otherwise. Why not a library
// (Intel ISA-L's crc32_iscsi was measured): README, "Written by hand, and why".
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace tributary::core {

// Extends `crc` (a finished CRC32C, 0 for the empty string) over `size` bytes at `data`.
// crc32c_extend(crc32c_extend(0, a), b) == crc32c of a followed by b.
[[nodiscard]] std::uint32_t crc32c_extend(std::uint32_t crc, const void* data, std::size_t size) noexcept;

[[nodiscard]] inline std::uint32_t crc32c(const void* data, std::size_t size) noexcept {
  return crc32c_extend(0, data, size);
}

[[nodiscard]] inline std::uint32_t crc32c(std::span<const std::byte> bytes) noexcept {
  return crc32c_extend(0, bytes.data(), bytes.size());
}

// The best implementation for this CPU, for hot paths that cache it (one indirect call, no
// per-call feature check): crc32c_function()(crc, data, size) == crc32c_extend(crc, data, size).
using Crc32cFn = std::uint32_t (*)(std::uint32_t crc, const void* data, std::size_t size) noexcept;
[[nodiscard]] Crc32cFn crc32c_function() noexcept;

// Three independent CRCs at once (e.g. the records of a batch): each stream's instruction
// latency hides behind the other two. out[i] == crc32c_extend(seed[i], data[i], size[i]).
void crc32c_extend3(const std::uint32_t seed[3], const void* const data[3], const std::size_t size[3],
                    std::uint32_t out[3]) noexcept;

// True when the hardware instruction is used (reported by `tributary channel stat`).
[[nodiscard]] bool crc32c_is_hardware() noexcept;

// The portable path, exposed so that tests can check the two agree.
[[nodiscard]] std::uint32_t crc32c_extend_portable(std::uint32_t crc, const void* data, std::size_t size) noexcept;

}  // namespace tributary::core
