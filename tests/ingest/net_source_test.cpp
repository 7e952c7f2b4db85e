// The network sources against real sockets on loopback: tcp lines from many clients, bounded
// connections and buffers, back-pressure without loss, idle timeouts; udp datagrams, kernel
// drops counted; syslog over TCP (both framings) and UDP; clear errors for bad addresses.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <simdjson.h>
#include <thread>

#include "support/fd_limit.h"
#include "support/rss.h"
#include "support/tail_util.h"
#include "support/temp_dir.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"

namespace tributary::ingest {
namespace {

using namespace std::chrono_literals;
using testing::all_records;
using testing::make_source;
using testing::pump_until;
using testing::rss_kb;
using testing::TempDir;
using Strings = std::vector<std::string>;
using Opts = std::map<std::string, OptionValues::Value>;

core::ChannelConfig cfg(std::uint64_t cap = 16 << 20) {
  core::ChannelConfig c;
  c.capacity = cap;
  c.max_payload = static_cast<std::uint32_t>(std::min<std::uint64_t>(64 << 10, cap / 4 - 64));
  c.source_slots = 64;
  return c;
}

sockaddr_in parse_endpoint(const std::string& ep) {
  const auto colon = ep.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(ep.substr(colon + 1))));
  ::inet_pton(AF_INET, ep.substr(0, colon).c_str(), &a.sin_addr);
  return a;
}

core::Fd connect_tcp(const std::string& ep) {
  core::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in a = parse_endpoint(ep);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  return fd;
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    ASSERT_GT(n, 0) << std::strerror(errno);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

void send_udp(const std::string& ep, std::string_view datagram) {
  core::Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const sockaddr_in a = parse_endpoint(ep);
  ASSERT_EQ(::sendto(fd.get(), datagram.data(), datagram.size(), 0, reinterpret_cast<const sockaddr*>(&a), sizeof a),
            static_cast<ssize_t>(datagram.size()));
}

Strings payloads(const core::Channel& ch) {
  Strings out;
  for (const auto& r : all_records(ch)) out.push_back(r.payload);
  return out;
}

const Opts kAnyPort = {{"listen", std::string("127.0.0.1:0")}};


Opts with(Opts base, const Opts& more) {
  for (const auto& [k, v] : more) base[k] = v;
  return base;
}

TEST(TcpSourceTest, LinesFromSeveralClientsArriveEachInOrderUnderOneSource) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tcp", {&ch}, kAnyPort);
  ASSERT_FALSE(src->endpoint().empty());
  std::vector<core::Fd> clients;
  for (int c = 0; c < 3; ++c) clients.push_back(connect_tcp(src->endpoint()));
  for (int i = 0; i < 1000; ++i)
    for (int c = 0; c < 3; ++c) send_all(clients[c].get(), "c" + std::to_string(c) + " " + std::to_string(i) + "\n");
  clients.clear();
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 3000 && src->metrics().connections == 0; }));
  std::map<std::string, int> next;
  std::uint64_t seq = 0;
  const auto recs = all_records(ch);
  for (const auto& r : recs) {
    EXPECT_EQ(r.id.source_id, recs[0].id.source_id);
    EXPECT_EQ(r.id.sequence, seq++);
    const auto sp = r.payload.find(' ');
    EXPECT_EQ(std::stoi(r.payload.substr(sp + 1)), next[r.payload.substr(0, sp)]++) << r.payload;
  }
  EXPECT_EQ(next.size(), 3u);
}

TEST(TcpSourceTest, AHundredConcurrentClientsAndAStalledOneAllGetThrough) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tcp", {&ch}, kAnyPort);
  core::Fd stalled = connect_tcp(src->endpoint());
  send_all(stalled.get(), "a line that never ends");  // then nothing: it must not hold anyone up
  std::vector<core::Fd> clients;
  for (int c = 0; c < 100; ++c) clients.push_back(connect_tcp(src->endpoint()));
  for (int i = 0; i < 100; ++i)
    for (int c = 0; c < 100; ++c) send_all(clients[c].get(), fmt::format("client {} line {}\n", c, i));
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10000; }));
  EXPECT_EQ(src->metrics().connections, 101u);
  std::map<int, int> next;
  for (const auto& r : all_records(ch)) {
    int c = -1, i = -1;
    ASSERT_EQ(std::sscanf(r.payload.c_str(), "client %d line %d", &c, &i), 2) << r.payload;
    EXPECT_EQ(i, next[c]++) << "client " << c;
  }
  EXPECT_EQ(next.size(), 100u);
}

