// The `stdin` source: lines from standard input. It cannot replay, so each run is a new
// source (fresh id, sequence from 0): what was read but not yet appended when the process
// dies is lost and shows downstream as the end of that source, never as a duplicate.
// At EOF a final line without '\n' is appended too, and the source reports finished().
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "internal/lines.h"
#include "tributary/ingest/producer.h"
#include "tributary/ingest/source.h"

namespace tributary::ingest {
namespace {

class StdinSource final : public Source {
 public:
  StdinSource(std::size_t max_line, bool split, SourceContext ctx)
      : max_line_(max_line), split_(split), ctx_(std::move(ctx)), id_(new_source_id()) {
    for (core::Channel* ch : ctx_.channels) producers_.push_back(ch->producer(ctx_.producer_options));
    buf_.resize(std::max<std::size_t>(max_line_ + 1, 1 << 20));
    old_flags_ = ::fcntl(0, F_GETFL);
    if (old_flags_ >= 0) ::fcntl(0, F_SETFL, old_flags_ | O_NONBLOCK);
  }
  ~StdinSource() override {
    if (old_flags_ >= 0) ::fcntl(0, F_SETFL, old_flags_);
  }

  std::size_t do_work() override {
    if (eof_ && fill_ == 0) return 0;
    if (!eof_ && fill_ < buf_.size()) {
      const ssize_t n = ::read(0, buf_.data() + fill_, buf_.size() - fill_);
      if (n > 0) {
        fill_ += static_cast<std::size_t>(n);
      } else if (n == 0) {
        eof_ = true;
      } else if (errno != EAGAIN && errno != EINTR) {
        ++metrics_.errors;
        if (ctx_.log) ctx_.log("error", fmt::format("read stdin: {}", std::strerror(errno)));
        eof_ = true;
      }
    }
    std::size_t pos = 0;
    batch_.clear();
    std::span<const char> data(buf_.data(), fill_);
    for (;;) {
      const detail::NextLine l = detail::next_line(data.subspan(pos), max_line_);
      if (l.kind == detail::LineKind::kPartial) {
        if (eof_ && pos < fill_) {  // the last line, without '\n'
          add(data.subspan(pos));
          pos = fill_;
        }
        break;
      }
      if (l.kind == detail::LineKind::kOversize) {
        ++metrics_.oversize;
        if (!split_) {
          ++metrics_.rejected;
          skipping_ = true;
          pos += l.consumed;
          continue;
        }
      }
      if (skipping_) {  // the tail of a rejected oversize line
        skipping_ = l.kind != detail::LineKind::kLine;
        pos += l.consumed;
        continue;
      }
      add(data.subspan(pos, l.length));
      pos += l.consumed;
    }
    if (!batch_.empty() && !append()) return 0;  // channel refused: keep the bytes, retry
    const std::size_t n = batch_.size();
    std::memmove(buf_.data(), buf_.data() + pos, fill_ - pos);
    fill_ -= pos;
    return n + (eof_ ? 1 : 0);
  }

  [[nodiscard]] int wait_fd() const override { return eof_ ? -1 : 0; }
  [[nodiscard]] bool finished() const override { return eof_ && fill_ == 0; }
  [[nodiscard]] SourceMetrics metrics() const override { return metrics_; }

 private:
  void add(std::span<const char> line) {
    batch_.push_back({{id_, next_ + batch_.size()}, std::as_bytes(line)});
  }

  bool append() {
    for (std::size_t c = 0; c < producers_.size(); ++c) {
      if (c < done_channels_) continue;
      if (producers_[c].append_batch(batch_) != core::AppendStatus::kOk) {
        done_channels_ = c;  // the ones before c have it: do not append it there twice
        return false;
      }
    }
    done_channels_ = 0;
    next_ += batch_.size();
    metrics_.events += batch_.size();
    for (const auto& e : batch_) metrics_.bytes += e.payload.size();
    return true;
  }

  std::size_t max_line_;
  bool split_;
  SourceContext ctx_;
  std::uint64_t id_;
  std::uint64_t next_ = 0;
  std::vector<core::Producer> producers_;
  std::size_t done_channels_ = 0;
  std::vector<char> buf_;
  std::size_t fill_ = 0;
  bool eof_ = false;
  bool skipping_ = false;
  int old_flags_ = -1;
  std::vector<core::Event> batch_;
  SourceMetrics metrics_;
};

}  // namespace

std::unique_ptr<Source> create_stdin(const OptionValues& v, SourceContext ctx) {
  return std::make_unique<StdinSource>(static_cast<std::size_t>(v.integer("max_line")), v.str("oversize") == "split",
                                       std::move(ctx));
}

}  // namespace tributary::ingest
