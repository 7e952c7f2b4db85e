#include "tributary/analytics/window.h"

#include <algorithm>
#include <ctime>
#include <fmt/format.h>

#include "text.h"
#include "tributary/core/civil_time.h"

namespace tributary::analytics {

namespace {

bool digits(std::string_view s, std::size_t at, std::size_t n, int& out) {
  if (at + n > s.size()) return false;
  int v = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

using core::days_from_civil;

bool valid_date(int y, int mo, int d, int h, int mi, int s) {
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] || h > 23 || mi > 59 || s > 60) return false;
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return !(mo == 2 && d == 29 && !leap);
}

std::int64_t to_ms(int y, int mo, int d, int h, int mi, int s, int ms) {
  return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + s * 1000LL + ms;
}

std::optional<std::int64_t> parse_rfc3339(std::string_view v) {
  int y, mo, d, h, mi, s;
  if (v.size() < 20 || !digits(v, 0, 4, y) || v[4] != '-' || !digits(v, 5, 2, mo) || v[7] != '-' ||
      !digits(v, 8, 2, d) || (v[10] != 'T' && v[10] != 't' && v[10] != ' ') || !digits(v, 11, 2, h) ||
      v[13] != ':' || !digits(v, 14, 2, mi) || v[16] != ':' || !digits(v, 17, 2, s))
    return std::nullopt;
  if (!valid_date(y, mo, d, h, mi, s)) return std::nullopt;
  std::size_t i = 19;
  int ms = 0;
  if (v[i] == '.') {  // fraction: first three digits are ms, the rest ignored
    ++i;
    int scale = 100;
    const std::size_t f0 = i;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') {
      if (scale > 0) ms += (v[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
    if (i == f0) return std::nullopt;
  }
  std::int64_t offset_min = 0;
  if (i < v.size() && (v[i] == 'Z' || v[i] == 'z')) {
    ++i;
  } else if (i + 6 == v.size() && (v[i] == '+' || v[i] == '-') && v[i + 3] == ':') {
    int oh, om;
    if (!digits(v, i + 1, 2, oh) || !digits(v, i + 4, 2, om) || oh > 23 || om > 59) return std::nullopt;
    offset_min = (oh * 60 + om) * (v[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != v.size()) return std::nullopt;
  return to_ms(y, mo, d, h, mi, s, ms) - offset_min * 60000;
}

}  // namespace

std::optional<TimeFormat> TimeFormat::parse(std::string_view text, int year) {
  TimeFormat f;
  f.year = year;
  if (text == "epoch_s") f.kind = Kind::kEpochSeconds;
  else if (text == "epoch_ms") f.kind = Kind::kEpochMillis;
  else if (text == "rfc3339") f.kind = Kind::kRfc3339;
  else if (text.find('%') != std::string_view::npos) {
    f.kind = Kind::kPattern;
    f.pattern = std::string(text);
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] != '%') continue;
      if (i + 1 >= text.size() || std::string_view("YmdHMS%").find(text[i + 1]) == std::string_view::npos)
        return std::nullopt;
      ++i;
    }
  } else {
    return std::nullopt;
  }
  return f;
}

namespace {
std::optional<std::int64_t> in_range(std::optional<std::int64_t> t) {
  if (!t || *t < 0 || *t > kMaxMillis) return std::nullopt;
  return t;
}
}  // namespace

std::optional<std::int64_t> TimeFormat::to_millis(std::string_view v) const { return in_range(parse_millis(v)); }

std::optional<std::int64_t> TimeFormat::parse_millis(std::string_view v) const {
  switch (kind) {
    case Kind::kEpochSeconds:
    case Kind::kEpochMillis: {
      std::int64_t n = 0;
      if (!detail::parse_number(v, n)) {
        double d = 0;  // "1700000000.25"
        if (!detail::parse_number(v, d)) return std::nullopt;
        const double ms = kind == Kind::kEpochSeconds ? d * 1000 : d;
        if (!(ms >= 0 && ms <= static_cast<double>(kMaxMillis))) return std::nullopt;  // NaN too
        return static_cast<std::int64_t>(ms);
      }
      if (kind == Kind::kEpochSeconds && (n < 0 || n > kMaxMillis / 1000)) return std::nullopt;
      return kind == Kind::kEpochSeconds ? n * 1000 : n;
    }
    case Kind::kRfc3339: return parse_rfc3339(v);
    case Kind::kPattern: {
      // A pattern of digits only ("%m%d") read from an integer field: the field drops leading
      // zeros (the Tianchi log's time_stamp is 829 for 08-29), so a shorter all-digit value is
      // the number, padded back to the pattern's width.
      std::string padded;
      if (std::size_t width = 0; std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        bool digits_only = true;
        for (std::size_t i = 0; i < pattern.size(); ++i) {
          if (pattern[i] != '%' || i + 1 == pattern.size() || pattern[i + 1] == '%') {
            digits_only = false;
            break;
          }
          width += pattern[++i] == 'Y' ? 4 : 2;
        }
        if (digits_only && !v.empty() && v.size() < width) {
          padded.assign(width - v.size(), '0');
          padded += v;
          v = padded;
        }
      }
      int y = year, mo = 1, d = 1, h = 0, mi = 0, s = 0;
      std::size_t at = 0;
      for (std::size_t i = 0; i < pattern.size(); ++i) {
        if (pattern[i] != '%') {
          if (at >= v.size() || v[at] != pattern[i]) return std::nullopt;
          ++at;
          continue;
        }
        const char c = pattern[++i];
        if (c == '%') {
          if (at >= v.size() || v[at] != '%') return std::nullopt;
          ++at;
          continue;
        }
        const std::size_t n = c == 'Y' ? 4 : 2;
        int* target = c == 'Y' ? &y : c == 'm' ? &mo : c == 'd' ? &d : c == 'H' ? &h : c == 'M' ? &mi : &s;
        if (!digits(v, at, n, *target)) return std::nullopt;
        at += n;
      }
      if (at != v.size() || !valid_date(y, mo, d, h, mi, s)) return std::nullopt;
      return to_ms(y, mo, d, h, mi, s, 0);
    }
  }
  return std::nullopt;
}

std::optional<std::int64_t> parse_duration_ms(std::string_view text) {
  std::size_t i = 0;
  std::int64_t n = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (n > INT64_MAX / 10 - 10) return std::nullopt;
    n = n * 10 + (text[i++] - '0');
  }
  if (i == 0) return std::nullopt;
  const std::string_view unit = text.substr(i);
  std::int64_t mul = 0;
  if (unit.empty() || unit == "ms") mul = 1;
  else if (unit == "s") mul = 1000;
  else if (unit == "m") mul = 60000;
  else if (unit == "h") mul = 3600000;
  else if (unit == "d") mul = 86400000;
  else return std::nullopt;
  if (n > INT64_MAX / mul) return std::nullopt;
  return n * mul;
}

