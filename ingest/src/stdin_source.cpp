// The `stdin` source: lines from standard input. It cannot replay, so each run is a new
// source (fresh id, sequence from 0): what was read but not yet appended when the process
// dies is lost and shows downstream as the end of that source, never as a duplicate.
// At EOF a final line without '\n' is appended too, and the source reports finished().
#include <fcntl.h>
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
    detail::check_max_event(ctx_, "max_line", max_line);
    old_flags_ = ::fcntl(0, F_GETFL);
    if (old_flags_ >= 0) ::fcntl(0, F_SETFL, old_flags_ | O_NONBLOCK);
  }
  ~StdinSource() override {
    if (old_flags_ >= 0) ::fcntl(0, F_SETFL, old_flags_);
  }

  std::size_t do_work() override {
    if (!emitter_.refused() && !eof_) read_some();
    events_.clear();
    const auto scan = framer_.scan(eof_, events_, 65536, emitter_.batch_bytes());
    if (emitter_.emit(events_, metrics_) != detail::Emitter::Result::kOk) return 0;  // full: retry later
    metrics_.oversize += scan.oversize;
    metrics_.rejected += scan.rejected;
    framer_.accept(scan);
    return events_.size() + (scan.complete ? 0 : 1);
  }

  [[nodiscard]] int wait_fd() const override { return eof_ || emitter_.refused() ? -1 : 0; }
  [[nodiscard]] std::chrono::steady_clock::time_point next_deadline() const override { return emitter_.retry_at(); }
  [[nodiscard]] bool finished() const override { return eof_ && framer_.buffered() == 0; }
  [[nodiscard]] SourceMetrics metrics() const override { return metrics_; }

 private:
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
  int old_flags_ = -1;
  SourceMetrics metrics_;
};

}  // namespace

std::unique_ptr<Source> create_stdin(const OptionValues& v, SourceContext ctx) {
  return std::make_unique<StdinSource>(static_cast<std::size_t>(v.integer("max_line")), v.str("oversize") == "split",
                                       std::move(ctx));
}

}  // namespace tributary::ingest
