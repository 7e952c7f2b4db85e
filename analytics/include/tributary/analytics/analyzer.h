// The analyzer's engine, independent of where events come from (a channel or Kafka):
//
//   identity -> ledger (each event counted once) -> fields (JSON/CSV) -> integer checks
//            -> filter -> join (dimension table, labels) -> group-by running totals
//
// Every event that is not a duplicate is either counted, filtered out (valid but not wanted,
// e.g. a click when counting orders) or rejected with a reason and kept as a sample: nothing
// disappears silently. The whole state (ledger, totals, counters, the caller's input position)
// serializes into one checkpoint, so a restart resumes exactly.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tributary/analytics/dimension.h"
#include "tributary/analytics/extract.h"
#include "tributary/analytics/ledger.h"

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
  const DimensionTable* table = nullptr;
  std::size_t join_field = 0;  // event field holding the table key
  struct Grouping {
    std::string name;
    std::vector<KeyPart> key;
  };
  std::vector<Grouping> groupings;
  std::size_t max_samples = 10;  // rejected events kept per reason, for the report
};

enum class Outcome : std::uint8_t { kCounted, kFiltered, kDuplicate, kRejected };

struct AnalyzerStats {
  std::uint64_t counted = 0, filtered = 0, duplicates = 0, rejected = 0;
  std::map<std::string, std::uint64_t> rejected_by_reason;
  std::map<std::string, std::vector<std::string>> samples;  // reason -> first raw events
};

class Analyzer {
 public:
  Analyzer(AnalyzerSpec spec, FieldExtractor extractor);

  Outcome process(core::EventId id, std::string_view payload);

  // Running totals of grouping `g`: key parts joined with '\x1f' -> count.
  [[nodiscard]] const std::map<std::string, std::uint64_t>& totals(std::size_t g) const { return totals_.at(g); }
  [[nodiscard]] const AnalyzerStats& stats() const noexcept { return stats_; }
  [[nodiscard]] const Ledger& ledger() const noexcept { return ledger_; }

  // State + `position` (the caller's input offsets) for a checkpoint; restore returns position.
  [[nodiscard]] std::string serialize(std::string_view position) const;
  std::string restore(std::string_view state);

 private:
  Outcome reject(std::string_view reason, std::string_view payload);
  AnalyzerSpec spec_;
  FieldExtractor extractor_;
  Ledger ledger_;
  std::vector<std::map<std::string, std::uint64_t>> totals_;
  AnalyzerStats stats_;
  std::vector<std::string_view> fields_;
  std::string key_;
};

}  // namespace tributary::analytics
