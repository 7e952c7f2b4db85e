// The in-process producer API: an application links tributary_ingest and appends events
// straight into a channel in shared memory (no syscall per event). Every event gets the
// identity the design brief defines: a source id and a sequence dense from 0 in that source.
//
//   core::Channel ch = core::Channel::open("/var/lib/tributary/app.chan");
//   ingest::EventProducer events(ch);              // a new source: random id, sequence 0
//   if (events.append("user=7 action=buy") != core::AppendStatus::kOk) { ... }
//
// An append that returned kOk is acknowledged: it is in the channel and survives a crash of
// any process. A producer that restarts is a new source (a new id): what it had not appended
// is not in the channel, and downstream sees the old source end cleanly, never a duplicate.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tributary/core/channel.h"

namespace tributary::ingest {

// A fresh random source id (never 0 nor core::kReleasedSourceId), from the kernel's CSPRNG.
[[nodiscard]] std::uint64_t new_source_id();

class EventProducer {
 public:
  // A new source with a fresh id.
  explicit EventProducer(core::Channel& channel, const core::ProducerOptions& options = {});
  // A known source resuming at `next_sequence` (replayable sources: tail, forward hops).
  EventProducer(core::Channel& channel, std::uint64_t source_id, std::uint64_t next_sequence,
                const core::ProducerOptions& options = {});

  [[nodiscard]] core::AppendStatus append(std::span<const std::byte> payload) noexcept;
  [[nodiscard]] core::AppendStatus append(std::string_view payload) noexcept {
    return append(std::as_bytes(std::span(payload.data(), payload.size())));
  }
  // Many events in one channel transaction (all or nothing). With `position`, the source's
  // checkpoint (e.g. a file offset) is committed with them.
  [[nodiscard]] core::AppendStatus append_batch(std::span<const std::span<const std::byte>> payloads,
                                                const std::uint64_t* position = nullptr);

  [[nodiscard]] std::uint64_t source_id() const noexcept { return source_id_; }
  [[nodiscard]] std::uint64_t next_sequence() const noexcept { return next_; }

 private:
  core::Producer producer_;
  std::uint64_t source_id_;
  std::uint64_t next_;
  std::vector<core::Event> scratch_;  // reused across batches: no allocation per batch
};

}  // namespace tributary::ingest
