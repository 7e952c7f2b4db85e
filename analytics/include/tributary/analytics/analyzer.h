// The analyzer's engine, independent of where events come from (a channel or Kafka):
//
//   identity -> ledger (each event counted once) -> fields (JSON/CSV) -> integer checks
//            -> filter -> join (dimension table, labels) -> group-by running totals
//                                                        -> event-time windows (window.h)
//
// Every event that is not a duplicate is either counted, filtered out (valid but not wanted,
// e.g. a click when counting orders) or rejected with a reason and kept as a sample: nothing
// disappears silently. The whole state (ledger, totals, counters, the caller's input position)
// serializes into one checkpoint, so a restart resumes exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tributary/analytics/dimension.h"
#include "tributary/analytics/extract.h"
#include "tributary/analytics/filter.h"
#include "tributary/analytics/ledger.h"
#include "tributary/analytics/window.h"

namespace tributary::analytics {

// A group-by key part: an event field or a joined column, optionally labelled or zero-padded.
struct KeyPart {
  enum class From : std::uint8_t { kEvent, kJoined } from = From::kEvent;
  std::size_t index = 0;            // event field index, or joined column index
  const LabelMap* labels = nullptr; // code -> label (joined columns: also for a missing key)
  std::size_t pad = 0;              // zero-pad to this width ("511" -> "0511")
};

struct AnalyzerSpec {
  std::vector<std::size_t> integer_fields;  // must be integers, else the event is rejected
  struct Filter {
    std::size_t field;
    std::vector<std::string> any_of;  // the field must equal one of these
  };
  std::vector<Filter> filters;  // all must hold
  std::optional<FilterExpr> where;  // and this (the filter language)
  const DimensionTable* table = nullptr;
  std::size_t join_field = 0;  // event field holding the table key
  struct Grouping {
    std::string name;
    std::vector<KeyPart> key;
    // Memory bound: at most this many keys; events of further new keys are counted under
    // kOtherKey (and in AnalyzerStats::overflowed), so 1 M distinct user ids cannot grow the
    // process without limit and the total stays exact.
    std::size_t max_groups = SIZE_MAX;
  };
  std::vector<Grouping> groupings;
  struct Window {
    std::string name;
    std::vector<KeyPart> key;
    std::int64_t size_ms = 0, slide_ms = 0, lateness_ms = 0;
    std::optional<std::size_t> time_field;  // none: ingest time (the record's timestamp)
    // With a time field: an event whose time is more than this after its own ingest time is
    // rejected ("event time in the future"), so that one clock-skewed or mistyped event cannot
    // move the watermark ahead and close every window early. 0: no bound. The ingest time,
    // not the clock of the moment, so that a replay decides the same.
    std::int64_t max_future_ms = 0;
    TimeFormat time_format;
    std::optional<std::size_t> value_field;  // sum/min/max of this field
    std::size_t max_keys = 0;  // per window; more keys count under kOtherWindowKey. 0: no bound
    std::int64_t late_retention_ms = 0;  // how long a late row can grow (WindowSet); 0: forever
  };
  std::vector<Window> windows;
  std::size_t max_samples = 10;  // rejected events kept per reason, for the report
  // Sources idle this long (of ingest time: the ledger's clock) with no hole in what was counted
  // are retired from the ledger (Ledger::retire_idle): memory stays bounded however many
  // sources come and go (a tail source per file generation). 0: never.
  std::int64_t retire_sources_after_ms = 0;
};

enum class Outcome : std::uint8_t { kCounted, kFiltered, kDuplicate, kRejected };

// One input event: its identity, the raw event, when it entered Tributary (channel record /
// Kafka timestamp: the time of windows without an event-time field), and the caller's note of
// where it was read (a channel position, a Kafka offset), handed back to the reject sink.
struct Event {
  core::EventId id;
  std::string_view payload;
  std::int64_t ingest_ms = 0;
  std::int64_t where = -1;
};

// The row that collects the events of new keys once a grouping holds max_groups keys.
inline constexpr std::string_view kOtherKey = "(other)";
// An event whose group-by values (the unlabelled fields of one output's or window's key, added
// up) are longer is rejected ("group-by key too long"): its key would be a row of that size in
// every output and, in the Kafka-transaction mode, a record key over the producer's
// message.max.bytes, which would stop the job at every restart on the same event.
inline constexpr std::size_t kMaxKeyValue = 64 << 10;
// A window's key joins its parts with this byte (and its files split them at it): an event whose
// value of a window's group-by field holds it is rejected ("group-by value holds the key
// separator"), since its row would be another key's, or have a column more.
inline constexpr char kKeySeparator = '\x1f';

struct AnalyzerStats {
  std::uint64_t counted = 0, filtered = 0, duplicates = 0, rejected = 0;
  std::uint64_t late = 0;  // counted events that came after one of their windows closed
  std::uint64_t overflowed = 0;  // counted under "(other)", per grouping or window at its max_groups keys
  std::map<std::string, std::uint64_t> rejected_by_reason;
  std::map<std::string, std::vector<std::string>> samples;  // reason -> first raw events
};

class Analyzer {
 public:
  Analyzer(AnalyzerSpec spec, FieldExtractor extractor);
  Analyzer(const Analyzer&) = delete;  // holds a lookup bound to itself
  Analyzer& operator=(const Analyzer&) = delete;

