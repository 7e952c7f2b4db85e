#include "net/syslog.h"

#include <charconv>
#include <cstring>

#include "tributary/core/civil_time.h"
#include "tributary/core/json.h"

namespace tributary::ingest::syslog {
namespace {

bool digit(char c) { return c >= '0' && c <= '9'; }

// The token at `i` up to the next space (or the end); advances past it.
std::string_view token(std::string_view s, std::size_t& i) {
  const std::size_t start = i;
  while (i < s.size() && s[i] != ' ') ++i;
  return s.substr(start, i - start);
}

bool space(std::string_view s, std::size_t& i) {
  if (i >= s.size() || s[i] != ' ') return false;
  ++i;
  return true;
}

std::string_view nil_to_empty(std::string_view t) { return t == "-" ? std::string_view() : t; }

// "<PRI>": 1-3 digits, at most 191.
bool parse_pri(std::string_view s, std::size_t& i, Message& m) {
  if (s.empty() || s[0] != '<') return false;
  int pri = 0;
  std::size_t j = 1;
  while (j < s.size() && j <= 4 && digit(s[j])) pri = pri * 10 + (s[j++] - '0');
  if (j == 1 || j > 4 || j >= s.size() || s[j] != '>' || pri > 191) return false;
  if (j > 2 && s[1] == '0') return false;  // no leading zeros (RFC 5424 6.2.1)
  m.facility = pri / 8;
  m.severity = pri % 8;
  i = j + 1;
  return true;
}

// RFC 5424 STRUCTURED-DATA: "-" or one or more [ID PARAM="value" ...]; values unescape
// \" \\ \].
bool parse_sd(std::string_view s, std::size_t& i, std::vector<Element>& out) {
  if (i < s.size() && s[i] == '-') {
    ++i;
    return true;
  }
  if (i >= s.size() || s[i] != '[') return false;
  while (i < s.size() && s[i] == '[') {
    ++i;
    Element e;
    const std::size_t id_start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != ']' && s[i] != '=' && s[i] != '"') ++i;
    e.id = s.substr(id_start, i - id_start);
    if (e.id.empty()) return false;
    while (i < s.size() && s[i] == ' ') {
      ++i;
      const std::size_t name_start = i;
      while (i < s.size() && s[i] != '=' && s[i] != ' ' && s[i] != ']' && s[i] != '"') ++i;
      Param p;
      p.name = s.substr(name_start, i - name_start);
      if (p.name.empty() || i + 1 >= s.size() || s[i] != '=' || s[i + 1] != '"') return false;
      i += 2;
      for (;;) {
        if (i >= s.size()) return false;
        const char c = s[i];
        if (c == '"') {
          ++i;
          break;
        }
        if (c == '\\' && i + 1 < s.size() && (s[i + 1] == '"' || s[i + 1] == '\\' || s[i + 1] == ']')) {
          p.value += s[i + 1];
          i += 2;
          continue;
        }
        p.value += c;
        ++i;
      }
      e.params.push_back(std::move(p));
    }
    if (i >= s.size() || s[i] != ']') return false;
    ++i;
    out.push_back(std::move(e));
  }
  return true;
}

int two(std::string_view t, std::size_t at) { return (t[at] - '0') * 10 + (t[at + 1] - '0'); }

bool leap_year(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int year, int month) {  // month 1..12
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && leap_year(year) ? 29 : kDays[month - 1];
}

// "hh:mm:ss" with hh <= 23, mm <= 59, ss <= 60 (a leap second).
bool clock_time(std::string_view t) {
  for (std::size_t k : {0, 1, 3, 4, 6, 7})
    if (!digit(t[k])) return false;
  return t[2] == ':' && t[5] == ':' && two(t, 0) <= 23 && two(t, 3) <= 59 && two(t, 6) <= 60;
}

// RFC 5424 FULL-DATE "T" the time: a date that exists and a time of day that does. The fraction
// and offset after it are kept as sent.
bool rfc5424_time(std::string_view ts) {
  if (ts.size() < 19 || ts[4] != '-' || ts[7] != '-' || ts[10] != 'T') return false;
  for (std::size_t k : {0, 1, 2, 3, 5, 6, 8, 9})
    if (!digit(ts[k])) return false;
  const int year = (ts[0] - '0') * 1000 + (ts[1] - '0') * 100 + two(ts, 2);
  const int month = two(ts, 5), day = two(ts, 8);
  return month >= 1 && month <= 12 && day >= 1 && day <= days_in_month(year, month) && clock_time(ts.substr(11, 8));
}

bool parse_5424(std::string_view s, std::size_t i, Message& m) {
  // VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP STRUCTURED-DATA [SP MSG]
  int version = 0;
  const std::size_t v0 = i;
  while (i < s.size() && digit(s[i]) && i - v0 < 3) version = version * 10 + (s[i++] - '0');
  if (i == v0 || version == 0 || !space(s, i)) return false;
  m.version = version;
  const std::string_view ts = token(s, i);
  if (ts.empty() || (ts != "-" && !rfc5424_time(ts))) return false;
  if (ts != "-") m.timestamp = std::string(ts);
  std::string_view* fields[] = {&m.host, &m.app, &m.procid, &m.msgid};
  for (std::string_view* f : fields) {
    if (!space(s, i)) return false;
    const std::string_view t = token(s, i);
    if (t.empty()) return false;
    *f = nil_to_empty(t);
  }
  if (!space(s, i) || !parse_sd(s, i, m.sd)) return false;
  if (i < s.size()) {
    if (!space(s, i)) return false;
    std::string_view msg = s.substr(i);
    if (msg.substr(0, 3) == "\xEF\xBB\xBF") msg.remove_prefix(3);  // the BOM of an UTF-8 MSG
    m.message = msg;
  }
  return true;
}

constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// "Mmm dd hh:mm:ss" (day space-padded or not) at s[i]; on success fills the RFC 3339 form.
bool parse_bsd_time(std::string_view s, std::size_t& i, std::time_t now, std::string& out) {
  if (s.size() - i < 15) return false;
  int month = -1;
  for (int k = 0; k < 12; ++k)
    if (s.compare(i, 3, kMonths[k]) == 0) month = k;
  if (month < 0 || s[i + 3] != ' ') return false;
  std::size_t j = i + 4;
  if (s[j] == ' ') ++j;  // "Oct  1"
  int day = 0;
  const std::size_t d0 = j;
  while (j < s.size() && digit(s[j]) && j - d0 < 2) day = day * 10 + (s[j++] - '0');
  if (j == d0 || day < 1 || day > 31 || j + 9 > s.size() || s[j] != ' ') return false;
  ++j;
  const std::string_view t = s.substr(j, 8);
  if (!clock_time(t) || day > days_in_month(2000, month + 1)) return false;  // Feb 29 allowed; the year comes next
  j += 8;
  if (j < s.size() && s[j] != ' ') return false;
  // The year: this year's, unless that puts the message more than a day ahead of `now`
  // (December's lines read in January). Civil arithmetic, not timegm: no TZ state, no lock.
  std::int64_t year = core::civil_from_days(core::floor_div(now, 86400)).year;
  const std::int64_t secs = ((t[0] - '0') * 10 + (t[1] - '0')) * 3600 + ((t[3] - '0') * 10 + (t[4] - '0')) * 60 +
                            (t[6] - '0') * 10 + (t[7] - '0');
  if (core::days_from_civil(year, month + 1, day) * 86400 + secs > static_cast<std::int64_t>(now) + 86400) --year;
  if (year < 0 || year > 9999 || day > days_in_month(static_cast<int>(year), month + 1)) return false;
  out.resize(11);
  const auto put = [&out](std::size_t at, unsigned v, int width) {
    for (int k = width - 1; k >= 0; --k, v /= 10) out[at + static_cast<std::size_t>(k)] = static_cast<char>('0' + v % 10);
  };
  put(0, static_cast<unsigned>(year), 4);
  out[4] = '-';
  put(5, static_cast<unsigned>(month + 1), 2);
  out[7] = '-';
  put(8, static_cast<unsigned>(day), 2);
  out[10] = 'T';
  out.append(t);
  i = j;
  return true;
}

// After a BSD timestamp: HOSTNAME, a token followed by a space that is not itself a TAG
// ("su:" or "su[1]:"). Advances past it when there is one.
void bsd_host(std::string_view s, std::size_t& i, Message& m) {
  space(s, i);
  std::size_t j = i;
  const std::string_view host = token(s, j);
  if (!host.empty() && j < s.size() && host.back() != ':' && host.find('[') == std::string_view::npos) {
    m.host = host;
    i = j + 1;
  }
}

void parse_bsd(std::string_view s, std::size_t i, std::time_t now, Message& m) {
  if (parse_bsd_time(s, i, now, m.timestamp)) bsd_host(s, i, m);
  // TAG: up to 48 characters of [A-Za-z0-9_.-/] then "[PID]" and/or ':'.
  std::size_t j = i;
  while (j < s.size() && j - i < 48 && s[j] != ':' && s[j] != '[' && s[j] != ' ') ++j;
  if (j > i && j < s.size() && (s[j] == ':' || s[j] == '[')) {
    std::string_view app = s.substr(i, j - i);
    std::string_view pid;
    std::size_t k = j;
    bool ok = true;
    if (s[k] == '[') {
      const std::size_t close = s.find(']', k);
      ok = close != std::string_view::npos && close - k <= 129;
      if (ok) {
        pid = s.substr(k + 1, close - k - 1);
        k = close + 1;
      }
    }
    if (ok && k < s.size() && s[k] == ':') ++k;
    else if (ok && !(k < s.size() && s[k] == ' ')) ok = false;  // "app[1]x" is no tag
    if (ok) {
      m.app = app;
      m.procid = pid;
      if (k < s.size() && s[k] == ' ') ++k;
      i = k;
    }
  }
  m.message = s.substr(i);
}

void field(std::string& out, std::string_view name, std::string_view value) {
  if (value.empty()) return;
  out += ",\"";
  out += name;
  out += "\":";
  core::append_json_string(out, value);
}

void append_int(std::string& out, int v) {
  char buf[16];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

bool parse(std::string_view in, std::time_t now, Message& out) {
  out = Message{};
  std::size_t i = 0;
  if (!parse_pri(in, i, out)) return false;
  if (i < in.size() && digit(in[i]) && in[i] != '0') {
    // "<PRI>1 " is RFC 5424; BSD messages never have a digit right after the PRI, except
    // senders that write an RFC 3339 time there ("<13>2026-11-26T10:00:00Z host app: msg").
    std::size_t j = i;
    while (j < in.size() && digit(in[j])) ++j;
    if (j < in.size() && in[j] == ' ' && j - i <= 3) return parse_5424(in, i, out);
    std::size_t k = i;
    const std::string_view ts = token(in, k);
    if (ts.size() >= 19 && ts[4] == '-' && ts[10] == 'T') {
      out.timestamp = std::string(ts);
      bsd_host(in, k, out);
      parse_bsd(in, k, now, out);
      return true;
    }
  }
  parse_bsd(in, i, now, out);
  return true;
}

namespace {
// The SD-IDs and PARAM-NAMEs of `m`, each once (see append_json): an SD-ID's elements together,
// a repeated name's values as an array, in order.
void append_merged_sd(const Message& m, std::string& out) {
  std::vector<bool> element_done(m.sd.size(), false);
  for (std::size_t e = 0; e < m.sd.size(); ++e) {
    if (element_done[e]) continue;
    if (out.back() != '{') out += ',';
    core::append_json_string(out, m.sd[e].id);
    out += ":{";
    std::vector<const Param*> params;  // of every element with this id, in order
    for (std::size_t f = e; f < m.sd.size(); ++f)
      if (m.sd[f].id == m.sd[e].id) {
        element_done[f] = true;
        for (const Param& p : m.sd[f].params) params.push_back(&p);
      }
    std::vector<bool> param_done(params.size(), false);
    for (std::size_t p = 0; p < params.size(); ++p) {
      if (param_done[p]) continue;
      if (out.back() != '{') out += ',';
      core::append_json_string(out, params[p]->name);
      out += ':';
      std::size_t n = 0;
      for (std::size_t q = p; q < params.size(); ++q) n += params[q]->name == params[p]->name;
      if (n > 1) out += '[';
      for (std::size_t q = p, k = 0; q < params.size(); ++q) {
        if (params[q]->name != params[p]->name) continue;
        param_done[q] = true;
        if (k++ != 0) out += ',';
        core::append_json_string(out, params[q]->value);
      }
      if (n > 1) out += ']';
    }
    out += '}';
  }
}
}  // namespace

void append_json(const Message& m, std::string& out) {
  out += "{\"facility\":";
  append_int(out, m.facility);
  out += ",\"severity\":";
  append_int(out, m.severity);
  if (m.version != 0) {
    out += ",\"version\":";
    append_int(out, m.version);
  }
  field(out, "timestamp", m.timestamp);
  field(out, "host", m.host);
  field(out, "app", m.app);
  field(out, "procid", m.procid);
  field(out, "msgid", m.msgid);
  if (!m.sd.empty()) {
    // One key per SD-ID and per PARAM-NAME: a name given several times (RFC 5424 allows it, e.g.
    // several "ip" in "origin") has the array of its values, in order; an SD-ID given several
    // times (which the RFC forbids and senders do) has its elements' parameters together. JSON
    // objects with duplicate keys lose all but one value in most readers. Found by comparing
    // (a handful of each), written the plain way when nothing repeats: the usual message.
    bool repeats = false;
    for (std::size_t e = 0; e < m.sd.size() && !repeats; ++e) {
      for (std::size_t f = 0; f < e && !repeats; ++f) repeats = m.sd[f].id == m.sd[e].id;
      const auto& ps = m.sd[e].params;
      for (std::size_t p = 0; p < ps.size() && !repeats; ++p)
        for (std::size_t q = 0; q < p && !repeats; ++q) repeats = ps[q].name == ps[p].name;
    }
    out += ",\"sd\":{";
    if (!repeats) {
      for (std::size_t e = 0; e < m.sd.size(); ++e) {
        if (e != 0) out += ',';
        core::append_json_string(out, m.sd[e].id);
        out += ":{";
        for (std::size_t p = 0; p < m.sd[e].params.size(); ++p) {
          if (p != 0) out += ',';
          core::append_json_string(out, m.sd[e].params[p].name);
          out += ':';
          core::append_json_string(out, m.sd[e].params[p].value);
        }
        out += '}';
      }
    } else {
      append_merged_sd(m, out);
    }
    out += '}';
  }
  out += ",\"message\":";
  core::append_json_string(out, m.message);
  out += '}';
}

void append_raw_json(std::string_view in, std::string& out) {
  out += "{\"message\":";
  core::append_json_string(out, in);
  out += '}';
}

}  // namespace tributary::ingest::syslog
