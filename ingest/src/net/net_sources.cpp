// The network sources: `tcp` and `udp` lines, and `syslog` (RFC 5424 / RFC 3164 over UDP or
// TCP, RFC 6587 octet-counted or newline framing, detected per message).
//
// Delivery: at most once, with every loss visible. A sender cannot be asked to send again,
// so each run of a source is a new source identity; what the kernel or the agent drops is
// counted (`dropped` for UDP datagrams the receive buffer could not hold, `rejected` and
// `oversize` for events over the size limit), never silently lost.
//
// Bounds (a slow or malicious sender cannot exhaust memory): at most `max_connections`
// connections (more are accepted and closed at once, counted), per connection a buffer that
// grows to at most one maximal event and shrinks back when idle, connections idle for
// `idle_timeout_ms` closed. Worst case: max_connections x (max event + 1) bytes.
// Back-pressure: while a channel is full the source stops reading; TCP senders then block
// in their kernel buffers, UDP datagrams are dropped by the kernel (and counted).
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fmt/format.h>

#include "internal/stream.h"
#include "net/socket.h"
#include "net/syslog.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"
#include "tributary/ingest/source.h"

namespace tributary::ingest::net {
namespace {

using Clock = std::chrono::steady_clock;
using core::Fd;
using Views = std::vector<std::span<const char>>;

constexpr std::size_t kMaxBatchEvents = 65536;

// What a framed message becomes: itself, or (syslog) a JSON object.
class Shaper {
 public:
  explicit Shaper(bool syslog_json) : json_(syslog_json) {}

  // `out` = the events for `in`; returns how many messages did not parse (kept raw).
  std::uint64_t shape(const Views& in, Views& out) {
    out.clear();
    if (!json_) {
      out = in;
      return 0;
    }
    arena_.clear();
    ends_.clear();
    std::uint64_t malformed = 0;
    const std::time_t now = std::time(nullptr);
    for (const auto& m : in) {
      const std::string_view text(m.data(), m.size());
      if (syslog::parse(text, now, message_)) {
        syslog::append_json(message_, arena_);
      } else {
        ++malformed;
        syslog::append_raw_json(text, arena_);
      }
      ends_.push_back(arena_.size());
    }
    std::size_t begin = 0;
    for (const std::size_t end : ends_) {
      out.emplace_back(arena_.data() + begin, end - begin);
      begin = end;
    }
    return malformed;
  }

 private:
  bool json_;
  std::string arena_;
  std::vector<std::size_t> ends_;
  syslog::Message message_;
};

struct NetOptions {
  std::string listen;
  std::size_t max_event = 64 << 10;
  bool split = true;
  detail::Framing framing = detail::Framing::kLines;
  bool syslog_json = false;
  std::size_t max_connections = 256;
  std::chrono::milliseconds idle_timeout{300000};
  std::size_t receive_buffer = 0;
};

// ------------------------------------------------------------------------------------- TCP

class TcpSource final : public Source {
 public:
  TcpSource(NetOptions o, SourceContext ctx)
      : o_(std::move(o)),
        ctx_(std::move(ctx)),
        emitter_(ctx_),
        shaper_(o_.syslog_json),
        epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_.valid()) core::throw_errno("source '" + ctx_.name + "': epoll_create1", errno);
    listener_ = listen_tcp(o_.listen, fmt::format("source '{}': listen", ctx_.name));
    endpoint_ = local_address(listener_.get());
    watch(listener_.get(), nullptr);
    if (ctx_.log) ctx_.log("info", fmt::format("listening on tcp {}", endpoint_));
  }

  std::size_t do_work() override {
    std::size_t work = 0;
    if (accept_paused_ && listener_.valid() && Clock::now() >= accept_resume_) {  // try accepting again
      accept_paused_ = false;
      watch(listener_.get(), nullptr);
    }
    if (!emitter_.refused()) {
      epoll_event ev[64];
      const int n = ::epoll_wait(epoll_.get(), ev, 64, 0);
      for (int i = 0; i < n; ++i) {
        auto* c = static_cast<Conn*>(ev[i].data.ptr);
        work += c == nullptr ? accept_some() : read_some(*c);
      }
      const auto now = Clock::now();
      if (now >= next_idle_check_) close_idle(now);
    }
    return work + flush();
  }

