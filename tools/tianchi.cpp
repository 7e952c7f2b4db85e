// Tianchi-shaped data generation and replay. The generator is a plain loop over users writing
// into large buffers (several million rows per second); shapes follow the real data set:
// most buyers 18-49 with 30-34 the largest group, more female than male, empty and 0 codes,
// a skewed (Zipf-like) number of rows per user, the log ordered by user, dates from May to
// November with the Double-11 spike.
#include "tianchi.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fmt/format.h>
#include <atomic>
#include <exception>
#include <fstream>
#include <memory>
#include <thread>

#include "net/socket.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"

namespace tributary::tools {
namespace {

// xoshiro256** : fast, good enough, deterministic across platforms.
struct Rng {
  std::uint64_t s[4];
  explicit Rng(std::uint64_t seed) {
    for (auto& x : s) {  // splitmix64 seeding
      seed += 0x9e3779b97f4a7c15ull;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      x = z ^ (z >> 31);
    }
  }
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t next() {
    const std::uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  // Index by cumulative weights (small tables).
  template <std::size_t N>
  std::size_t pick(const double (&cum)[N]) {
    const double u = uniform();
    for (std::size_t i = 0; i < N; ++i)
      if (u < cum[i]) return i;
    return N - 1;
  }
};

// age_range codes "", 0..8 and gender codes "", 0, 1, 2: cumulative weights.
constexpr const char* kAgeCodes[] = {"", "0", "1", "2", "3", "4", "5", "6", "7", "8"};
constexpr double kAgeCum[] = {0.03, 0.05, 0.06, 0.17, 0.37, 0.69, 0.83, 0.94, 0.98, 1.0};
constexpr const char* kGenderCodes[] = {"", "0", "1", "2"};
constexpr double kGenderCum[] = {0.03, 0.68, 0.96, 1.0};
constexpr double kActionCum[] = {0.85, 0.87, 0.93, 1.0};  // click, cart, purchase, favourite

class Out {
 public:
  explicit Out(const std::filesystem::path& p) : f_(std::fopen(p.c_str(), "w")), path_(p) {
    if (f_ == nullptr) throw core::Error(fmt::format("cannot write {}", p.string()));
    buf_.reserve(1 << 20);
  }
  ~Out() { close(); }
  fmt::memory_buffer& buf() { return buf_; }
  void maybe_flush() {
    if (buf_.size() > (1 << 20)) flush();
  }
  void close() {
    if (f_ == nullptr) return;
    flush();
    if (std::fclose(f_) != 0) throw core::Error(fmt::format("cannot write {}", path_.string()));
    f_ = nullptr;
  }