std::string format_millis(std::int64_t ms) {
  const std::int64_t days = core::floor_div(ms, 86400000);
  const std::int64_t rest = ms - days * 86400000;
  const auto [y, m, d] = core::civil_from_days(days);
  const auto h = rest / 3600000, mi = rest / 60000 % 60, s = rest / 1000 % 60, milli = rest % 1000;
  if (milli != 0) return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", y, m, d, h, mi, s, milli);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", y, m, d, h, mi, s);
}

void Aggregate::add(std::optional<double> v) {
  ++count;
  if (!v) return;
  sum += *v;
  if (valued == 0 || *v < min) min = *v;
  if (valued == 0 || *v > max) max = *v;
  ++valued;
}

void Aggregate::merge(const Aggregate& other) {
  if (other.valued > 0) {
    min = valued > 0 ? std::min(min, other.min) : other.min;
    max = valued > 0 ? std::max(max, other.max) : other.max;
  }
  count += other.count;
  valued += other.valued;
  sum += other.sum;
}

WindowSet::WindowSet(std::int64_t size_ms, std::int64_t slide_ms, std::int64_t lateness_ms, std::size_t max_keys,
                     std::int64_t late_retention_ms)
    : size_(size_ms), slide_(slide_ms), lateness_(lateness_ms), late_retention_(late_retention_ms), max_keys_(max_keys) {}