  [[nodiscard]] int wait_fd() const override { return emitter_.refused() ? -1 : epoll_.get(); }
  [[nodiscard]] Clock::time_point next_deadline() const override {
    const Clock::time_point t =
        emitter_.refused() ? emitter_.retry_at() : conns_.empty() ? Clock::time_point::max() : next_idle_check_;
    return accept_paused_ ? std::min(t, accept_resume_) : t;
  }
  [[nodiscard]] SourceMetrics metrics() const override {
    SourceMetrics m = metrics_;
    m.connections = conns_.size();
    return m;
  }
  [[nodiscard]] std::string endpoint() const override { return endpoint_; }

  // Stops accepting, appends the whole events already received (waiting up to `deadline` for
  // room in a full channel), closes every connection.
  void begin_stop() override {
    if (listener_.valid()) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listener_.get(), nullptr);
    listener_.reset();
    accept_paused_ = false;  // no listener: no accept to resume (next_deadline() would stay past)
  }
  bool drain_step(Clock::time_point deadline) override {
    // Reading would change the buffers a refused batch points into: only when none waits.
    if (!emitter_.refused() && !drain_read_) {
      for (auto& c : conns_) (void)read_some(*c);
      drain_read_ = true;
    }
    while (!dirty_.empty() && flush() != 0) {
    }
    return !emitter_.refused() ? drain_read_ : Clock::now() >= deadline;
  }
  void end_stop() override {
    if (emitter_.refused()) {
      metrics_.rejected += emitter_.held();
      if (ctx_.log)
        ctx_.log("warn", fmt::format("{} events received but not appended at stop (channel full)", emitter_.held()));
    }
    conns_.clear();
    dirty_.clear();
  }

 private:
  struct Conn {
    Conn(Fd f, const NetOptions& o) : fd(std::move(f)), framer(o.max_event, o.split, o.framing, 4096) {}
    Fd fd;
    detail::Framer framer;
    detail::Framer::Scan scan;
    bool eof = false;
    bool dirty = false;
    Clock::time_point last_active{};
  };

  void watch(int fd, Conn* c) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
  }

  std::size_t accept_some() {
    std::size_t n = 0;
    for (; n < 64; ++n) {
      Fd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd.valid()) {
        const int err = errno;
        if (err == EAGAIN || err == EINTR || err == ECONNABORTED) break;
        ++metrics_.errors;
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
          // Out of descriptors (or memory): the connection waits in the listen backlog, and the
          // listener stays readable, so it is taken out of the poll set for a while instead of
          // waking the agent's loop over and over (and the log with it).
          if (!accept_failing_ && ctx_.log)
            ctx_.log("error", fmt::format("accept on {}: {}: new connections wait in the listen backlog; trying "
                                          "again every {} ms",
                                          endpoint_, std::strerror(err), kAcceptRetry.count()));
          accept_failing_ = true;
          accept_paused_ = true;
          accept_resume_ = Clock::now() + kAcceptRetry;
          ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listener_.get(), nullptr);
        } else if (ctx_.log) {
          ctx_.log("error", fmt::format("accept on {}: {}", endpoint_, std::strerror(err)));
        }
        break;
      }
      if (accept_failing_) {
        accept_failing_ = false;
        if (ctx_.log) ctx_.log("info", fmt::format("accept on {}: accepting again", endpoint_));
      }
      if (conns_.size() >= o_.max_connections) {
        ++metrics_.refused_connections;
        if (!at_limit_ && ctx_.log)
          ctx_.log("warn", fmt::format("{} connections open (max_connections): refusing new ones", conns_.size()));
        at_limit_ = true;
        continue;  // closed by ~Fd
      }
      if (at_limit_ && ctx_.log) ctx_.log("info", "accepting connections again");
      at_limit_ = false;
      auto c = std::make_unique<Conn>(std::move(fd), o_);
      c->last_active = Clock::now();
      watch(c->fd.get(), c.get());
      conns_.push_back(std::move(c));
    }
    return n;
  }

  void mark_dirty(Conn& c) {
    if (c.dirty) return;
    c.dirty = true;
    dirty_.push_back(&c);
  }

  void stop_reading(Conn& c) {
    c.eof = true;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
    mark_dirty(c);
  }

  std::size_t read_some(Conn& c) {
    if (c.eof) return 0;
    std::size_t got = 0;
    for (int round = 0; round < 4; ++round) {
      const std::span<char> room = c.framer.space();
      if (room.empty()) break;  // a whole maximal event is buffered: flush() frames it first
      const ssize_t n = ::recv(c.fd.get(), room.data(), room.size(), 0);
      if (n > 0) {
        c.framer.filled(static_cast<std::size_t>(n));
        got += static_cast<std::size_t>(n);
        if (static_cast<std::size_t>(n) < room.size()) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (n < 0) ++metrics_.errors;  // a reset: what was received is still delivered
      stop_reading(c);
      break;
    }
    if (got != 0) {
      c.last_active = Clock::now();
      mark_dirty(c);
    }
    return got != 0 ? 1 : 0;
  }

  void close_idle(Clock::time_point now) {
    next_idle_check_ = now + std::min<Clock::duration>(o_.idle_timeout, std::chrono::seconds(1));
    for (auto& c : conns_)
      if (!c->eof && now - c->last_active >= o_.idle_timeout) stop_reading(*c);
  }

  // Frames what the dirty connections hold, appends it in one transaction per channel, then
  // closes the connections that are done. Returns the events appended.
  std::size_t flush() {
    if (dirty_.empty()) return 0;
    messages_.clear();
    std::size_t bytes = 0;
    for (Conn* c : dirty_) {
      const std::size_t before = messages_.size();
      const std::size_t left_events = kMaxBatchEvents - std::min(kMaxBatchEvents, before);
      const std::size_t left_bytes = emitter_.batch_bytes() - std::min(emitter_.batch_bytes(), bytes);
      // 0 left: nothing taken; after the batch's first event, no event past the budget
      c->scan = c->framer.scan(c->eof, messages_, left_events, left_bytes, messages_.empty());
      for (std::size_t i = before; i < messages_.size(); ++i) bytes += core::record_bytes(messages_[i].size());
    }
    const std::uint64_t malformed = shaper_.shape(messages_, events_);
    if (emitter_.emit(events_, metrics_) != detail::Emitter::Result::kOk) return 0;
    metrics_.malformed += malformed;
    bool closed = false;
    std::size_t keep = 0;
    for (Conn* c : dirty_) {
      metrics_.oversize += c->scan.oversize;
      metrics_.rejected += c->scan.rejected;
      c->framer.accept(c->scan);
      if (c->eof && c->framer.buffered() == 0) {
        c->fd.reset();  // closed below
        closed = true;
        continue;
      }
      c->dirty = !c->scan.complete;  // whole events left over: next round
      if (c->dirty) dirty_[keep++] = c;
    }
    dirty_.resize(keep);
    if (closed) std::erase_if(conns_, [](const std::unique_ptr<Conn>& c) { return !c->fd.valid(); });
    return events_.size() + (dirty_.empty() ? 0 : 1);
  }

  NetOptions o_;
  SourceContext ctx_;
  detail::Emitter emitter_;
  Shaper shaper_;
  Fd epoll_;
  Fd listener_;
  std::string endpoint_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> dirty_;  // connections with bytes not yet framed
  bool drain_read_ = false;   // a stop has read what the connections held
  bool at_limit_ = false;
  static constexpr std::chrono::milliseconds kAcceptRetry{100};
  bool accept_failing_ = false;  // accept() failed for want of descriptors (logged once)
  bool accept_paused_ = false;   // the listener is out of the poll set until accept_resume_
  Clock::time_point accept_resume_{};
  Clock::time_point next_idle_check_{};
  Views messages_;
  Views events_;
  SourceMetrics metrics_;
};

