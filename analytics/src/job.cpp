// AnalyzeJob: config, inputs (Kafka topic / channel), checkpoint loop, outputs.
#include "tributary/analytics/job.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fmt/format.h>
#include <ctime>
#include <functional>
#include <mutex>
#include <set>
#include <iomanip>
#include <sstream>
#include <thread>
#include <toml++/toml.h>

#include "channel_read_ahead.h"
#include "read_ahead.h"
#include "render.h"
#include "transactional.h"
#include "tributary/analytics/checkpoint.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"
#include "tributary/core/json.h"
#include "tributary/core/metrics.h"
#include "tributary/uplink/kafka.h"

namespace tributary::analytics {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// ------------------------------------------------------------------------------------------
// Configuration

AnalyzeConfigResult load_analyze_config(const fs::path& file) {
  AnalyzeConfigResult r;
  AnalyzeConfig& c = r.config;
  toml::table root;
  try {
    root = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    r.errors.push_back(fmt::format("{}:{}: {}", file.string(), e.source().begin.line, e.description()));
    return r;
  }
  auto err = [&](const toml::node* n, std::string_view key, const std::string& what) {
    r.errors.push_back(fmt::format("{}:{}: {}: {}", file.string(), n ? n->source().begin.line : 1, key, what));
  };
  auto str = [&](const toml::table& t, std::string_view section, std::string_view key, bool required,
                 std::string fallback = "") -> std::string {
    const toml::node* n = t.get(key);
    if (n == nullptr) {
      if (required) err(&t, fmt::format("{}.{}", section, key), "required key is missing");
      return fallback;
    }
    if (auto v = n->value<std::string>()) return *v;
    err(n, fmt::format("{}.{}", section, key), "must be a string");
    return fallback;
  };
  // A whole number in [lo, hi], or the fallback with an error naming the line (never silently
  // the default for a value of the wrong type, such as checkpoint_ms = "1s").
  auto integer = [&](const toml::node* n, const std::string& key, std::int64_t lo, std::int64_t hi,
                     std::int64_t fallback) -> std::int64_t {
    if (n == nullptr) return fallback;
    const auto v = n->value<std::int64_t>();
    if (!v || !n->is_integer() || *v < lo || *v > hi) {
      err(n, key, fmt::format("must be a whole number from {} to {}", lo, hi));
      return fallback;
    }
    return *v;
  };
  auto boolean = [&](const toml::node* n, const std::string& key, bool fallback) -> bool {
    if (n == nullptr) return fallback;
    if (const auto v = n->value<bool>(); v && n->is_boolean()) return *v;
    err(n, key, "must be true or false");
    return fallback;
  };
  auto list = [&](const toml::node* n, std::string_view key) {
    std::vector<std::string> out;
    if (n == nullptr) return out;
    if (const toml::array* a = n->as_array()) {
      for (const auto& e : *a) {
        if (auto v = e.value<std::string>()) out.push_back(*v); else err(&e, key, "every element must be a string");
      }
    } else if (auto v = n->value<std::string>()) {
      out.push_back(*v);
    } else {
      err(n, key, "must be a list of strings");
    }
    return out;
  };
  auto known = [&](const toml::table& t, std::string_view section, std::set<std::string_view> keys) {
    for (const auto& [k, n] : t)
      if (!keys.count(k.str())) err(&n, fmt::format("{}.{}", section, k.str()), "unknown key");
  };
  for (const auto& [k, n] : root) {
    static const std::set<std::string_view> sections = {"input",   "fields",  "checks", "filter", "join",  "labels",
                                                         "outputs", "windows", "state",  "where",  "transaction"};
    if (!sections.count(k.str())) err(&n, k.str(), "unknown section");
  }
  const toml::table* in = root["input"].as_table();
  if (in == nullptr) {
    r.errors.push_back(fmt::format("{}: [input] is required", file.string()));
    return r;
  }
  known(*in, "input", {"type", "bootstrap", "topic", "group", "path", "consumer", "format", "csv_header", "fetch_queue_mb"});
  c.fetch_queue_mb = static_cast<int>(integer(in->get("fetch_queue_mb"), "input.fetch_queue_mb", 1, 2047, c.fetch_queue_mb));
  c.input_type = str(*in, "input", "type", false, "kafka");
  if (c.input_type == "kafka") {
    c.bootstrap = str(*in, "input", "bootstrap", true);
    c.topic = str(*in, "input", "topic", true);
    c.group = str(*in, "input", "group", false, c.group);
  } else if (c.input_type == "channel") {
    c.channel = str(*in, "input", "path", true);
    c.consumer = str(*in, "input", "consumer", false, c.consumer);
  } else {
    err(in->get("type"), "input.type", "must be kafka or channel");
  }
  const std::string format = str(*in, "input", "format", false, "json");
  c.csv = format == "csv";
  if (format != "json" && format != "csv") err(in->get("format"), "input.format", "must be json or csv");
  c.csv_header = list(in->get("csv_header"), "input.csv_header");
  if (c.csv && c.csv_header.empty()) err(in, "input.csv_header", "required with format = \"csv\"");
  std::set<std::string> names;
  if (const toml::table* f = root["fields"].as_table()) {
    for (const auto& [k, n] : *f) {
      if (auto v = n.value<std::string>()) {
        c.fields.emplace_back(std::string(k.str()), *v);
        names.insert(std::string(k.str()));
      } else {
        err(&n, fmt::format("fields.{}", k.str()), "must be a string (a JSON pointer or a CSV column)");
      }
    }
  }
  if (c.fields.empty()) err(&root, "fields", "declare at least one field");
  auto field_known = [&](const toml::node* n, std::string_view key, const std::string& name) {
    if (!names.count(name)) err(n, key, fmt::format("no field named '{}' in [fields]", name));
  };
  if (const toml::table* ch = root["checks"].as_table()) {
    known(*ch, "checks", {"integers"});
    c.integers = list(ch->get("integers"), "checks.integers");
    for (const auto& i : c.integers) field_known(ch->get("integers"), "checks.integers", i);
  }
  if (const toml::table* fl = root["filter"].as_table()) {
    for (const auto& [k, n] : *fl) {
      field_known(&n, fmt::format("filter.{}", k.str()), std::string(k.str()));
      c.filters.emplace_back(std::string(k.str()), list(&n, fmt::format("filter.{}", k.str())));
    }
  }
  std::set<std::string> joined;
  if (const toml::table* j = root["join"].as_table()) {
    known(*j, "join", {"file", "key_column", "key_field", "columns"});
    c.join_file = str(*j, "join", "file", true);
    if (c.join_file.is_relative()) c.join_file = file.parent_path() / c.join_file;
    c.join_key_column = str(*j, "join", "key_column", true);
    c.join_key_field = str(*j, "join", "key_field", true);
    field_known(j->get("key_field"), "join.key_field", c.join_key_field);
    c.join_columns = list(j->get("columns"), "join.columns");
    joined.insert(c.join_columns.begin(), c.join_columns.end());
  }
  if (const toml::node* w = root.get("where")) {
    if (auto text = w->value<std::string>()) {
      c.where = *text;
      try {  // names checked here; the job parses it again with its field indices
        (void)FilterExpr::parse(c.where, [&](std::string_view name) -> std::optional<FieldRef> {
          if (names.count(std::string(name)) || joined.count(std::string(name))) return FieldRef{};
          return std::nullopt;
        });
      } catch (const core::Error& e) {
        err(w, "where", e.what());
      }
    } else {
      err(w, "where", "must be a string: where = 'action_type == 2 and exists(user_id)'");
    }
  }
  if (const toml::table* l = root["labels"].as_table()) {
    for (const auto& [k, n] : *l) {
      const std::string name(k.str());
      const std::string section = "labels." + name;
      const toml::table* t = n.as_table();
      if (t == nullptr) {
        err(&n, section, "must be a table");
        continue;
      }
      known(*t, section, {"map", "otherwise", "order"});
      LabelMap m;
      if (const toml::table* map = (*t)["map"].as_table()) {
        for (const auto& [code, label] : *map) {
          if (auto v = label.value<std::string>()) m.labels[std::string(code.str())] = *v;
          else err(&label, section + ".map", "labels are strings");
        }
      }
      m.otherwise = str(*t, section, "otherwise", false, "unknown");
      c.labels[name] = std::move(m);
      c.label_order[name] = list(t->get("order"), section + ".order");
    }
  }
  if (const toml::array* outs = root["outputs"].as_array()) {
    for (const auto& n : *outs) {
      const toml::table* t = n.as_table();
      if (t == nullptr) continue;
      known(*t, "outputs", {"name", "by", "file", "header", "pad", "share", "max_groups"});
      OutputSpec o;
      o.name = str(*t, "outputs", "name", true);
      o.by = str(*t, "outputs", "by", true);
      o.file = str(*t, "outputs", "file", false, o.name + ".csv");
      o.header = str(*t, "outputs", "header", false, o.by + ",count,share");
      o.pad = static_cast<std::size_t>(integer(t->get("pad"), "outputs.pad", 0, 64, 0));
      o.share = boolean(t->get("share"), "outputs.share", true);
      o.max_groups =
          static_cast<std::size_t>(integer(t->get("max_groups"), "outputs.max_groups", 1, INT64_MAX, 100'000));
      if (!names.count(o.by) && !joined.count(o.by))
        err(t->get("by"), "outputs.by", fmt::format("'{}' is neither a field nor a joined column", o.by));
      c.outputs.push_back(std::move(o));
    }
  }
  if (const toml::node* wn = root.get("windows")) {
    const toml::array* wins = wn->as_array();
    if (wins == nullptr) err(wn, "windows", "must be an array of tables ([[windows]])");
    for (std::size_t i = 0; wins != nullptr && i < wins->size(); ++i) {
      const toml::table* t = (*wins)[i].as_table();
      const std::string section = fmt::format("windows[{}]", i);
      if (t == nullptr) {
        err(&(*wins)[i], section, "must be a table");
        continue;
      }
      known(*t, section,
            {"name", "by", "size", "slide", "lateness", "late_retention", "max_future", "time", "time_format", "year",
             "value", "file", "max_groups"});
      WindowOutputSpec w;
      w.name = str(*t, section, "name", true);
      w.by = list(t->get("by"), section + ".by");
      for (const auto& b : w.by)
        if (!names.count(b) && !joined.count(b))
          err(t->get("by"), section + ".by", fmt::format("'{}' is neither a field nor a joined column", b));
      auto duration = [&](std::string_view key, bool required, std::int64_t fallback) -> std::int64_t {
        const toml::node* n = t->get(key);
        if (n == nullptr) {
          if (required) err(t, section + "." + std::string(key), "required key is missing");
          return fallback;
        }
        std::optional<std::int64_t> v;
        if (auto num = n->value<std::int64_t>()) v = *num;
        else if (auto text = n->value<std::string>()) v = parse_duration_ms(*text);
        if (!v || *v < 0 || *v > kMaxMillis) {
          err(n, section + "." + std::string(key),
              "must be a duration such as \"500ms\", \"10s\", \"5m\", \"1h\", \"1d\" (at most 253402300799999 ms, the span of event times)");
          return fallback;
        }
        return *v;
      };
      w.size_ms = duration("size", true, 1);
      w.slide_ms = duration("slide", false, w.size_ms);
      w.lateness_ms = duration("lateness", false, 0);
      w.late_retention_ms = duration("late_retention", false, w.late_retention_ms);
      w.max_future_ms = duration("max_future", false, w.max_future_ms);
      if (w.size_ms <= 0) err(t->get("size"), section + ".size", "must be positive");
      if (w.slide_ms <= 0 || w.slide_ms > w.size_ms)
        err(t->get("slide"), section + ".slide", "must be positive and at most the size");
      else if (const std::int64_t per_event = w.size_ms / w.slide_ms + (w.size_ms % w.slide_ms != 0);
               per_event > kMaxWindowsPerEvent)  // each event is added to size / slide windows, rounded up
        err(t->get("slide"), section + ".slide",
            fmt::format("puts each event in {} windows (size / slide, rounded up): at most {}", per_event,
                        kMaxWindowsPerEvent));
      w.time = str(*t, section, "time", false, "ingest");
      if (w.time != "ingest") field_known(t->get("time"), section + ".time", w.time);
      int year = 1970;
      const std::string fmt_text = str(*t, section, "time_format", false, "epoch_ms");
      if (const toml::node* y = t->get("year")) {
        if (auto v = y->value<std::int64_t>(); v && *v >= 1970 && *v <= 9999) year = static_cast<int>(*v);
        else err(y, section + ".year", "must be a year (1970-9999)");
      } else if (w.time != "ingest" && fmt_text.find('%') != std::string::npos &&
                 fmt_text.find("%Y") == std::string::npos) {
        // Not the year of the day the analyzer starts: a replay, or a start on December 31,
        // would put the same events in other windows.
        err(t->get("time_format"), section + ".year",
            fmt::format("a pattern without %Y (\"{}\") needs year = YYYY, the year of its dates", fmt_text));
      }
      if (auto f = TimeFormat::parse(fmt_text, year)) w.time_format = *f;
      else err(t->get("time_format"), section + ".time_format",
               "must be epoch_s, epoch_ms, rfc3339 or a pattern of %Y %m %d %H %M %S (e.g. \"%m%d\")");
      w.value = str(*t, section, "value", false);
      if (!w.value.empty()) field_known(t->get("value"), section + ".value", w.value);
      w.file = str(*t, section, "file", false, w.name + ".csv");
      w.max_groups = static_cast<std::size_t>(
          integer(t->get("max_groups"), section + ".max_groups", 1, INT64_MAX, static_cast<std::int64_t>(w.max_groups)));
      c.windows.push_back(std::move(w));
    }
  }
  if (c.outputs.empty() && c.windows.empty()) err(&root, "outputs", "declare at least one [[outputs]] or [[windows]]");
  // Names become parts of output-topic keys ("t/OUTPUT/P/KEY"): no '/' in them.
  for (const auto& o : c.outputs)
    if (o.name.find('/') != std::string::npos) err(&root, "outputs.name", fmt::format("'{}': no '/' in a name", o.name));
  for (const auto& w : c.windows)
    if (w.name.find('/') != std::string::npos) err(&root, "windows.name", fmt::format("'{}': no '/' in a name", w.name));
  if (const toml::table* s = root["state"].as_table()) {
    known(*s, "state", {"dir", "checkpoint_ms", "metrics", "dead_letter", "dead_letter_max_mb", "retire_sources_after"});
    if (const toml::node* n = s->get("retire_sources_after")) {
      std::optional<std::int64_t> v;
      if (auto num = n->value<std::int64_t>()) v = *num;
      else if (auto text = n->value<std::string>()) v = parse_duration_ms(*text);
      if (!v || *v < 0 || *v > kMaxMillis || (*v != 0 && *v < 12 * 3'600'000))
        err(n, "state.retire_sources_after",
            "must be 0 (never) or a duration of at least \"12h\", such as \"7d\" (a copy of a retired source's "
            "event is counted again: a short time would count re-sent events twice)");
      else
        c.retire_sources_after_ms = *v;
    }
    c.metrics = str(*s, "state", "metrics", false);
    c.dead_letter = str(*s, "state", "dead_letter", false, c.dead_letter);
    c.dead_letter_max_bytes =
        static_cast<std::uint64_t>(integer(s->get("dead_letter_max_mb"), "state.dead_letter_max_mb", 1, 1 << 20, 64))
        << 20;
    c.state_dir = str(*s, "state", "dir", false, c.state_dir.string());
    if (c.state_dir.is_relative()) c.state_dir = file.parent_path() / c.state_dir;
    c.checkpoint_ms = static_cast<int>(integer(s->get("checkpoint_ms"), "state.checkpoint_ms", 10, 3'600'000, 1000));
  }
  if (const toml::node* tn = root.get("transaction")) {
    const toml::table* t = tn->as_table();
    if (t == nullptr) {
      err(tn, "transaction", "must be a table");
    } else {
      known(*t, "transaction", {"topic", "changelog", "id", "timeout_ms", "session_timeout_ms", "materialize"});
      auto& x = c.transaction;
      x.topic = str(*t, "transaction", "topic", true);
      x.changelog = str(*t, "transaction", "changelog", false, c.group + "-changelog");
      x.id = str(*t, "transaction", "id", false);
      if (x.id.empty()) {  // stable for this instance (host and state dir), unique in the group
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        x.id = fmt::format("{}-{}-{:08x}", c.group, host,
                           static_cast<std::uint32_t>(std::hash<std::string>{}(fs::absolute(c.state_dir).string())));
      }
      x.timeout_ms = static_cast<int>(integer(t->get("timeout_ms"), "transaction.timeout_ms", 1000, 900'000, 30000));
      x.session_timeout_ms = static_cast<int>(
          integer(t->get("session_timeout_ms"), "transaction.session_timeout_ms", 1000, 3'600'000, 10000));
      x.materialize = boolean(t->get("materialize"), "transaction.materialize", true);
      if (c.input_type != "kafka") err(tn, "transaction", "the Kafka-transaction mode needs input.type = \"kafka\"");
      if (x.topic == c.topic && !x.topic.empty()) err(t->get("topic"), "transaction.topic", "must not be the input topic");
      // The rejected events go to "OUTPUT-dead-letter" (unless [state] dead_letter = ""): a topic
      // of its own too.
      const bool dead_letters = !c.dead_letter.empty();
      if (x.changelog == x.topic || x.changelog == c.topic || (dead_letters && x.changelog == x.topic + "-dead-letter"))
        err(t->get("changelog"), "transaction.changelog", "must differ from the input, output and dead-letter topics");
      if (dead_letters && c.topic == x.topic + "-dead-letter" && !x.topic.empty())
        err(t->get("topic"), "transaction.topic", "its dead-letter topic (TOPIC-dead-letter) must not be the input topic");
    }
  }
  // Each output and window has its own name (the state keeps them by name) and every file the
  // job writes in the state dir has one writer (two would corrupt it, or the checkpoint would
  // count one's bytes for the other).
  std::map<std::string, std::string> writers;  // file, normalized -> who writes it
  auto claim = [&](const toml::node* n, const std::string& section, const std::string& f, const std::string& what) {
    if (f.empty()) return;
    const auto [it, fresh] = writers.emplace(fs::path(f).lexically_normal().string(), what);
    if (!fresh) err(n, section, fmt::format("{} writes {}, which {} writes too: give each its own file", what, f, it->second));
  };
  claim(nullptr, "state", "checkpoint", "the checkpoint");
  claim(nullptr, "state", "status.json", "status.json");
  claim(root["state"]["dead_letter"].node(), "state.dead_letter", c.dead_letter, "the dead-letter output");
  std::set<std::string> taken;  // names of outputs, then of windows
  for (std::size_t i = 0; i < c.outputs.size(); ++i) {
    const OutputSpec& o = c.outputs[i];
    const toml::node* n = root["outputs"][i].node();
    if (!taken.insert(o.name).second) err(n, "outputs.name", fmt::format("'{}' names two [[outputs]]", o.name));
    claim(n, "outputs.file", o.file, fmt::format("output '{}'", o.name));
  }
  taken.clear();
  for (std::size_t i = 0; i < c.windows.size(); ++i) {
    const WindowOutputSpec& w = c.windows[i];
    const toml::node* n = root["windows"][i].node();
    const std::string section = fmt::format("windows[{}]", i);
    if (!taken.insert(w.name).second) err(n, section + ".name", fmt::format("'{}' names two [[windows]]", w.name));
    const std::string what = fmt::format("window '{}'", w.name);
    claim(n, section + ".file", w.file, what);
    for (const char* suffix : {".open.csv", ".late.csv", ".late.open.csv"}) claim(n, section, w.name + suffix, what);
  }
  return r;
}

// ------------------------------------------------------------------------------------------
// The engine: the configuration turned into an Analyzer

namespace {
std::size_t field_index(const AnalyzeConfig& cfg, std::string_view name) {
  for (std::size_t i = 0; i < cfg.fields.size(); ++i)
    if (cfg.fields[i].first == name) return i;
  return SIZE_MAX;
}

// A group-by key part: an event field or a joined column, labelled if labels are declared.
KeyPart key_part(const AnalyzeConfig& cfg, const std::string& by, std::size_t pad) {
  KeyPart part;
  const auto label = cfg.labels.find(by);
  part.labels = label == cfg.labels.end() ? nullptr : &label->second;
  part.pad = pad;
  if (const std::size_t fi = field_index(cfg, by); fi != SIZE_MAX) {
    part.from = KeyPart::From::kEvent;
    part.index = fi;
  } else {
    part.from = KeyPart::From::kJoined;
    part.index = static_cast<std::size_t>(std::find(cfg.join_columns.begin(), cfg.join_columns.end(), by) -
                                          cfg.join_columns.begin());
  }
  return part;
}
}  // namespace

AnalyzeEngine::AnalyzeEngine(AnalyzeConfig config) : cfg_(std::move(config)) {
  const AnalyzeConfig& cfg = cfg_;
  for (const auto& [name, where] : cfg.fields) pointers_.push_back(where);
  for (const auto& i : cfg.integers) spec_.integer_fields.push_back(field_index(cfg, i));
  for (const auto& [f, values] : cfg.filters) spec_.filters.push_back({field_index(cfg, f), values});
  if (!cfg.where.empty())
    spec_.where = FilterExpr::parse(cfg.where, [&](std::string_view name) -> std::optional<FieldRef> {
      if (const std::size_t fi = field_index(cfg, name); fi != SIZE_MAX) return FieldRef{false, fi};
      const auto it = std::find(cfg.join_columns.begin(), cfg.join_columns.end(), name);
      if (it != cfg.join_columns.end()) return FieldRef{true, static_cast<std::size_t>(it - cfg.join_columns.begin())};
      return std::nullopt;
    });
  if (!cfg.join_file.empty()) {
    table_ = std::make_unique<DimensionTable>(
        DimensionTable::load(cfg.join_file, cfg.join_key_column, cfg.join_columns));
    spec_.table = table_.get();
    spec_.join_field = field_index(cfg, cfg.join_key_field);
  }
  for (const OutputSpec& o : cfg.outputs) spec_.groupings.push_back({o.name, {key_part(cfg, o.by, o.pad)}, o.max_groups});
  spec_.retire_sources_after_ms = cfg.retire_sources_after_ms;
  for (const WindowOutputSpec& w : cfg.windows) {
    AnalyzerSpec::Window ws;
    ws.name = w.name;
    for (const auto& b : w.by) ws.key.push_back(key_part(cfg, b, 0));
    ws.size_ms = w.size_ms;
    ws.slide_ms = w.slide_ms;
    ws.lateness_ms = w.lateness_ms;
    ws.max_future_ms = w.max_future_ms;
    ws.max_keys = w.max_groups;
    ws.late_retention_ms = w.late_retention_ms;
    if (w.time != "ingest") ws.time_field = field_index(cfg, w.time);
    ws.time_format = w.time_format;
    if (!w.value.empty()) ws.value_field = field_index(cfg, w.value);
    spec_.windows.push_back(std::move(ws));
  }
}

AnalyzeEngine::~AnalyzeEngine() = default;

std::unique_ptr<Analyzer> AnalyzeEngine::make() const {
  return std::make_unique<Analyzer>(spec_, cfg_.csv ? FieldExtractor::csv(cfg_.csv_header, pointers_)
                                                    : FieldExtractor::json(pointers_));
}

// ------------------------------------------------------------------------------------------
// The job

struct AnalyzeJob::Impl {
  AnalyzeConfig cfg;
  JobLog log;
  core::Fd state_lock;  // STATE_DIR/analyzer.lock, held (the checkpoint mode: one job per state dir)
  std::unique_ptr<AnalyzeEngine> engine;
  std::unique_ptr<Analyzer> analyzer;
  // channel input
  std::optional<core::Channel> channel;
  std::optional<core::Consumer> consumer;
  std::uint64_t channel_pos = 0;
  std::uint64_t channel_records = 0;  // polled below channel_pos since the last commit
  // Polls `consumer` in its own thread, which owns it until stop (declared after it).
  std::optional<detail::ChannelReadAhead> channel_ahead;
  // kafka input
  detail::HandleContext kafka_ctx{&log};  // the opaque of `kafka`: its log lines into `log`
  uplink::KafkaHandle kafka;
  std::optional<detail::ReadAhead> ahead;  // of `kafka`: its messages go before it does
  std::map<int, std::int64_t> offsets;  // partition -> next offset
  // Kafka input: where each partition was assigned (absolute offsets only) until its first
  // record is seen there; see check_start().
  std::map<int, std::int64_t> unchecked_start;
  std::set<int> reread;  // partitions read again from their start once (check_start())
  std::uint64_t topic_hash = 0;
  // Bytes of each appended file the checkpoint covers (appended_file()): per [[windows]], the
  // dead-letter file, then per [[windows]] its final late rows.
  std::vector<std::uint64_t> file_bytes;
  bool unrecorded_files = false;  // restore: files the checkpoint does not know (kept, to be recorded)
  std::string dead_letters;  // rejected events since the last checkpoint, as dead-letter lines
  std::uint64_t dead_letter_skipped = 0;  // rejected events not written: the file reached its limit
  std::int32_t cur_partition = -1;        // the Kafka partition being processed (-1: channel input)
  std::vector<Event> batch;               // channel input: the events of one poll
  bool drain = false;                     // run(): stop once the input has nothing more to read
  int partitions = 0;                     // Kafka input: how many the job assigned itself
  std::set<int> at_end;                   // Kafka input, drain: partitions read to their end
  // The metrics endpoint ([state] metrics) serves the snapshot of the last checkpoint.
  std::unique_ptr<core::MetricsServer> metrics;
  int metrics_port = 0;
  std::mutex snapshot_mu;
  std::string snapshot_status = "{}\n", snapshot_prom;

  void info(const std::string& m) const {
    if (log) log("info", m);
  }

  void build() {
    engine = std::make_unique<AnalyzeEngine>(cfg);
    if (const DimensionTable* t = engine->table())
      info(fmt::format("dimension table {}: {} rows ({} rejected{})", cfg.join_file.string(), t->rows(),
                       t->rejected_rows(), t->rejected_rows() == 0 ? "" : "; the first: " + t->first_rejected()));
    analyzer = engine->make();
    if (!cfg.dead_letter.empty() && !cfg.transactional())
      analyzer->on_reject([this](const Event& e, std::string_view reason) {
        if (file_bytes[cfg.windows.size()] + dead_letters.size() >= cfg.dead_letter_max_bytes) {
          ++dead_letter_skipped;  // counted (status.json), the file stays bounded
          return;
        }
        render::dead_letter_line(dead_letters, e.id, reason,
                                 cur_partition < 0 ? fmt::format("channel {}", e.where)
                                                   : fmt::format("kafka {} {}:{}", cfg.topic, cur_partition, e.where),
                                 e.payload);
      });
  }


  std::string position() const {
    std::string s;
    if (channel || cfg.input_type == "channel") {  // (not yet open when a restore is logged)
      s = fmt::format("channel {}", channel_pos);
    } else {
      s = "kafka";
      for (const auto& [p, o] : offsets) s += fmt::format(" {}:{}", p, o);
    }
    if (!file_bytes.empty()) {  // how much of each appended file the checkpoint accounts for, by name
      std::ostringstream files;
      files << "|files";
      for (std::size_t i = 0; i < file_bytes.size(); ++i)
        files << ' ' << std::quoted(appended_name(i)) << ' ' << file_bytes[i];
      s += files.str();
    }
    return s;
  }

  void restore_position(const std::string& full) {
    const auto bar = full.find('|');
    const std::string pos = full.substr(0, bar);
    if (bar != std::string::npos) {
      std::istringstream win(full.substr(bar + 1));
      std::string word;
      win >> word;
      if (word == "files") {  // by name: a window added or removed since moves no other file's count
        std::map<std::string, std::uint64_t> bytes;
        std::string name;
        std::uint64_t b = 0;
        while (win >> std::quoted(name) >> b) bytes[name] = b;
        for (std::size_t i = 0; i < file_bytes.size(); ++i) {
          if (const auto it = bytes.find(appended_name(i)); it != bytes.end()) {
            file_bytes[i] = it->second;
            continue;
          }
          // A file this checkpoint does not know (a window added, or added back, since): what
          // it holds is an earlier run's, kept; the new rows go after it. Recorded by a
          // checkpoint before anything is appended (the constructor), so that a crash cannot
          // make this run's own rows look like an earlier run's.
          std::error_code ec;
          const fs::path p = appended_file(i);
          if (appended_name(i).empty() || !fs::exists(p, ec)) continue;
          file_bytes[i] = fs::file_size(p, ec);
          if (log)
            log("warn", fmt::format("{} is not in the checkpoint: its {} bytes are kept as they are, new rows go after "
                                    "them",
                                    p.string(), file_bytes[i]));
          unrecorded_files = true;
        }
      } else {  // "windows": by place, as checkpoints before version 3 wrote them
        std::uint64_t b = 0;
        for (std::size_t w = 0; win >> b; ++w)
          if (w < file_bytes.size()) file_bytes[w] = b;
      }
    }
    std::istringstream in(pos);
    std::string kind;
    in >> kind;
    if (kind == "channel") {
      in >> channel_pos;
    } else if (kind == "kafka") {
      std::string item;
      while (in >> item) {
        const auto colon = item.find(':');
        offsets[std::stoi(item.substr(0, colon))] = std::stoll(item.substr(colon + 1));
      }
    }
  }

  // Opens the input at the checkpointed position. False if `stop_fd` fired while waiting for
  // the topic to appear.
  bool open_input(int stop_fd) {
    if (cfg.input_type == "channel") {
      channel.emplace(core::Channel::open(cfg.channel));
      consumer.emplace(channel->consumer(cfg.consumer));
      if (channel_pos != 0 && !consumer->seek(channel_pos))
        throw core::Error(fmt::format("checkpoint position {} is not readable in {} (committed {})", channel_pos,
                                      cfg.channel.string(), consumer->committed()));
      if (channel_pos == 0) channel_pos = consumer->committed();
      channel_ahead.emplace(*channel, *consumer, drain);
      return true;
    }
    topic_hash = std::hash<std::string>{}(cfg.topic);
    uplink::Settings settings = detail::reader_settings(cfg.bootstrap, cfg.group);
    settings["enable.auto.offset.store"] = "false";
    detail::add_fetch_settings(settings, cfg);
    if (drain) settings["enable.partition.eof"] = "true";  // tells when a partition is read to its end
    kafka = uplink::make_handle(RD_KAFKA_CONSUMER, detail::logged_conf(settings, &kafka_ctx));
    // Every partition of the topic, at the checkpointed offsets (the topic may not exist yet).
    if (!detail::wait_for_topic(kafka.get(), cfg.topic, cfg.bootstrap, stop_fd, partitions, log)) return false;
    // Partitions with no checkpointed offset start at their log start, as an absolute offset.
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p)
      rd_kafka_topic_partition_list_add(list, cfg.topic.c_str(), p)->offset =
          offsets.count(p) ? offsets.at(p) : RD_KAFKA_OFFSET_BEGINNING;
    detail::resolve_log_starts(kafka.get(), list, 5000);
    rd_kafka_assign(kafka.get(), list);
    std::string from;
    for (int i = 0; i < list->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = list->elems[i];
      if (tp.offset >= 0) unchecked_start[tp.partition] = tp.offset;
      from += fmt::format(" {}:{}", tp.partition, tp.offset >= 0 ? std::to_string(tp.offset) : "beginning");
    }
    rd_kafka_topic_partition_list_destroy(list);
    ahead.emplace(cfg.topic, detail::fetch_budget(cfg), detail::librdkafka_bound(cfg)).attach(kafka.get());
    info(fmt::format("reading {} partitions of {} from offsets{}", partitions, cfg.topic, from));
    return true;
  }

  // The first record read of a partition assigned at an absolute offset S: at S, or at O > S
  // where S..O-1 hold no record the consumer hands over (compacted away, transaction markers,
  // aborted data), were deleted by retention (librdkafka then resets to the log start), or
  // where the client skipped records, which the analyzer does not take on trust: it is told in
  // the log, and the partition is read again from S once. True if `m` is to be processed;
  // false if it was dropped for that re-read.
  bool check_start(const rd_kafka_message_t& m) {
    const auto it = unchecked_start.find(m.partition);
    if (it == unchecked_start.end()) return true;
    const std::int64_t start = it->second;
    unchecked_start.erase(it);
    if (m.offset <= start) return true;
    if (!reread.insert(m.partition).second) {
      // The log start, asked now: above S, the records from S on were deleted (up to it, or up
      // to O if retention has gone past O meanwhile); what lies between it and O holds nothing.
      const auto log_start = uplink::list_offset(kafka.get(), cfg.topic, m.partition, RD_KAFKA_OFFSET_BEGINNING, 5000);
      if (!log_start) {
        if (log)
          log("warn", fmt::format("partition {}: offsets {}..{} held no record to read (read twice); whether they "
                                  "were deleted is not known (the log start did not come)",
                                  m.partition, start, m.offset - 1));
        return true;
      }
      const std::int64_t deleted_to = std::min(*log_start, m.offset);
      if (deleted_to > start && log)
        log("warn", fmt::format("partition {}: offsets {}..{} were deleted before they were read (the log now starts "
                                "at {})",
                                m.partition, start, deleted_to - 1, *log_start));
      if (m.offset > std::max(start, deleted_to))
        info(fmt::format("partition {}: offsets {}..{} hold no record to read (read twice)", m.partition,
                         std::max(start, deleted_to), m.offset - 1));
      return true;
    }
    if (log)
      log("warn", fmt::format("partition {}: assigned at offset {}, its first record came at offset {}: reading it "
                              "again from {}",
                              m.partition, start, m.offset, start));
    ahead->forget(m.partition);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, cfg.topic.c_str(), m.partition)->offset = start;
    rd_kafka_error_t* error = rd_kafka_seek_partitions(kafka.get(), list, 5000);
    const rd_kafka_resp_err_t err = error ? rd_kafka_error_code(error) : list->elems[0].err;
    if (error) rd_kafka_error_destroy(error);
    rd_kafka_topic_partition_list_destroy(list);
    // Timed out: the seek is still queued and happens (its version barrier already drops what
    // was fetched before it), so it is waited for like one that is done. Failed: what was held
    // of the partition is gone and librdkafka may drop what comes (its barrier moved): the job
    // stops with the error, and a restart resumes from the checkpoint, which has none of it.
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__TIMED_OUT)
      throw core::Error(fmt::format("{} partition {}: seek to offset {} failed: {}; a restart resumes from the "
                                    "checkpoint",
                                    cfg.topic, m.partition, start, rd_kafka_err2str(err)));
    unchecked_start[m.partition] = start;  // the next first record is checked again
    return false;
  }

  // Reads up to a batch of events into the analyzer; returns how many.
  std::size_t pump() {
    std::size_t n = 0;
    if (channel_ahead) {  // a batch the read-ahead polled, or none after 100 ms
      const std::span<const core::Record> recs = channel_ahead->next(std::chrono::milliseconds(100));
      batch.clear();
      for (const core::Record& r : recs)
        batch.push_back({r.id,
                         {reinterpret_cast<const char*>(r.payload.data()), r.payload.size()},
                         static_cast<std::int64_t>(r.timestamp_ns / 1000000),
                         static_cast<std::int64_t>(r.position)});
      analyzer->process_batch(batch);
      if (!recs.empty()) channel_pos = recs.back().next;
      channel_records += recs.size();
      return recs.size();
    }
    for (int i = 0; i < 10000 && n < 10000; ++i) {  // events, not records: a pack holds thousands
      const detail::Message m = ahead->poll(i == 0 ? 100 : 0);
      if (!m) break;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (!check_start(*m)) {
          at_end.erase(m->partition);  // read again: not at its end whatever came before
          continue;
        }
        cur_partition = m->partition;
        n += detail::process_message(*analyzer, m.get(), topic_hash, log, batch);
        offsets[m->partition] = m->offset + 1;
        at_end.erase(m->partition);
      } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        at_end.insert(m->partition);
      } else {
        if (log) log("warn", fmt::format("consume: {}", rd_kafka_message_errstr(m.get())));
      }
    }
    return n;
  }