template <typename Rows>
typename Rows::mapped_type& WindowSet::row(Rows& rows, std::map<std::int64_t, std::size_t>& keys, std::int64_t start,
                                           std::string_view key, bool& over) {
  WindowKey k{start, std::string(key)};
  const auto it = rows.lower_bound(k);  // one walk of the tree, found or not
  if (it != rows.end() && it->first == k) return it->second;
  if (max_keys_ != 0) {
    std::size_t& n = keys[start];
    if (n >= max_keys_ && key != kOtherWindowKey) {
      over = true;
      return row(rows, keys, start, kOtherWindowKey, over);
    }
    ++n;
  }
  return rows.emplace_hint(it, std::move(k), typename Rows::mapped_type{})->second;
}

std::optional<std::int64_t> WindowSet::watermark() const noexcept {
  if (!max_time_) return std::nullopt;
  return *max_time_ - lateness_;
}

namespace {
std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
}  // namespace

std::size_t WindowSet::add(std::int64_t t, std::string_view key, std::optional<double> value) {
  std::size_t late = 0;
  bool over = false, expired = false;
  // Windows [s, s + size) with s = k * slide and s <= t < s + size: newest first.
  for (std::int64_t s = floor_div(t, slide_) * slide_; s > t - size_; s -= slide_) {
    if (s + size_ <= closed_until_) {
      ++late;
      if (s <= retired_through_) expired = true;  // its late row is final already (retire())
      else ++row(late_, late_keys_, s, key, over);
      continue;
    }
    row(open_, open_keys_, s, key, over).add(value);
  }
  if (late != 0) ++late_events_;
  if (expired) ++expired_events_;
  if (over) ++overflowed_events_;
  if (!max_time_ || t > *max_time_) {
    max_time_ = t;
    close_until(t - lateness_);
  }
  return late;
}

void WindowSet::close_until(std::int64_t watermark) {
  if (watermark <= closed_until_) return;
  closed_until_ = watermark;
  // open_ is ordered by start: windows ending by the watermark are a prefix.
  auto it = open_.begin();
  while (it != open_.end() && it->first.first + size_ <= watermark) {
    closed_.push_back({it->first.first, it->first.first + size_, it->first.second, it->second});
    ++closed_total_;
    it = open_.erase(it);
  }
  if (!open_keys_.empty()) open_keys_.erase(open_keys_.begin(), open_keys_.lower_bound(watermark - size_ + 1));
  retire();
}

void WindowSet::retire() {
  if (late_retention_ == 0 || closed_until_ == INT64_MIN) return;  // no retention, or nothing closed yet
  // Late rows of windows that ended late_retention or more before the watermark are final: a
  // prefix of late_ too. Once final, a window stays so (a larger retention after a restart
  // does not make a second row of it).
  const std::int64_t last_final = closed_until_ - size_ - late_retention_;  // the latest final start
  if (last_final <= retired_through_) return;
  retired_through_ = last_final;
  while (!late_.empty() && late_.begin()->first.first <= last_final) {
    auto node = late_.extract(late_.begin());
    retired_.emplace_back(std::move(node.key()), node.mapped());
  }
  late_keys_.erase(late_keys_.begin(), late_keys_.upper_bound(last_final));
}

void WindowSet::restored() { retire(); }

std::vector<WindowRow> WindowSet::take_closed() { return std::exchange(closed_, {}); }
std::vector<LateRow> WindowSet::take_retired() { return std::exchange(retired_, {}); }

