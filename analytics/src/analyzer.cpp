// Analyzer: the per-event pipeline and its checkpoint form.
#include "tributary/analytics/analyzer.h"

#include <algorithm>
#include <charconv>
#include <fmt/format.h>

#include "tributary/core/error.h"

namespace tributary::analytics {

namespace {
bool is_integer(std::string_view s) {
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc{} && p == s.data() + s.size() && !s.empty();
}

// Checkpoint text: sections of "key<TAB>count" lines, strings escaped so tabs/newlines in
// labels cannot break the framing.
std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\t') out += "\\t";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}
std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char n = s[++i];
      out += n == 't' ? '\t' : n == 'n' ? '\n' : n;
    } else {
      out += s[i];
    }
  }
  return out;
}
}  // namespace

Analyzer::Analyzer(AnalyzerSpec spec, FieldExtractor extractor)
    : spec_(std::move(spec)), extractor_(std::move(extractor)), totals_(spec_.groupings.size()) {}

Outcome Analyzer::reject(std::string_view reason, std::string_view payload) {
  ++stats_.rejected;
  ++stats_.rejected_by_reason[std::string(reason)];
  auto& s = stats_.samples[std::string(reason)];
  if (s.size() < spec_.max_samples) s.emplace_back(payload.substr(0, 500));
  return Outcome::kRejected;
}

Outcome Analyzer::process(core::EventId id, std::string_view payload) {
  if (!ledger_.mark(id)) {
    ++stats_.duplicates;
    return Outcome::kDuplicate;
  }
  std::size_t bad = 0;
  if (const Reject r = extractor_.extract(payload, fields_, &bad); r != Reject::kNone) return reject(to_string(r), payload);
  for (const std::size_t f : spec_.integer_fields)
    if (!is_integer(fields_[f])) return reject("field is not an integer", payload);
  for (const auto& flt : spec_.filters) {
    if (std::find(flt.any_of.begin(), flt.any_of.end(), fields_[flt.field]) == flt.any_of.end()) {
      ++stats_.filtered;
      return Outcome::kFiltered;
    }
  }
  for (std::size_t g = 0; g < spec_.groupings.size(); ++g) {
    key_.clear();
    bool first = true;
    for (const KeyPart& part : spec_.groupings[g].key) {
      if (!first) key_ += '\x1f';
      first = false;
      std::optional<std::string_view> raw;
      if (part.from == KeyPart::From::kEvent) {
        raw = fields_[part.index];
      } else if (spec_.table != nullptr) {
        raw = spec_.table->get(fields_[spec_.join_field], part.index);
      }
      if (part.labels != nullptr) {
        key_ += part.labels->apply(raw);
      } else if (raw) {
        if (raw->size() < part.pad) key_.append(part.pad - raw->size(), '0');
        key_ += *raw;
      }
    }
    ++totals_[g][key_];
  }
  ++stats_.counted;
  return Outcome::kCounted;
}

std::string Analyzer::serialize(std::string_view position) const {
  std::string out = fmt::format("tributary-analyzer 1\nposition\t{}\n", escape(position));
  out += fmt::format("stats\t{}\t{}\t{}\t{}\n", stats_.counted, stats_.filtered, stats_.duplicates, stats_.rejected);
  for (const auto& [reason, n] : stats_.rejected_by_reason) out += fmt::format("reject\t{}\t{}\n", escape(reason), n);
  for (const auto& [reason, v] : stats_.samples)
    for (const auto& s : v) out += fmt::format("sample\t{}\t{}\n", escape(reason), escape(s));
  for (std::size_t g = 0; g < totals_.size(); ++g)
    for (const auto& [key, n] : totals_[g]) out += fmt::format("total\t{}\t{}\t{}\n", g, escape(key), n);
  out += "ledger\n" + ledger_.serialize();
  return out;
}

std::string Analyzer::restore(std::string_view state) {
  std::string position;
  AnalyzerStats stats;
  std::vector<std::map<std::string, std::uint64_t>> totals(spec_.groupings.size());
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
  auto cols = [](std::string_view line) {
    std::vector<std::string_view> c;
    std::size_t s = 0;
    for (;;) {
      const auto t = line.find('\t', s);
      c.push_back(line.substr(s, t == std::string_view::npos ? std::string_view::npos : t - s));
      if (t == std::string_view::npos) return c;
      s = t + 1;
    }
  };
  auto num = [&](std::string_view s, std::string_view line) {
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{}) throw bad(line);
    return v;
  };
  std::string_view rest = state;
  if (next_line(rest) != "tributary-analyzer 1") throw core::Error("not an analyzer checkpoint (version line missing)");
  while (!rest.empty()) {
    const std::string_view line = next_line(rest);
    if (line == "ledger") {
      ledger_ = Ledger::parse(rest);
      break;
    }
    const auto c = cols(line);
    if (c[0] == "position" && c.size() == 2) {
      position = unescape(c[1]);
    } else if (c[0] == "stats" && c.size() == 5) {
      stats.counted = num(c[1], line);
      stats.filtered = num(c[2], line);
      stats.duplicates = num(c[3], line);
      stats.rejected = num(c[4], line);
    } else if (c[0] == "reject" && c.size() == 3) {
      stats.rejected_by_reason[unescape(c[1])] = num(c[2], line);
    } else if (c[0] == "sample" && c.size() == 3) {
      stats.samples[unescape(c[1])].push_back(unescape(c[2]));
    } else if (c[0] == "total" && c.size() == 4) {
      const std::uint64_t g = num(c[1], line);
      if (g >= totals.size()) throw bad(line);
      totals[g][unescape(c[2])] = num(c[3], line);
    } else {
      throw bad(line);
    }
  }
  stats_ = std::move(stats);
  totals_ = std::move(totals);
  return position;
}

}  // namespace tributary::analytics