  void write_outputs() {
    const std::uint64_t total = analyzer->stats().counted;
    for (std::size_t g = 0; g < cfg.outputs.size(); ++g) {
      const OutputSpec& o = cfg.outputs[g];
      const auto order = cfg.label_order.find(o.by);
      render::write_file(cfg.state_dir / o.file,
                         render::totals_csv(o, analyzer->totals(g), total,
                                            order == cfg.label_order.end() ? nullptr : &order->second));
    }
    render::Figures f;
    f.stats = analyzer->stats();
    f.sources = analyzer->ledger().audit();
    f.retired = analyzer->ledger().retired();
    for (std::size_t w = 0; w < cfg.windows.size(); ++w) {
      const WindowSet& ws = analyzer->window(w);
      f.windows.push_back({cfg.windows[w].name, ws.open().size(), ws.closed_total(), ws.late_events(),
                           ws.expired_events(), ws.watermark()});
    }
    if (!cfg.dead_letter.empty())
      f.extra = fmt::format(R"(,"dead_letter":{{"file":{},"bytes":{},"skipped":{}}})", core::json_string(cfg.dead_letter),
                            file_bytes[cfg.windows.size()], dead_letter_skipped);
    f.extra += fmt::format(R"(,"position":{})", core::json_string(position()));
    write_window_snapshots();
    publish(f);
  }

