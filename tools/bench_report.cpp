// Benchmark reports: JSON in and out (simdjson DOM to read), the comparison, the chart.
#include "bench_report.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <fstream>

#include "tributary/core/error.h"
#include "tributary/core/json.h"

namespace tributary::tools::bench {

namespace {

std::string_view get_string(simdjson::dom::object o, std::string_view key, const std::string& where) {
  std::string_view v;
  if (o[key].get(v) != simdjson::SUCCESS) throw core::Error(fmt::format("{}: '{}' missing or not a string", where, key));
  return v;
}

double get_number(simdjson::dom::object o, std::string_view key, const std::string& where, bool required) {
  const auto e = o[key];
  if (e.error() == simdjson::NO_SUCH_FIELD && !required) return 0;
  double d = 0;
  if (e.get(d) == simdjson::SUCCESS) return d;
  std::int64_t i = 0;
  if (e.get(i) == simdjson::SUCCESS) return static_cast<double>(i);
  std::uint64_t u = 0;
  if (e.get(u) == simdjson::SUCCESS) return static_cast<double>(u);
  throw core::Error(fmt::format("{}: '{}' missing or not a number", where, key));
}

bool get_bool(simdjson::dom::object o, std::string_view key) {
  bool b = false;
  return o[key].get(b) == simdjson::SUCCESS && b;
}

std::string number(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e6) return fmt::format("{:.4g}M", v / 1e6);
  if (a >= 1e4) return fmt::format("{:.4g}k", v / 1e3);
  if (a >= 100) return fmt::format("{:.0f}", v);
  return fmt::format("{:.3g}", v);
}

}  // namespace

Report read_report(const std::filesystem::path& file) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const std::string where = file.string();
  if (const auto err = parser.load(file.string()).get(doc); err != simdjson::SUCCESS)
    throw core::Error(fmt::format("{}: {}", where, err == simdjson::IO_ERROR ? "cannot read the file" : simdjson::error_message(err)));
  simdjson::dom::object root;
  if (doc.get(root) != simdjson::SUCCESS) throw core::Error(fmt::format("{}: not a JSON object", where));
  Report r;
  simdjson::dom::object ctx;
  if (root["context"].get(ctx) == simdjson::SUCCESS) {
    for (auto [k, v] : ctx) {
      std::string_view s;
      r.context[std::string(k)] = v.get(s) == simdjson::SUCCESS ? std::string(s) : simdjson::minify(v);
    }
  }
  simdjson::dom::array metrics;
  if (root["metrics"].get(metrics) != simdjson::SUCCESS)
    throw core::Error(fmt::format("{}: no \"metrics\" array (is this a `tributary bench` report?)", where));
  std::size_t i = 0;
  for (auto m : metrics) {
    const std::string at = fmt::format("{}: metrics[{}]", where, i++);
    simdjson::dom::object o;
    if (m.get(o) != simdjson::SUCCESS) throw core::Error(fmt::format("{}: not an object", at));
    Metric x;
    x.name = get_string(o, "name", at);
    x.unit = get_string(o, "unit", at);
    x.value = get_number(o, "value", at, true);
    x.spread = get_number(o, "spread", at, false);
    const auto better = get_string(o, "better", at);
    if (better != "higher" && better != "lower")
      throw core::Error(fmt::format("{}: 'better' is '{}', expected \"higher\" or \"lower\"", at, better));
    x.higher_is_better = better == "higher";
    x.gate = get_bool(o, "gate");
    x.peer = get_bool(o, "peer");
    if (!std::isfinite(x.value) || !std::isfinite(x.spread) || x.spread < 0)
      throw core::Error(fmt::format("{} ({}): value or spread out of range", at, x.name));
    for (const auto& prev : r.metrics)
      if (prev.name == x.name) throw core::Error(fmt::format("{}: metric '{}' appears twice", at, x.name));
    r.metrics.push_back(std::move(x));
  }
  simdjson::dom::array raw;
  if (root["benchmarks"].get(raw) == simdjson::SUCCESS) r.benchmarks_json = simdjson::minify(raw);
  return r;
}

