// The `stdin` source: lines from standard input. It cannot replay, so each run is a new
// source (fresh id, sequence from 0): what was read but not yet appended when the process
// dies is lost and shows downstream as the end of that source, never as a duplicate.
// At EOF a final line without '\n' is appended too, and the source reports finished().
// A reload (SIGHUP) replaces the source with a new one on the same stdin: its stop appends all
// this one read and reads a line it began to its end, so the next one starts at a line.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "internal/stream.h"
#include "tributary/ingest/source.h"

namespace tributary::ingest {
namespace {

class StdinSource final : public Source {
 public:
  StdinSource(std::size_t max_line, bool split, SourceContext ctx)
      : ctx_(std::move(ctx)), framer_(max_line, split, detail::Framing::kLines, 1 << 20), emitter_(ctx_) {
    old_flags_ = ::fcntl(0, F_GETFL);
    if (old_flags_ >= 0) ::fcntl(0, F_SETFL, old_flags_ | O_NONBLOCK);
  }
  ~StdinSource() override {
    if (old_flags_ >= 0) ::fcntl(0, F_SETFL, old_flags_);
  }

  std::size_t do_work() override {
    if (!emitter_.refused() && !eof_) read_some();
    return append_held(eof_);
  }

  // Whatever it read: the whole lines (waiting for room up to `deadline`), then the rest of a
  // line it began, read a byte at a time (nothing after its '\n' is taken from stdin) until
  // then; a line still open then is appended as it is.
  bool drain_step(std::chrono::steady_clock::time_point deadline) override {
    for (;;) {
      if (append_held(eof_ || rest_) != 0) continue;
      if (emitter_.refused()) return Clock::now() >= deadline;
      if ((framer_.buffered() == 0 && !framer_.mid_event()) || eof_ || rest_) return true;
      switch (read_line_end()) {
        case LineEnd::kRead:
          continue;
        case LineEnd::kFull:  // a whole maximal event read: cut at the next step (the others go on)
          if (Clock::now() >= deadline) rest_ = true;
          return false;
        case LineEnd::kEnd:  // the end of stdin: the line goes as it is
          rest_ = true;
          continue;
        case LineEnd::kNotYet:
          if (Clock::now() < deadline) return false;  // wait_fd(): woken when stdin has more
          rest_ = true;
          continue;
      }
    }
  }
  void end_stop() override {
    if (!emitter_.refused()) return;
    metrics_.rejected += emitter_.held();
    if (ctx_.log)
      ctx_.log("warn", fmt::format("stdin: {} bytes read ({} events of them waiting) not appended at stop (channel full)",
                                   framer_.buffered(), emitter_.held()));
  }

  [[nodiscard]] int wait_fd() const override { return eof_ || emitter_.refused() ? -1 : 0; }
  [[nodiscard]] std::chrono::steady_clock::time_point next_deadline() const override { return emitter_.retry_at(); }
  [[nodiscard]] bool finished() const override { return eof_ && framer_.buffered() == 0; }
  [[nodiscard]] SourceMetrics metrics() const override { return metrics_; }

 private:
  using Clock = std::chrono::steady_clock;

  // Appends the whole events held (with `at_eof`, an unterminated last one too); returns how
  // many, plus one if more are left. 0 with refused(): the channel is full, nothing consumed.
  std::size_t append_held(bool at_eof) {
    events_.clear();
    const auto scan = framer_.scan(at_eof, events_, 65536, emitter_.batch_bytes());
    if (emitter_.emit(events_, metrics_) != detail::Emitter::Result::kOk) return 0;  // full: retry later
    metrics_.oversize += scan.oversize;
    metrics_.rejected += scan.rejected;
    framer_.accept(scan);
    return events_.size() + (scan.complete ? 0 : 1);
  }

  enum class LineEnd { kRead, kFull, kEnd, kNotYet };
  // Reads what stdin has now one byte at a time, up to a '\n' (kRead) or a whole maximal event
  // (kFull: the framer cuts it), the end of stdin (kEnd), or nothing more for now (kNotYet).
  // Never waits.
  LineEnd read_line_end() {
    for (;;) {
      const std::span<char> room = framer_.space();
      if (room.empty()) return LineEnd::kFull;
      pollfd p{0, POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) return LineEnd::kNotYet;
      const ssize_t n = ::read(0, room.data(), 1);
      if (n == 1) {
        framer_.filled(1);
        if (room[0] == '\n') return LineEnd::kRead;
      } else if (n == 0) {
        eof_ = true;
        return LineEnd::kEnd;
      } else if (errno == EAGAIN) {
        return LineEnd::kNotYet;
      } else if (errno != EINTR) {
        ++metrics_.errors;
        if (ctx_.log) ctx_.log("error", fmt::format("read stdin: {}", std::strerror(errno)));
        eof_ = true;
        return LineEnd::kEnd;
      }
    }
  }

  void read_some() {
    const std::span<char> room = framer_.space();
    if (room.empty()) return;
    const ssize_t n = ::read(0, room.data(), room.size());
    if (n > 0) {
      framer_.filled(static_cast<std::size_t>(n));
    } else if (n == 0) {
      eof_ = true;
    } else if (errno != EAGAIN && errno != EINTR) {
      ++metrics_.errors;
      if (ctx_.log) ctx_.log("error", fmt::format("read stdin: {}", std::strerror(errno)));
      eof_ = true;
    }
  }

  SourceContext ctx_;
  detail::Framer framer_;
  detail::Emitter emitter_;
  std::vector<std::span<const char>> events_;
  bool eof_ = false;
  bool rest_ = false;  // a stop reads no more: a line still open goes as it is
  int old_flags_ = -1;
  SourceMetrics metrics_;
};

}  // namespace

std::unique_ptr<Source> create_stdin(const OptionValues& v, SourceContext ctx) {
  const bool split = v.str("oversize") == "split";
  const std::size_t max_line =
      detail::fit_max_event(ctx, "max_line", static_cast<std::size_t>(v.integer("max_line")), split ? "split" : "rejected");
  return std::make_unique<StdinSource>(max_line, split, std::move(ctx));
}

}  // namespace tributary::ingest