 private:
  void flush() {
    if (std::fwrite(buf_.data(), 1, buf_.size(), f_) != buf_.size())
      throw core::Error(fmt::format("cannot write {} (disk full?)", path_.string()));
    buf_.clear();
  }
  std::FILE* f_;
  std::filesystem::path path_;
  fmt::memory_buffer buf_;
};

// Integers and separators written in place (fmt::format_to per row was 5x slower): the caller
// reserves room for a whole row first.
char* put(char* p, std::uint64_t v, char sep) {
  p = std::to_chars(p, p + 20, v).ptr;  // 20 digits hold any uint64
  *p++ = sep;
  return p;
}

int random_day(Rng& rng) {
  if (rng.uniform() < 0.12) return 1111;  // Double 11
  // The log spans 11 May to 12 November, like the real one.
  static constexpr int kDays[] = {21, 30, 31, 31, 30, 31, 12};  // May 11-31, June .. Nov 1-12
  int n = static_cast<int>(rng.next() % 186);
  for (int m = 0; m < 7; ++m) {
    if (n < kDays[m]) return (5 + m) * 100 + (m == 0 ? 11 + n : n + 1);
    n -= kDays[m];
  }
  return 1111;
}

}  // namespace

GenResult generate_tianchi(const std::filesystem::path& dir, const GenOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  std::filesystem::create_directories(dir);
  Rng rng(o.seed);
  GenResult r;
  {
    Out info(dir / "user_info_format1.csv");
    fmt::format_to(std::back_inserter(info.buf()), "user_id,age_range,gender\n");
    for (std::uint64_t u = 1; u <= o.users; ++u) {
      if (rng.uniform() < 0.05) continue;  // users missing from user_info
      fmt::format_to(std::back_inserter(info.buf()), "{},{},{}\n", u, kAgeCodes[rng.pick(kAgeCum)],
                     kGenderCodes[rng.pick(kGenderCum)]);
      ++r.info_rows;
      info.maybe_flush();
    }
    info.close();
  }
  // Rows per user: Zipf-like weights 1/rank^0.9 over a shuffled rank, scaled to o.rows.
  std::vector<double> w(o.users);
  double sum = 0;
  for (std::uint64_t u = 0; u < o.users; ++u) sum += w[u] = 1.0 / std::pow(double(1 + rng.next() % o.users), 0.7);
  Out log(dir / "user_log_format1.csv");
  fmt::format_to(std::back_inserter(log.buf()), "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n");
  std::uint64_t written = 0;
  std::string prev;
  for (std::uint64_t u = 0; u < o.users && written < o.rows; ++u) {
    std::uint64_t n = static_cast<std::uint64_t>(double(o.rows) * w[u] / sum + rng.uniform());
    if (u + 1 == o.users) n = o.rows - written;  // the last user takes the remainder
    n = std::min(n, o.rows - written);
    for (std::uint64_t i = 0; i < n; ++i, ++written) {
      auto& b = log.buf();
      const std::size_t start = b.size();
      if (o.duplicates > 0 && !prev.empty() && rng.uniform() < o.duplicates) {
        b.append(prev.data(), prev.data() + prev.size());
      } else if (o.malformed > 0 && rng.uniform() < o.malformed) {
        switch (rng.next() % 3) {
          case 0: fmt::format_to(std::back_inserter(b), "{},{},{}\n", u + 1, rng.next() % 1000000, 7); break;
          case 1: fmt::format_to(std::back_inserter(b), "{},x{},1,2,3,{},2\n", u + 1, rng.next() % 100, random_day(rng)); break;
          default: fmt::format_to(std::back_inserter(b), "user{},1,2,3,4,{},2\n", u + 1, random_day(rng)); break;
        }
      } else {
        const double x = rng.uniform();
        const std::uint64_t item = 1 + static_cast<std::uint64_t>(x * x * 1100000.0);
        const std::size_t at = b.size();
        b.resize(at + 7 * 21);  // room for seven numbers and their separators
        char* p = b.data() + at;
        p = put(p, u + 1, ',');
        p = put(p, item, ',');
        p = put(p, 1 + item % 1600, ',');
        p = put(p, 1 + item % 4900, ',');
        p = put(p, item % 8400, ',');
        p = put(p, static_cast<std::uint64_t>(random_day(rng)), ',');
        p = put(p, rng.pick(kActionCum), '\n');
        b.resize(static_cast<std::size_t>(p - b.data()));
      }
      if (o.duplicates > 0) prev.assign(b.data() + start, b.data() + b.size());
      log.maybe_flush();
    }
  }
  log.close();
  r.log_rows = written;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

namespace {

// A data row as JSON if it is 7 fields of which user_id, time_stamp and action_type are
// integers; otherwise nullopt (sent raw: the analyzer rejects it, counted).
bool to_json(std::string_view line, fmt::memory_buffer& out) {
  std::string_view f[7];
  std::size_t n = 0, start = 0;
  for (;;) {
    const std::size_t c = line.find(',', start);
    if (n == 7) return false;
    f[n++] = line.substr(start, c == std::string_view::npos ? std::string_view::npos : c - start);
    if (c == std::string_view::npos) break;
    start = c + 1;
  }
  if (n != 7) return false;
  auto integer = [](std::string_view s) {
    if (s.empty()) return false;
    std::size_t i = s[0] == '-' ? 1 : 0;
    if (i == s.size()) return false;
    for (; i < s.size(); ++i)
      if (s[i] < '0' || s[i] > '9') return false;
    return true;
  };
  if (!integer(f[0]) || !integer(f[5]) || !integer(f[6])) return false;
  // As a JSON number: no leading zeros ("0511" is 511, which a %m%d pattern reads as May 11).
  auto number = [](std::string_view s) {
    const std::size_t sign = s[0] == '-' ? 1 : 0;
    const std::size_t zeros = std::min(s.find_first_not_of('0', sign), s.size() - 1) - sign;
    return zeros == 0 ? std::string(s) : std::string(s.substr(0, sign)) + std::string(s.substr(sign + zeros));
  };
  auto val = [&](std::string_view s) -> std::string { return integer(s) ? number(s) : fmt::format("\"{}\"", s); };
  fmt::format_to(std::back_inserter(out),
                 R"({{"user_id":{},"item_id":{},"cat_id":{},"seller_id":{},"brand_id":{},"time_stamp":{},"action_type":{}}})"
                 "\n",
                 number(f[0]), val(f[1]), val(f[2]), val(f[3]), val(f[4]), number(f[5]), number(f[6]));
  return true;
}

// Where one writer's lines go: its log file (appended, flushed per write so that a tail
// collector sees whole chunks), or its own TCP connection. A connection that takes no byte
// for kStall fails the replay, and at the end the replay waits (as long again at most) for
// the receiver to close its side after reading everything: an agent's tcp source does that
// once every line is in its channel.
class Sink {
 public:
  static constexpr int kStallSeconds = 60;
  static std::unique_ptr<Sink> file(const std::filesystem::path& p) {
    auto s = std::unique_ptr<Sink>(new Sink(p.string()));
    s->f_ = std::fopen(p.c_str(), "a");
    if (s->f_ == nullptr) core::throw_errno(fmt::format("replay: cannot open {} for appending", p.string()), errno);
    return s;
  }
  static std::unique_ptr<Sink> tcp(const std::string& address, const std::string& name) {
    auto s = std::unique_ptr<Sink>(new Sink(name));
    s->fd_ = ingest::net::connect_tcp(address, "replay --to tcp");
    const timeval stall{kStallSeconds, 0};
    ::setsockopt(s->fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &stall, sizeof stall);
    ::setsockopt(s->fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &stall, sizeof stall);
    return s;
  }
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;
  ~Sink() {
    if (f_ != nullptr) std::fclose(f_);
  }

  void write(const char* p, std::size_t n) {
    if (f_ != nullptr) {
      if (std::fwrite(p, 1, n, f_) != n || std::fflush(f_) != 0)
        core::throw_errno(fmt::format("replay: writing {}", name_), errno);
      return;
    }
    while (n > 0) {
      const ssize_t w = ::send(fd_.get(), p, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          throw core::Error(fmt::format("replay: {} took no byte for {} s", name_, kStallSeconds));
        core::throw_errno(fmt::format("replay: sending to {}", name_), errno);
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }

  // Everything written: the file closed; or the connection's sending side shut and the
  // receiver's close awaited (it has read to the end).
  void close() {
    if (f_ != nullptr) {
      const int rc = std::fclose(f_);
      f_ = nullptr;
      if (rc != 0) core::throw_errno(fmt::format("replay: closing {}", name_), errno);
      return;
    }
    if (!fd_.valid()) return;
    if (::shutdown(fd_.get(), SHUT_WR) != 0) core::throw_errno(fmt::format("replay: ending the stream to {}", name_), errno);
    char scratch[4096];
    for (;;) {
      const ssize_t r = ::recv(fd_.get(), scratch, sizeof scratch, 0);
      if (r == 0) break;  // the receiver closed: it read everything
      if (r > 0 || errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        throw core::Error(fmt::format("replay: {} did not close within {} s of the end of the stream", name_, kStallSeconds));
      core::throw_errno(fmt::format("replay: waiting for {} to read to the end", name_), errno);
    }
    // The socket stays open until the Sink goes (after every writer is joined): abort() from
    // another writer never meets a closed or reused descriptor.
  }

  // Another writer failed: a send blocked on this connection returns at once.
  void abort() noexcept {
    if (fd_.valid()) ::shutdown(fd_.get(), SHUT_RDWR);
  }

 private:
  explicit Sink(std::string name) : name_(std::move(name)) {}
  std::string name_;
  std::FILE* f_ = nullptr;
  core::Fd fd_;
};

}  // namespace

ReplayResult replay(const ReplayOptions& o) {
  std::ifstream in(o.input);
  if (!in) throw core::Error(fmt::format("cannot read {}", o.input.string()));
  std::string header;
  std::getline(in, header);
  if (!header.empty() && header.back() == '\r') header.pop_back();
  if (header != "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type")
    throw core::Error(fmt::format("{}: the header is '{}', expected the user_log header "
                                  "'user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type'",
                                  o.input.string(), header.substr(0, 100)));
  const int c = std::max(1, o.concurrency);
  ReplayResult r;
  r.lines.assign(static_cast<std::size_t>(c), 0);
  r.malformed.assign(static_cast<std::size_t>(c), 0);
  if (o.tcp.empty()) {
    std::filesystem::create_directories(o.out_dir);
    for (int k = 0; k < c; ++k) {
      r.files.push_back(o.out_dir / fmt::format("replay-{}.log", k));
      r.destinations.push_back(r.files.back().string());
    }
  } else {
    for (int k = 0; k < c; ++k) r.destinations.push_back(fmt::format("{} connection {}", o.tcp, k));
  }
  // Every connection is made before any row is sent: a refused address fails the replay
  // before anything went out.
  std::vector<std::unique_ptr<Sink>> sinks;
  for (int k = 0; k < c; ++k)
    sinks.push_back(o.tcp.empty() ? Sink::file(r.files[static_cast<std::size_t>(k)]) : Sink::tcp(o.tcp, r.destinations[static_cast<std::size_t>(k)]));
  // Writer k reads the input itself and takes every c-th chunk of lines (every c-th line when
  // paced): memory stays flat whatever the file size, and the page cache makes the extra
  // reads cheap.
  const auto t0 = std::chrono::steady_clock::now();
  constexpr std::uint64_t kChunk = 4096;
  std::vector<std::thread> writers;
  std::vector<std::exception_ptr> failed(static_cast<std::size_t>(c));
  std::atomic<bool> stop{false};  // a writer failed, or a stop was asked: the others stop too
  std::atomic<bool> interrupted{false};
  auto asked_to_stop = [&] {
    pollfd p{o.stop_fd, POLLIN, 0};
    if (o.stop_fd < 0 || ::poll(&p, 1, 0) <= 0) return false;
    interrupted = stop = true;
    return true;
  };
  for (int k = 0; k < c; ++k) {
    writers.emplace_back([&, k] {
      try {
        Sink& out = *sinks[static_cast<std::size_t>(k)];
        std::ifstream src(o.input);
        std::string l;
        std::getline(src, l);  // the header, checked above
        fmt::memory_buffer buf;
        // Paced, the rows are dealt one by one and each is due at its place in the whole stream
        // (row / rate): the total rate is the one asked for and the writers are even. (Dealt in
        // chunks and paced per writer, a short input went mostly to one writer at rate / c.)
        const std::uint64_t chunk = o.rate > 0 ? 1 : kChunk;
        std::uint64_t sent = 0, row = 0;
        while (!stop.load(std::memory_order_relaxed) && std::getline(src, l)) {
          if (!l.empty() && l.back() == '\r') l.pop_back();
          if (l.empty()) continue;  // skipped, not sent
          const std::uint64_t index = row++;
          if ((index / chunk) % static_cast<std::uint64_t>(c) != static_cast<std::uint64_t>(k)) continue;
          if ((o.rate > 0 || sent % kChunk == 0) && asked_to_stop()) break;  // this writer's rows
          if (!to_json(l, buf)) {
            buf.append(l.data(), l.data() + l.size());
            buf.push_back('\n');
            ++r.malformed[static_cast<std::size_t>(k)];
          }
          ++sent;
          if (buf.size() > (256 << 10)) {
            out.write(buf.data(), buf.size());
            buf.clear();
          }
          if (o.rate > 0) {  // pacing the load generator to the asked rate
            const auto due = t0 + std::chrono::duration<double>(double(index + 1) / o.rate);
            if (std::chrono::steady_clock::now() < due) {
              out.write(buf.data(), buf.size());
              buf.clear();
              std::this_thread::sleep_until(due);
            }
          }
        }
        if (interrupted) {  // no flush nor close: over TCP either may wait on a slow receiver
          out.abort();
          return;
        }
        out.write(buf.data(), buf.size());
        out.close();
        r.lines[static_cast<std::size_t>(k)] = sent;
      } catch (...) {
        failed[static_cast<std::size_t>(k)] = std::current_exception();
        stop = true;
        for (auto& sink : sinks) sink->abort();
      }
    });
  }
  for (auto& t : writers) t.join();
  for (const auto& e : failed)
    if (e) std::rethrow_exception(e);
  if (interrupted) throw core::Error(fmt::format("replay of {} interrupted", o.input.string()));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string toml_quoted(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\u{:04X}", u);
    } else {
      out += c;
    }
  }
  return out += '"';
}

std::string glob_escaped(std::string_view path) {
  std::string out;
  for (const char c : path) {
    if (c == '\\' || c == '*' || c == '?' || c == '[') out += '\\';
    out += c;
  }
  return out;
}

std::string tianchi_analyze_config(const std::string& input, const std::filesystem::path& user_info,
                                   const std::filesystem::path& state_dir, int checkpoint_ms) {
  return fmt::format(R"([input]
{}format = "json"
[fields]
user_id = "/user_id"
time_stamp = "/time_stamp"
action_type = "/action_type"
[checks]
integers = ["user_id", "time_stamp", "action_type"]
[filter]
action_type = ["2"]
[join]
file = {}
key_column = "user_id"
key_field = "user_id"
columns = ["age_range", "gender"]
[labels.age_range]
map = {{ "1" = "<18", "2" = "18-24", "3" = "25-29", "4" = "30-34", "5" = "35-39", "6" = "40-49", "7" = ">=50", "8" = ">=50" }}
order = ["<18", "18-24", "25-29", "30-34", "35-39", "40-49", ">=50", "unknown"]
[labels.gender]
map = {{ "0" = "female", "1" = "male" }}
order = ["female", "male", "unknown"]
[[outputs]]
name = "orders_by_age"
by = "age_range"
file = "orders_by_age.csv"
header = "age_range,orders,share"
[[outputs]]
name = "orders_by_gender"
by = "gender"
file = "orders_by_gender.csv"
header = "gender,orders,share"
[[outputs]]
name = "orders_by_day"
by = "time_stamp"
file = "orders_by_day.csv"
header = "day,orders"
pad = 4
share = false
[state]
dir = {}
checkpoint_ms = {}
)",
                     input, toml_quoted(user_info.string()), toml_quoted(state_dir.string()), checkpoint_ms);
}

}  // namespace tributary::tools
