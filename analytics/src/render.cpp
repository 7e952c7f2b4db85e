#include "render.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstdio>
#include <set>

#include "tributary/core/error.h"
#include "tributary/core/fd.h"
#include "tributary/core/json.h"
#include "tributary/core/metrics.h"

namespace tributary::analytics::render {

void csv_cell(std::string& out, std::string_view v) {
  if (v.find_first_of(",\"\n\r") == std::string_view::npos) {
    out += v;
    return;
  }
  out += '"';
  for (const char ch : v) {
    if (ch == '"') out += '"';
    out += ch;
  }
  out += '"';
}

void key_cells(std::string& out, std::string_view key) {
  for (std::size_t start = 0;;) {
    const auto sep = key.find(kKeySeparator, start);
    out += ',';
    csv_cell(out, key.substr(start, sep == std::string_view::npos ? std::string_view::npos : sep - start));
    if (sep == std::string_view::npos) return;
    start = sep + 1;
  }
}

std::string window_header(const WindowOutputSpec& w, std::string_view counts) {
  std::string h = "window_start,window_end";
  for (const auto& b : w.by) h += "," + b;
  h += fmt::format(",{}", counts);
  if (!w.value.empty() && counts == "count") h += fmt::format(",sum_{0},min_{0},max_{0}", w.value);
  return h + "\n";
}

void window_row(std::string& out, const WindowOutputSpec& w, const WindowRow& r) {
  out += format_millis(r.start) + "," + format_millis(r.end);
  if (!w.by.empty()) key_cells(out, r.key);
  out += fmt::format(",{}", r.agg.count);
  if (!w.value.empty()) out += fmt::format(",{},{},{}", r.agg.sum, r.agg.min, r.agg.max);
  out += '\n';
}

std::string open_csv(const WindowOutputSpec& w, const std::map<WindowKey, Aggregate>& open) {
  std::string text = window_header(w, "count");
  for (const auto& [k, agg] : open) window_row(text, w, {k.first, k.first + w.size_ms, k.second, agg});
  return text;
}

void late_row(std::string& out, const WindowOutputSpec& w, const WindowKey& k, std::uint64_t n) {
  out += format_millis(k.first) + "," + format_millis(k.first + w.size_ms);
  if (!w.by.empty()) key_cells(out, k.second);
  out += fmt::format(",{}\n", n);
}

std::string late_csv(const WindowOutputSpec& w, const std::map<WindowKey, std::uint64_t>& late) {
  std::string text = window_header(w, "late");
  for (const auto& [k, n] : late) late_row(text, w, k, n);
  return text;
}

std::string totals_csv(const OutputSpec& o, const std::map<std::string, std::uint64_t>& totals, std::uint64_t counted,
                       const std::vector<std::string>* order) {
  std::string text = o.header + "\n";
  auto row = [&](const std::string& key, std::uint64_t n) {
    csv_cell(text, key);  // event text: a comma, quote or newline in it must not break the file
    text += o.share ? fmt::format(",{},{:.4f}\n", n, counted == 0 ? 0.0 : double(n) / double(counted))
                    : fmt::format(",{}\n", n);
  };
  std::set<std::string> done;
  if (order != nullptr) {
    for (const auto& label : *order) {  // every label, in order, even with 0
      const auto it = totals.find(label);
      row(label, it == totals.end() ? 0 : it->second);
      done.insert(label);
    }
  }
  for (const auto& [key, n] : totals)
    if (!done.count(key)) row(key, n);
  return text;
}

std::string status_json(const Figures& f) {
  const AnalyzerStats& s = f.stats;
  std::string src;
  for (const auto& a : f.sources)
    src += fmt::format(R"({}{{"source":{},"accounted":{},"gaps":{},"duplicates":{},"ranges":{}}})",
                       src.empty() ? "" : ",", a.source_id, a.counted, a.gaps, a.duplicates, a.ranges.size());
  std::string reasons;
  for (const auto& [why, n] : s.rejected_by_reason)
    reasons += fmt::format(R"({}{}:{})", reasons.empty() ? "" : ",", core::json_string(why), n);
  std::string windows;
  for (const auto& w : f.windows)
    windows += fmt::format(R"({}{}:{{"open":{},"closed":{},"late_events":{},"expired":{},"watermark":{}}})",
                           windows.empty() ? "" : ",", core::json_string(w.name), w.open, w.closed, w.late_events,
                           w.expired, w.watermark ? "\"" + format_millis(*w.watermark) + "\"" : "null");
  return fmt::format(R"({{"counted":{},"filtered":{},"rejected":{},"duplicates":{},"late":{},"overflowed":{},)"
                     R"("rejected_by_reason":{{{}}},"windows":{{{}}},"sources":[{}],)"
                     R"("retired_sources":{{"sources":{},"accounted":{},"duplicates":{}}}{}}})"
                     "\n",
                     s.counted, s.filtered, s.rejected, s.duplicates, s.late, s.overflowed, reasons, windows, src,
                     f.retired.sources, f.retired.events, f.retired.duplicates, f.extra);
}

std::string prometheus(const Figures& f) {
  const AnalyzerStats& s = f.stats;
  core::PrometheusText p;
  p.family("tributary_analyzer_events_total", "counter", "Events read, by what became of them");
  const std::pair<const char*, std::uint64_t> outcomes[] = {
      {"counted", s.counted}, {"filtered", s.filtered}, {"rejected", s.rejected}, {"duplicate", s.duplicates}};
  for (const auto& [outcome, n] : outcomes) p.sample("tributary_analyzer_events_total", {{"outcome", outcome}}, double(n));
  p.family("tributary_analyzer_late_events_total", "counter", "Counted events that came after a window of theirs closed");
  p.sample("tributary_analyzer_late_events_total", {}, double(s.late));
  p.family("tributary_analyzer_overflowed_events_total", "counter",
           "Counts that went under (other), one per event and grouping or window at its max_groups keys");
  p.sample("tributary_analyzer_overflowed_events_total", {}, double(s.overflowed));
  p.family("tributary_analyzer_rejected_events_total", "counter", "Rejected events by reason");
  for (const auto& [why, n] : s.rejected_by_reason) p.sample("tributary_analyzer_rejected_events_total", {{"reason", why}}, double(n));
  p.family("tributary_analyzer_source_accounted_total", "counter", "Events of a source accounted for, once each");
  for (const auto& a : f.sources)
    p.sample("tributary_analyzer_source_accounted_total", {{"source", std::to_string(a.source_id)}}, double(a.counted));
  p.family("tributary_analyzer_source_gaps", "gauge", "Sequences of a source below its highest that never arrived");
  for (const auto& a : f.sources)
    p.sample("tributary_analyzer_source_gaps", {{"source", std::to_string(a.source_id)}}, double(a.gaps));
  p.family("tributary_analyzer_source_duplicates_total", "counter", "Copies of a source's events dropped by identity");
  for (const auto& a : f.sources)
    p.sample("tributary_analyzer_source_duplicates_total", {{"source", std::to_string(a.source_id)}}, double(a.duplicates));
  p.family("tributary_analyzer_retired_sources_total", "counter",
           "Sources the ledger forgot (idle for retire_sources_after, no hole): no longer in the per-source figures");
  p.sample("tributary_analyzer_retired_sources_total", {}, double(f.retired.sources));
  p.family("tributary_analyzer_retired_source_accounted_total", "counter", "Events of the retired sources, accounted once each");
  p.sample("tributary_analyzer_retired_source_accounted_total", {}, double(f.retired.events));
  p.family("tributary_analyzer_window_open", "gauge", "Open windows (window and key)");
  for (const auto& w : f.windows) p.sample("tributary_analyzer_window_open", {{"window", w.name}}, double(w.open));
  p.family("tributary_analyzer_window_closed_total", "counter", "Window rows closed and written");
  for (const auto& w : f.windows) p.sample("tributary_analyzer_window_closed_total", {{"window", w.name}}, double(w.closed));
  p.family("tributary_analyzer_window_expired_events_total", "counter",
           "Late events of a window whose late rows were final already (late_retention): in no row");
  for (const auto& w : f.windows)
    p.sample("tributary_analyzer_window_expired_events_total", {{"window", w.name}}, double(w.expired));
  p.family("tributary_analyzer_window_watermark_seconds", "gauge", "Event time every window of this name is past");
  for (const auto& w : f.windows)
    if (w.watermark) p.sample("tributary_analyzer_window_watermark_seconds", {{"window", w.name}}, double(*w.watermark) / 1000.0);
  return p.text();
}

void dead_letter_line(std::string& out, core::EventId id, std::string_view reason, std::string_view input,
                      std::string_view payload, std::size_t max_event) {
  out += "{\"reason\":";
  core::append_json_string(out, reason);
  out += fmt::format(R"(,"source":{},"seq":{},"input":)", id.source_id, id.sequence);
  core::append_json_string(out, input);
  out += ",\"event\":";
  core::append_json_string(out, payload.substr(0, max_event));
  if (payload.size() > max_event) out += fmt::format(R"(,"event_bytes":{},"truncated":true)", payload.size());
  out += "}\n";
}

void write_file(const std::filesystem::path& p, const std::string& text) {
  const auto tmp = std::filesystem::path(p).concat(".tmp");
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) core::throw_errno("cannot write " + p.string(), errno);
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const int werr = errno;
  if (std::fclose(f) != 0 || !ok) core::throw_errno("cannot write " + p.string(), ok ? errno : werr);
  if (std::rename(tmp.c_str(), p.c_str()) != 0) core::throw_errno("cannot rename " + tmp.string(), errno);
}

std::uint64_t append_at(const std::filesystem::path& p, std::uint64_t offset, std::string_view text) {
  const core::Fd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (!fd.valid()) core::throw_errno("open " + p.string(), errno);
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::pwrite(fd.get(), text.data() + done, text.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) core::throw_errno("write " + p.string(), errno);
    done += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd.get()) != 0) core::throw_errno("fdatasync " + p.string(), errno);
  return offset + text.size();
}

}  // namespace tributary::analytics::render