TEST(TcpSourceTest, AGigabyteWithoutANewlineCostsOneLineOfMemory) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tcp", {&ch}, with(kAnyPort, {{"oversize", std::string("reject")}}));
  core::Fd c = connect_tcp(src->endpoint());
  const long before = rss_kb();
  std::thread sender([&] {
    const std::string junk(1 << 20, 'x');
    for (int i = 0; i < 1024; ++i) send_all(c.get(), junk);  // 1 GiB, no newline
    send_all(c.get(), "\nafter\n");
  });
  long peak = before;
  ASSERT_TRUE(pump_until(*src, [&] {
    peak = std::max(peak, rss_kb());
    return ch.stats().records_written == 1;
  }, 300s));
  sender.join();
  EXPECT_EQ(payloads(ch), (Strings{"after"}));
  EXPECT_EQ(src->metrics().rejected, 1u);
  // The sender's 1 MiB buffer and the source's one-line buffer (64 KiB): nothing near 1 GiB.
  EXPECT_LT(peak - before, 32 * 1024) << "RSS grew by " << (peak - before) << " KiB";
}

TEST(TcpSourceTest, AnUnterminatedLastLineIsDeliveredWhenTheClientCloses) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tcp", {&ch}, kAnyPort);
  {
    core::Fd c = connect_tcp(src->endpoint());
    send_all(c.get(), "whole\nhalf");
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1; }));
  }
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 2; }));
  EXPECT_EQ(payloads(ch), (Strings{"whole", "half"}));
}

TEST(TcpSourceTest, ConnectionsBeyondTheLimitAreClosedAndCounted) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tcp", {&ch}, with(kAnyPort, {{"max_connections", std::int64_t{2}}}));
  std::vector<core::Fd> clients;
  for (int c = 0; c < 5; ++c) clients.push_back(connect_tcp(src->endpoint()));
  ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().refused_connections == 3; }));
  EXPECT_EQ(src->metrics().connections, 2u);
  // The refused ones see the connection end; the first two still deliver.
  for (int c = 2; c < 5; ++c) {
    char b;
    timeval tv{5, 0};
    ::setsockopt(clients[c].get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    EXPECT_LE(::recv(clients[c].get(), &b, 1, 0), 0);
  }
  send_all(clients[0].get(), "still here\n");
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1; }));
}

// 10,000 connections attempted against max_connections = 256, each accepted one also sending
// a partial line: the source refuses and counts the rest, keeps serving, and its memory stays
// within max_connections x one line, however many come.
TEST(TcpSourceTest, TenThousandConnectionAttemptsStayWithinTheConnectionAndMemoryBounds) {
  constexpr int kAttempts = 10'000, kMax = 256;
  rlimit lim{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &lim), 0);
  if (lim.rlim_max < kAttempts + 1024) GTEST_SKIP() << "needs " << kAttempts + 1024 << " file descriptors";
  lim.rlim_cur = std::max<rlim_t>(lim.rlim_cur, kAttempts + 1024);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lim), 0);
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tcp", {&ch}, with(kAnyPort, {{"max_connections", std::int64_t{kMax}},
                                                       {"max_line", std::int64_t{16 << 10}}}));
  const sockaddr_in a = parse_endpoint(src->endpoint());
  const long before = rss_kb();
  long peak = before;
  std::vector<core::Fd> clients;
  clients.reserve(kAttempts);
  const std::string partial(8 << 10, 'p');  // half a line, never finished
  for (int c = 0; c < kAttempts; c += 250) {  // in waves: the listen backlog is finite
    for (int k = c; k < c + 250; ++k) {
      core::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      ASSERT_GE(fd.get(), 0) << std::strerror(errno);
      const int rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a);
      ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
      clients.push_back(std::move(fd));
    }
    // Once each handshake is done (the kernel completes it from the listen backlog), the
    // half line goes out; refused connections may already be closed, which is fine.
    for (int k = c; k < c + 250; ++k) {
      pollfd pf{clients[static_cast<std::size_t>(k)].get(), POLLOUT, 0};
      ASSERT_EQ(::poll(&pf, 1, 10000), 1) << "connection " << k << " never completed";
      (void)!::send(pf.fd, partial.data(), partial.size(), MSG_NOSIGNAL);
    }
    const std::uint64_t seen = static_cast<std::uint64_t>(c + 250);
    ASSERT_TRUE(pump_until(*src, [&] {
      peak = std::max(peak, rss_kb());
      const auto m = src->metrics();
      return m.connections + m.refused_connections >= seen;
    }, 60s)) << "after " << seen << " attempts: " << src->metrics().connections << " accepted, "
             << src->metrics().refused_connections << " refused";
  }
  EXPECT_EQ(src->metrics().connections, static_cast<std::uint64_t>(kMax));
  EXPECT_EQ(src->metrics().refused_connections, static_cast<std::uint64_t>(kAttempts - kMax));
  // 256 connections x one 16 KiB line buffer = 4 MiB; the bound is generous for allocator slack.
  EXPECT_LT(peak - before, 24 * 1024) << "RSS grew by " << (peak - before) << " KiB";
  // Still serving: the first accepted client finishes its line; after the crowd leaves, a
  // newcomer is accepted and heard.
  send_all(clients[0].get(), "\n");
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1; }));
  clients.clear();
  ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().connections == 0; }, 60s));
  core::Fd late = connect_tcp(src->endpoint());
  send_all(late.get(), "late\n");
  // The accepted clients' unfinished lines are delivered as they close (255), then "late".
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1 + (kMax - 1) + 1; }));
  const Strings all = payloads(ch);
  EXPECT_EQ(std::count(all.begin(), all.end(), "late"), 1);
  EXPECT_EQ(std::count(all.begin(), all.end(), partial), kMax) << "the first client's line and 255 unfinished ones";
}

