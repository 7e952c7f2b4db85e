// Helpers for the collector tests: build a source from the registry with options, drive its
// do_work() until a condition holds (bounded), read a channel back, append lines to files.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "support/channel_util.h"
#include "tributary/core/channel.h"
#include "tributary/ingest/source.h"

namespace tributary::testing {

inline std::unique_ptr<ingest::Source> make_source(std::string_view type, std::vector<core::Channel*> channels,
                                                   const std::map<std::string, ingest::OptionValues::Value>& opts,
                                                   std::string name = "test",
                                                   core::ProducerOptions producer = {
                                                       .on_full = core::FullPolicy::kBlock,
                                                       .max_wait = std::chrono::milliseconds(2000)}) {
  const ingest::SourceDescriptor* d = ingest::find_source(type);
  ingest::OptionValues v = ingest::defaults_of(*d);
  for (const auto& [k, val] : opts) v.set(k, val);
  ingest::SourceContext ctx;
  ctx.name = std::move(name);
  ctx.channels = std::move(channels);
  ctx.producer_options = producer;
  return d->create(v, std::move(ctx));
}

// Runs do_work() until `done()` or `timeout`; returns done().
inline bool pump_until(ingest::Source& s, const std::function<bool()>& done,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    if (s.do_work() == 0) std::this_thread::yield();
  }
  return true;
}

// Every record in the channel, read-only (no cursor moves).
inline std::vector<Seen> all_records(const core::Channel& ch) {
  std::vector<Seen> out;
  ch.walk([&](const core::Record& r) {
    out.push_back({r.position, r.channel_seq, r.id, as_string(r.payload)});
    return true;
  });
  return out;
}

inline void append_lines(const std::filesystem::path& p, const std::string& prefix, int from, int to,
                         std::size_t pad = 40) {
  std::ofstream f(p, std::ios::app);
  for (int i = from; i < to; ++i) {
    std::string line = prefix + " " + std::to_string(i) + " ";
    line.resize(std::max(line.size(), pad), '.');
    f << line << '\n';
  }
}

// Whether files in `dir` have a birth time (statx): the tail reads short files at once, and
// remembers copies it found read, only there.
inline bool birth_times(const std::filesystem::path& dir) {
  const auto probe = dir / ".btime";
  { std::ofstream(probe) << "x"; }
  struct statx sx {};
  const bool yes = ::statx(AT_FDCWD, probe.c_str(), 0, STATX_BTIME, &sx) == 0 && (sx.stx_mask & STATX_BTIME) != 0;
  std::filesystem::remove(probe);
  return yes;
}

inline std::string line_text(const std::string& prefix, int i, std::size_t pad = 40) {
  std::string line = prefix + " " + std::to_string(i) + " ";
  line.resize(std::max(line.size(), pad), '.');
  return line;
}

}  // namespace tributary::testing
