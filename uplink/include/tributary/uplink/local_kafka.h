// A local Apache Kafka (KRaft) for the demo, the tests and the benchmarks, whenever no
// bootstrap.servers is configured: jars fetched once from Maven Central by the pom in
// uplink/kafka/ into a per-user cache, brokers run as `java -cp <jars>/* kafka.Kafka` with a
// small heap, on loopback. One broker (standalone controller) or three (three controller
// voters, replication factor 3, min.insync.replicas 2) for failover tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace tributary::uplink {

struct LocalKafkaOptions {
  std::filesystem::path dir = "/tmp/tributary-kafka";  // storage, configs, logs, pid files
  int port = 9092;     // broker i listens on port + i - 1; its controller on port + 100 + i - 1
  int brokers = 1;     // 1 or 3
  std::string version = "4.1.1";
  std::string heap = "512m";  // per broker: this is a 2-core, 2-4 GB node
  std::filesystem::path cache;  // default: $XDG_CACHE_HOME or ~/.cache, + /tributary/kafka-<version>
};

struct BrokerState {
  int node_id;
  int port;
  pid_t pid;         // 0 if not running
  bool answering;    // answers a metadata request
};

class LocalKafka {
 public:
  explicit LocalKafka(LocalKafkaOptions options);

  [[nodiscard]] std::filesystem::path jar_dir() const;
  [[nodiscard]] bool fetched() const;
  // Runs Maven (progress shown on stderr). Throws core::Error naming the package to install
  // if java or mvn is missing.
  void fetch() const;
  // Formats storage on first use, starts the brokers, waits until every one answers metadata
  // (or throws with the tail of its log after `timeout`). Returns the bootstrap address.
  std::string start(std::chrono::seconds timeout = std::chrono::seconds(90)) const;
  // SIGTERM, then SIGKILL after `grace`.
  void stop(std::chrono::seconds grace = std::chrono::seconds(30)) const;
  // Stops (SIGKILL) or starts one broker, for failover tests.
  void kill_broker(int node_id) const;
  void start_broker(int node_id) const;
  [[nodiscard]] std::vector<BrokerState> status() const;
  [[nodiscard]] std::string bootstrap() const;

 private:
  LocalKafkaOptions o_;
};

// True if `bootstrap` answers a metadata request within `timeout`, listing at least `brokers`
// live brokers (a broker is listed once it registered with the controller).
[[nodiscard]] bool kafka_answers(const std::string& bootstrap, std::chrono::milliseconds timeout, int brokers = 1);

}  // namespace tributary::uplink
