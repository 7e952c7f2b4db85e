#include "internal/stream.h"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>

#include "internal/lines.h"
#include "tributary/core/error.h"
#include "tributary/ingest/producer.h"

namespace tributary::ingest::detail {

// ---------------------------------------------------------------------------------- Framer

namespace {
constexpr std::size_t kMaxCountDigits = 10;  // an RFC 6587 frame length: "MSG-LEN SP"

bool is_digit(char c) { return c >= '0' && c <= '9'; }
}  // namespace

Framer::Framer(std::size_t max_event, bool split_oversize, Framing framing, std::size_t initial)
    : max_event_(max_event),
      split_(split_oversize),
      framing_(framing),
      limit_(max_event + 1 + (framing == Framing::kSyslog ? kMaxCountDigits + 1 : 0)) {
  initial_ = std::min(initial, limit_);
}

void Framer::resize(std::size_t cap) {
  auto next = std::make_unique<char[]>(cap);
  if (fill_ != 0) std::memcpy(next.get(), buf_.get(), fill_);
  buf_ = std::move(next);
  cap_ = cap;
}

std::span<char> Framer::space() {
  if (cap_ == 0) resize(initial_);
  if (fill_ == cap_ && cap_ < limit_) resize(std::min(limit_, cap_ * 2));
  return {buf_.get() + fill_, cap_ - fill_};
}

Framer::Scan Framer::scan(bool at_eof, std::vector<std::span<const char>>& out, std::size_t max_events,
                          std::size_t max_bytes, bool first_may_exceed) const {
  Scan s;
  s.mid = mid_;
  s.skip_count = skip_count_;
  const std::span<const char> data(buf_.get(), fill_);
  std::size_t pos = 0;
  std::size_t events = 0;
  std::size_t bytes = 0;  // what the events take in a channel: record bytes, headers included
  // An event that would take the batch past max_bytes ends the scan before it (one transaction
  // must fit a quarter of the ring), unless it is the batch's first (when `first_may_exceed`).
  auto fits = [&](std::size_t n) {
    return (events == 0 && first_may_exceed) || bytes + core::record_bytes(n) <= max_bytes;
  };
  auto emit = [&](std::span<const char> e) {
    out.push_back(e);
    ++events;
    bytes += core::record_bytes(e.size());
  };
  while (pos < fill_) {
    if (events >= max_events || bytes >= max_bytes) {
      s.complete = false;
      break;
    }
    if (s.mid == Mid::kSkippingCount) {  // the rest of a rejected octet-counted frame
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(s.skip_count, fill_ - pos));
      pos += n;
      s.skip_count -= n;
      if (s.skip_count == 0) s.mid = Mid::kNone;
      continue;
    }
    if (s.mid == Mid::kSkippingLine) {  // the rest of a rejected line: no need to buffer it
      const void* nl = std::memchr(data.data() + pos, '\n', fill_ - pos);
      if (nl == nullptr) {
        pos = fill_;
        if (at_eof) s.mid = Mid::kNone;
        break;
      }
      pos = static_cast<std::size_t>(static_cast<const char*>(nl) - data.data()) + 1;
      s.mid = Mid::kNone;
      continue;
    }
    if (framing_ == Framing::kSyslog && s.mid == Mid::kNone) {
      const char c = data[pos];
      if (c == '\n' || c == '\r' || c == '\0' || c == ' ') {  // padding between messages
        ++pos;
        continue;
      }
      if (is_digit(c)) {  // octet counting: "LEN SP MSG"
        std::size_t i = pos;
        std::uint64_t len = 0;
        while (i < fill_ && i - pos < kMaxCountDigits && is_digit(data[i])) len = len * 10 + (data[i++] - '0');
        if (i == fill_ && !at_eof) break;  // the count is not all here yet
        if (i < fill_ && data[i] == ' ' && len > 0) {
          const std::size_t start = i + 1;
          if (len > max_event_) {
            ++s.oversize;
            ++s.rejected;
            pos = start;
            s.mid = Mid::kSkippingCount;
            s.skip_count = len;
            continue;
          }
          if (fill_ - start < len) {
            if (at_eof) {  // a frame cut short by the end of the stream: counted, dropped
              ++s.rejected;
              pos = fill_;
            }
            break;
          }
          if (!fits(static_cast<std::size_t>(len))) {
            s.complete = false;
            break;
          }
          emit(data.subspan(start, static_cast<std::size_t>(len)));
          pos = start + static_cast<std::size_t>(len);
          continue;
        }
        // Digits but no "LEN SP": not a count; the message is newline-terminated.
      }
    }
    const NextLine l = next_line(data.subspan(pos), max_event_);
    if (l.kind == LineKind::kPartial) {
      if (at_eof) {  // the last line, without its newline
        if (s.mid != Mid::kSkippingLine && !fits(fill_ - pos)) {
          s.complete = false;
          break;
        }
        if (s.mid != Mid::kSkippingLine) emit(data.subspan(pos));
        s.mid = Mid::kNone;
        pos = fill_;
      }
      break;
    }
    if (l.kind == LineKind::kOversize) {
      if (s.mid != Mid::kSkippingLine && split_ && !fits(l.length)) {  // a piece to emit
        s.complete = false;
        break;
      }
      if (s.mid == Mid::kNone) ++s.oversize;
      if (s.mid == Mid::kSkippingLine || !split_) {
        if (s.mid == Mid::kNone) ++s.rejected;
        s.mid = Mid::kSkippingLine;
      } else {
        emit(data.subspan(pos, l.length));
        s.mid = Mid::kSplitting;
      }
      pos += l.consumed;
      continue;
    }
    std::span<const char> line = data.subspan(pos, l.length);
    if (framing_ == Framing::kSyslog && !line.empty() && line.back() == '\r') line = line.first(line.size() - 1);
    const bool skip = s.mid == Mid::kSkippingLine || (s.mid == Mid::kSplitting && line.empty()) ||
                      (framing_ == Framing::kSyslog && line.empty());
    if (!skip && !fits(line.size())) {
      s.complete = false;
      break;
    }
    if (!skip) emit(line);
    s.mid = Mid::kNone;
    pos += l.consumed;
  }
  s.consumed = pos;
  if (at_eof && pos == fill_ && s.mid != Mid::kSkippingCount) s.mid = Mid::kNone;  // the stream ended the line
  return s;
}