  Outcome process(core::EventId id, std::string_view payload, std::int64_t ingest_ms = 0) {
    return process(Event{id, payload, ingest_ms});
  }
  Outcome process(const Event& e);
  // The same for each event in order, faster: the batch's JSON is parsed in one pass
  // (FieldExtractor::extract_batch). Outcomes are counted in stats().
  void process_batch(std::span<const Event> events);

  // An input record that holds no event to count and has no identity of its own (a damaged
  // pack): rejected (counted, sampled, handed to the dead-letter sink) with `reason`, and kept
  // out of the ledger, so that no source the audit does not know appears for it.
  void reject_record(const Event& e, std::string_view reason) { (void)reject(e, reason); }

  // Running totals of grouping `g`: key parts joined with '\x1f' -> count.
  [[nodiscard]] const std::map<std::string, std::uint64_t>& totals(std::size_t g) const { return totals_.at(g); }
  [[nodiscard]] const AnalyzerStats& stats() const noexcept { return stats_; }
  [[nodiscard]] const Ledger& ledger() const noexcept { return ledger_; }
  [[nodiscard]] const WindowSet& window(std::size_t w) const { return windows_.at(w); }
  // Closed rows of window `w` not yet handed out (the job appends them to its file).
  std::vector<WindowRow> take_closed(std::size_t w) { return windows_.at(w).take_closed(); }
  std::vector<LateRow> take_retired(std::size_t w) { return windows_.at(w).take_retired(); }

  // Called with each rejected event (the dead-letter output) and the reason.
  using RejectSink = std::function<void(const Event& event, std::string_view reason)>;
  void on_reject(RejectSink sink) { reject_sink_ = std::move(sink); }

  // State + `position` (the caller's input offsets) for a checkpoint; restore returns position.
  [[nodiscard]] std::string serialize(std::string_view position) const;
  std::string restore(std::string_view state);
  // The outputs and windows the last restore() found state of but the spec no longer has
  // ("output NAME", "window NAME"): their state was dropped, for the job to say so.
  [[nodiscard]] const std::vector<std::string>& dropped_on_restore() const noexcept { return dropped_; }

 private:
  Outcome reject(const Event& e, std::string_view reason);
  Outcome count(const Event& e, Reject extracted);  // everything after the field extraction
  bool first_time(const Event& e);  // the ledger: false (a copy, counted as such) if seen before
  void build_key(const std::vector<KeyPart>& parts);
  std::optional<std::string_view> joined(std::size_t column);  // of the current event
  AnalyzerSpec spec_;
  FieldExtractor extractor_;
  Ledger ledger_;
  std::vector<std::map<std::string, std::uint64_t>> totals_;
  // Per grouping, each key of totals_ (its node's own string: map nodes never move) to its
  // count: one hash and one comparison per event instead of a walk down the tree.
  std::vector<std::unordered_map<std::string_view, std::uint64_t*>> index_;
  void index_totals();
  std::vector<WindowSet> windows_;
  std::vector<std::int64_t> times_;                 // per window, of the current event
  std::vector<std::optional<double>> values_;       // per window, of the current event
  FilterExpr::Lookup lookup_;                        // a field or joined column of the current event
  AnalyzerStats stats_;
  RejectSink reject_sink_;
  std::vector<std::string_view> payloads_;  // of the batch being processed
  std::vector<std::string_view> fields_;
  std::string key_;
  std::vector<std::vector<std::size_t>> key_fields_;  // per key: the event fields it takes as they are (kMaxKeyValue)
  std::vector<std::size_t> window_fields_;            // those of the windows' keys (kKeySeparator)
  std::vector<std::string> dropped_;  // by the last restore()
  bool row_known_ = false;  // row_ is the current event's table row
  std::uint32_t row_ = 0;
};

}  // namespace tributary::analytics
