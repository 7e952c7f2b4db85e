// The Prometheus text format: families, samples, label escaping, integer and real values;
// the endpoint refusing an address it cannot use, naming it, and serving a scrape while other
// clients hold connections open.
#include "tributary/core/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <vector>

#include "tributary/core/error.h"
#include "tributary/core/fd.h"

namespace tributary::core {
namespace {

TEST(PrometheusTextTest, WritesFamiliesSamplesAndEscapesLabelValues) {
  PrometheusText p;
  p.family("x_total", "counter", "Things");
  p.sample("x_total", {{"a", "plain"}, {"b", "q\"uo\\te\nnl"}}, 42);
  p.sample("x_total", {}, 0.25);
  EXPECT_EQ(p.text(),
            "# HELP x_total Things\n# TYPE x_total counter\n"
            "x_total{a=\"plain\",b=\"q\\\"uo\\\\te\\nnl\"} 42\n"
            "x_total 0.25\n");
}

TEST(MetricsServerTest, ABadAddressIsAClearError) {
  auto body = [] { return std::string(); };
  EXPECT_THROW(MetricsServer("nonsense", body, body), Error);
  EXPECT_THROW(MetricsServer("127.0.0.1:70000", body, body), Error);
  MetricsServer first("127.0.0.1:0", body, body);
  ASSERT_GT(first.port(), 0);
  try {
    MetricsServer second("127.0.0.1:" + std::to_string(first.port()), body, body);
    FAIL() << "two servers on one port";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on 127.0.0.1:"), std::string::npos) << e.what();
  }
}

// Three clients that connect and say nothing (more than the endpoint's workers) and a scraper
// that keeps its connection alive do not keep another client from its scrape: it is answered
// within its 4 s timeout (a single worker held each silent connection 5 s, in turn).
TEST(MetricsServerTest, SilentAndKeptAliveConnectionsDoNotKeepAScrapeWaiting) {
  MetricsServer m("127.0.0.1:0", [] { return std::string("up 1\n"); }, [] { return std::string("{}"); });
  std::vector<Fd> silent;
  for (int i = 0; i < 3; ++i) {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(s.valid());
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(m.port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
    silent.push_back(std::move(s));
  }
  httplib::Client kept("127.0.0.1", m.port());
  kept.set_keep_alive(true);
  kept.set_read_timeout(std::chrono::seconds(10));
  const auto first = kept.Get("/metrics");
  ASSERT_TRUE(first) << httplib::to_string(first.error());
  httplib::Client other("127.0.0.1", m.port());
  other.set_connection_timeout(std::chrono::seconds(4));
  other.set_read_timeout(std::chrono::seconds(4));
  const auto res = other.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "up 1\n");
}

}  // namespace
}  // namespace tributary::core
