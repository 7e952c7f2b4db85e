// Building blocks of the stream sources (stdin, exec, tcp, udp, syslog), which cannot replay
// what they read and so are a new source identity per run (see Event identity in the brief):
//
//   Framer   a bounded buffer that cuts a byte stream into events: newline-terminated lines,
//            or syslog messages (RFC 6587: octet-counted or newline-terminated, per message).
//            Scanning is transactional: scan() says what it would consume, accept() applies
//            it once the events are in the channel, so a refused batch is retried unchanged.
//   Emitter  appends a batch of one source identity to every channel of the source, in
//            transactions of at most an eighth of the smallest ring; after a refusal the same
//            batch is passed again and goes on from where it stopped (never twice into one
//            channel).
#pragma once

#include <filesystem>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "internal/intercept.h"
#include "tributary/core/channel.h"
#include "tributary/ingest/source.h"

namespace tributary::ingest::detail {

enum class Framing : std::uint8_t { kLines, kSyslog };

class Framer {
 public:
  // Events are at most `max_event` bytes; longer lines are split into max_event pieces or
  // rejected (counted), and octet-counted syslog frames longer than that are rejected.
  // The buffer starts at `initial` bytes, grows to what max_event needs, and shrinks back
  // when it empties (idle connections cost little).
  Framer(std::size_t max_event, bool split_oversize, Framing framing = Framing::kLines,
         std::size_t initial = 16 << 10);

  // Room to read into; empty only when the buffer holds a whole maximal event (scan first).
  [[nodiscard]] std::span<char> space();
  void filled(std::size_t n) noexcept { fill_ += n; }
  [[nodiscard]] std::size_t buffered() const noexcept { return fill_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }
  // Inside an event whose first part was cut off or skipped (an oversize line): its end is
  // still to come even when nothing is buffered.
  [[nodiscard]] bool mid_event() const noexcept { return mid_ != Mid::kNone; }

  enum class Mid : std::uint8_t { kNone, kSplitting, kSkippingLine, kSkippingCount };
  struct Scan {
    std::size_t consumed = 0;
    Mid mid = Mid::kNone;
    std::uint64_t skip_count = 0;  // kSkippingCount: bytes of a rejected frame still to skip
    std::uint64_t oversize = 0;    // events longer than max_event met in this scan
    std::uint64_t rejected = 0;    // of those, dropped
    bool complete = true;          // false: stopped at a limit with whole events left
  };
  // Appends the whole events in the buffer to `out` (views into the buffer, valid until the
  // next space() or accept()), at most `max_events`, and at most `max_bytes` of what they take
  // in a channel (core::record_bytes: headers included, so that a batch of short events fits a
  // transaction too); the first event may take more when `first_may_exceed` (a scan that adds
  // to a batch other scans began passes false). With `at_eof` a trailing unterminated event is
  // whole too.
  [[nodiscard]] Scan scan(bool at_eof, std::vector<std::span<const char>>& out, std::size_t max_events,
                          std::size_t max_bytes, bool first_may_exceed = true) const;
  void accept(const Scan& s);

 private:
  void resize(std::size_t cap);

  std::size_t max_event_;
  bool split_;
  Framing framing_;
  std::size_t initial_;
  std::size_t limit_;  // largest buffer ever needed
  std::unique_ptr<char[]> buf_;
  std::size_t cap_ = 0;
  std::size_t fill_ = 0;
  Mid mid_ = Mid::kNone;
  std::uint64_t skip_count_ = 0;
};

class Emitter {
 public:
  // Producers for every channel of the source and a fresh source identity.
  explicit Emitter(const SourceContext& ctx);

  // A new source identity (a fresh id, sequence from 0): a restarted command, say.
  void new_identity();
  [[nodiscard]] std::uint64_t source_id() const noexcept { return id_; }
  [[nodiscard]] std::uint64_t next_sequence() const noexcept { return next_; }
  // Payload bytes one transaction may carry (an eighth of the smallest channel).
  [[nodiscard]] std::size_t batch_bytes() const noexcept { return batch_bytes_; }
  // The largest payload every channel accepts.
  [[nodiscard]] std::size_t max_payload() const noexcept { return max_payload_; }

  enum class Result : std::uint8_t { kOk, kRefused };
  // The source's interceptors run first (events they drop are counted as filtered and take no
  // sequence number). kOk: done with these events: in every channel, except any a channel
  // can never take (too large, file broken), which are counted as rejected, logged, and
  // leave a sequence gap. kRefused: a channel was full; pass the same events again later
  // (they are not intercepted twice). Passed again before retry_at(), they are refused without
  // a try: a busy agent loop does not spin on a full channel.
  [[nodiscard]] Result emit(std::span<const std::span<const char>> events, SourceMetrics& metrics);
  // True while a refused batch is waiting to be passed again; retry_at() says when (sources
  // return it from next_deadline() and stop polling their input meanwhile).
  [[nodiscard]] bool refused() const noexcept { return refused_; }
  [[nodiscard]] std::chrono::steady_clock::time_point retry_at() const noexcept {
    return refused_ ? refused_at_ + std::chrono::milliseconds(20) : std::chrono::steady_clock::time_point::max();
  }
  // Events of a refused batch not in every channel yet (0 when none waits).
  [[nodiscard]] std::size_t held() const noexcept {
    if (!refused_) return 0;
    return done_channels_ + 1 == producers_.size() ? batch_.size() - done_events_ : batch_.size();
  }

 private:
  std::function<void(std::string_view, const std::string&)> log_;
  std::shared_ptr<const InterceptorChain> interceptors_;
  Arena arena_;
  std::uint64_t filtered_ = 0;  // of the batch being appended
  std::vector<core::Producer> producers_;
  std::vector<std::filesystem::path> channel_paths_;  // for errors, per producer
  std::size_t done_channels_ = 0;  // of a refused batch: channels before this one have it
  std::size_t done_events_ = 0;    // and this one, its events before this one
  std::uint64_t transaction_bytes_ = 0;  // record bytes per append_batch: an eighth of the smallest ring
  bool refused_ = false;
  std::chrono::steady_clock::time_point refused_at_{};
  std::uint64_t id_;
  std::uint64_t next_ = 0;
  std::size_t batch_bytes_;
  std::size_t max_payload_;
  std::vector<core::Event> batch_;
};

// A channel file cut short under us (core::AppendStatus::kBroken): throws core::Error saying
// so and what to do. The process must stop: only a fresh open can restore the file.
[[noreturn]] void throw_broken(const std::filesystem::path& channel);

// A source's largest event (`option`: max_line, max_message) as its channels take it: cut to
// the smallest max_payload among them, with a warning naming both, so that a longer event is
// split or rejected by the source as configured instead of refused by a channel forever. (A
// small ring's max_payload is under the 1 MiB default of max_line.)
[[nodiscard]] std::size_t fit_max_event(const SourceContext& ctx, std::string_view option, std::size_t max_event,
                                        std::string_view longer);

}  // namespace tributary::ingest::detail