  // status.json and the metrics endpoint's snapshot, from the same figures.
  void publish(render::Figures& f) {
    if (metrics_port > 0) f.extra += fmt::format(R"(,"metrics":"{}")", metrics_address());
    std::string status = render::status_json(f);
    render::write_file(cfg.state_dir / "status.json", status);
    if (!metrics) return;
    std::string prom = render::prometheus(f);
    const std::lock_guard lock(snapshot_mu);
    snapshot_status = std::move(status);
    snapshot_prom = std::move(prom);
  }

  // The endpoint's address with the port it got ("127.0.0.1:0" -> "127.0.0.1:41234").
  std::string metrics_address() const {
    return cfg.metrics.substr(0, cfg.metrics.rfind(':')) + ":" + std::to_string(metrics_port);
  }

  void start_metrics() {
    if (cfg.metrics.empty() || metrics) return;
    metrics = std::make_unique<core::MetricsServer>(
        cfg.metrics,
        [this] {
          const std::lock_guard lock(snapshot_mu);
          return snapshot_prom;
        },
        [this] {
          const std::lock_guard lock(snapshot_mu);
          return snapshot_status;
        });
    metrics_port = metrics->port();
    info(fmt::format("metrics on http://{}/metrics and /status", metrics_address()));
  }

  // ---- windows: closed rows appended exactly once, late and open rows as snapshots

