// The Kafka-transaction mode's topics as their readers see them.
//
// The changelog: a partition's state in chunks (records of one transaction), and putting it back
// together from a (possibly compacted) log.
//   value = "tributary-state ID I N\n" + bytes I of N of snapshot ID (a random 64-bit number)
//   key   = "pP/I" (compaction keeps the newest chunk I of partition P)
//
// The output topic (job.h): the latest value per key, an input partition's records taken only
// once its part of a transaction is read whole (OutputView).
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace tributary::analytics::detail {

// At most this many state bytes per record (the broker's default record limit is 1 MB).
inline constexpr std::size_t kChunkBytes = 512 * 1024;

// `s` cut at `sep` into at most `max_parts` parts (the last one keeps the rest).
inline std::vector<std::string_view> split(std::string_view s, char sep, std::size_t max_parts) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < max_parts) {
    const auto at = s.find(sep);
    if (at == std::string_view::npos) break;
    out.push_back(s.substr(0, at));
    s.remove_prefix(at + 1);
  }
  out.push_back(s);
  return out;
}

// A whole decimal number, nothing else.
template <class T>
bool number(std::string_view s, T& v) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && p == s.data() + s.size();
}

// The records of snapshot `id` of `state`.
inline std::vector<std::string> state_chunks(const std::string& state, std::uint64_t id,
                                             std::size_t chunk_bytes = kChunkBytes) {
  const std::size_t n = std::max<std::size_t>(1, (state.size() + chunk_bytes - 1) / chunk_bytes);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(fmt::format("tributary-state {} {} {}\n", id, i, n) +
                  (i * chunk_bytes < state.size() ? state.substr(i * chunk_bytes, chunk_bytes) : std::string()));
  return out;
}

// Puts a partition's chunked state back together from its changelog records, in log order:
// the newest snapshot whose chunks are all there wins.
class SnapshotAssembler {
 public:
  // False if the record is not a state chunk.
  bool feed(std::string_view value) {
    const auto nl = value.find('\n');
    if (nl == std::string_view::npos) return false;
    const auto h = split(value.substr(0, nl), ' ', 4);
    std::uint64_t id = 0;
    std::size_t i = 0, n = 0;
    if (h.size() != 4 || h[0] != "tributary-state" || !number(h[1], id) || !number(h[2], i) || !number(h[3], n) ||
        n == 0 || i >= n)
      return false;
    Pending& p = pending_[id];
    p.chunks.resize(n);
    if (!p.chunks[i]) ++p.have;
    p.chunks[i] = std::string(value.substr(nl + 1));
    if (p.have == n) {
      std::string whole;
      for (auto& c : p.chunks) whole += *c;
      latest_ = std::move(whole);
      pending_.clear();  // older and partial snapshots are superseded
    }
    return true;
  }
  [[nodiscard]] const std::optional<std::string>& latest() const noexcept { return latest_; }

 private:
  struct Pending {
    std::vector<std::optional<std::string>> chunks;
    std::size_t have = 0;
  };
  std::map<std::uint64_t, Pending> pending_;
  std::optional<std::string> latest_;
};

// The output topic's latest value per key, for its reader. In a transaction the analyzer writes
// each input partition's rows, then that partition's "s/P" record: a row read is held back until
// the "s/P" after it, so the view never shows part of an input partition's transaction (a
// fetch that stops in the middle, another member's transaction interleaved in the same output
// partition), only whole ones. Rows with no "s/P" after them for longer than any transaction
// can stay open were written outside the analyzer's transactions (by hand, say): release()
// shows them as they are.
class OutputView {
 public:
  using Clock = std::chrono::steady_clock;

  // A record of output partition `out`, read at `now`; no value: a tombstone. True if the view
  // changed (an "s/P" record: P's rows held back, then itself).
  bool add(int out, std::string key, std::optional<std::string_view> value, Clock::time_point now) {
    const std::string_view k = key;
    const auto slash = k.find('/');
    if (slash == std::string_view::npos) return apply(std::move(key), value);  // not ours: as it is
    // The input partition: "s/P", or the second part of "X/NAME/P/...".
    const bool stats = k.substr(0, slash) == "s";
    const auto parts = split(k.substr(slash + 1), '/', 3);
    const std::string_view p = stats ? parts[0] : parts.size() >= 2 ? parts[1] : std::string_view();
    int in = 0;
    if (!number(p, in)) return apply(std::move(key), value);
    if (!stats) {
      pending_[{out, in}].push_back({now, std::move(key), value ? std::optional<std::string>(*value) : std::nullopt});
      return false;
    }
    if (const auto it = pending_.find({out, in}); it != pending_.end()) {
      for (Held& h : it->second) apply(std::move(h.key), h.value);
      pending_.erase(it);
    }
    return apply(std::move(key), value);
  }
  // Output partition `out` is read to its end: the rows it has held back since before
  // `held_before` are shown as they are (an open transaction ends, committed or aborted, within
  // its timeout: rows still waiting after it are not part of one). True if the view changed.
  bool release(int out, Clock::time_point held_before) {
    bool changed = false;
    for (auto it = pending_.lower_bound({out, INT32_MIN}); it != pending_.end() && it->first.first == out;) {
      auto& rows = it->second;  // in the order read: the ones held long enough are a prefix
      std::size_t n = 0;
      for (; n < rows.size() && rows[n].since < held_before; ++n) changed = apply(std::move(rows[n].key), rows[n].value);
      rows.erase(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(n));
      it = rows.empty() ? pending_.erase(it) : std::next(it);
    }
    return changed;
  }
  // Output partition `out` is read again from an earlier offset: the rows it held back come
  // again.
  void rewind(int out) {
    pending_.erase(pending_.lower_bound({out, INT32_MIN}), pending_.lower_bound({out + 1, INT32_MIN}));
  }
  [[nodiscard]] const std::map<std::string, std::string>& latest() const noexcept { return latest_; }
  // The reader wrote the row of `key` for good: it leaves the view (a later record of it is the
  // reader's to filter out).
  void forget(const std::string& key) { latest_.erase(key); }
  // Records held back, waiting for their "s/P".
  [[nodiscard]] std::size_t held_back() const noexcept {
    std::size_t n = 0;
    for (const auto& [at, held] : pending_) n += held.size();
    return n;
  }

 private:
  struct Held {
    Clock::time_point since;  // when it was read
    std::string key;
    std::optional<std::string> value;
  };
  template <class V>
  bool apply(std::string key, const V& value) {
    if (!value) latest_.erase(key);
    else latest_[std::move(key)].assign(value->data(), value->size());
    return true;
  }
  std::map<std::string, std::string> latest_;
  std::map<std::pair<int, int>, std::vector<Held>> pending_;  // (output partition, input partition) -> rows
};

}  // namespace tributary::analytics::detail