void Framer::accept(const Scan& s) {
  mid_ = s.mid;
  skip_count_ = s.skip_count;
  if (s.consumed != 0) {
    fill_ -= s.consumed;
    if (fill_ != 0) std::memmove(buf_.get(), buf_.get() + s.consumed, fill_);
  }
  // Give back what a long event grew once it is over (not between the pieces of a split
  // line, which would reallocate for every piece).
  if (cap_ > initial_ && fill_ <= initial_ / 2 && mid_ == Mid::kNone) resize(initial_);
}

// --------------------------------------------------------------------------------- Emitter

Emitter::Emitter(const SourceContext& ctx)
    : log_(ctx.log), interceptors_(ctx.interceptors), id_(new_source_id()) {
  std::uint64_t smallest = UINT64_MAX;
  std::uint32_t max_payload = UINT32_MAX;
  for (core::Channel* ch : ctx.channels) {
    producers_.push_back(ch->producer(ctx.producer_options));
    channel_paths_.push_back(ch->path());
    const core::ChannelStats st = ch->stats();
    smallest = std::min(smallest, st.capacity);
    max_payload = std::min(max_payload, st.max_payload);
  }
  batch_bytes_ = static_cast<std::size_t>(std::max<std::uint64_t>(std::min<std::uint64_t>(smallest / 8, 1 << 20), 1));
  transaction_bytes_ = smallest / 8;
  max_payload_ = max_payload;
}

void Emitter::new_identity() {
  id_ = new_source_id();
  next_ = 0;
}