  // The files appended exactly once: each [[windows]] file, the dead-letter file, then each
  // window's NAME.late.csv (the late rows made final).
  std::string appended_name(std::size_t i) const {  // relative to the state dir
    const std::size_t n = cfg.windows.size();
    if (i < n) return cfg.windows[i].file;
    if (i == n) return cfg.dead_letter;
    return cfg.windows[i - n - 1].name + ".late.csv";
  }
  fs::path appended_file(std::size_t i) const { return cfg.state_dir / appended_name(i); }

  // After a restore: each appended file back to what the checkpoint accounts for (rows written
  // after it are written again by the replay).
  void trim_appended_files() {
    for (std::size_t w = 0; w < file_bytes.size(); ++w) {
      if (w == cfg.windows.size() && cfg.dead_letter.empty()) continue;
      const fs::path p = appended_file(w);
      std::error_code ec;
      const auto size = fs::exists(p, ec) ? fs::file_size(p, ec) : 0;
      if (size > file_bytes[w]) {
        info(fmt::format("{}: {} bytes after what the checkpoint accounts for are cut (rows written after it, "
                         "written again by the replay)",
                         p.string(), size - file_bytes[w]));
        fs::resize_file(p, file_bytes[w]);
      } else if (size < file_bytes[w]) {
        if (log)
          log("warn", fmt::format("{} has {} bytes, the checkpoint accounts for {}: rows removed by someone else "
                                  "are not written again",
                                  p.string(), size, file_bytes[w]));
        file_bytes[w] = size;
      }
    }
  }

