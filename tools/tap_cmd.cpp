// `tributary tap CHANNEL [--follow] [--filter RE] [--from oldest|latest] [--count N] [-v]`:
// watch the events in a channel as a read-only observer. The file is mapped read-only and no
// consumer is registered, so no cursor moves and nothing is retained for the tap: if writers
// reclaim records before the tap reads them (it is slower than the channel's consumers), it
// says how many bytes it skipped on stderr and goes on from the oldest retained record.
#include <poll.h>
#include <unistd.h>

#include <cstdio>
#include <fmt/format.h>
#include <memory>
#include <optional>
#include <re2/re2.h>
#include <string>

#include "commands.h"
#include "tributary/core/channel.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"

namespace tributary::tools {
namespace {

struct TapArgs {
  std::string path;
  bool follow = false;
  std::string filter;
  std::string from;  // oldest | latest; default: latest with --follow, else oldest
  std::uint64_t count = 0;
  bool verbose = false;
  std::size_t width = 4096;
};

int run_tap(const TapArgs& a) {
  core::OpenOptions oo;
  oo.read_only = true;
  const core::Channel ch = core::Channel::open(a.path, oo);
  std::unique_ptr<RE2> re;
  if (!a.filter.empty()) {
    RE2::Options o;
    o.set_log_errors(false);
    re = std::make_unique<RE2>(a.filter, o);
    if (!re->ok()) throw core::Error(fmt::format("tap: --filter '{}': {}", a.filter, re->error()));
  }
  const std::string from = a.from.empty() ? (a.follow ? "latest" : "oldest") : a.from;
  if (from != "oldest" && from != "latest") throw core::Error("tap: --from must be oldest or latest");
  std::uint64_t pos = from == "latest" ? ch.stats().write_position : ch.stats().oldest_retained;
  const core::Fd stop(a.follow ? stop_signal_fd() : -1);
  // Without --follow: what the channel held when the tap started, not a chase of its producers.
  const std::uint64_t end = ch.stats().write_position;
  std::uint64_t shown = 0, walked = 0;
  bool done = false;
  auto stop_asked = [&] {
    pollfd p{stop.get(), POLLIN, 0};
    return a.follow && ::poll(&p, 1, 0) > 0;
  };
  for (;;) {
    if (stop_asked()) break;
    const std::uint64_t seen = ch.walk(
        [&](const core::Record& r) {
          // Also while it has records to print: a tap behind its producers still stops.
          if ((!a.follow && r.position >= end) || (++walked % 4096 == 0 && stop_asked())) {
            done = true;
            return false;
          }
          pos = r.next;
          const std::string_view text(reinterpret_cast<const char*>(r.payload.data()), r.payload.size());
          if (re && !RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *re)) return true;
          if (a.verbose) {
            fmt::print("@{} seq={} ts={} source={:016x} sseq={} len={} {}\n", r.position, r.channel_seq,
                       r.timestamp_ns, r.id.source_id, r.id.sequence, r.payload.size(), printable(r.payload, a.width));
          } else {
            std::fwrite(text.data(), 1, text.size(), stdout);
            std::fputc('\n', stdout);
          }
          done = a.count != 0 && ++shown >= a.count;
          return !done;
        },
        pos);
    if (done) break;
    if (seen != 0) continue;
    std::fflush(stdout);
    // Nothing readable at `pos`: either nothing new yet, or the records there were reclaimed.
    const core::ChannelStats st = ch.stats();
    if (pos < st.oldest_retained) {
      std::fprintf(stderr, "tap: skipped %llu bytes reclaimed before the tap read them\n",
                   static_cast<unsigned long long>(st.oldest_retained - pos));
      pos = st.oldest_retained;
      continue;
    }
    if (!a.follow) break;
    // No consumer of our own to wait on (that would retain records): poll the tail, 10 ms.
    pollfd p{stop.get(), POLLIN, 0};
    if (::poll(&p, 1, 10) > 0) break;
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

void add_tap_commands(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<TapArgs>();
  CLI::App* cmd = app.add_subcommand("tap", "Watch the events in a channel live, moving no cursor");
  cmd->add_option("channel", args->path, "Channel file")->required();
  cmd->add_flag("--follow,-f", args->follow, "Keep printing new events until SIGINT/SIGTERM");
  cmd->add_option("--filter", args->filter, "Only events matching this RE2 pattern (anywhere in the payload)");
  cmd->add_option("--from", args->from, "oldest | latest (default: latest with --follow, else oldest)");
  cmd->add_option("--count,-n", args->count, "Stop after N events");
  cmd->add_flag("--verbose,-v", args->verbose, "Position, sequence, time and identity with each event");
  cmd->add_option("--width", args->width, "With -v: payload bytes shown per event");
  cmd->callback([args, &exit_code] { exit_code = run_tap(*args); });
}

}  // namespace tributary::tools
