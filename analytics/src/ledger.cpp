// Ledger: interval sets per source with an O(1) path for the in-order case.
#include "tributary/analytics/ledger.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <fmt/format.h>

#include "tributary/core/error.h"

namespace tributary::analytics {

bool Ledger::mark(core::EventId id, std::int64_t at_ms) {
  // Events come in runs of one source: the last source's entry is kept (unordered_map
  // references stay valid when it grows).
  if (last_ == nullptr || last_id_ != id.source_id) {
    last_ = &sources_[id.source_id];
    last_id_ = id.source_id;
  }
  Source& s = *last_;
  // The source's activity is stamped with the ledger's clock, not the event's own time: a
  // source whose backlog arrives late (an agent that was offline) is active while it is read.
  if (at_ms > clock_.now_ms) {
    // One record moves the clock by an hour at most (a replay's outlier, where the wall clock is
    // far ahead of the data), and never past an hour beyond the wall clock (a skewed host).
    if (clock_.now_ms != 0) at_ms = std::min(at_ms, clock_.now_ms + kClockAheadMs);
    if (at_ms > clock_.ceiling_ms) {  // past the bound last computed: read the wall clock again
      clock_.ceiling_ms = clock_.wall() + kClockAheadMs;
      at_ms = std::min(at_ms, clock_.ceiling_ms);
    }
    clock_.now_ms = std::max(clock_.now_ms, at_ms);
  }
  s.last_ms = clock_.now_ms;
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

std::int64_t Ledger::system_wall_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::size_t Ledger::retire_idle(std::int64_t idle_ms, std::int64_t every_ms) {
  if (idle_ms <= 0 || !sweep_due(every_ms)) return 0;
  clock_.swept_ms = clock_.now_ms;
  std::size_t n = 0;
  for (auto it = sources_.begin(); it != sources_.end();) {
    Source& s = it->second;
    if (s.last_ms == 0) {  // not known (a checkpoint from before the clock, or no time yet): from now
      s.last_ms = clock_.now_ms;
      ++it;
      continue;
    }
    const bool whole = s.ranges.size() == 1 && s.ranges.begin()->first == 0;  // no hole to fill
    if (!whole || clock_.now_ms - s.last_ms < idle_ms) {
      ++it;
      continue;
    }
    ++clock_.retired.sources;
    clock_.retired.events += s.ranges.begin()->second;
    clock_.retired.duplicates += s.duplicates;
    it = sources_.erase(it);
    ++n;
  }
  if (n != 0) last_ = nullptr;  // it may have been one of them
  return n;
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
  if (clock_.now_ms != 0 || clock_.retired.sources != 0)
    out += fmt::format("clock {} {} {} {} {}\n", clock_.now_ms, clock_.swept_ms, clock_.retired.sources,
                       clock_.retired.events, clock_.retired.duplicates);
  for (const auto& [id, s] : sources_) {
    out += fmt::format("{} {}", id, s.duplicates);
    if (s.last_ms != 0) out += fmt::format(" @{}", s.last_ms);
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
    auto number = [&]<typename T = std::uint64_t>(std::string_view& s, char stop) {
      T v = 0;
      const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc{}) throw bad();
      s.remove_prefix(static_cast<std::size_t>(p - s.data()));
      if (!s.empty() && s.front() == stop) s.remove_prefix(1);
      return v;
    };
    if (line.rfind("clock ", 0) == 0) {
      line.remove_prefix(6);
      l.clock_.now_ms = number.operator()<std::int64_t>(line, ' ');
      l.clock_.swept_ms = number.operator()<std::int64_t>(line, ' ');
      l.clock_.retired.sources = number(line, ' ');
      l.clock_.retired.events = number(line, ' ');
      l.clock_.retired.duplicates = number(line, ' ');
      if (!line.empty()) throw bad();
      continue;
    }
    const std::uint64_t id = number(line, ' ');
    Source& s = l.sources_[id];
    s.duplicates = number(line, ' ');
    l.duplicates_ += s.duplicates;
    if (!line.empty() && line.front() == '@') {
      line.remove_prefix(1);
      s.last_ms = number.operator()<std::int64_t>(line, ' ');
    }
    while (!line.empty()) {
      const std::uint64_t first = number(line, '-');
      const std::uint64_t last = number(line, ' ');
      if (last < first) throw bad();
      s.ranges.emplace(first, last + 1);
    }
  }
  l.duplicates_ += l.clock_.retired.duplicates;
  // The restored clock is kept even where it is ahead of the wall clock now. The wall clock may
  // be the one that is wrong (a node booted without its time, before NTP): a clock pulled back
  // to it would stamp the sources marked meanwhile days in the past, and once the wall clock
  // was right again and the clock climbed back (an hour per record) they would look idle and be
  // retired early, and a re-sent copy of their events counted twice. Kept, a clock that was
  // ahead (saved on a host whose clock ran ahead) only delays retirement until time passes it.
  return l;
}

}  // namespace tributary::analytics
