// Ledger: interval sets per source with an O(1) path for the in-order case.
#include "tributary/analytics/ledger.h"

#include <algorithm>
#include <charconv>
#include <fmt/format.h>

#include "tributary/core/error.h"

namespace tributary::analytics {

bool Ledger::mark(core::EventId id) {
  // Events come in runs of one source: the last source's entry is kept (unordered_map
  // references stay valid when it grows).
  if (last_ == nullptr || last_id_ != id.source_id) {
    last_ = &sources_[id.source_id];
    last_id_ = id.source_id;
  }
  Source& s = *last_;
  auto& r = s.ranges;
  const std::uint64_t seq = id.sequence;
  // In order: extends the highest range.
  if (!r.empty()) {
    auto last = std::prev(r.end());
    if (seq == last->second) {
      ++last->second;
      return true;
    }
    if (seq >= last->first && seq < last->second) {
      ++s.duplicates;
      ++duplicates_;
      return false;
    }
  }
  auto next = r.upper_bound(seq);  // first range starting after seq
  if (next != r.begin()) {
    auto prev = std::prev(next);
    if (seq < prev->second) {
      ++s.duplicates;
      ++duplicates_;
      return false;
    }
    if (seq == prev->second) {  // extends prev, maybe joins next
      ++prev->second;
      if (next != r.end() && next->first == prev->second) {
        prev->second = next->second;
        r.erase(next);
      }
      return true;
    }
  }
  if (next != r.end() && next->first == seq + 1) {  // extends next downwards
    const std::uint64_t end = next->second;
    r.erase(next);
    r.emplace(seq, end);
    return true;
  }
  r.emplace(seq, seq + 1);
  return true;
}

std::vector<Ledger::SourceAudit> Ledger::audit() const {
  std::vector<SourceAudit> out;
  for (const auto& [id, s] : sources_) {
    SourceAudit a;
    a.source_id = id;
    a.duplicates = s.duplicates;
    std::uint64_t expect = 0;
    for (const auto& [first, end] : s.ranges) {
      a.ranges.emplace_back(first, end - 1);
      a.counted += end - first;
      a.gaps += first - expect;
      expect = end;
    }
    out.push_back(std::move(a));
  }
  std::sort(out.begin(), out.end(), [](const SourceAudit& x, const SourceAudit& y) { return x.source_id < y.source_id; });
  return out;
}

std::string Ledger::serialize() const {
  std::string out;
  for (const auto& [id, s] : sources_) {
    out += fmt::format("{} {}", id, s.duplicates);
    for (const auto& [first, end] : s.ranges) out += fmt::format(" {}-{}", first, end - 1);
    out += '\n';
  }
  return out;
}

Ledger Ledger::parse(std::string_view text) {
  Ledger l;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty()) continue;
    auto bad = [&] { return core::Error(fmt::format("ledger line {} does not parse: '{}'", line_no, line)); };
    auto number = [&](std::string_view& s, char stop) {
      std::uint64_t v = 0;
      const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc{}) throw bad();
      s.remove_prefix(static_cast<std::size_t>(p - s.data()));
      if (!s.empty() && s.front() == stop) s.remove_prefix(1);
      return v;
    };
    const std::uint64_t id = number(line, ' ');
    Source& s = l.sources_[id];
    s.duplicates = number(line, ' ');
    l.duplicates_ += s.duplicates;
    while (!line.empty()) {
      const std::uint64_t first = number(line, '-');
      const std::uint64_t last = number(line, ' ');
      if (last < first) throw bad();
      s.ranges.emplace(first, last + 1);
    }
  }
  return l;
}

}  // namespace tributary::analytics
