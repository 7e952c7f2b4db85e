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
  // Throws core::Error naming the file for a missing file or a header without the columns;
  // data rows with the wrong field count are skipped and counted (rejected_rows()).
  static DimensionTable load(const std::filesystem::path& file, std::string_view key_column,
                             const std::vector<std::string>& columns);

  // Column `i` (in the order given to load) of the row with `key`; nullopt if no such row.
  [[nodiscard]] std::optional<std::string_view> get(std::string_view key, std::size_t column) const;
  [[nodiscard]] std::size_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::size_t rejected_rows() const noexcept { return rejected_; }

 private:
  [[nodiscard]] const std::uint32_t* row(std::string_view key) const;
  std::size_t columns_ = 0;
  std::unordered_map<std::uint64_t, std::uint32_t> int_keys_;  // numeric keys
  std::unordered_map<std::string, std::uint32_t> str_keys_;    // anything else
  std::vector<std::uint32_t> cells_;                           // row * columns_ + column -> value id
  std::vector<std::vector<std::string>> dict_;                 // per column: value id -> text
  std::size_t rows_ = 0;
  std::size_t rejected_ = 0;
};

}  // namespace tributary::analytics