  // Appends `text` to appended file `i` where the last checkpoint left it, durably.
  void append_at(std::size_t i, const std::string& text) {
    file_bytes[i] = render::append_at(appended_file(i), file_bytes[i], text);
  }

  void append_closed_windows() {
    for (std::size_t w = 0; w < cfg.windows.size(); ++w) {
      std::vector<WindowRow> rows = analyzer->take_closed(w);
      if (rows.empty()) continue;
      const WindowOutputSpec& spec = cfg.windows[w];
      std::string text;
      if (file_bytes[w] == 0) text = render::window_header(spec, "count");
      for (const auto& r : rows) render::window_row(text, spec, r);
      append_at(w, text);
    }
    for (std::size_t w = 0; w < cfg.windows.size(); ++w) {
      const std::vector<LateRow> rows = analyzer->take_retired(w);
      if (rows.empty()) continue;
      const std::size_t file = cfg.windows.size() + 1 + w;
      std::string text;
      if (file_bytes[file] == 0) text = render::window_header(cfg.windows[w], "late");
      for (const auto& [k, n] : rows) render::late_row(text, cfg.windows[w], k, n);
      append_at(file, text);
    }
    if (!dead_letters.empty()) {
      append_at(cfg.windows.size(), dead_letters);
      dead_letters.clear();
    }
  }

