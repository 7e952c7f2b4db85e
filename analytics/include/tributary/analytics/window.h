// Event-time windows: tumbling (slide = size) and hopping (slide < size), with a watermark and
// allowed lateness, per group-by key; count, and sum/min/max of a numeric field.
//
//   event time t  ->  every window [start, start + size) with start = k * slide holding t
//   watermark     =   the largest event time seen - lateness
//   a window closes once watermark >= its end: its row goes to the closed rows (the job
//   appends them to the window's file at the next checkpoint, exactly once)
//   an event whose window has closed already is late: counted per (window, key) in the late
//   rows, never dropped silently, never added to a closed window
//   a late row can grow until the watermark passes its window's end + late_retention: then it
//   is final (take_retired(); the job appends it to NAME.late.csv once) and leaves memory; a
//   later event of that window is expired: counted in late_events() and expired_events(), in
//   no row, so memory stays bounded however long the run and however late the events
//   a window holds at most max_keys keys (memory bound); the events of further keys count
//   under kOtherWindowKey, "(other)", in that window (and its late rows), and in
//   overflowed_events()
//
// Deterministic: the same events in the same order give the same rows (no wall clock), so a
// replay after a crash closes the same windows with the same counts.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tributary::analytics {

// The latest event time Tributary accepts, 9999-12-31T23:59:59.999Z (the earliest is the epoch),
// and the longest window size, slide, lateness or max_future: window arithmetic cannot overflow.
inline constexpr std::int64_t kMaxMillis = 253402300799999;
// Hopping windows put each event in size / slide windows: at most this many.
inline constexpr std::int64_t kMaxWindowsPerEvent = 10000;

// Event time from a field's text, in ms since the epoch (UTC).
struct TimeFormat {
  enum class Kind : std::uint8_t { kEpochSeconds, kEpochMillis, kRfc3339, kPattern } kind = Kind::kEpochMillis;
  std::string pattern;  // kPattern: %Y %m %d %H %M %S and literal characters, e.g. "%m%d"
  int year = 1970;      // kPattern without %Y: the year to assume

  // "epoch_s" | "epoch_ms" | "rfc3339" | a pattern containing '%'; nullopt if none of these.
  [[nodiscard]] static std::optional<TimeFormat> parse(std::string_view text, int year);
  // nullopt also for times before 1970 or after 9999.
  [[nodiscard]] std::optional<std::int64_t> to_millis(std::string_view value) const;

 private:
  [[nodiscard]] std::optional<std::int64_t> parse_millis(std::string_view value) const;
};

// "250ms", "10s", "5m", "1h", "1d" (or a number: ms); nullopt if not a duration.
[[nodiscard]] std::optional<std::int64_t> parse_duration_ms(std::string_view text);
// RFC 3339 UTC with ms precision only when needed: "2026-11-11T00:00:00Z".
[[nodiscard]] std::string format_millis(std::int64_t ms);

struct Aggregate {
  std::uint64_t count = 0;
  std::uint64_t valued = 0;          // events that had a value
  double sum = 0, min = 0, max = 0;  // of the value field, when there is one
  void add(std::optional<double> v);
  // Adds another part of the same window and key (another input partition's).
  void merge(const Aggregate& other);
  bool operator==(const Aggregate&) const = default;
};

using WindowKey = std::pair<std::int64_t, std::string>;  // window start, key
using LateRow = std::pair<WindowKey, std::uint64_t>;     // late events of a window and key

struct WindowRow {
  std::int64_t start = 0, end = 0;
  std::string key;  // key parts joined with '\x1f'
  Aggregate agg;
};

// The key that collects the events of new keys once a window holds max_keys keys.
inline constexpr std::string_view kOtherWindowKey = "(other)";

class WindowSet {
 public:
  // max_keys: per window (one start), open and late rows each; 0: no bound.
  // late_retention_ms: how long after its window closed a late row can still grow; 0: forever
  // (late rows are then never final and grow with the run).
  WindowSet(std::int64_t size_ms, std::int64_t slide_ms, std::int64_t lateness_ms, std::size_t max_keys = 0,
            std::int64_t late_retention_ms = 0);