// ------------------------------------------------------------------------------------- UDP

class UdpSource final : public Source {
 public:
  UdpSource(NetOptions o, SourceContext ctx)
      : o_(std::move(o)), ctx_(std::move(ctx)), emitter_(ctx_), shaper_(o_.syslog_json) {
    fd_ = bind_udp(o_.listen, o_.receive_buffer, fmt::format("source '{}': listen", ctx_.name));
    endpoint_ = local_address(fd_.get());
    // One byte more than the largest event: a datagram that fills it was longer (MSG_TRUNC).
    slot_ = std::min<std::size_t>(o_.max_event, 65535) + 1;
    data_.resize(kSlots * slot_);
    if (ctx_.log) ctx_.log("info", fmt::format("listening on udp {}", endpoint_));
  }

  std::size_t do_work() override {
    if (const auto now = Clock::now(); now >= next_drop_check_) check_drops(now);
    if (emitter_.refused() && Clock::now() < emitter_.retry_at()) return 0;  // not yet: see emit()
    if (received_ == 0 && !receive()) return 0;
    // Frame the received datagrams (again, after a refusal: nothing was accepted then).
    messages_.clear();
    std::uint64_t oversize = 0;
    for (std::size_t i = 0; i < received_; ++i) {
      if ((msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
        ++oversize;
        continue;
      }
      frame(std::span<const char>(data_.data() + i * slot_, msgs_[i].msg_len));
    }
    const std::uint64_t malformed = shaper_.shape(messages_, events_);
    if (emitter_.emit(events_, metrics_) != detail::Emitter::Result::kOk) return 0;
    metrics_.oversize += oversize;
    metrics_.rejected += oversize;
    metrics_.malformed += malformed;
    const std::size_t n = received_;
    received_ = 0;
    return n;
  }

  [[nodiscard]] int wait_fd() const override { return emitter_.refused() ? -1 : fd_.get(); }
  [[nodiscard]] Clock::time_point next_deadline() const override {
    return std::min(emitter_.retry_at(), next_drop_check_);
  }
  [[nodiscard]] SourceMetrics metrics() const override {
    SourceMetrics m = metrics_;
    m.dropped = kernel_drops();
    return m;
  }
  [[nodiscard]] std::string endpoint() const override { return endpoint_; }
  // What is received already, and what the socket holds now, bounded: a sender that never
  // pauses must not keep the agent from stopping, nor a full channel (`deadline`).
  bool drain_step(Clock::time_point deadline) override {
    for (; drain_passes_ < 64; ++drain_passes_)
      if (do_work() == 0) return !emitter_.refused() || Clock::now() >= deadline;
    return true;
  }
  void end_stop() override {
    if (emitter_.refused()) {
      metrics_.rejected += emitter_.held();
      if (ctx_.log)
        ctx_.log("warn", fmt::format("{} events ({} datagrams) received but not appended at stop (channel full)",
                                     emitter_.held(), received_));
    }
  }

 private:
  static constexpr std::size_t kSlots = 16;

  bool receive() {
    for (std::size_t i = 0; i < kSlots; ++i) {
      iov_[i] = {data_.data() + i * slot_, slot_};
      msgs_[i] = {};
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = ::recvmmsg(fd_.get(), msgs_, kSlots, MSG_DONTWAIT, nullptr);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        ++metrics_.errors;
        if (ctx_.log) ctx_.log("error", fmt::format("recvmmsg on {}: {}", endpoint_, std::strerror(errno)));
      }
      return false;
    }
    received_ = static_cast<std::size_t>(n);
    return true;
  }