// Out of file descriptors, accept() fails and the connection waits in the listen backlog; the
// listener stays readable, and the agent's loop used to wake for it at once, over and over,
// logging the error each time. Accepting now pauses (the listener leaves the poll set), is said
// once, and resumes by itself: every client is heard once descriptors are free again.
TEST(TcpSourceTest, OutOfDescriptorsAcceptingPausesInsteadOfSpinningAndResumes) {
  if (testing::kSanitizerNeedsDescriptors) GTEST_SKIP() << "the sanitizer runtime needs descriptors of its own";
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const SourceDescriptor* d = find_source("tcp");
  OptionValues v = defaults_of(*d);
  v.set("listen", std::string("127.0.0.1:0"));
  std::vector<std::pair<std::string, std::string>> logs;
  SourceContext ctx;
  ctx.name = "tcp";
  ctx.channels = {&ch};
  ctx.log = [&logs](std::string_view level, const std::string& m) { logs.emplace_back(level, m); };
  auto src = d->create(v, std::move(ctx));
  std::vector<core::Fd> clients;
  for (int c = 0; c < 5; ++c) {
    clients.push_back(connect_tcp(src->endpoint()));
    send_all(clients.back().get(), "hello " + std::to_string(c) + "\n");
  }
  clients.clear();  // sent and closed: the connections wait in the backlog with their lines
  testing::NoNewDescriptors starved;
  ASSERT_TRUE(starved.active());
  std::size_t work = 0;
  for (int i = 0; i < 100; ++i) work += src->do_work();
  pollfd pf{src->wait_fd(), POLLIN, 0};
  const int readable = ::poll(&pf, 1, 0);
  starved.restore();
  EXPECT_EQ(readable, 0) << "the agent's loop would wake at once, again and again";
  EXPECT_EQ(work, 0u);
  const auto said = [&](std::string_view text) {
    return std::count_if(logs.begin(), logs.end(), [&](const auto& l) { return l.second.find(text) != std::string::npos; });
  };
  EXPECT_EQ(said("Too many open files"), 1) << "said once, not once per turn";
  EXPECT_LE(src->next_deadline(), std::chrono::steady_clock::now() + 200ms) << "it tries again by itself";
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 5; }));
  EXPECT_EQ(said("accepting again"), 1);
  Strings got = payloads(ch);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (Strings{"hello 0", "hello 1", "hello 2", "hello 3", "hello 4"}));
}

TEST(TcpSourceTest, AClientSendingNoNewlineCannotGrowMemoryPastOneLine) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tcp", {&ch}, with(kAnyPort, {{"max_line", std::int64_t{1024}}, {"oversize", std::string("reject")}}));
  core::Fd c = connect_tcp(src->endpoint());
  std::thread sender([&] {
    const std::string junk(64 << 10, 'x');
    for (int i = 0; i < 64; ++i) send_all(c.get(), junk);  // 4 MiB without a newline
    send_all(c.get(), "\nok\n");
  });
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1; }, 60s));
  sender.join();
  EXPECT_EQ(payloads(ch), (Strings{"ok"}));
  EXPECT_EQ(src->metrics().rejected, 1u);
  EXPECT_EQ(src->metrics().oversize, 1u);
}

