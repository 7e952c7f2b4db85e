// RFC 4180 fields of one CSV record, shared by CSV events (FieldExtractor::csv) and dimension
// tables. A field may be quoted: "Beijing, China" holds a separator, "say ""hi""" a quote, and
// (in a table file) a quoted field may span lines. Records without a quote, nearly all, are cut
// at each separator with nothing copied.
//
// Written here because the one Debian package for it, libcsv (3.0.3, 2013), hands out fields
// through per-byte callbacks into buffers of its own: the event path needs views into the line.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace tributary::analytics::detail {

enum class CsvRecord : std::uint8_t {
  kOk,
  kOpenQuote,  // a quoted field not closed by the record's end (a table reads on to the next line)
  kBadQuote,   // text between a closing quote and the next separator
};

// Splits `record` (without its line break; one '\r' at the end is dropped) into `cells`, views
// into `record` or, for quoted fields, into `scratch`, which keeps them until its next use. A
// quote inside a field that does not begin with one is a character of it (5'7", as Python's csv
// and spreadsheets read it).
inline CsvRecord split_csv(std::string_view record, char sep, std::vector<std::string_view>& cells,
                           std::string& scratch) {
  if (!record.empty() && record.back() == '\r') record.remove_suffix(1);
  cells.clear();
  if (record.empty() || std::memchr(record.data(), '"', record.size()) == nullptr) {
    for (std::size_t start = 0;;) {
      const std::size_t end = record.find(sep, start);
      cells.push_back(record.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
      if (end == std::string_view::npos) return CsvRecord::kOk;
      start = end + 1;
    }
  }
  scratch.clear();
  scratch.reserve(record.size());  // never grows below: the views into it stay valid
  std::size_t i = 0;
  for (;;) {
    if (i < record.size() && record[i] == '"') {
      const std::size_t from = scratch.size();
      for (++i;; ++i) {
        if (i >= record.size()) return CsvRecord::kOpenQuote;
        if (record[i] != '"') {
          scratch.push_back(record[i]);
        } else if (i + 1 < record.size() && record[i + 1] == '"') {
          scratch.push_back('"');
          ++i;
        } else {
          break;
        }
      }
      cells.emplace_back(scratch.data() + from, scratch.size() - from);
      ++i;  // past the closing quote: the record ends or a separator follows
      if (i == record.size()) return CsvRecord::kOk;
      if (record[i] != sep) return CsvRecord::kBadQuote;
      ++i;
      continue;
    }
    const std::size_t end = std::min(record.find(sep, i), record.size());
    cells.push_back(record.substr(i, end - i));
    if (end == record.size()) return CsvRecord::kOk;
    i = end + 1;
  }
}

}  // namespace tributary::analytics::detail
