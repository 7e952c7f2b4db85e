// How the analyzer's results look on disk, shared by the checkpoint job (which renders its own
// state) and the Kafka-transaction mode's materializer (which renders what it read back from the
// output topic): CSV cells and rows, the totals and window files, status.json, atomic rewrites.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tributary/analytics/analyzer.h"
#include "tributary/analytics/job.h"

namespace tributary::analytics::render {

// One CSV cell: quoted (RFC 4180) when it holds a comma, quote or line break.
void csv_cell(std::string& out, std::string_view v);
// ",part,part" for a key whose parts are joined with '\x1f'.
void key_cells(std::string& out, std::string_view key);

// "window_start,window_end,<by...>,<counts>[,sum_v,min_v,max_v]\n"
[[nodiscard]] std::string window_header(const WindowOutputSpec& w, std::string_view counts);
void window_row(std::string& out, const WindowOutputSpec& w, const WindowRow& r);
// NAME.open.csv: the rows of the windows still open, as they stand.
[[nodiscard]] std::string open_csv(const WindowOutputSpec& w, const std::map<WindowKey, Aggregate>& open);
// Late rows, "window_start,window_end,<by...>,late": the late events per window and key.
// late_csv(): the header and `late` (NAME.late.open.csv, or NAME.late.csv of the reader);
// late_row(): one row (appended to NAME.late.csv once it is final).
[[nodiscard]] std::string late_csv(const WindowOutputSpec& w, const std::map<WindowKey, std::uint64_t>& late);
void late_row(std::string& out, const WindowOutputSpec& w, const WindowKey& k, std::uint64_t n);

// An [[outputs]] file: the header, the labels of `order` first (each, even at 0), then every
// other key; a share column of `counted` when the output asks for one.
[[nodiscard]] std::string totals_csv(const OutputSpec& o, const std::map<std::string, std::uint64_t>& totals,
                                     std::uint64_t counted, const std::vector<std::string>* order);

// What status.json and the metrics endpoint report, from either mode.
struct WindowFigures {
  std::string name;
  std::uint64_t open = 0, closed = 0, late_events = 0;
  std::uint64_t expired = 0;  // late events of windows whose late rows were final (in no row)
  std::optional<std::int64_t> watermark;  // none until every partition has one
};
struct Figures {
  AnalyzerStats stats;
  std::vector<Ledger::SourceAudit> sources;
  Ledger::Retired retired;  // sources the ledger forgot (idle, no hole): their totals
  std::vector<WindowFigures> windows;
  std::string extra;  // more members for status.json: ,"key":value...
};
// status.json: the counters, rejections by reason, per-window figures, the per-source audit.
[[nodiscard]] std::string status_json(const Figures& f);
// The same figures in the Prometheus text format (the analyzer's /metrics).
[[nodiscard]] std::string prometheus(const Figures& f);

// One dead-letter line (JSON): {"reason":..,"source":..,"seq":..,"input":..,"event":..}\n, the
// event as a JSON string (invalid UTF-8 bytes become U+FFFD; `input` says where it was read).
// An event longer than `max_event` bytes is cut there, and the line says so:
// ..,"event":"<first max_event bytes>","event_bytes":N,"truncated":true} (the whole event is
// at `input`).
void dead_letter_line(std::string& out, core::EventId id, std::string_view reason, std::string_view input,
                      std::string_view payload, std::size_t max_event = SIZE_MAX);

// Writes `text` to a temporary file and renames it over `p`: readers see the old or the new file.
// Throws core::Error naming the file.
void write_file(const std::filesystem::path& p, const std::string& text);
// Writes `text` at byte `offset` of `p` (created if missing) and makes it durable (fdatasync);
// returns the offset after it. For the files appended exactly once: the caller keeps the offset
// in its commit point and cuts the file back to it after a crash. Throws core::Error naming the file.
std::uint64_t append_at(const std::filesystem::path& p, std::uint64_t offset, std::string_view text);

}  // namespace tributary::analytics::render