TEST(TcpSourceTest, AFullChannelPausesReadingAndLosesNothing) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg(256 << 10));
  auto reader = ch.consumer("reader");
  // Fail fast, and the reader below takes little per round: the ring fills again and again.
  auto src = make_source("tcp", {&ch}, with(kAnyPort, {{"max_line", std::int64_t{4096}}}), "test",
                         {.on_full = core::FullPolicy::kFailFast});
  constexpr int kLines = 40000;  // ~2 MB through a 256 KiB ring
  core::Fd c = connect_tcp(src->endpoint());
  std::thread sender([&] {
    std::string batch;
    for (int i = 0; i < kLines; ++i) {
      batch += "line " + std::to_string(i) + " ........................................\n";
      if (batch.size() > 8192) {
        send_all(c.get(), batch);
        batch.clear();
      }
    }
    send_all(c.get(), batch);
  });
  int next = 0;
  std::vector<core::Record> recs(64);
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  bool filled = false;  // the reader starts only once the ring has refused a batch
  while (next < kLines && std::chrono::steady_clock::now() < deadline) {
    (void)src->do_work();
    filled = filled || ch.stats().full_rejections > 0;
    if (!filled) continue;
    const std::size_t n = reader.poll(recs);
    for (std::size_t i = 0; i < n; ++i) {
      const std::string p(reinterpret_cast<const char*>(recs[i].payload.data()), recs[i].payload.size());
      ASSERT_EQ(p.substr(0, p.find(' ', 5)), "line " + std::to_string(next)) << "lost or reordered";
      ++next;
    }
    reader.commit();
  }
  sender.join();
  EXPECT_EQ(next, kLines);
  EXPECT_EQ(src->metrics().rejected, 0u);
  EXPECT_GT(ch.stats().full_rejections, 0u) << "the channel never filled: the test tests nothing";
}

// A stop or a reload while the channel is full: what the source received and holds is appended
// once a reader makes room (within the drain's wait), not dropped with the connection.
TEST(TcpSourceTest, ADrainWaitsForRoomForWhatItHolds) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg(256 << 10));
  auto src = make_source("tcp", {&ch}, with(kAnyPort, {{"max_line", std::int64_t{4096}}}), "test",
                         {.on_full = core::FullPolicy::kFailFast});
  core::Fd c = connect_tcp(src->endpoint());
  std::thread sender([fd = c.get()] {  // ~450 KiB: more than the ring takes; stops when the source closes
    std::string text;
    for (int i = 0; i < 8000; ++i) text += fmt::format("line {} ........................................\n", i);
    for (std::string_view rest = text; !rest.empty();) {
      const ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
  });
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().full_rejections > 0; }));
  const std::uint64_t before = ch.stats().records_written;
  const std::uint64_t refusals = ch.stats().full_rejections;
  std::thread reader([&] {  // makes room once the drain has met the full channel (a refused try)
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (ch.stats().full_rejections == refusals && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);  // the drain's progress: polled, bounded above
    auto r = ch.consumer("reader");
    std::vector<core::Record> recs(1024);
    (void)r.poll(recs);
    r.commit();
  });
  stop_sources(std::array<Source*, 1>{src.get()}, std::chrono::steady_clock::now() + 2s);  // closes the connection: the sender stops if it had more
  reader.join();
  sender.join();
  EXPECT_GT(ch.stats().records_written, before) << "the held events were dropped at the drain";
  EXPECT_EQ(src->metrics().rejected, 0u);
  // What the ring still shows (the reader's room was written over) runs on without a gap to the
  // last record written.
  const Strings left = payloads(ch);
  ASSERT_FALSE(left.empty());
  int first = -1;
  ASSERT_EQ(std::sscanf(left[0].c_str(), "line %d", &first), 1) << left[0];
  for (std::size_t i = 0; i < left.size(); ++i)
    ASSERT_EQ(left[i], fmt::format("line {} ........................................", first + static_cast<int>(i)));
  EXPECT_EQ(static_cast<std::uint64_t>(first) + left.size(), ch.stats().records_written);
}

TEST(TcpSourceTest, AnIdleConnectionIsClosedAndItsPartialLineDelivered) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tcp", {&ch}, with(kAnyPort, {{"idle_timeout_ms", std::int64_t{200}}}));
  core::Fd c = connect_tcp(src->endpoint());
  send_all(c.get(), "no newline yet");
  ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().connections == 1; }));
  ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().connections == 0; }, 10s));
  EXPECT_EQ(payloads(ch), (Strings{"no newline yet"}));
}

