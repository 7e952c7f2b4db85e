// Agent configuration: TOML (toml++) checked against declarative option tables. Every error
// is collected (not just the first) and names file, line and key.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <set>
#include <toml++/toml.h>

#include "internal/intercept.h"
#include "tributary/core/error.h"
#include "tributary/core/units.h"
#include "tributary/ingest/agent.h"

namespace tributary::ingest {
namespace {

constexpr std::string_view kSync[] = {"none", "interval", "every-commit"};

constexpr OptionSpec kChannelOptions[] = {
    {"path", OptionType::kString, "", "Channel file; created with the settings below if missing", true},
    {"capacity", OptionType::kSize, "64M", "Ring size (power of two): the backlog kept while Kafka is away", false,
     64 << 10, std::int64_t{1} << 40},
    {"max_payload", OptionType::kSize, "1M", "Largest event (at most a quarter of the capacity)", false, 1,
     1 << 30},
    {"source_slots", OptionType::kInt, "4096", "Per-source checkpoint slots (power of two)", false, 16, 1 << 20},
    {"sync", OptionType::kEnum, "none",
     "none: survives process crashes; interval: loses at most sync_interval_ms on power loss; every-commit: "
     "loses nothing acknowledged, slowest",
     false, 0, 0, kSync},
    {"sync_interval_ms", OptionType::kInt, "100", "With sync = interval", false, 1, 3600000},
    {"abandon_timeout_ms", OptionType::kInt, "1000",
     "A record reserved by a dead writer is skipped after this (a live writer never is)", false, 10, 3600000},
    {"mode", OptionType::kString, "0600", "File mode at creation (0600 or 0660)"},
    {"pretouch", OptionType::kBool, "false",
     "Fault the whole mapping in at start: no page faults later, the full size resident from the start"},
};

constexpr OptionSpec kUplinkOptions[] = {
    {"channel", OptionType::kString, "", "The [channels.X] to ship", true},
    {"topic", OptionType::kString, "", "Kafka topic", true},
    {"bootstrap", OptionType::kString, "", "Kafka bootstrap.servers", true},
    {"consumer", OptionType::kString, "uplink", "Durable consumer name in the channel"},
    {"dead_letter", OptionType::kString, "", "A [channels.X] for events Kafka refuses for good"},
    {"max_in_flight", OptionType::kInt, "15000",
     "Events handed to librdkafka and not yet acknowledged (about 1 KB of memory each); raise it for a distant "
     "cluster: an uplink ships at most this many events per round trip",
     false, 1, 10000000},
    {"packed", OptionType::kBool, "false",
     "Many events of one source per Kafka record (the analyzer reads them; other consumers see packs)"},
    {"pack_bytes", OptionType::kSize, "256K", "Largest packed record (below the topic's max.message.bytes)", false, 4096,
     900000},
    {"regrow_after_s", OptionType::kInt, "600",
     "Batches and packs halved by a refusal for size are tried twice as large again after this many seconds without "
     "another",
     false, 1, 86400},
};

constexpr OptionSpec kAgentOptions[] = {
    {"name", OptionType::kString, "tributary", "Name of this agent (logs, status)"},
    {"status_file", OptionType::kString, "", "JSON status written every second (for `tributary agent --status`)"},
    {"metrics", OptionType::kString, "",
     "HOST:PORT serving Prometheus /metrics and JSON /status (e.g. 127.0.0.1:9464; empty: off)"},
};

constexpr OptionSpec kGrepOptions[] = {
    {"include", OptionType::kString, "", "RE2 pattern: only events that match go on"},
    {"exclude", OptionType::kString, "", "RE2 pattern: events that match are dropped (counted as filtered)"},
};

constexpr OptionSpec kFieldsOptions[] = {
    {"host", OptionType::kString, "", "Key under which the host name is added (empty: not added)"},
    {"timestamp", OptionType::kString, "",
     "Key under which the ingest time is added, RFC 3339 UTC with ms (empty: not added)"},
    {"wrap", OptionType::kString, "message",
     "An event that is not a JSON object becomes {WRAP: event, ...} (empty: left as it is)"},
    // `add = { key = "value", ... }`: static fields (a table of strings), parsed by hand.
};

struct Ctx {
  std::string file;
  std::vector<std::string>& errors;
  void error(const toml::source_region& where, std::string_view key, const std::string& what) {
    errors.push_back(fmt::format("{}:{}: {}: {}", file, where.begin.line, key, what));
  }
};

// What the sections mean together: two channels on one file, two uplinks as one consumer of a
// channel, dead-letter channels that lead back to what they serve.
void check_wiring(ConfigResult& r, const std::filesystem::path& file) {
  const AgentConfig& c = r.config;
  auto err = [&](int line, const std::string& key, const std::string& what) {
    r.errors.push_back(fmt::format("{}:{}: {}: {}", file.string(), line, key, what));
  };
  for (std::size_t i = 0; i < c.channels.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (std::filesystem::path(c.channels[i].path).lexically_normal() ==
          std::filesystem::path(c.channels[j].path).lexically_normal())
        err(c.channels[i].line, "channels." + c.channels[i].name + ".path",
            fmt::format("the same file as channels.{} ({}): one ring, written as two", c.channels[j].name,
                        c.channels[i].path.string()));
  for (std::size_t i = 0; i < c.uplinks.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (c.uplinks[i].channel == c.uplinks[j].channel && c.uplinks[i].consumer == c.uplinks[j].consumer)
        err(c.uplinks[i].line, "uplinks." + c.uplinks[i].name + ".consumer",
            fmt::format("reads channel '{}' as the same consumer '{}' as uplinks.{}: give each its own consumer = "
                        "\"...\"",
                        c.uplinks[i].channel, c.uplinks[i].consumer, c.uplinks[j].name));
  // Following dead_letter from an uplink's channel (through the uplinks that ship each
  // dead-letter channel) must never come back to it: a refused event would go round for good.
  for (const UplinkSpec& start : c.uplinks) {
    std::set<std::string> seen{start.channel};
    std::vector<std::string> frontier{start.dead_letter};
    while (!frontier.empty()) {
      const std::string ch = frontier.back();
      frontier.pop_back();
      if (ch.empty()) continue;
      if (seen.count(ch) != 0) {
        if (ch == start.channel) {
          err(start.line, "uplinks." + start.name + ".dead_letter",
              fmt::format("'{}' leads back to its own channel '{}': an event Kafka refuses would go round for good",
                          start.dead_letter, start.channel));
          break;
        }
        continue;
      }
      seen.insert(ch);
      for (const UplinkSpec& u : c.uplinks)
        if (u.channel == ch) frontier.push_back(u.dead_letter);
    }
  }
}

std::string type_name(OptionType t) {
  switch (t) {
    case OptionType::kString: return "a string";
    case OptionType::kStringList: return "a list of strings";
    case OptionType::kInt: return "an integer";
    case OptionType::kBool: return "true or false";
    case OptionType::kSize: return "a size such as \"64M\"";
    case OptionType::kEnum: return "one of the listed words";
  }
  return "?";
}

// Checks `tbl` against `specs` (plus `extra` keys handled by the caller) into `out`.
void parse_options(Ctx& ctx, std::string_view section, std::span<const OptionSpec> specs, const toml::table& tbl,
                   const std::set<std::string_view>& extra, OptionValues& out) {
  for (const auto& [key, node] : tbl) {
    const std::string_view k = key.str();
    const bool known = extra.count(k) != 0 ||
                       std::any_of(specs.begin(), specs.end(), [&](const OptionSpec& s) { return s.name == k; });
    if (!known && section.starts_with("channels.") && (k == "on_full" || k == "max_wait_ms")) {
      ctx.error(node.source(), fmt::format("{}.{}", section, k),
                "no longer an option: a collector never waits inside the agent; while its channel is full it holds "
                "its events and stops reading its input (delete the line)");
    } else if (!known) {
      std::string names;
      for (const auto& s : specs) names += (names.empty() ? "" : ", ") + std::string(s.name);
      ctx.error(node.source(), fmt::format("{}.{}", section, k), fmt::format("unknown key (known: {})", names));
    }
  }
  for (const OptionSpec& s : specs) {
    const std::string where = fmt::format("{}.{}", section, s.name);
    const toml::node* n = tbl.get(s.name);
    if (n == nullptr) {
      if (s.required) {
        ctx.error(tbl.source(), where, "required key is missing");
      } else {
        out.set(s.name, default_value(s));
      }
      continue;
    }
    auto bad = [&](const std::string& what) { ctx.error(n->source(), where, what); };
    switch (s.type) {
      case OptionType::kString:
        if (auto v = n->value<std::string>()) out.set(s.name, *v); else bad("must be " + type_name(s.type));
        break;
      case OptionType::kStringList: {
        std::vector<std::string> list;
        if (auto v = n->value<std::string>()) {
          list.push_back(*v);
        } else if (const toml::array* a = n->as_array()) {
          for (const auto& e : *a) {
            if (auto str = e.value<std::string>()) list.push_back(*str); else bad("every element must be a string");
          }
        } else {
          bad("must be " + type_name(s.type));
        }
        if (s.required && list.empty()) bad("must not be empty");
        out.set(s.name, std::move(list));
        break;
      }
      case OptionType::kBool:
        if (auto v = n->value<bool>()) out.set(s.name, *v); else bad("must be " + type_name(s.type));
        break;
      case OptionType::kInt:
      case OptionType::kSize: {
        std::optional<std::int64_t> v;
        if (auto i = n->value<std::int64_t>()) {
          v = *i;
        } else if (auto str = n->value<std::string>(); str && s.type == OptionType::kSize) {
          if (auto sz = core::parse_size(*str)) v = static_cast<std::int64_t>(*sz);
        }
        if (!v) {
          bad("must be " + type_name(s.type));
        } else if (*v < s.min || *v > s.max) {
          bad(fmt::format("{} is out of range [{}, {}]", *v, s.min, s.max));
        } else {
          out.set(s.name, *v);
        }
        break;
      }
      case OptionType::kEnum: {
        auto v = n->value<std::string>();
        if (v && std::find(s.choices.begin(), s.choices.end(), *v) != s.choices.end()) {
          out.set(s.name, *v);
        } else {
          std::string choices;
          for (auto c : s.choices) choices += (choices.empty() ? "" : ", ") + std::string(c);
          bad(fmt::format("must be one of: {}", choices));
        }
        break;
      }
    }
  }
}

// [[sources.NAME.interceptors]]: an array of tables, each with a type and its options; the
// chain is compiled here so that a bad regular expression is a config error with a line.
void parse_interceptors(Ctx& ctx, const std::string& section, const toml::node& node, SourceSpec& s) {
  const toml::array* a = node.as_array();
  if (a == nullptr) {
    ctx.error(node.source(), section, "must be an array of tables ([[" + section + "]])");
    return;
  }
  const std::size_t before = ctx.errors.size();
  for (std::size_t i = 0; i < a->size(); ++i) {
    const std::string where = fmt::format("{}[{}]", section, i);
    const toml::table* t = (*a)[i].as_table();
    if (t == nullptr) {
      ctx.error((*a)[i].source(), where, "must be a table");
      continue;
    }
    InterceptorSpec spec;
    const auto type = (*t)["type"].value<std::string>();
    if (type == "grep") {
      OptionValues v;
      parse_options(ctx, where, kGrepOptions, *t, {"type"}, v);
      if (ctx.errors.size() != before) continue;
      spec.include = v.str("include");
      spec.exclude = v.str("exclude");
    } else if (type == "fields") {
      OptionValues v;
      parse_options(ctx, where, kFieldsOptions, *t, {"type", "add"}, v);
      if (const toml::node* add = t->get("add")) {
        if (const toml::table* at = add->as_table()) {
          for (const auto& [k, val] : *at) {
            if (auto str = val.value<std::string>()) spec.add.emplace_back(std::string(k.str()), *str);
            else ctx.error(val.source(), where + ".add." + std::string(k.str()), "must be a string");
          }
        } else {
          ctx.error(add->source(), where + ".add", "must be a table of strings: add = { env = \"prod\" }");
        }
      }
      if (ctx.errors.size() != before) continue;
      spec.host_key = v.str("host");
      spec.timestamp_key = v.str("timestamp");
      spec.wrap_key = v.str("wrap");
    } else {
      const toml::node* tn = t->get("type");
      ctx.error(tn != nullptr ? tn->source() : t->source(), where + ".type", "must be one of: grep, fields");
      continue;
    }
    spec.type = *type;
    // Compiled here, so that a bad pattern is reported at its line.
    auto check = [&](const InterceptorSpec& one, const toml::node* at, const std::string& key) {
      try {
        (void)detail::InterceptorChain({one});
      } catch (const core::Error& e) {
        const std::string_view what = e.what();
        ctx.error(at != nullptr ? at->source() : t->source(), key, std::string(what.substr(what.find(": ") + 2)));
      }
    };
    if (spec.type == "grep" && !(spec.include.empty() && spec.exclude.empty())) {
      for (const char* key : {"include", "exclude"}) {
        InterceptorSpec one;
        one.type = "grep";
        (key == std::string_view("include") ? one.include : one.exclude) =
            key == std::string_view("include") ? spec.include : spec.exclude;
        if (!one.include.empty() || !one.exclude.empty()) check(one, t->get(key), where + "." + key);
      }
    } else {
      check(spec, nullptr, where);
    }
    s.interceptors.push_back(std::move(spec));
  }
}

}  // namespace

std::span<const OptionSpec> channel_options() { return kChannelOptions; }

std::span<const OptionSpec> interceptor_options(std::string_view type) {
  if (type == "grep") return kGrepOptions;
  if (type == "fields") return kFieldsOptions;
  return {};
}

ConfigResult load_agent_config(const std::filesystem::path& file) {
  ConfigResult r;
  Ctx ctx{file.string(), r.errors};
  toml::table root;
  try {
    root = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    r.errors.push_back(fmt::format("{}:{}: {}", file.string(), e.source().begin.line, e.description()));
    return r;
  }
  for (const auto& [key, node] : root) {
    const std::string_view k = key.str();
    if (k != "agent" && k != "channels" && k != "sources" && k != "uplinks")
      ctx.error(node.source(), k, "unknown section (known: agent, channels, sources, uplinks)");
    else if (!node.is_table())
      ctx.error(node.source(), k, "must be a table");
  }
  if (const toml::table* agent = root["agent"].as_table()) {
    OptionValues v;
    parse_options(ctx, "agent", kAgentOptions, *agent, {}, v);
    if (r.errors.empty()) {
      r.config.name = v.str("name");
      r.config.status_file = v.str("status_file");
      r.config.metrics = v.str("metrics");
    }
  }
  std::set<std::string> declared_channels;  // even ones with errors: no cascade of "no channel named"
  if (const toml::table* channels = root["channels"].as_table()) {
    for (const auto& [key, node] : *channels) {
      const std::string name(key.str());
      declared_channels.insert(name);
      const toml::table* t = node.as_table();
      if (t == nullptr) {
        ctx.error(node.source(), "channels." + name, "must be a table");
        continue;
      }
      OptionValues v;
      const std::size_t before = r.errors.size();
      parse_options(ctx, "channels." + name, kChannelOptions, *t, {}, v);
      if (r.errors.size() != before) continue;
      ChannelSpec c;
      c.name = name;
      c.line = static_cast<int>(t->source().begin.line);
      c.path = v.str("path");
      c.create.capacity = static_cast<std::uint64_t>(v.integer("capacity"));
      c.create.max_payload = static_cast<std::uint32_t>(
          std::min<std::int64_t>(v.integer("max_payload"), static_cast<std::int64_t>(c.create.capacity / 4 - 64)));
      c.create.source_slots = static_cast<std::uint32_t>(v.integer("source_slots"));
      const std::optional<unsigned> mode = core::parse_channel_mode(v.str("mode"));
      if (!mode)
        ctx.error(t->get("mode") ? t->get("mode")->source() : t->source(), "channels." + name + ".mode",
                  fmt::format("'{}': {}", v.str("mode"), core::kChannelModeRule));
      c.create.mode = static_cast<mode_t>(mode.value_or(0600));
      const std::string& sync = v.str("sync");
      c.open.sync = sync == "none" ? core::SyncPolicy::kNone
                                   : sync == "interval" ? core::SyncPolicy::kInterval : core::SyncPolicy::kEveryCommit;
      c.open.sync_interval = std::chrono::milliseconds(v.integer("sync_interval_ms"));
      c.open.abandon_timeout = std::chrono::milliseconds(v.integer("abandon_timeout_ms"));
      c.open.pretouch = v.boolean("pretouch");
      const std::uint64_t cap = c.create.capacity;
      if ((cap & (cap - 1)) != 0)
        ctx.error(t->get("capacity")->source(), "channels." + name + ".capacity", "must be a power of two");
      r.config.channels.push_back(std::move(c));
    }
  }
  if (const toml::table* sources = root["sources"].as_table()) {
    for (const auto& [key, node] : *sources) {
      const std::string name(key.str());
      const std::string section = "sources." + name;
      const toml::table* t = node.as_table();
      if (t == nullptr) {
        ctx.error(node.source(), section, "must be a table");
        continue;
      }
      SourceSpec s;
      s.name = name;
      const toml::node* type = t->get("type");
      const auto type_name_str = type ? type->value<std::string>() : std::nullopt;
      if (!type_name_str) {
        ctx.error(type ? type->source() : t->source(), section + ".type", "required: the kind of source (tail, stdin)");
        continue;
      }
      s.descriptor = find_source(*type_name_str);
      if (s.descriptor == nullptr) {
        std::string known;
        for (const auto& d : builtin_sources()) known += (known.empty() ? "" : ", ") + std::string(d.name);
        ctx.error(type->source(), section + ".type", fmt::format("unknown source type '{}' (known: {})", *type_name_str, known));
        continue;
      }
      const toml::node* chans = t->get("channels");
      if (chans == nullptr) {
        ctx.error(t->source(), section + ".channels", "required: the channels this source writes to");
      } else if (auto one = chans->value<std::string>()) {
        s.channels.push_back(*one);
      } else if (const toml::array* a = chans->as_array()) {
        for (const auto& e : *a)
          if (auto str = e.value<std::string>()) s.channels.push_back(*str);
      }
      for (std::size_t i = 0; i < s.channels.size(); ++i) {
        const std::string& c = s.channels[i];
        if (declared_channels.count(c) == 0)
          ctx.error(chans->source(), section + ".channels", fmt::format("no channel named '{}'", c));
        if (std::find(s.channels.begin(), s.channels.begin() + static_cast<std::ptrdiff_t>(i), c) !=
            s.channels.begin() + static_cast<std::ptrdiff_t>(i))  // each event would go there twice
          ctx.error(chans->source(), section + ".channels", fmt::format("'{}' is listed twice", c));
      }
      if (chans != nullptr && s.channels.empty())
        ctx.error(chans->source(), section + ".channels", "must name at least one channel");
      parse_options(ctx, section, s.descriptor->options, *t, {"type", "channels", "interceptors"}, s.options);
      if (const toml::node* ic = t->get("interceptors")) parse_interceptors(ctx, section + ".interceptors", *ic, s);
      r.config.sources.push_back(std::move(s));
    }
  }
  if (const toml::table* uplinks = root["uplinks"].as_table()) {
    for (const auto& [key, node] : *uplinks) {
      const std::string name(key.str());
      const std::string section = "uplinks." + name;
      const toml::table* t = node.as_table();
      if (t == nullptr) {
        ctx.error(node.source(), section, "must be a table");
        continue;
      }
      OptionValues v;
      const std::size_t before = r.errors.size();
      parse_options(ctx, section, kUplinkOptions, *t, {"kafka"}, v);
      UplinkSpec u;
      u.name = name;
      u.line = static_cast<int>(t->source().begin.line);
      if (const toml::node* k = t->get("kafka")) {
        if (const toml::table* kt = k->as_table()) {
          for (const auto& [kk, kv] : *kt) {
            if (auto str = kv.value<std::string>()) {
              u.kafka[std::string(kk.str())] = *str;
            } else {
              ctx.error(kv.source(), section + ".kafka." + std::string(kk.str()),
                        "librdkafka settings are strings (write \"10\", not 10)");
            }
          }
        } else {
          ctx.error(k->source(), section + ".kafka", "must be a table of librdkafka settings");
        }
      }
      if (r.errors.size() != before) continue;
      u.channel = v.str("channel");
      u.topic = v.str("topic");
      u.consumer = v.str("consumer");
      u.dead_letter = v.str("dead_letter");
      u.max_in_flight = v.integer("max_in_flight");
      u.packed = v.boolean("packed");
      u.pack_bytes = static_cast<std::uint64_t>(v.integer("pack_bytes"));
      u.regrow_after_s = v.integer("regrow_after_s");
      u.kafka["bootstrap.servers"] = v.str("bootstrap");
      for (const std::string& c : {u.channel, u.dead_letter}) {
        if (!c.empty() && declared_channels.count(c) == 0)
          ctx.error(t->source(), section, fmt::format("no channel named '{}'", c));
      }
      r.config.uplinks.push_back(std::move(u));
    }
  }
  check_wiring(r, file);
  if (r.config.sources.empty() && r.config.uplinks.empty() && r.errors.empty())
    r.errors.push_back(fmt::format("{}: no [sources.NAME] or [uplinks.NAME] section: nothing to do", file.string()));
  return r;
}

}  // namespace tributary::ingest
