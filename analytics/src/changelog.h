// The changelog's record format, for the Kafka-transaction mode: a partition's state in chunks
// (records of one transaction), and putting it back together from a (possibly compacted) log.
//
//   value = "tributary-state ID I N\n" + bytes I of N of snapshot ID (a random 64-bit number)
//   key   = "pP/I" (compaction keeps the newest chunk I of partition P)
#pragma once

#include <algorithm>
#include <charconv>
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

}  // namespace tributary::analytics::detail
