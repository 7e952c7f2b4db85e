#include "render.h"

#include <fmt/format.h>

#include <cstdio>
#include <set>

#include "tributary/core/error.h"

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
    const auto sep = key.find('\x1f', start);
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

std::string status_json(const AnalyzerStats& s, const std::vector<Ledger::SourceAudit>& sources,
                        std::string_view windows, std::string_view extra) {
  std::string src;
  for (const auto& a : sources)
    src += fmt::format(R"({}{{"source":{},"accounted":{},"gaps":{},"duplicates":{},"ranges":{}}})",
                       src.empty() ? "" : ",", a.source_id, a.counted, a.gaps, a.duplicates, a.ranges.size());
  std::string reasons;
  for (const auto& [why, n] : s.rejected_by_reason)
    reasons += fmt::format(R"({}"{}":{})", reasons.empty() ? "" : ",", why, n);
  return fmt::format(R"({{"counted":{},"filtered":{},"rejected":{},"duplicates":{},"late":{},"overflowed":{},)"
                     R"("rejected_by_reason":{{{}}},"windows":{{{}}},"sources":[{}]{}}})"
                     "\n",
                     s.counted, s.filtered, s.rejected, s.duplicates, s.late, s.overflowed, reasons, windows, src,
                     extra);
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

}  // namespace tributary::analytics::render
