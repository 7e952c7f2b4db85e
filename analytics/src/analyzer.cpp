// Analyzer: the per-event pipeline and its checkpoint form.
#include "tributary/analytics/analyzer.h"

#include <algorithm>
#include <cmath>
#include <charconv>
#include <fmt/format.h>

#include "text.h"
#include "tributary/core/error.h"

namespace tributary::analytics {

using detail::escape;
using detail::unescape;

namespace {
bool is_integer(std::string_view s) {
  // Up to 18 digits always fit in an int64: checked without parsing.
  const std::size_t sign = !s.empty() && s[0] == '-' ? 1 : 0;
  if (s.size() > sign && s.size() - sign <= 18) {
    for (std::size_t i = sign; i < s.size(); ++i)
      if (static_cast<unsigned char>(s[i] - '0') > 9) return false;
    return true;
  }
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && p == s.data() + s.size() && !s.empty();
}

}  // namespace

Analyzer::Analyzer(AnalyzerSpec spec, FieldExtractor extractor)
    : spec_(std::move(spec)), extractor_(std::move(extractor)), totals_(spec_.groupings.size()) {
  for (const auto& w : spec_.windows) windows_.emplace_back(w.size_ms, w.slide_ms, w.lateness_ms, w.max_keys, w.late_retention_ms);
  times_.resize(windows_.size());
  values_.resize(windows_.size());
  lookup_ = [this](const FieldRef& r) -> std::optional<std::string_view> {
    if (!r.joined) {
      const std::string_view v = fields_[r.index];
      if (v.data() == nullptr) return std::nullopt;
      return v;
    }
    return joined(r.index);
  };
  if (spec_.where) {  // fields tested with exists() may be absent
    std::vector<bool> optional;
    for (const FieldRef& f : spec_.where->exists_fields()) {
      if (f.joined) continue;
      if (optional.size() <= f.index) optional.resize(f.index + 1);
      optional[f.index] = true;
    }
    extractor_.set_optional(std::move(optional));
  }
  // Every part, a field that is twice in a key too: its bytes are there twice.
  const auto add_key_fields = [](const std::vector<KeyPart>& parts, std::vector<std::size_t>& to) {
    for (const KeyPart& p : parts)
      if (p.from == KeyPart::From::kEvent && p.labels == nullptr) to.push_back(p.index);
  };
  for (const auto& g : spec_.groupings) add_key_fields(g.key, key_fields_.emplace_back());
  for (const auto& w : spec_.windows) {
    add_key_fields(w.key, key_fields_.emplace_back());
    add_key_fields(w.key, window_fields_);
  }
  std::erase_if(key_fields_, [](const std::vector<std::size_t>& f) { return f.empty(); });
  index_totals();
}

void Analyzer::index_totals() {
  index_.assign(totals_.size(), {});
  for (std::size_t g = 0; g < totals_.size(); ++g)
    for (auto& [key, n] : totals_[g]) index_[g].emplace(key, &n);
}

std::optional<std::string_view> Analyzer::joined(std::size_t column) {
  if (spec_.table == nullptr || fields_[spec_.join_field].data() == nullptr) return std::nullopt;
  if (!row_known_) {  // one table lookup per event, however many joined columns it reads
    row_ = spec_.table->row_of(fields_[spec_.join_field]);
    row_known_ = true;
  }
  if (row_ == DimensionTable::kNoRow) return std::nullopt;
  return spec_.table->cell(row_, column);
}

void Analyzer::build_key(const std::vector<KeyPart>& parts) {
  key_.clear();
  bool first = true;
  for (const KeyPart& part : parts) {
    if (!first) key_ += kKeySeparator;
    first = false;
    std::optional<std::string_view> raw;
    if (part.from == KeyPart::From::kEvent) {
      raw = fields_[part.index];
    } else {
      raw = joined(part.index);
    }
    if (part.labels != nullptr) {
      key_ += part.labels->apply(raw);
    } else if (raw) {
      if (raw->size() < part.pad) key_.append(part.pad - raw->size(), '0');
      key_ += *raw;
    }
  }
}

Outcome Analyzer::reject(const Event& e, std::string_view reason) {
  ++stats_.rejected;
  ++stats_.rejected_by_reason[std::string(reason)];
  auto& s = stats_.samples[std::string(reason)];
  if (s.size() < spec_.max_samples) s.emplace_back(e.payload.substr(0, 500));
  if (reject_sink_) reject_sink_(e, reason);
  return Outcome::kRejected;
}

bool Analyzer::first_time(const Event& e) {
  const bool fresh = ledger_.mark(e.id, e.ingest_ms);
  if (spec_.retire_sources_after_ms > 0)  // a scan at most every 1/16 of the idle time
    (void)ledger_.retire_idle(spec_.retire_sources_after_ms,
                              std::max<std::int64_t>(spec_.retire_sources_after_ms / 16, 1000));
  if (fresh) return true;
  ++stats_.duplicates;
  return false;
}

Outcome Analyzer::process(const Event& e) {
  if (!first_time(e)) return Outcome::kDuplicate;
  return count(e, extractor_.extract(e.payload, fields_));
}

void Analyzer::process_batch(std::span<const Event> events) {
  payloads_.clear();
  for (const Event& e : events) payloads_.push_back(e.payload);
  // A copy is parsed with the batch but not counted: the ledger decides, in order, as process().
  extractor_.extract_batch(payloads_, fields_, [&](std::size_t i, Reject r, std::size_t) {
    if (first_time(events[i])) (void)count(events[i], r);
  });
}

Outcome Analyzer::count(const Event& e, Reject extracted) {
  row_known_ = false;
  if (extracted != Reject::kNone) return reject(e, to_string(extracted));
  for (const std::size_t f : spec_.integer_fields)
    if (!is_integer(fields_[f])) return reject(e, "field is not an integer");
  for (const auto& flt : spec_.filters) {
    const std::string_view v = fields_[flt.field];
    if (std::none_of(flt.any_of.begin(), flt.any_of.end(), [v](const std::string& a) { return detail::same_text(a, v); })) {
      ++stats_.filtered;
      return Outcome::kFiltered;
    }
  }
  if (spec_.where && !spec_.where->eval(lookup_)) {
    ++stats_.filtered;
    return Outcome::kFiltered;
  }
  // Everything that can reject the event is checked before anything counts it.
  for (const auto& key : key_fields_) {
    std::size_t bytes = 0;
    for (const std::size_t f : key) bytes += fields_[f].size();
    if (bytes > kMaxKeyValue) return reject(e, "group-by key too long");
  }
  for (const std::size_t f : window_fields_)
    if (fields_[f].find(kKeySeparator) != std::string_view::npos) return reject(e, "group-by value holds the key separator");
  for (std::size_t w = 0; w < spec_.windows.size(); ++w) {
    const auto& ws = spec_.windows[w];
    if (ws.time_field) {
      const auto t = ws.time_format.to_millis(fields_[*ws.time_field]);
      if (!t) return reject(e, "bad event time");
      if (ws.max_future_ms > 0 && e.ingest_ms > 0 && *t - e.ingest_ms > ws.max_future_ms)
        return reject(e, "event time in the future");
      times_[w] = *t;
    } else {
      times_[w] = e.ingest_ms;
    }
    values_[w].reset();
    if (ws.value_field) {
      double v = 0;
      // from_chars takes "nan" and "inf": one such value would poison the window's sum for good.
      if (!detail::parse_number(fields_[*ws.value_field], v) || !std::isfinite(v))
        return reject(e, "value is not a number");
      values_[w] = v;
    }
  }
  for (std::size_t g = 0; g < spec_.groupings.size(); ++g) {
    build_key(spec_.groupings[g].key);
    auto& totals = totals_[g];
    auto& index = index_[g];
    if (const auto it = index.find(key_); it != index.end()) {
      ++*it->second;
    } else if (totals.size() < spec_.groupings[g].max_groups) {
      const auto node = totals.emplace(key_, 1).first;
      index.emplace(node->first, &node->second);
    } else {
      const auto [node, added] = totals.try_emplace(std::string(kOtherKey), 0);
      if (added) index.emplace(node->first, &node->second);
      ++node->second;
      ++stats_.overflowed;
    }
  }
  for (std::size_t w = 0; w < spec_.windows.size(); ++w) {
    build_key(spec_.windows[w].key);
    const std::uint64_t overflowed = windows_[w].overflowed_events();
    if (windows_[w].add(times_[w], key_, values_[w]) != 0) ++stats_.late;
    if (windows_[w].overflowed_events() != overflowed) ++stats_.overflowed;
  }
  ++stats_.counted;
  return Outcome::kCounted;
}

std::string Analyzer::serialize(std::string_view position) const {
  // Version 2: the stats line has an `overflowed` column; version 3: totals and windows by name
  // (an output or window added, removed or moved in the config leaves the others' state where
  // it was; a removed one's is dropped), the windows' state lines have `expired` and `retired
  // through` columns, and final late rows not yet taken; version 4: the ledger's clock, its
  // retired sources and each source's last activity; version 5: each window's size and slide.
  // Versions 1 to 4 are read too.
  std::string out = fmt::format("tributary-analyzer 5\nposition\t{}\n", escape(position));
  out += fmt::format("stats\t{}\t{}\t{}\t{}\t{}\t{}\n", stats_.counted, stats_.filtered, stats_.duplicates,
                     stats_.rejected, stats_.late, stats_.overflowed);
  for (const auto& [reason, n] : stats_.rejected_by_reason) out += fmt::format("reject\t{}\t{}\n", escape(reason), n);
  for (const auto& [reason, v] : stats_.samples)
    for (const auto& s : v) out += fmt::format("sample\t{}\t{}\n", escape(reason), escape(s));
  for (std::size_t g = 0; g < totals_.size(); ++g)
    for (const auto& [key, n] : totals_[g])
      out += fmt::format("output\t{}\t{}\t{}\n", escape(spec_.groupings[g].name), escape(key), n);
  for (std::size_t w = 0; w < windows_.size(); ++w)
    windows_[w].serialize(out, "window:" + escape(spec_.windows[w].name));
  out += "ledger\n" + ledger_.serialize();
  return out;
}

std::string Analyzer::restore(std::string_view state) {
  std::string position;
  AnalyzerStats stats;
  std::vector<std::map<std::string, std::uint64_t>> totals(spec_.groupings.size());
  std::vector<WindowSet> windows;
  for (const auto& w : spec_.windows) windows.emplace_back(w.size_ms, w.slide_ms, w.lateness_ms, w.max_keys, w.late_retention_ms);
  std::vector<std::string> dropped;
  std::optional<Ledger> ledger;  // taken once everything restores
  std::size_t line_no = 0;
  auto bad = [&](std::string_view line) {
    return core::Error(fmt::format("analyzer checkpoint line {} does not parse: '{}'", line_no, line.substr(0, 80)));
  };
  auto next_line = [&](std::string_view& rest) {
    const auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    ++line_no;
    return line;
  };
  const auto cols = detail::columns;
  auto num = [&](std::string_view s, std::string_view line) {
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{}) throw bad(line);
    return v;
  };
  std::string_view rest = state;
  if (const std::string_view v = next_line(rest);
      v != "tributary-analyzer 1" && v != "tributary-analyzer 2" && v != "tributary-analyzer 3" &&
      v != "tributary-analyzer 4" && v != "tributary-analyzer 5")
    throw core::Error(v.rfind("tributary-analyzer ", 0) == 0
                          ? fmt::format("analyzer checkpoint of a newer format ({}); this build reads versions 1 to 5",
                                        v.substr(19))
                          : std::string("not an analyzer checkpoint (version line missing)"));
  while (!rest.empty()) {
    const std::string_view line = next_line(rest);
    if (line == "ledger") {
      ledger = Ledger::parse(rest);
      break;
    }
    const auto c = cols(line);
    if (c[0] == "position" && c.size() == 2) {
      position = unescape(c[1]);
    } else if (c[0] == "stats" && c.size() >= 5 && c.size() <= 7) {
      stats.counted = num(c[1], line);
      stats.filtered = num(c[2], line);
      stats.duplicates = num(c[3], line);
      stats.rejected = num(c[4], line);
      if (c.size() >= 6) stats.late = num(c[5], line);
      if (c.size() == 7) stats.overflowed = num(c[6], line);
    } else if (c[0] == "reject" && c.size() == 3) {
      stats.rejected_by_reason[unescape(c[1])] = num(c[2], line);
    } else if (c[0] == "sample" && c.size() == 3) {
      stats.samples[unescape(c[1])].push_back(unescape(c[2]));
    } else if (c[0].substr(0, 7) == "window:") {
      const std::string name = unescape(c[0].substr(7));
      const auto it = std::find_if(spec_.windows.begin(), spec_.windows.end(), [&](const auto& w) { return w.name == name; });
      if (it == spec_.windows.end()) {  // a window no longer configured
        if (std::find(dropped.begin(), dropped.end(), "window " + name) == dropped.end()) dropped.push_back("window " + name);
        continue;
      }
      if (!windows[static_cast<std::size_t>(it - spec_.windows.begin())].parse_line(c)) throw bad(line);
    } else if (c[0].substr(0, 6) == "window") {  // versions 1 and 2: by place
      std::size_t w = 0;
      if (!detail::parse_number(c[0].substr(6), w) || w >= windows.size() || !windows[w].parse_line(c)) throw bad(line);
    } else if (c[0] == "output" && c.size() == 4) {
      const std::string name = unescape(c[1]);
      const auto it =
          std::find_if(spec_.groupings.begin(), spec_.groupings.end(), [&](const auto& g) { return g.name == name; });
      if (it == spec_.groupings.end()) {  // an output no longer configured
        if (std::find(dropped.begin(), dropped.end(), "output " + name) == dropped.end()) dropped.push_back("output " + name);
        continue;
      }
      totals[static_cast<std::size_t>(it - spec_.groupings.begin())][unescape(c[2])] = num(c[3], line);
    } else if (c[0] == "total" && c.size() == 4) {  // versions 1 and 2: by place
      const std::uint64_t g = num(c[1], line);
      if (g >= totals.size()) throw bad(line);
      totals[g][unescape(c[2])] = num(c[3], line);
    } else {
      throw bad(line);
    }
  }
  for (std::size_t w = 0; w < windows.size(); ++w) {
    // Open and closed rows are keyed by their start and end where the state was kept: read with
    // another size or slide, they would be counts of other windows.
    const auto& want = spec_.windows[w];
    if (const auto shape = windows[w].restored_shape();
        shape && (shape->first != want.size_ms || shape->second != want.slide_ms))
      throw core::Error(fmt::format(
          "window '{}': the saved state is of windows of {} ms every {} ms, the config asks for {} ms every {} ms; "
          "its rows cannot be carried over: put the old size and slide back, or give the window another name "
          "(a new window; the old one's state is then dropped, with a warning)",
          want.name, shape->first, shape->second, want.size_ms, want.slide_ms));
    windows[w].restored();
  }
  if (ledger) ledger_ = std::move(*ledger);
  stats_ = std::move(stats);
  totals_ = std::move(totals);
  index_totals();
  windows_ = std::move(windows);
  dropped_ = std::move(dropped);
  return position;
}

}  // namespace tributary::analytics
