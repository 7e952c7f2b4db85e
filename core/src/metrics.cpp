#include "tributary/core/metrics.h"

#include <httplib.h>

#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <thread>

#include "tributary/core/error.h"

namespace tributary::core {

void PrometheusText::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void PrometheusText::sample(std::string_view name,
                            const std::vector<std::pair<std::string_view, std::string_view>>& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (i != 0) out_ += ',';
      out_ += labels[i].first;
      out_ += "=\"";
      for (const char c : labels[i].second) {  // label values escape \ " and newline
        if (c == '\\' || c == '"') out_ += '\\';
        if (c == '\n') {
          out_ += "\\n";
          continue;
        }
        out_ += c;
      }
      out_ += '"';
    }
    out_ += '}';
  }
  if (std::floor(value) == value && std::fabs(value) < 1e15) out_ += fmt::format(" {}\n", static_cast<std::int64_t>(value));
  else out_ += fmt::format(" {}\n", value);
}

struct MetricsServer::Impl {
  httplib::Server server;
  std::thread thread;
  int port = 0;
};

MetricsServer::MetricsServer(const std::string& address, Body metrics, Body status) : impl_(std::make_unique<Impl>()) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw Error(fmt::format("metrics: '{}' is not HOST:PORT (e.g. 127.0.0.1:9464)", address));
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = -1;
  try {
    port = std::stoi(address.substr(colon + 1));
  } catch (const std::exception&) {
  }
  if (port < 0 || port > 65535) throw Error(fmt::format("metrics: '{}': port must be 0 to 65535", address));
  impl_->server.Get("/metrics", [metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics(), "text/plain; version=0.0.4; charset=utf-8");
  });
  impl_->server.Get("/status", [status](const httplib::Request&, httplib::Response& res) {
    res.set_content(status(), "application/json");
  });
  // Two workers, one request per connection, 1 s to send it: neither a scraper's kept-alive
  // connection nor a client that connects and says nothing holds the endpoint from the others
  // for long (httplib waits 5 s for a request by default, and one worker served them in turn).
  impl_->server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  impl_->server.set_keep_alive_max_count(1);
  impl_->server.set_keep_alive_timeout(1);  // the wait for a connection's (first) request
  impl_->server.set_read_timeout(std::chrono::seconds(1));
  // httplib's default adds SO_REUSEPORT: a second agent on the same port would then bind too
  // and take half the scrapes. Only SO_REUSEADDR here, so the second one fails loudly.
  impl_->server.set_socket_options([](int sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  impl_->port = port == 0 ? impl_->server.bind_to_any_port(host) : (impl_->server.bind_to_port(host, port) ? port : -1);
  if (impl_->port <= 0) throw Error(fmt::format("metrics: cannot listen on {}", address));
  impl_->thread = std::thread([s = &impl_->server] { s->listen_after_bind(); });
  // stop() only works on a running server: wait until it runs, so that destruction right
  // after construction cannot leave the listener (and the join) hanging.
  for (int i = 0; i < 5000 && !impl_->server.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

MetricsServer::~MetricsServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int MetricsServer::port() const noexcept { return impl_->port; }

}  // namespace tributary::core