TEST(UdpSourceTest, DatagramsCarryLinesAndOversizeOnesAreCounted) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("udp", {&ch}, with(kAnyPort, {{"max_line", std::int64_t{1000}}}));
  send_udp(src->endpoint(), "a\nb\n");
  send_udp(src->endpoint(), std::string(1500, 'z'));
  send_udp(src->endpoint(), "c");
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 3 && src->metrics().rejected == 1; }));
  EXPECT_EQ(payloads(ch), (Strings{"a", "b", "c"}));
  EXPECT_EQ(src->metrics().oversize, 1u);
}

TEST(UdpSourceTest, DatagramsTheKernelDropsAreCounted) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("udp", {&ch}, with(kAnyPort, {{"socket_buffer", std::int64_t{4096}}}));
  constexpr int kSent = 500;
  for (int i = 0; i < kSent; ++i) send_udp(src->endpoint(), "datagram " + std::to_string(i));  // nobody reads yet
  ASSERT_TRUE(pump_until(*src, [&] {
    const auto m = src->metrics();
    return m.events + m.dropped == kSent;
  })) << src->metrics().events << " + " << src->metrics().dropped;
  EXPECT_GT(src->metrics().dropped, 0u) << "a 4 KiB buffer cannot hold 500 datagrams";
  EXPECT_GT(src->metrics().events, 0u);
}

void expect_json(const std::string& text) {
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  EXPECT_EQ(p.parse(text).get(doc), simdjson::SUCCESS) << text;
}

TEST(SyslogSourceTest, TcpTakesOctetCountedAndNewlineFramesAsJson) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("syslog", {&ch}, with(kAnyPort, {{"protocol", std::string("tcp")}}));
  core::Fd c = connect_tcp(src->endpoint());
  const std::string m1 = "<165>1 2003-10-11T22:14:15.003Z host app 42 ID7 - multi\nline";
  send_all(c.get(), std::to_string(m1.size()) + " " + m1);
  send_all(c.get(), "<34>Oct 11 22:14:15 mymachine su: failed\r\n");
  send_all(c.get(), "garbage line\n");
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 3; }));
  const Strings got = payloads(ch);
  for (const auto& g : got) expect_json(g);
  EXPECT_EQ(got[0],
            R"({"facility":20,"severity":5,"version":1,"timestamp":"2003-10-11T22:14:15.003Z","host":"host",)"
            R"("app":"app","procid":"42","msgid":"ID7","message":"multi\nline"})");
  EXPECT_NE(got[1].find(R"("host":"mymachine","app":"su","message":"failed"})"), std::string::npos) << got[1];
  EXPECT_EQ(got[2], R"({"message":"garbage line"})");
  EXPECT_EQ(src->metrics().malformed, 1u);
}

TEST(SyslogSourceTest, UdpTakesOneMessagePerDatagramRawOrJson) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto json = make_source("syslog", {&ch}, kAnyPort, "json");
  auto raw = make_source("syslog", {&ch}, with(kAnyPort, {{"format", std::string("raw")}}), "raw");
  send_udp(json->endpoint(), "<13>Nov 26 10:00:00 h app[7]: hello\n");
  ASSERT_TRUE(pump_until(*json, [&] { return ch.stats().records_written == 1; }));
  send_udp(raw->endpoint(), "<13>Nov 26 10:00:00 h app[7]: hello\n");
  ASSERT_TRUE(pump_until(*raw, [&] { return ch.stats().records_written == 2; }));
  const Strings got = payloads(ch);
  expect_json(got[0]);
  EXPECT_NE(got[0].find(R"("app":"app","procid":"7","message":"hello"})"), std::string::npos) << got[0];
  EXPECT_EQ(got[1], "<13>Nov 26 10:00:00 h app[7]: hello");
}

TEST(NetSourceTest, BadListenAddressesAreClearErrors) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto expect_error = [&](const std::string& type, const std::string& listen, const std::string& want) {
    try {
      (void)make_source(type, {&ch}, {{"listen", listen}}, "web");
      ADD_FAILURE() << listen << " accepted";
    } catch (const core::Error& e) {
      EXPECT_NE(std::string(e.what()).find("source 'web'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  expect_error("tcp", "localhost", "HOST:PORT");
  expect_error("tcp", "127.0.0.1:99999", "port must be");
  expect_error("udp", "[::1:80", "[IPV6]:PORT");
  auto taken = make_source("tcp", {&ch}, kAnyPort);
  expect_error("tcp", taken->endpoint(), "Address already in use");
}

}  // namespace
}  // namespace tributary::ingest
