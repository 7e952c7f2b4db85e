// Helper process for the channel crash tests: one mode per role, driven from argv. It prints
// progress lines on stdout so the test can wait on conditions instead of sleeping.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "support/channel_util.h"
#include "tributary/core/channel.h"

using namespace tributary::core;
using tributary::testing::payload_for;

namespace {

void say(const std::string& s) {
  std::printf("%s\n", s.c_str());
  std::fflush(stdout);
}

// produce PATH SOURCE COUNT BATCH LEN
int produce(char** a) {
  Channel ch = Channel::open(a[0]);
  Producer p = ch.producer({FullPolicy::kBlock, std::chrono::milliseconds(60'000)});
  const std::uint64_t source = std::stoull(a[1]), count = std::stoull(a[2]), batch = std::stoull(a[3]);
  const std::size_t len = std::stoull(a[4]);
  say("ready");
  std::vector<std::string> pls;
  std::vector<Event> ev;
  for (std::uint64_t i = 0; i < count;) {
    const std::uint64_t n = std::min(batch, count - i);
    pls.clear();
    ev.clear();
    for (std::uint64_t k = 0; k < n; ++k) pls.push_back(payload_for(source, i + k, len));
    for (std::uint64_t k = 0; k < n; ++k) ev.push_back({{source, i + k}, std::as_bytes(std::span(pls[k].data(), pls[k].size()))});
    if (p.append_batch(ev) != AppendStatus::kOk) return 1;
    i += n;
  }
  say("done");
  return 0;
}

// resume PATH SOURCE COUNT SEED: appends batches with the source position, resuming from the
// channel's source table; killed at random moments by the test.
int resume(char** a) {
  OpenOptions oo;
  oo.abandon_timeout = std::chrono::milliseconds(100);
  Channel ch = Channel::open(a[0], oo);
  Producer p = ch.producer({FullPolicy::kBlock, std::chrono::milliseconds(60'000)});
  const std::uint64_t source = std::stoull(a[1]), count = std::stoull(a[2]);
  std::mt19937_64 rng(std::stoull(a[3]));
  std::uint64_t next = 0;
  if (auto sp = ch.source_position(source)) {
    next = sp->next_sequence;
    if (sp->position != next * 7) return 3;  // the opaque position must match its sequence
  }
  say("resume " + std::to_string(next));
  std::vector<std::string> pls;
  std::vector<Event> ev;
  while (next < count) {
    const std::uint64_t n = std::min<std::uint64_t>(1 + rng() % 50, count - next);
    pls.clear();
    ev.clear();
    for (std::uint64_t k = 0; k < n; ++k) pls.push_back(payload_for(source, next + k, (next + k) % 100));
    for (std::uint64_t k = 0; k < n; ++k)
      ev.push_back({{source, next + k}, std::as_bytes(std::span(pls[k].data(), pls[k].size()))});
    SourcePosition sp{source, next + n, (next + n) * 7};
    if (p.append_batch(ev, &sp) != AppendStatus::kOk) return 1;
    next += n;
  }
  say("done");
  return 0;
}

// claim PATH SOURCE SEQ: reserves a record, says "claimed", publishes on SIGUSR1.
int claim(char** a) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  Channel ch = Channel::open(a[0]);
  Producer p = ch.producer();
  Producer::Claim c;
  const std::uint64_t source = std::stoull(a[1]), seq = std::stoull(a[2]);
  const std::string pl = payload_for(source, seq, 100);
  if (p.claim({source, seq}, pl.size(), c) != AppendStatus::kOk) return 1;
  std::memcpy(c.payload().data(), pl.data(), pl.size());
  say("claimed");
  int sig = 0;
  sigwait(&set, &sig);
  if (p.publish(c) != AppendStatus::kOk) return 1;
  say("published");
  return 0;
}

// consume PATH NAME READ COMMIT: reads READ records, commits the first COMMIT, then hangs.
int consume(char** a) {
  Channel ch = Channel::open(a[0]);
  Consumer c = ch.consumer(a[1]);
  const std::size_t read = std::stoull(a[2]), commit = std::stoull(a[3]);
  auto got = tributary::testing::drain(c, read);
  if (got.size() != read) return 1;
  c.commit(commit < read ? got[commit].position : c.read_position());
  say("committed " + std::to_string(got[commit - 1].id.sequence));
  pause();
  return 0;
}

// open PATH: opens the channel for writing (recovering it, if nobody else has it open), says
// "open", then hangs: the test kills it, also part-way through recovery.
int open_only(char** a) {
  Channel ch = Channel::open(a[0]);
  say("open");
  pause();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string mode = argv[1];
  try {
    if (mode == "produce" && argc == 7) return produce(argv + 2);
    if (mode == "resume" && argc == 6) return resume(argv + 2);
    if (mode == "claim" && argc == 5) return claim(argv + 2);
    if (mode == "consume" && argc == 6) return consume(argv + 2);
    if (mode == "open" && argc == 3) return open_only(argv + 2);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "channel_helper %s: %s\n", mode.c_str(), e.what());
    return 4;
  }
  std::fprintf(stderr, "channel_helper: bad arguments for '%s'\n", mode.c_str());
  return 2;
}
