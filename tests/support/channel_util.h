// Helpers shared by the channel tests: deterministic payloads that say which event they are,
// and draining a consumer into a vector.
#pragma once

#include <chrono>
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "tributary/core/channel.h"

namespace tributary::testing {

// Offset of the data region in a channel file (Header::header_size, bytes 12..15): tests that
// damage or cut the file aim at records with it.
inline std::uint64_t data_offset(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  f.seekg(12);
  std::uint32_t v = 0;
  f.read(reinterpret_cast<char*>(&v), sizeof v);
  return v;
}

// Offset of Header::clean_close (channel_test checks it against the layout).
inline constexpr std::uint64_t kCleanCloseOffset = 504;

// What a crash or a reboot leaves: no clean-close mark the next opener can trust (a killed
// process never closes; a reboot changes the boot id a mark is bound to). Tests that damage a
// cleanly closed file to model a power loss call it, so that opening runs recovery as it
// would after that power loss.
inline void forget_clean_close(const std::filesystem::path& p) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  const std::uint64_t zero = 0;
  f.seekp(static_cast<std::streamoff>(kCleanCloseOffset));
  f.write(reinterpret_cast<const char*>(&zero), sizeof zero);
}

// Offset of Header::writer_boot (channel_test checks it against the layout).
inline constexpr std::uint64_t kWriterBootOffset = 416;

// What a power loss leaves beside its damage: a file last written on another boot than the one
// that opens it next (the digest of the writers' boot id, changed).
inline void last_written_on_another_boot(const std::filesystem::path& p) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  std::uint64_t boot = 0;
  f.seekg(static_cast<std::streamoff>(kWriterBootOffset));
  f.read(reinterpret_cast<char*>(&boot), sizeof boot);
  boot ^= 0x5eed;
  f.seekp(static_cast<std::streamoff>(kWriterBootOffset));
  f.write(reinterpret_cast<const char*>(&boot), sizeof boot);
}

// A copy of the channel file at `from` as a crash leaves it (no clean close: taken while it is
// open), made on this boot or, as a power loss leaves it, last written on another.
inline std::filesystem::path crash_copy(const std::filesystem::path& from, const std::string& name, bool rebooted) {
  const auto to = from.parent_path() / name;
  std::filesystem::copy_file(from, to);
  if (rebooted) last_written_on_another_boot(to);
  return to;
}

// What the first opener of `copy` makes of source `id`: (next_sequence, position; ~0 for none),
// and how many sources its recovery put back at their durable checkpoints.
inline std::tuple<std::uint64_t, std::uint64_t, std::uint64_t> reopened(const std::filesystem::path& copy,
                                                                        std::uint64_t id) {
  core::Channel ch = core::Channel::open(copy);
  const auto sp = ch.source_position(id);
  return {sp ? sp->next_sequence : ~0ull, sp ? sp->position : ~0ull, ch.stats().last_recovery.sources_rolled_back};
}

// Payload of event (source, seq): self-describing text padded to `len` bytes (>= 0).
inline std::string payload_for(std::uint64_t source, std::uint64_t seq, std::size_t len) {
  std::string s = "s" + std::to_string(source) + "q" + std::to_string(seq) + ":";
  s.resize(std::max(len, s.size()), static_cast<char>('a' + (source + seq) % 26));
  s.resize(len);
  return s;
}

inline std::string as_string(std::span<const std::byte> p) {
  return {reinterpret_cast<const char*>(p.data()), p.size()};
}

struct Seen {
  std::uint64_t position;
  std::uint64_t channel_seq;
  core::EventId id;
  std::string payload;
};

// Polls until `want` records were read or `timeout` passes without progress; no commit.
inline std::vector<Seen> drain(core::Consumer& c, std::size_t want,
                               std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  std::vector<Seen> out;
  std::vector<core::Record> buf(256);
  while (out.size() < want) {
    const std::size_t n = c.poll(std::span(buf).first(std::min(buf.size(), want - out.size())));
    if (n == 0) {
      if (!c.wait(timeout)) break;
      continue;
    }
    for (std::size_t i = 0; i < n; ++i)
      out.push_back({buf[i].position, buf[i].channel_seq, buf[i].id, as_string(buf[i].payload)});
  }
  return out;
}

}  // namespace tributary::testing