namespace {
void agg_cols(std::string& out, const Aggregate& a) {
  out += fmt::format("\t{}\t{}\t{}\t{}\t{}", a.count, a.valued, a.sum, a.min, a.max);
}
bool parse_agg(const std::vector<std::string_view>& c, std::size_t at, Aggregate& a) {
  return c.size() == at + 5 && detail::parse_number(c[at], a.count) && detail::parse_number(c[at + 1], a.valued) &&
         detail::parse_number(c[at + 2], a.sum) && detail::parse_number(c[at + 3], a.min) &&
         detail::parse_number(c[at + 4], a.max);
}
}  // namespace

void WindowSet::serialize(std::string& out, std::string_view prefix) const {
  out += fmt::format("{}\tstate\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", prefix,
                     max_time_ ? fmt::format("{}", *max_time_) : "-", closed_until_, late_events_, closed_total_,
                     overflowed_events_, expired_events_, retired_through_, size_, slide_);
  for (const auto& [k, a] : open_) {
    out += fmt::format("{}\topen\t{}\t{}", prefix, k.first, detail::escape(k.second));
    agg_cols(out, a);
    out += '\n';
  }
  for (const auto& r : closed_) {
    out += fmt::format("{}\tclosed\t{}\t{}", prefix, r.start, detail::escape(r.key));
    agg_cols(out, r.agg);
    out += '\n';
  }
  for (const auto& [k, n] : late_) out += fmt::format("{}\tlate\t{}\t{}\t{}\n", prefix, k.first, detail::escape(k.second), n);
  for (const auto& [k, n] : retired_)
    out += fmt::format("{}\tretired\t{}\t{}\t{}\n", prefix, k.first, detail::escape(k.second), n);
}

bool WindowSet::parse_line(const std::vector<std::string_view>& c) {
  if (c.size() < 2) return false;
  // 6 columns: before overflowed_events, 7: before late_retention, 8: before retired_through,
  // 9: before the shape (size, slide).
  if (c[1] == "state" && c.size() >= 6 && c.size() <= 11 && c.size() != 10) {
    if (c.size() >= 7 && !detail::parse_number(c[6], overflowed_events_)) return false;
    if (c.size() >= 8 && !detail::parse_number(c[7], expired_events_)) return false;
    if (c.size() >= 9 && !detail::parse_number(c[8], retired_through_)) return false;
    if (c.size() == 11) {
      std::int64_t size = 0, slide = 0;
      if (!detail::parse_number(c[9], size) || !detail::parse_number(c[10], slide)) return false;
      restored_shape_.emplace(size, slide);
    }
    if (c[2] == "-") {
      max_time_.reset();
    } else {
      std::int64_t t = 0;
      if (!detail::parse_number(c[2], t)) return false;
      max_time_ = t;
    }
    return detail::parse_number(c[3], closed_until_) && detail::parse_number(c[4], late_events_) &&
           detail::parse_number(c[5], closed_total_);
  }
  std::int64_t start = 0;
  if (c.size() < 4 || !detail::parse_number(c[2], start)) return false;
  const std::string key = detail::unescape(c[3]);
  if (c[1] == "open") {
    if (!open_.contains({start, key})) ++open_keys_[start];
    return parse_agg(c, 4, open_[{start, key}]);
  }
  if (c[1] == "closed") {
    WindowRow r{start, start + size_, key, {}};
    if (!parse_agg(c, 4, r.agg)) return false;
    closed_.push_back(std::move(r));
    return true;
  }
  if (c[1] == "late" && c.size() == 5) {
    if (!late_.contains({start, key})) ++late_keys_[start];
    return detail::parse_number(c[4], late_[{start, key}]);
  }
  if (c[1] == "retired" && c.size() == 5) {
    std::uint64_t n = 0;
    if (!detail::parse_number(c[4], n)) return false;
    retired_.emplace_back(WindowKey{start, key}, n);
    return true;
  }
  return false;
}

}  // namespace tributary::analytics
