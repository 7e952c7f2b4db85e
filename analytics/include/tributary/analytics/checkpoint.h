// Checkpoint files: the analyzer's one commit point without a Kafka output. A checkpoint is
// written to a temporary file, fsynced, renamed over the old one and the directory fsynced, so
// after a crash at any moment the file holds either the old or the new state, never a mix.
// Framed with a magic, a length and a CRC32C: a damaged file is an error naming the file, not
// a silent reset.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace tributary::analytics {

void write_checkpoint(const std::filesystem::path& path, const std::string& payload);
// nullopt if there is no checkpoint yet; throws core::Error if it exists but is damaged.
[[nodiscard]] std::optional<std::string> read_checkpoint(const std::filesystem::path& path);

}  // namespace tributary::analytics
