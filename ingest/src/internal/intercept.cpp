#include "internal/intercept.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <fmt/format.h>
#include <re2/re2.h>
#include <simdjson.h>

#include "tributary/core/error.h"
#include "tributary/core/json.h"

namespace tributary::ingest::detail {

// ----------------------------------------------------------------------------------- Arena

char* Arena::allocate(std::size_t n) {
  while (block_ < blocks_.size() && sizes_[block_] - used_ < n) {
    ++block_;
    used_ = 0;
  }
  if (block_ == blocks_.size()) {
    const std::size_t size = std::max<std::size_t>(n, 64 << 10);
    blocks_.push_back(std::make_unique<char[]>(size));
    sizes_.push_back(size);
    used_ = 0;
  }
  char* p = blocks_[block_].get() + used_;
  used_ += n;
  return p;
}

std::string_view Arena::store(std::string_view s) {
  char* p = allocate(s.size());
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  return {p, s.size()};
}

void Arena::clear() noexcept {
  block_ = 0;
  used_ = 0;
  // Keep one block for the next batch; give back what a burst grew.
  if (blocks_.size() > 4) {
    blocks_.resize(1);
    sizes_.resize(1);
  }
}

// ----------------------------------------------------------------------------------- Steps

struct InterceptorChain::Step {
  virtual ~Step() = default;
  virtual std::optional<std::string_view> apply(std::string_view event, Arena& arena) const = 0;
};

namespace {

std::unique_ptr<RE2> compile(const std::string& pattern, std::string_view what) {
  RE2::Options o;
  o.set_log_errors(false);
  auto re = std::make_unique<RE2>(pattern, o);
  if (!re->ok()) throw core::Error(fmt::format("{}: bad regular expression '{}': {}", what, pattern, re->error()));
  return re;
}

class Grep final : public InterceptorChain::Step {
 public:
  explicit Grep(const InterceptorSpec& s) {
    if (s.include.empty() && s.exclude.empty()) throw core::Error("grep: give include or exclude (or both)");
    if (!s.include.empty()) include_ = compile(s.include, "grep: include");
    if (!s.exclude.empty()) exclude_ = compile(s.exclude, "grep: exclude");
  }
  std::optional<std::string_view> apply(std::string_view e, Arena&) const override {
    const re2::StringPiece piece(e.data(), e.size());
    if (include_ && !RE2::PartialMatch(piece, *include_)) return std::nullopt;
    if (exclude_ && RE2::PartialMatch(piece, *exclude_)) return std::nullopt;
    return e;
  }

 private:
  std::unique_ptr<RE2> include_, exclude_;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

class Fields final : public InterceptorChain::Step {
 public:
  explicit Fields(const InterceptorSpec& s) : timestamp_key_(s.timestamp_key), wrap_key_(s.wrap_key) {
    for (const auto& [k, v] : s.add) add_field(k, v);
    if (!s.host_key.empty()) {
      char host[256] = {};
      ::gethostname(host, sizeof host - 1);
      add_field(s.host_key, host);
    }
    if (!timestamp_key_.empty()) {
      timestamp_prefix_ = core::json_string(timestamp_key_) + ":";
    }
    if (static_.empty() && timestamp_key_.empty() && wrap_key_.empty())
      throw core::Error("fields: nothing to add (give add, host, timestamp or wrap)");
  }

  std::optional<std::string_view> apply(std::string_view e, Arena& arena) const override {
    const std::string_view t = trim(e);
    // Spliced into only if it really is a JSON object: "{oops}" would come out as invalid
    // JSON; it is treated as text instead (wrapped, or passed on as it is).
    bool object = t.size() >= 2 && t.front() == '{' && t.back() == '}';
    if (object) object = !parser_.parse(t.data(), t.size(), true).error();
    if (!object && wrap_key_.empty()) return e;
    std::string& out = scratch_;
    out.clear();
    out += '{';
    out += static_;
    if (!timestamp_key_.empty()) {
      out += timestamp_prefix_;
      append_now(out);
      out += ',';
    }
    if (object) {
      const std::string_view body = trim(t.substr(1));  // after '{', through the closing '}'
      if (body == "}" && out.back() == ',') out.pop_back();  // an empty object: no trailing comma
      out += body;
    } else {
      out += core::json_string(wrap_key_);
      out += ':';
      core::append_json_string(out, e);
      out += '}';
    }
    return arena.store(out);
  }

 private:
  mutable simdjson::dom::parser parser_;  // validates object-shaped events; reused, no allocation per event

  void add_field(const std::string& k, const std::string& v) {
    static_ += core::json_string(k);
    static_ += ':';
    static_ += core::json_string(v);
    static_ += ',';
  }

  // RFC 3339 UTC with milliseconds; the date-time part is formatted once per second.
  void append_now(std::string& out) const {
    const auto now = std::chrono::system_clock::now();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    const std::time_t sec = static_cast<std::time_t>(ms / 1000);
    if (sec != cached_second_) {
      std::tm tm{};
      ::gmtime_r(&sec, &tm);
      char buf[32];
      std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
      cached_ = buf;
      cached_second_ = sec;
    }
    out += '"';
    out += cached_;
    out += fmt::format(".{:03}Z\"", ms % 1000);
  }

  std::string static_;  // "k":"v", ... (each with its comma)
  std::string timestamp_key_;
  std::string timestamp_prefix_;
  std::string wrap_key_;
  // Per-chain scratch: a chain belongs to one source, and a source to one thread.
  mutable std::string scratch_;
  mutable std::string cached_;
  mutable std::time_t cached_second_ = -1;
};

}  // namespace

InterceptorChain::InterceptorChain(const std::vector<InterceptorSpec>& specs) {
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const InterceptorSpec& s = specs[i];
    try {
      if (s.type == "grep") steps_.push_back(std::make_unique<Grep>(s));
      else if (s.type == "fields") steps_.push_back(std::make_unique<Fields>(s));
      else throw core::Error(fmt::format("unknown type '{}' (grep, fields)", s.type));
    } catch (const core::Error& e) {
      throw core::Error(fmt::format("interceptor {}: {}", i + 1, e.what()));
    }
  }
}

InterceptorChain::~InterceptorChain() = default;

std::optional<std::string_view> InterceptorChain::apply(std::string_view event, Arena& arena) const {
  std::optional<std::string_view> e = event;
  for (const auto& step : steps_) {
    e = step->apply(*e, arena);
    if (!e) return std::nullopt;
  }
  return e;
}

}  // namespace tributary::ingest::detail