  // Datagrams the kernel dropped on this socket so far (its receive buffer was full).
  [[nodiscard]] std::uint64_t kernel_drops() const {
    std::uint32_t info[SK_MEMINFO_VARS] = {};
    socklen_t len = sizeof info;
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_MEMINFO, info, &len) != 0 || len <= SK_MEMINFO_DROPS * sizeof info[0])
      return metrics_.dropped;
    return info[SK_MEMINFO_DROPS];
  }

  void check_drops(Clock::time_point now) {
    next_drop_check_ = now + std::chrono::seconds(1);
    const std::uint64_t drops = kernel_drops();
    if (drops > metrics_.dropped && ctx_.log)
      ctx_.log("warn", fmt::format("the kernel dropped {} datagrams on {} (receive buffer full: raise socket_buffer)",
                                   drops - metrics_.dropped, endpoint_));
    metrics_.dropped = drops;
  }

  // A datagram is one syslog message, or one or more lines (the last '\n' optional).
  void frame(std::span<const char> d) {
    if (o_.syslog_json || o_.framing == detail::Framing::kSyslog) {
      while (!d.empty() && (d.back() == '\n' || d.back() == '\r' || d.back() == '\0')) d = d.first(d.size() - 1);
      if (!d.empty()) messages_.push_back(d);
      return;
    }
    while (!d.empty()) {
      const void* nl = std::memchr(d.data(), '\n', d.size());
      const std::size_t len = nl == nullptr ? d.size() : static_cast<std::size_t>(static_cast<const char*>(nl) - d.data());
      messages_.push_back(d.first(len));
      d = d.subspan(std::min(d.size(), len + 1));
    }
  }

  NetOptions o_;
  SourceContext ctx_;
  detail::Emitter emitter_;
  Shaper shaper_;
  Fd fd_;
  std::string endpoint_;
  std::size_t slot_ = 0;
  std::vector<char> data_;
  iovec iov_[kSlots]{};
  mmsghdr msgs_[kSlots]{};
  std::size_t received_ = 0;  // datagrams in the slots, not yet appended
  int drain_passes_ = 0;      // a stop's rounds of work (bounded: a sender that never pauses)
  Clock::time_point next_drop_check_{};
  Views messages_;
  Views events_;
  SourceMetrics metrics_;
};