  void write_window_snapshots() const {
    for (std::size_t w = 0; w < cfg.windows.size(); ++w) {
      const WindowOutputSpec& spec = cfg.windows[w];
      const WindowSet& ws = analyzer->window(w);
      render::write_file(cfg.state_dir / (spec.name + ".open.csv"), render::open_csv(spec, ws.open()));
      render::write_file(cfg.state_dir / (spec.name + ".late.open.csv"), render::late_csv(spec, ws.late()));
    }
  }

  void checkpoint() {
    append_closed_windows();  // before the checkpoint that records how far the files go
    write_checkpoint(cfg.state_dir / "checkpoint", analyzer->serialize(position()));
    write_outputs();
    // The input's own position only trails the checkpoint.
    if (channel_ahead) {  // counted here: a commit short of the read position need not walk the records
      channel_ahead->commit(channel_pos, channel_records);
      channel_records = 0;
    }
    if (kafka && !offsets.empty()) {
      rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size()));
      for (const auto& [p, o] : offsets) rd_kafka_topic_partition_list_add(list, cfg.topic.c_str(), p)->offset = o;
      rd_kafka_commit(kafka.get(), list, 1);
      rd_kafka_topic_partition_list_destroy(list);
    }
  }
};

AnalyzeJob::AnalyzeJob(AnalyzeConfig config, JobLog log) : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(config);
  impl_->log = std::move(log);
  // The state directory must be writable now, not at the first checkpoint after work is done.
  const fs::path& state_dir = impl_->cfg.state_dir;
  std::error_code ec;
  fs::create_directories(state_dir, ec);
  if (ec)
    throw core::Error(
        fmt::format("cannot create the analyzer's state directory {}: {}", state_dir.string(), ec.message()));
  if (::access(state_dir.c_str(), W_OK | X_OK) != 0)
    core::throw_errno(fmt::format("the analyzer's state directory {} is not writable", state_dir.string()), errno);
  // So are the directories of the output files (`file = "out/by_age.csv"`), made as the state
  // directory is.
  const auto make_parent = [&](const std::string& file, const std::string& what) {
    if (file.empty()) return;
    const fs::path dir = (state_dir / file).parent_path();
    fs::create_directories(dir, ec);
    if (ec) throw core::Error(fmt::format("cannot create the directory {} of {}: {}", dir.string(), what, ec.message()));
  };
  for (const OutputSpec& o : impl_->cfg.outputs) make_parent(o.file, fmt::format("output '{}' (file = \"{}\")", o.name, o.file));
  for (const WindowOutputSpec& w : impl_->cfg.windows)
    make_parent(w.file, fmt::format("window '{}' (file = \"{}\")", w.name, w.file));
  make_parent(impl_->cfg.dead_letter, fmt::format("the dead letters (dead_letter = \"{}\")", impl_->cfg.dead_letter));
  if (!impl_->cfg.transactional()) {
    // One job per state dir: two would write over each other's checkpoint and append over each
    // other's files (a Kafka input has no group fencing in this mode; a channel consumer name
    // would fence a channel input, but only once both had opened it).
    const fs::path lock_path = state_dir / "analyzer.lock";
    impl_->state_lock = core::Fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!impl_->state_lock.valid()) core::throw_errno("open " + lock_path.string(), errno);
    if (::flock(impl_->state_lock.get(), LOCK_EX | LOCK_NB) != 0)
      throw core::Error(fmt::format("another analyzer runs on the state directory {} (it holds {}): stop it first, "
                                    "or give this one its own [state] dir",
                                    state_dir.string(), lock_path.string()));
  }
  impl_->build();
  impl_->file_bytes.assign(2 * impl_->cfg.windows.size() + 1, 0);
  if (impl_->cfg.transactional()) return;  // state lives in the changelog topic, not in a file
  if (auto state = read_checkpoint(impl_->cfg.state_dir / "checkpoint")) {
    impl_->restore_position(impl_->analyzer->restore(*state));
    impl_->info(fmt::format("restored checkpoint: {} counted, resuming at {}", impl_->analyzer->stats().counted,
                            impl_->position()));
    for (const std::string& gone : impl_->analyzer->dropped_on_restore())
      if (impl_->log)
        impl_->log("warn", fmt::format("the checkpoint holds the state of {}, which the config no longer has: dropped",
                                       gone));
  }
  impl_->trim_appended_files();
  if (impl_->unrecorded_files)  // recorded before this run appends anything to them
    write_checkpoint(impl_->cfg.state_dir / "checkpoint", impl_->analyzer->serialize(impl_->position()));
}