  // Adds one event at time `t` under `key`. Returns how many of its windows were already
  // closed (late or expired), 0 when it counted everywhere.
  std::size_t add(std::int64_t t, std::string_view key, std::optional<double> value);

  // Rows closed and not yet taken, in closing order; take_closed() hands them over.
  [[nodiscard]] const std::vector<WindowRow>& closed() const noexcept { return closed_; }
  std::vector<WindowRow> take_closed();
  [[nodiscard]] const std::map<WindowKey, Aggregate>& open() const noexcept { return open_; }
  // Late events per (window start, key), rows that can still grow.
  [[nodiscard]] const std::map<WindowKey, std::uint64_t>& late() const noexcept { return late_; }
  // Late rows made final (past late_retention) and not yet taken, by window start;
  // take_retired() hands them over.
  [[nodiscard]] const std::vector<LateRow>& retired() const noexcept { return retired_; }
  std::vector<LateRow> take_retired();
  [[nodiscard]] std::optional<std::int64_t> watermark() const noexcept;
  // Every window ending by this is closed, for good (the watermark as it was when it last closed
  // windows; INT64_MIN: none yet). Not the watermark: a smaller lateness after a restore moves
  // the watermark ahead of it until the next event closes those windows.
  [[nodiscard]] std::int64_t closed_until() const noexcept { return closed_until_; }
  // Every window starting by this has its late rows final (INT64_MIN: none yet).
  [[nodiscard]] std::int64_t retired_through() const noexcept { return retired_through_; }
  [[nodiscard]] std::int64_t size() const noexcept { return size_; }
  // Events that came after one of their windows closed (expired ones included).
  [[nodiscard]] std::uint64_t late_events() const noexcept { return late_events_; }
  // Events that came after one of their windows' late rows was final: in no row.
  [[nodiscard]] std::uint64_t expired_events() const noexcept { return expired_events_; }
  [[nodiscard]] std::uint64_t closed_total() const noexcept { return closed_total_; }
  // Events counted under kOtherWindowKey in at least one of their windows.
  [[nodiscard]] std::uint64_t overflowed_events() const noexcept { return overflowed_events_; }

  // Checkpoint form: lines of tab-separated fields with the given prefix; parse_line() takes
  // them back (false: not one of ours).
  void serialize(std::string& out, std::string_view prefix) const;
  [[nodiscard]] bool parse_line(const std::vector<std::string_view>& cols);
  // The size and slide (ms) the parsed state was kept with; nullopt if none was parsed or the
  // checkpoint predates them (analyzer format 5). Rows of another shape mean other windows.
  [[nodiscard]] std::optional<std::pair<std::int64_t, std::int64_t>> restored_shape() const { return restored_shape_; }
  // After the last parse_line(): late rows past this set's late_retention (a checkpoint taken
  // with a larger one) are made final now.
  void restored();

 private:
  void close_until(std::int64_t watermark);
  void retire();  // late rows of windows ended late_retention before closed_until_ become final
  // The row of (start, key) in `rows`, or of (start, kOtherWindowKey) once `keys[start]` is at
  // the bound (`over` set).
  template <typename Rows>
  typename Rows::mapped_type& row(Rows& rows, std::map<std::int64_t, std::size_t>& keys, std::int64_t start,
                                  std::string_view key, bool& over);

  std::int64_t size_, slide_, lateness_, late_retention_;
  std::optional<std::pair<std::int64_t, std::int64_t>> restored_shape_;
  std::optional<std::int64_t> max_time_;
  std::int64_t closed_until_ = INT64_MIN;  // every window with end <= this is closed
  std::map<WindowKey, Aggregate> open_;
  std::vector<WindowRow> closed_;
  std::map<WindowKey, std::uint64_t> late_;
  std::vector<LateRow> retired_;
  std::int64_t retired_through_ = INT64_MIN;  // every window starting by this has its late rows final
  std::uint64_t late_events_ = 0, expired_events_ = 0;
  std::uint64_t closed_total_ = 0;
  std::size_t max_keys_;
  std::map<std::int64_t, std::size_t> open_keys_, late_keys_;  // rows per window start
  std::uint64_t overflowed_events_ = 0;
};

}  // namespace tributary::analytics