NetOptions common(const OptionValues& v) {
  NetOptions o;
  o.listen = v.str("listen");
  if (v.all().count("max_connections") != 0) o.max_connections = static_cast<std::size_t>(v.integer("max_connections"));
  if (v.all().count("idle_timeout_ms") != 0) o.idle_timeout = std::chrono::milliseconds(v.integer("idle_timeout_ms"));
  if (v.all().count("socket_buffer") != 0) o.receive_buffer = static_cast<std::size_t>(v.integer("socket_buffer"));
  return o;
}

}  // namespace

std::unique_ptr<Source> create_tcp(const OptionValues& v, SourceContext ctx) {
  NetOptions o = common(v);
  o.split = v.str("oversize") == "split";
  o.max_event = detail::fit_max_event(ctx, "max_line", static_cast<std::size_t>(v.integer("max_line")),
                                      o.split ? "split" : "rejected");
  return std::make_unique<TcpSource>(std::move(o), std::move(ctx));
}

std::unique_ptr<Source> create_udp(const OptionValues& v, SourceContext ctx) {
  NetOptions o = common(v);
  o.max_event = detail::fit_max_event(ctx, "max_line", static_cast<std::size_t>(v.integer("max_line")), "rejected");
  return std::make_unique<UdpSource>(std::move(o), std::move(ctx));
}

std::unique_ptr<Source> create_syslog(const OptionValues& v, SourceContext ctx) {
  NetOptions o = common(v);
  o.max_event = detail::fit_max_event(ctx, "max_message", static_cast<std::size_t>(v.integer("max_message")), "rejected");
  o.split = false;  // a syslog message is not split: longer ones are rejected (counted)
  o.framing = detail::Framing::kSyslog;
  o.syslog_json = v.str("format") == "json";
  if (v.str("protocol") == "tcp") return std::make_unique<TcpSource>(std::move(o), std::move(ctx));
  return std::make_unique<UdpSource>(std::move(o), std::move(ctx));
}

}  // namespace tributary::ingest::net