Emitter::Result Emitter::emit(std::span<const std::span<const char>> events, SourceMetrics& m) {
  if (events.empty()) return Result::kOk;
  if (refused_ && std::chrono::steady_clock::now() < retry_at()) return Result::kRefused;
  if (!refused_) {  // a retry appends the batch built the first time
    batch_.clear();
    arena_.clear();
    filtered_ = 0;
    for (const auto& e : events) {
      std::string_view payload(e.data(), e.size());
      if (interceptors_) {
        const auto kept = interceptors_->apply(payload, arena_);
        if (!kept) {
          ++filtered_;
          continue;
        }
        payload = *kept;
      }
      batch_.push_back({{id_, next_ + batch_.size()}, std::as_bytes(std::span(payload.data(), payload.size()))});
    }
  }
  if (batch_.empty()) {  // every event filtered out
    m.filtered += filtered_;
    return Result::kOk;
  }
  std::uint64_t bytes = 0;
  for (const auto& e : batch_) bytes += e.payload.size();
  // kFull, kTimeout: no room yet; kSyncFailed: in the channel but not known durable, appended
  // again (same identities). The same events are passed again later, from where this stopped.
  auto refuse = [&](std::size_t c, core::AppendStatus st) {
    if (!refused_ && log_) log_("warn", fmt::format("{}: holding {} events and retrying", core::to_string(st), events.size()));
    done_channels_ = c;
    refused_ = true;
    refused_at_ = std::chrono::steady_clock::now();
    return Result::kRefused;
  };
  auto waits = [](core::AppendStatus st) {
    return st == core::AppendStatus::kFull || st == core::AppendStatus::kTimeout || st == core::AppendStatus::kSyncFailed;
  };
  for (std::size_t c = done_channels_; c < producers_.size(); ++c) {
    while (done_events_ < batch_.size()) {
      // One transaction of at most an eighth of the smallest ring in record bytes (a quarter is
      // what one may take), whatever interceptors or syslog shaping made of the events.
      std::size_t end = done_events_;
      for (std::uint64_t taken = 0; end < batch_.size(); ++end) {
        const std::uint64_t b = core::record_bytes(batch_[end].payload.size());
        if (end != done_events_ && taken + b > transaction_bytes_) break;
        taken += b;
      }
      const core::AppendStatus st = producers_[c].append_batch(std::span(batch_).subspan(done_events_, end - done_events_));
      if (st == core::AppendStatus::kOk) {
        done_events_ = end;
        continue;
      }
      if (st == core::AppendStatus::kBroken) throw_broken(channel_paths_[c]);
      if (waits(st)) return refuse(c, st);
      // Never appendable as a batch (an event larger than the channel takes): one by one, so
      // that one bad event does not take the rest. What still fails for good is counted and
      // leaves a gap in the sequence (seen downstream as one).
      std::size_t failed = 0;
      core::AppendStatus why = st;
      for (; done_events_ < end; ++done_events_) {
        const core::AppendStatus one = producers_[c].append(batch_[done_events_].id, batch_[done_events_].payload);
        if (one == core::AppendStatus::kOk) continue;
        if (one == core::AppendStatus::kBroken) throw_broken(channel_paths_[c]);
        if (waits(one)) {
          m.rejected += failed;
          return refuse(c, one);
        }
        ++failed;
        why = one;
      }
      m.rejected += failed;
      if (failed != 0 && log_)
        log_("error", fmt::format("channel refused {} of {} events: {}", failed, batch_.size(), to_string(why)));
    }
    done_events_ = 0;
  }
  if (refused_ && log_) log_("info", "channel has room again");
  refused_ = false;
  done_channels_ = 0;
  next_ += batch_.size();
  m.events += batch_.size();
  m.bytes += bytes;
  m.filtered += filtered_;
  return Result::kOk;
}

void throw_broken(const std::filesystem::path& channel) {
  throw core::Error(fmt::format("channel {} was truncated under this process: stopping, nothing acknowledged is "
                                "lost (run again: opening the channel grows it back and recovers every record)",
                                channel.string()));
}

std::size_t fit_max_event(const SourceContext& ctx, std::string_view option, std::size_t max_event,
                          std::string_view longer) {
  for (core::Channel* ch : ctx.channels) {
    const std::uint32_t max_payload = ch->stats().max_payload;
    if (max_event <= max_payload) continue;
    if (ctx.log)
      ctx.log("warn", fmt::format("source '{}': {} = {} is larger than the max_payload ({}) of channel {}: cut to it; "
                                  "longer ones are {}",
                                  ctx.name, option, max_event, max_payload, ch->path().string(), longer));
    max_event = max_payload;
  }
  return max_event;
}

}  // namespace tributary::ingest::detail
