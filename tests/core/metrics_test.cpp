// The Prometheus text format: families, samples, label escaping, integer and real values;
// and the endpoint refusing an address it cannot use, naming it.
#include "tributary/core/metrics.h"

#include <gtest/gtest.h>

#include "tributary/core/error.h"

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

}  // namespace
}  // namespace tributary::core
