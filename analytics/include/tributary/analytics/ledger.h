// The exactly-once ledger: per source, the set of event sequences already counted, kept as
// ranges (one range per source in the normal case). An event whose identity is inside a range
// is a duplicate (a re-send after a crash or a timed-out delivery) and is not counted again;
// a hole below the high-water mark (events re-sent after later ones arrived) is filled when
// they come, never dropped. The ranges are also the audit: what was counted, what is missing
// (gaps), how many copies were dropped. Identical content with different identities is two
// events: the ledger only looks at identity.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tributary/core/channel.h"

namespace tributary::analytics {

class Ledger {
 public:
  Ledger() = default;
  // A copy starts without the cache of the last source (it points into the original's map);
  // a move keeps it (the map's nodes move with it).
  Ledger(const Ledger& o) : sources_(o.sources_), duplicates_(o.duplicates_) {}
  Ledger& operator=(const Ledger& o) {
    if (this != &o) {
      sources_ = o.sources_;
      duplicates_ = o.duplicates_;
      last_ = nullptr;
    }
    return *this;
  }
  Ledger(Ledger&& o) noexcept
      : sources_(std::move(o.sources_)), duplicates_(o.duplicates_), last_(std::exchange(o.last_, nullptr)),
        last_id_(o.last_id_) {}
  Ledger& operator=(Ledger&& o) noexcept {
    sources_ = std::move(o.sources_);
    duplicates_ = o.duplicates_;
    last_ = std::exchange(o.last_, nullptr);  // the moved-from ledger must not write into ours
    last_id_ = o.last_id_;
    return *this;
  }
  ~Ledger() = default;

  // True if `id` is new (count it); false if it was counted before.
  [[nodiscard]] bool mark(core::EventId id);

  struct SourceAudit {
    std::uint64_t source_id = 0;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // [first, last] counted
    std::uint64_t counted = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t gaps = 0;  // sequences missing between 0 and the highest counted
  };
  [[nodiscard]] std::vector<SourceAudit> audit() const;
  [[nodiscard]] std::uint64_t duplicates() const noexcept { return duplicates_; }
  [[nodiscard]] std::size_t sources() const noexcept { return sources_.size(); }

  // Compact text form for checkpoints: one line per source, "source dups first-last,first-last".
  [[nodiscard]] std::string serialize() const;
  // Throws core::Error naming the line that does not parse.
  static Ledger parse(std::string_view text);

 private:
  struct Source {
    std::map<std::uint64_t, std::uint64_t> ranges;  // first -> one past last
    std::uint64_t duplicates = 0;
  };
  std::unordered_map<std::uint64_t, Source> sources_;
  std::uint64_t duplicates_ = 0;
  Source* last_ = nullptr;  // the entry of source last_id_, the last one marked
  std::uint64_t last_id_ = 0;
};

}  // namespace tributary::analytics