void write_report(const std::filesystem::path& file, const Report& r) {
  std::string j = "{\n  \"context\": {";
  bool first = true;
  for (const auto& [k, v] : r.context) {
    j += first ? "\n    " : ",\n    ";
    core::append_json_string(j, k);
    j += ": ";
    core::append_json_string(j, v);
    first = false;
  }
  j += "\n  },\n  \"metrics\": [";
  first = true;
  for (const auto& m : r.metrics) {
    j += first ? "\n    {\"name\": " : ",\n    {\"name\": ";
    core::append_json_string(j, m.name);
    j += ", \"unit\": ";
    core::append_json_string(j, m.unit);
    fmt::format_to(std::back_inserter(j), ", \"value\": {:.6g}, \"spread\": {:.4f}, \"better\": \"{}\", \"gate\": {}, \"peer\": {}}}",
                   m.value, m.spread, m.higher_is_better ? "higher" : "lower", m.gate, m.peer);
    first = false;
  }
  j += "\n  ]";
  if (!r.benchmarks_json.empty()) j += ",\n  \"benchmarks\": " + r.benchmarks_json;
  j += "\n}\n";
  const auto tmp = std::filesystem::path(file.string() + ".tmp");
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << j;
    if (!f.flush()) throw core::Error(fmt::format("cannot write {}", tmp.string()));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) throw core::Error(fmt::format("cannot write {}: {}", file.string(), ec.message()));
}

std::vector<Verdict> compare(const Report& base, const Report& now, const CompareOptions& o) {
  std::map<std::string_view, const Metric*> in_now;
  for (const auto& m : now.metrics) in_now[m.name] = &m;
  std::vector<Verdict> out;
  std::map<std::string_view, bool> seen;
  for (const auto& b : base.metrics) {
    seen[b.name] = true;
    Verdict v;
    v.name = b.name;
    v.unit = b.unit;
    v.base = b.value;
    v.gate = b.gate && (o.gate_ratios || !b.name.starts_with("ratio/"));
    const auto it = in_now.find(b.name);
    if (it == in_now.end()) {
      v.status = v.gate ? Status::kMissing : Status::kReported;
      v.now = std::nan("");
      out.push_back(std::move(v));
      continue;
    }
    const Metric& n = *it->second;
    v.now = n.value;
    // Worse by a factor (in log space, so that x2 slower and x2 faster are the same distance):
    // worse_by = factor - 1, negative when better.
    const bool comparable = b.unit == n.unit && b.higher_is_better == n.higher_is_better;
    const bool positive = b.value > 0 && n.value > 0 && std::isfinite(b.value) && std::isfinite(n.value);
    if (positive) {
      const double factor = b.higher_is_better ? b.value / n.value : n.value / b.value;
      v.worse_by = factor >= 1 ? factor - 1 : -(1 / factor - 1);
    }
    // The noise of this run counts at most twice the baseline's: a change that makes a loop
    // slower and noisier must not excuse itself.
    v.allowed = std::max(o.max_regression, o.noise_factor * (b.spread + std::min(n.spread, 2 * b.spread)));
    if (!v.gate)
      v.status = Status::kReported;
    else if (!comparable || !positive)
      v.status = Status::kInvalid;  // a unit or direction changed, or a count of 0: never a pass
    else if (v.worse_by > v.allowed)
      v.status = Status::kRegressed;
    else if (-v.worse_by > v.allowed)
      v.status = Status::kImproved;
    else
      v.status = Status::kOk;
    out.push_back(std::move(v));
  }
  for (const auto& n : now.metrics) {
    if (seen.count(n.name) != 0) continue;
    Verdict v;
    v.name = n.name;
    v.unit = n.unit;
    v.base = std::nan("");
    v.now = n.value;
    v.gate = n.gate;
    v.status = Status::kAdded;
    out.push_back(std::move(v));
  }
  return out;
}

