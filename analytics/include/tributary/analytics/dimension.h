// The table side of a stream–table join: a CSV file with a header (e.g. user_info: user_id ->
// age_range, gender), loaded once, with label mappings (code -> label, and one label for an
// empty code, an unknown code or a key not in the table). Lean by design: integer keys are
// stored as integers and each column's values are interned, so 500k users cost a few tens of MB.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tributary::analytics {

struct LabelMap {
  std::map<std::string, std::string, std::less<>> labels;  // code -> label
  std::string otherwise = "unknown";                       // empty, unlisted code, or missing key
  [[nodiscard]] const std::string& apply(std::optional<std::string_view> code) const;
};

class DimensionTable {
 public:
  // RFC 4180 CSV: a field may be quoted ("Beijing, China", "a ""b""", line breaks inside).
  // Throws core::Error naming the file for a missing file or a header without the columns;
  // rows with the wrong field count, broken quotes or a key seen before are skipped and
  // counted (rejected_rows(); first_rejected() says where and why).
  static DimensionTable load(const std::filesystem::path& file, std::string_view key_column,
                             const std::vector<std::string>& columns);

  // Column `i` (in the order given to load) of the row with `key`; nullopt if no such row.
  [[nodiscard]] std::optional<std::string_view> get(std::string_view key, std::size_t column) const;
  // The same in two steps, for a caller that reads several columns of one key.
  static constexpr std::uint32_t kNoRow = UINT32_MAX;
  [[nodiscard]] std::uint32_t row_of(std::string_view key) const;  // kNoRow if none
  [[nodiscard]] std::string_view cell(std::uint32_t row, std::size_t column) const {
    return dict_[column][cells_[std::size_t{row} * columns_ + column]];
  }
  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::size_t rejected_rows() const noexcept { return rejected_; }
  // "FILE:LINE: why" of the first rejected row; empty if none.
  [[nodiscard]] const std::string& first_rejected() const noexcept { return first_rejected_; }

 private:
  void index_int(std::uint64_t key, std::uint32_t row);
  std::size_t columns_ = 0;
  // Numeric keys: open addressing, linear probing, at most half full (one cache miss per
  // lookup in the common case, 12 bytes per slot).
  std::vector<std::uint64_t> int_keys_;
  std::vector<std::uint32_t> int_rows_;  // kNoRow: the slot is empty
  std::size_t int_count_ = 0;
  int int_shift_ = 64;
  std::unordered_map<std::string, std::uint32_t> str_keys_;    // anything else
  std::vector<std::uint32_t> cells_;                           // row * columns_ + column -> value id
  std::vector<std::vector<std::string>> dict_;                 // per column: value id -> text
  std::size_t rows_ = 0;
  std::size_t rejected_ = 0;
  std::string first_rejected_;
};

}  // namespace tributary::analytics
