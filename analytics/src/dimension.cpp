// DimensionTable: CSV loading with interned values and integer keys.
#include "tributary/analytics/dimension.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <fmt/format.h>
#include <fstream>

#include "csv.h"
#include "tributary/core/error.h"

namespace tributary::analytics {

namespace {
// A key that reads as an integer is that integer: "007" and 7 are one key (an id column; a JSON
// number has no leading zeros, an export may pad them).
std::optional<std::uint64_t> as_uint(std::string_view s) {
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// Reads one record: a line, or more while a quoted field is open (up to 1 MiB: a quote never
// closed does not take the rest of the file). `line` counts lines read.
// Returns false at the end of the file.
bool next_record(std::istream& in, std::string& record, std::size_t& line, std::vector<std::string_view>& cells,
                 std::string& scratch, detail::CsvRecord& outcome) {
  if (!std::getline(in, record)) return false;
  ++line;
  outcome = detail::split_csv(record, ',', cells, scratch);
  std::string more;
  while (outcome == detail::CsvRecord::kOpenQuote && record.size() < (1u << 20) && std::getline(in, more)) {
    ++line;
    record += '\n';
    record += more;
    // Only a quote can close the field: split again only then (linear in a long field).
    if (more.find('"') != std::string::npos) outcome = detail::split_csv(record, ',', cells, scratch);
  }
  return true;
}
}  // namespace

const std::string& LabelMap::apply(std::optional<std::string_view> code) const {
  if (!code || code->empty()) return otherwise;
  const auto it = labels.find(*code);
  return it == labels.end() ? otherwise : it->second;
}

DimensionTable DimensionTable::load(const std::filesystem::path& file, std::string_view key_column,
                                    const std::vector<std::string>& columns) {
  std::ifstream in(file);
  if (!in) throw core::Error(fmt::format("cannot read dimension table {}", file.string()));
  std::string header, header_scratch;
  if (!std::getline(in, header)) throw core::Error(fmt::format("{} is empty: expected a CSV header", file.string()));
  if (header.rfind("\xEF\xBB\xBF", 0) == 0) header.erase(0, 3);  // a UTF-8 byte-order mark (spreadsheet exports)
  std::vector<std::string_view> names;
  if (detail::split_csv(header, ',', names, header_scratch) != detail::CsvRecord::kOk)
    throw core::Error(fmt::format("{}:1: the header has a quote not closed, or text after a closing quote: {}", file.string(), header));
  auto index_of = [&](std::string_view name) -> std::size_t {
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end())
      throw core::Error(fmt::format("{}:1: the header has no column '{}' (it has: {})", file.string(), name, header));
    return static_cast<std::size_t>(it - names.begin());
  };
  const std::size_t key = index_of(key_column);
  std::vector<std::size_t> wanted;
  for (const auto& c : columns) wanted.push_back(index_of(c));

  DimensionTable t;
  t.columns_ = columns.size();
  t.dict_.resize(columns.size());
  std::vector<std::unordered_map<std::string, std::uint32_t>> intern(columns.size());
  std::string record, scratch;
  std::vector<std::string_view> cells;
  std::size_t line = 1;
  detail::CsvRecord outcome{};
  // The first rejected row, for the log: rejects are counted, never silent.
  auto reject = [&](std::size_t at, const std::string& why) {
    if (t.rejected_++ == 0) t.first_rejected_ = fmt::format("{}:{}: {}", file.string(), at, why);
  };
  for (std::size_t first = line + 1; next_record(in, record, line, cells, scratch, outcome); first = line + 1) {
    if (record.empty() || record == "\r") continue;
    if (outcome != detail::CsvRecord::kOk) {
      reject(first, outcome == detail::CsvRecord::kOpenQuote
                        ? fmt::format("a quoted field is never closed (lines {} to {} skipped)", first, line)
                        : std::string("text after a closing quote"));
      continue;
    }
    if (cells.size() != names.size()) {
      reject(first, fmt::format("{} fields, the header has {}", cells.size(), names.size()));
      continue;
    }
    if (t.rows_ >= kNoRow)
      throw core::Error(fmt::format("{}: more than {} rows; a dimension table holds fewer", file.string(), kNoRow - 1));
    const auto row = static_cast<std::uint32_t>(t.rows_);
    const auto k = cells[key];
    bool fresh = true;
    if (auto n = as_uint(k)) {
      fresh = t.row_of(k) == kNoRow;
      if (fresh) t.index_int(*n, row);
    } else {
      fresh = t.str_keys_.emplace(std::string(k), row).second;
    }
    if (!fresh) {  // a repeated key: the first row wins, the repeat is counted
      reject(first, fmt::format("key {:?} again (the first row with it is kept)", k.substr(0, 200)));
      continue;
    }
    for (std::size_t c = 0; c < wanted.size(); ++c) {
      const std::string v(cells[wanted[c]]);
      auto [it, added] = intern[c].emplace(v, static_cast<std::uint32_t>(t.dict_[c].size()));
      if (added) t.dict_[c].push_back(v);
      t.cells_.push_back(it->second);
    }
    ++t.rows_;
  }
  return t;
}

namespace {
std::size_t slot_of(std::uint64_t key, int shift) {
  return shift >= 64 ? 0 : static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ull) >> shift);  // Fibonacci hashing
}
}  // namespace

void DimensionTable::index_int(std::uint64_t key, std::uint32_t row) {
  if (2 * (int_count_ + 1) > int_rows_.size()) {  // grow to keep the table at most half full
    std::vector<std::uint64_t> keys = std::move(int_keys_);
    std::vector<std::uint32_t> rows = std::move(int_rows_);
    const std::size_t size = std::max<std::size_t>(64, rows.size() * 2);
    int_keys_.assign(size, 0);
    int_rows_.assign(size, kNoRow);
    int_shift_ = 64 - std::countr_zero(size);
    int_count_ = 0;
    for (std::size_t i = 0; i < rows.size(); ++i)
      if (rows[i] != kNoRow) index_int(keys[i], rows[i]);
  }
  const std::size_t mask = int_rows_.size() - 1;
  std::size_t i = slot_of(key, int_shift_);
  while (int_rows_[i] != kNoRow) i = (i + 1) & mask;
  int_keys_[i] = key;
  int_rows_[i] = row;
  ++int_count_;
}

std::uint32_t DimensionTable::row_of(std::string_view key) const {
  if (auto n = as_uint(key)) {
    if (int_rows_.empty()) return kNoRow;
    const std::size_t mask = int_rows_.size() - 1;
    for (std::size_t i = slot_of(*n, int_shift_);; i = (i + 1) & mask) {
      if (int_rows_[i] == kNoRow) return kNoRow;
      if (int_keys_[i] == *n) return int_rows_[i];
    }
  }
  const auto it = str_keys_.find(std::string(key));
  return it == str_keys_.end() ? kNoRow : it->second;
}

std::optional<std::string_view> DimensionTable::get(std::string_view key, std::size_t column) const {
  const std::uint32_t r = row_of(key);
  if (r == kNoRow) return std::nullopt;
  return cell(r, column);
}

}  // namespace tributary::analytics