bool failed(const std::vector<Verdict>& v) {
  return std::any_of(v.begin(), v.end(), [](const Verdict& x) {
    return x.status == Status::kRegressed || x.status == Status::kMissing || x.status == Status::kInvalid;
  });
}

std::string format_verdicts(const std::vector<Verdict>& v, const CompareOptions& o) {
  std::size_t w = 20;
  for (const auto& x : v) w = std::max(w, x.name.size());
  std::string t = fmt::format("{:<{}}  {:>10}  {:>10}  {:>8}  {:>7}  {}\n", "metric", w, "base", "new", "change", "margin", "verdict");
  for (const auto& x : v) {
    std::string verdict;
    switch (x.status) {
      case Status::kOk: verdict = "ok"; break;
      case Status::kRegressed: verdict = "REGRESSED"; break;
      case Status::kImproved: verdict = "improved (update the baseline?)"; break;
      case Status::kMissing: verdict = "MISSING from new"; break;
      case Status::kInvalid: verdict = "INVALID (zero, or unit/direction changed)"; break;
      case Status::kAdded: verdict = "new (not in base)"; break;
      case Status::kReported: verdict = "reported, not gated"; break;
    }
    const bool both = std::isfinite(x.base) && std::isfinite(x.now);
    fmt::format_to(std::back_inserter(t), "{:<{}}  {:>10}  {:>10}  {:>8}  {:>7}  {}\n", x.name, w,
                   std::isfinite(x.base) ? number(x.base) : "-", std::isfinite(x.now) ? number(x.now) : "-",
                   both && x.base != 0 ? fmt::format("{:+.1f}%", 100 * (x.now - x.base) / x.base) : "", x.gate && both ? fmt::format("{:.0f}%", 100 * x.allowed) : "",
                   verdict);
  }
  std::size_t regressions = 0;
  for (const auto& x : v) {
    if (x.status == Status::kRegressed) {
      ++regressions;
      fmt::format_to(std::back_inserter(t), "REGRESSION: {} ({}) is {:.1f}% worse: {} -> {} (allowed {:.0f}%{})\n", x.name,
                     x.unit, 100 * x.worse_by, number(x.base), number(x.now), 100 * x.allowed,
                     x.allowed > o.max_regression ? ", widened by the measured noise" : "");
    } else if (x.status == Status::kMissing) {
      ++regressions;
      fmt::format_to(std::back_inserter(t), "REGRESSION: gated metric {} is missing from the new report\n", x.name);
    } else if (x.status == Status::kInvalid) {
      ++regressions;
      fmt::format_to(std::back_inserter(t),
                     "REGRESSION: gated metric {} cannot be compared: {} -> {} (a value of 0 means nothing was "
                     "measured; a changed unit or direction needs a new baseline)\n",
                     x.name, number(x.base), number(x.now));
    }
  }
  const auto gated = static_cast<std::size_t>(std::count_if(v.begin(), v.end(), [](const Verdict& x) { return x.gate; }));
  fmt::format_to(std::back_inserter(t), "{} gated metric(s), {} regression(s) beyond max({:.0f}%, {:g} x spread)\n", gated,
                 regressions, 100 * o.max_regression, o.noise_factor);
  return t;
}

std::optional<double> parse_fraction(std::string_view text) {
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  bool percent = false;
  if (!text.empty() && text.back() == '%') {
    percent = true;
    text.remove_suffix(1);
    while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  }
  if (text.empty()) return std::nullopt;
  double v = 0;
  const std::string s(text);
  std::size_t used = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != s.size() || !std::isfinite(v)) return std::nullopt;
  if (percent) v /= 100;
  else if (v > 1) return std::nullopt;  // "10" is not 10%: a bare number is a fraction
  if (v < 0 || v > 10) return std::nullopt;
  return v;
}

