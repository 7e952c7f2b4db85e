// Metrics for scrapers: the Prometheus text exposition format, and a small HTTP endpoint
// (cpp-httplib) serving it on its own thread.
//
//   PrometheusText p;
//   p.family("tributary_source_events_total", "counter", "Events appended to the channels");
//   p.sample("tributary_source_events_total", {{"source", "web"}}, 1234);
//
//   MetricsServer server("127.0.0.1:9464", [&] { return snapshot(); }, [&] { return status(); });
//   // GET /metrics -> text/plain; version=0.0.4, GET /status -> application/json
//
// The callbacks run on the server's thread: they must be thread-safe (the agent hands over a
// snapshot it refreshes every second, under a mutex). Listens on loopback unless told otherwise.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tributary::core {

class PrometheusText {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, const std::vector<std::pair<std::string_view, std::string_view>>& labels,
              double value);
  [[nodiscard]] const std::string& text() const noexcept { return out_; }

 private:
  std::string out_;
};

class MetricsServer {
 public:
  using Body = std::function<std::string()>;
  // Binds `address` ("HOST:PORT"; port 0 picks one) and serves until destroyed. Throws
  // core::Error naming the address if it cannot bind.
  MetricsServer(const std::string& address, Body metrics, Body status);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  [[nodiscard]] int port() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tributary::core
