// The one table of built-in sources and their options. Config validation, `tributary agent
// --help-sources` and docs/configuration.md are generated from it.
#include <charconv>
#include <stdexcept>

#include "tributary/core/units.h"

#include "tributary/ingest/source.h"

namespace tributary::ingest {

namespace tail {
std::unique_ptr<Source> create_tail(const OptionValues& v, SourceContext ctx);
}
std::unique_ptr<Source> create_stdin(const OptionValues& v, SourceContext ctx);

namespace {

constexpr std::string_view kStartAt[] = {"beginning", "end"};
constexpr std::string_view kOversize[] = {"split", "reject"};

constexpr OptionSpec kTailOptions[] = {
    {"paths", OptionType::kStringList, "", "Glob patterns of the files to follow", true},
    {"start_at", OptionType::kEnum, "beginning",
     "Where to start in files present at start-up that the channel has never seen", false, 0, 0, kStartAt},
    {"max_line", OptionType::kSize, "1M", "Longest line; longer ones are split or rejected (counted)", false, 16,
     64 << 20},
    {"oversize", OptionType::kEnum, "split", "What to do with a line longer than max_line", false, 0, 0, kOversize},
    {"poll_interval_ms", OptionType::kInt, "250",
     "Rescan period (inotify wakes it sooner); shorter finds new files sooner for a little CPU", false, 10, 60000},
    {"fingerprint_bytes", OptionType::kInt, "256",
     "A file is identified by its first N bytes; shorter files wait until they have N", false, 16, 65536},
    {"read_buffer", OptionType::kSize, "1M", "Bytes read per call: larger is fewer syscalls, more memory", false,
     4096, 64 << 20},
    {"batch_bytes", OptionType::kSize, "1M",
     "Payload bytes per channel transaction (capped at 1/8 of the channel)", false, 4096, 64 << 20},
    {"rotate_wait_ms", OptionType::kInt, "2000",
     "How long a rotated or deleted file is still read after its last byte", false, 0, 3600000},
};

constexpr OptionSpec kStdinOptions[] = {
    {"max_line", OptionType::kSize, "1M", "Longest line; longer ones are split or rejected (counted)", false, 16,
     64 << 20},
    {"oversize", OptionType::kEnum, "split", "What to do with a line longer than max_line", false, 0, 0, kOversize},
};

constexpr SourceDescriptor kBuiltins[] = {
    {"tail", "Follow files (globs, rotation, truncation) exactly once, resuming from the channel", kTailOptions,
     &tail::create_tail},
    {"stdin", "Lines from standard input (a new source each run)", kStdinOptions, &create_stdin},
};

}  // namespace

std::span<const SourceDescriptor> builtin_sources() { return kBuiltins; }

OptionValues::Value default_value(const OptionSpec& s) {
  switch (s.type) {
    case OptionType::kString:
    case OptionType::kEnum: return std::string(s.default_value);
    case OptionType::kStringList: return std::vector<std::string>{};
    case OptionType::kBool: return s.default_value == "true";
    case OptionType::kInt: {
      std::int64_t v = 0;
      std::from_chars(s.default_value.data(), s.default_value.data() + s.default_value.size(), v);
      return v;
    }
    case OptionType::kSize: return static_cast<std::int64_t>(core::parse_size(s.default_value).value_or(0));
  }
  return std::string();
}

OptionValues defaults_of(const SourceDescriptor& d) {
  OptionValues v;
  for (const auto& o : d.options) v.set(o.name, default_value(o));
  return v;
}

const SourceDescriptor* find_source(std::string_view type) {
  for (const auto& d : kBuiltins)
    if (d.name == type) return &d;
  return nullptr;
}

namespace {
// A plug-in reading an option its table does not declare is a programming error.
template <class T>
const T& get(const std::map<std::string, OptionValues::Value, std::less<>>& values, std::string_view name) {
  const auto it = values.find(name);
  if (it == values.end() || !std::holds_alternative<T>(it->second))
    throw std::logic_error("option '" + std::string(name) + "' is not declared with this type");
  return std::get<T>(it->second);
}
}  // namespace

const std::string& OptionValues::str(std::string_view name) const { return get<std::string>(values_, name); }
const std::vector<std::string>& OptionValues::list(std::string_view name) const {
  return get<std::vector<std::string>>(values_, name);
}
std::int64_t OptionValues::integer(std::string_view name) const { return get<std::int64_t>(values_, name); }
bool OptionValues::boolean(std::string_view name) const { return get<bool>(values_, name); }

}  // namespace tributary::ingest