AnalyzeJob::~AnalyzeJob() {
  impl_->ahead.reset();  // every message destroyed before its handle
  if (impl_->kafka) rd_kafka_consumer_close(impl_->kafka.get());
}

int AnalyzeJob::run(int stop_fd, bool drain) {
  Impl& j = *impl_;
  if (drain && j.cfg.transactional())
    throw core::Error("--drain is for the checkpoint mode; the Kafka-transaction mode is a group member that runs until stopped");
  j.drain = drain;
  j.start_metrics();
  if (j.cfg.transactional()) {
    // The files are written by a separate reader of the output topic, in its own thread with
    // its own stop signal (given after the last commit, so it can read that one too).
    int stop_reader[2] = {-1, -1}, reader_failed[2] = {-1, -1};
    if (j.cfg.transaction.materialize &&
        (::pipe2(stop_reader, O_CLOEXEC) != 0 || ::pipe2(reader_failed, O_CLOEXEC) != 0))
      core::throw_errno("pipe", errno);
    const core::Fd reader_read(stop_reader[0]), reader_write(stop_reader[1]);
    const core::Fd failed_read(reader_failed[0]), failed_write(reader_failed[1]);
    std::thread reader;
    struct Join {
      std::thread& t;
      const core::Fd& fd;
      ~Join() {
        if (!t.joinable()) return;
        const char c = 1;
        (void)!::write(fd.get(), &c, 1);
        t.join();
      }
    } join{reader, reader_write};
    if (j.cfg.transaction.materialize)
      reader = std::thread([&] {
        try {
          (void)detail::run_materializer(j.cfg, j.log, reader_read.get(), [&j](render::Figures& f) { j.publish(f); });
        } catch (const std::exception& e) {
          if (j.log) j.log("error", fmt::format("output reader: {}", e.what()));
          const char c = 1;
          (void)!::write(failed_write.get(), &c, 1);
        }
      });
    return detail::run_transactional(j.cfg, [&j] { return j.engine->make(); }, j.log, stop_fd, failed_read.get());
  }
  if (!j.open_input(stop_fd)) return 0;  // stopped before the input existed: nothing to save
  auto next = Clock::now();
  for (;;) {
    const std::size_t n = j.pump();
    // Drained: a poll that found nothing, with the channel read up to its write position (not
    // held at a record still being written or left by a dead writer, which the read-ahead's
    // wait reclaims) or every Kafka partition at its end.
    if (j.drain && n == 0 &&
        (j.channel_ahead ? j.channel_ahead->at_end() : static_cast<int>(j.at_end.size()) == j.partitions)) {
      j.info("the input is drained: stopping");
      break;
    }
    if (Clock::now() >= next) {
      j.checkpoint();
      if (j.ahead) j.ahead->catch_up();
      next = Clock::now() + std::chrono::milliseconds(j.cfg.checkpoint_ms);
    }
    pollfd p{stop_fd, POLLIN, 0};
    if (stop_fd >= 0 && ::poll(&p, 1, 0) > 0) break;
  }
  j.checkpoint();
  // The channel's cursor follows the last checkpoint before run() returns, not when the job is
  // destroyed: whoever looks at the channel next (a caller, `tributary channel stat`) sees it.
  if (j.channel_ahead) j.channel_ahead->stop();
  return 0;
}

int AnalyzeJob::materialize(int stop_fd) {
  if (!impl_->cfg.transactional())
    throw core::Error("--materialize reads the output topic of the Kafka-transaction mode: add [transaction] topic");
  Impl& j = *impl_;
  j.start_metrics();
  return detail::run_materializer(j.cfg, j.log, stop_fd, [&j](render::Figures& f) { j.publish(f); });
}

}  // namespace tributary::analytics