std::string throughput_svg(const Report& r, const std::string& title) {
  struct Bar {
    std::string stage, label;
    double value;
    bool peer;
  };
  std::vector<Bar> bars;
  double lo = 1e300, hi = 0;
  for (const auto& m : r.metrics) {
    // A point per stage and peer; the scaling curves (dozens of points) are in the report only.
    if (m.unit != "events/s" || m.value <= 0 || m.name.rfind("scaling/", 0) == 0) continue;
    const auto slash = m.name.find('/');
    bars.push_back({m.name.substr(0, slash), slash == std::string::npos ? m.name : m.name.substr(slash + 1), m.value, m.peer});
    lo = std::min(lo, m.value);
    hi = std::max(hi, m.value);
  }
  std::stable_sort(bars.begin(), bars.end(), [](const Bar& a, const Bar& b) { return a.stage < b.stage; });
  const double l0 = std::floor(std::log10(bars.empty() ? 1 : lo)), l1 = std::ceil(std::log10(bars.empty() ? 10 : hi));
  const double span = std::max(1.0, l1 - l0);
  constexpr int kLabelW = 430, kBarW = 440, kRow = 18, kTop = 50;
  int rows = 0;
  std::string prev;
  for (const auto& b : bars) rows += (b.stage != prev ? 2 : 1), prev = b.stage;
  const int height = kTop + rows * kRow + 40;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">",
      kLabelW + kBarW + 40, height);
  std::string esc;
  auto xml = [&esc](std::string_view in) -> const std::string& {
    esc.clear();
    for (char c : in) {
      if (c == '<') esc += "&lt;";
      else if (c == '>') esc += "&gt;";
      else if (c == '&') esc += "&amp;";
      else if (c == '"') esc += "&quot;";
      else esc += c;
    }
    return esc;
  };
  s += xml(title);
  s += "</text>\n<text x=\"10\" y=\"36\" fill=\"#555\">events/s, log scale; Tributary in orange, peers and baselines in grey</text>\n";
  for (double e = l0; e <= l0 + span; e += 1) {
    const double x = kLabelW + (e - l0) / span * kBarW;
    fmt::format_to(std::back_inserter(s),
                   "<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0:.1f}\" y=\"{3}\" "
                   "text-anchor=\"middle\" fill=\"#555\">1e{4:.0f}</text>\n",
                   x, kTop - 5, height - 30, height - 15, e);
  }
  int y = kTop;
  prev.clear();
  for (const auto& b : bars) {
    if (b.stage != prev) {
      y += kRow;
      fmt::format_to(std::back_inserter(s), "<text x=\"10\" y=\"{}\" font-weight=\"bold\">{}</text>\n", y - 4, xml(b.stage));
      prev = b.stage;
    }
    const double w = std::max(1.0, (std::log10(b.value) - l0) / span * kBarW);
    fmt::format_to(std::back_inserter(s),
                   "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" "
                   "fill=\"{}\"/><text x=\"{:.1f}\" y=\"{}\" fill=\"#333\">{}</text>\n",
                   kLabelW - 6, y + kRow - 6, xml(b.label), kLabelW, y + 2, w, kRow - 4, b.peer ? "#9e9e9e" : "#f28e2b",
                   kLabelW + w + 4, y + kRow - 6, number(b.value));
    y += kRow;
  }
  s += "</svg>\n";
  return s;
}

std::filesystem::path pick_baseline(const std::filesystem::path& fallback, const std::filesystem::path& dir,
                                    const Report& now) {
  const auto cpu = [](const Report& r) {
    const auto it = r.context.find("cpu_model");
    return it == r.context.end() ? std::string() : it->second;
  };
  const std::string want = cpu(now);
  std::error_code ec;
  if (want.empty() || !std::filesystem::is_directory(dir, ec)) return fallback;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files)
    if (cpu(read_report(f)) == want) return f;
  return fallback;
}

}  // namespace tributary::tools::bench
