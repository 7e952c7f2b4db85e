// The exactly-once ledger: per source, the set of event sequences already counted, kept as
// ranges (one range per source in the normal case). An event whose identity is inside a range
// is a duplicate (a re-send after a crash or a timed-out delivery) and is not counted again;
// a hole below the high-water mark (events re-sent after later ones arrived) is filled when
// they come, never dropped. The ranges are also the audit: what was counted, what is missing
// (gaps), how many copies were dropped. Identical content with different identities is two
// events: the ledger only looks at identity.
//
// Memory is bounded by retiring sources (retire_idle): a source idle for a configured time of
// the ledger's own clock (the highest ingest time marked, so that a replay decides the same; a
// source's activity is that clock when its last event came) with no hole (one range from 0) is
// forgotten, and only its totals are kept (retired()). The clock is the highest ingest time
// of every input: a source in an input read more than the idle time behind the others (an
// analyzer catching up) can look idle before its next event is read, so the idle time must stay
// well above any input's lag (7 days by default). The
// trade-off, as with any dedup window (Kafka Streams' and Flink's state TTL): a copy of a
// retired source's event that arrives later is counted again, and a retired source that sends
// again starts a new entry, whose audit shows its earlier sequences as a gap.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tributary/core/channel.h"

namespace tributary::analytics {

class Ledger {
 public:
  Ledger() = default;
  // A copy starts without the cache of the last source (it points into the original's map);
  // a move keeps it (the map's nodes move with it).
  Ledger(const Ledger& o) : sources_(o.sources_), duplicates_(o.duplicates_), clock_(o.clock_) {}
  Ledger& operator=(const Ledger& o) {
    if (this != &o) {
      sources_ = o.sources_;
      duplicates_ = o.duplicates_;
      clock_ = o.clock_;
      last_ = nullptr;
    }
    return *this;
  }
  Ledger(Ledger&& o) noexcept
      : sources_(std::move(o.sources_)), duplicates_(o.duplicates_), clock_(o.clock_),
        last_(std::exchange(o.last_, nullptr)), last_id_(o.last_id_) {}
  Ledger& operator=(Ledger&& o) noexcept {
    sources_ = std::move(o.sources_);
    duplicates_ = o.duplicates_;
    clock_ = o.clock_;
    last_ = std::exchange(o.last_, nullptr);  // the moved-from ledger must not write into ours
    last_id_ = o.last_id_;
    return *this;
  }
  ~Ledger() = default;

  // True if `id` is new (count it); false if it was counted before. `at_ms`: the event's ingest
  // time (0: none), which is the source's last activity and moves the ledger's clock.
  [[nodiscard]] bool mark(core::EventId id, std::int64_t at_ms = 0);

  // Forgets the sources idle for at least `idle_ms` of the ledger's clock whose sequences
  // counted have no hole, keeping their totals in retired(). At most once per `every_ms` of the
  // clock (the scan walks every source; sweep_due() says whether one would run); returns how
  // many were retired. A source whose last activity is not known (restored from a checkpoint
  // from before the clock) counts as active at the first scan.
  std::size_t retire_idle(std::int64_t idle_ms, std::int64_t every_ms);
  [[nodiscard]] bool sweep_due(std::int64_t every_ms) const noexcept { return clock_.now_ms - clock_.swept_ms >= every_ms; }

  // A record moves the clock no further than this past the wall clock, and by this much at
  // most: a record stamped far in the future (a skewed host, live or replayed) must not make
  // every source look idle. The wall clock is read when an event passes the bound last
  // computed (about once an hour, and on such records). A restored clock is kept as saved, also
  // ahead of the wall clock: that may be the one that is wrong (see parse()). Well under the
  // shortest idle time allowed (12 h).
  static constexpr std::int64_t kClockAheadMs = 3'600'000;
  using WallClock = std::int64_t (*)() noexcept;  // milliseconds since the epoch
  void set_wall_clock(WallClock wall) noexcept {  // tests
    clock_.wall = wall;
    clock_.ceiling_ms = INT64_MIN;
  }
  struct Retired {
    std::uint64_t sources = 0, events = 0, duplicates = 0;
  };
  [[nodiscard]] const Retired& retired() const noexcept { return clock_.retired; }
  // The highest ingest time marked.
  [[nodiscard]] std::int64_t clock_ms() const noexcept { return clock_.now_ms; }

  struct SourceAudit {
    std::uint64_t source_id = 0;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // [first, last] counted
    std::uint64_t counted = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t gaps = 0;  // sequences missing between 0 and the highest counted
  };
  [[nodiscard]] std::vector<SourceAudit> audit() const;
  [[nodiscard]] std::uint64_t duplicates() const noexcept { return duplicates_; }
  [[nodiscard]] std::size_t sources() const noexcept { return sources_.size(); }

  // Compact text form for checkpoints: one line per source, "source dups [@last_ms]
  // first-last first-last...", after a line "clock NOW_MS SWEPT_MS RETIRED_SOURCES
  // RETIRED_EVENTS RETIRED_DUPLICATES" once the clock moved. parse() also reads the form
  // without them (older checkpoints).
  [[nodiscard]] std::string serialize() const;
  // Throws core::Error naming the line that does not parse.
  static Ledger parse(std::string_view text);

 private:
  struct Source {
    std::map<std::uint64_t, std::uint64_t> ranges;  // first -> one past last
    std::uint64_t duplicates = 0;
    std::int64_t last_ms = 0;  // the ledger's clock when its last event was marked; 0: not known
  };
  static std::int64_t system_wall_ms() noexcept;
  struct Clock {
    std::int64_t now_ms = 0;    // the highest ingest time marked (each record's held to ceiling_ms)
    std::int64_t swept_ms = 0;  // the clock at the last retire_idle scan
    Retired retired;
    std::int64_t ceiling_ms = INT64_MIN;  // wall clock + kClockAheadMs when last read (not saved)
    WallClock wall = &system_wall_ms;
  };
  std::unordered_map<std::uint64_t, Source> sources_;
  std::uint64_t duplicates_ = 0;
  Clock clock_;
  Source* last_ = nullptr;  // the entry of source last_id_, the last one marked
  std::uint64_t last_id_ = 0;
};

}  // namespace tributary::analytics
