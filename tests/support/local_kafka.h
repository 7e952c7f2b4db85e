// A test suite sharing one real Kafka (LocalKafka, KRaft, one broker on a random port) started
// once for the suite; each test skips, saying why, where Java or Maven is missing.
#pragma once

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "support/process.h"
#include "support/temp_dir.h"
#include "tributary/uplink/local_kafka.h"

namespace tributary::testing {

class LocalKafkaSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_command("java") || !have_command("mvn")) return;  // each test skips with the reason
    dir_ = new TempDir();
    uplink::LocalKafkaOptions o;
    o.dir = dir_->path() / "kafka";
    o.port = 20000 + static_cast<int>(std::random_device{}() % 12000);
    kafka_ = new uplink::LocalKafka(o);
    bootstrap_ = kafka_->start();
  }
  static void TearDownTestSuite() {
    if (kafka_ != nullptr) kafka_->stop();
    delete kafka_;
    delete dir_;
    kafka_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (kafka_ == nullptr) GTEST_SKIP() << "java and mvn are needed to run Kafka (apt-get install openjdk-17-jre-headless maven)";
  }

  static inline TempDir* dir_ = nullptr;
  static inline uplink::LocalKafka* kafka_ = nullptr;
  static inline std::string bootstrap_;
};

}  // namespace tributary::testing
