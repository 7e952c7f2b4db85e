// Reading a topic back in tests with an independent librdkafka consumer (no group: assigned
// partitions from the beginning), collecting identity and payload of every record.
#pragma once

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tributary/uplink/kafka.h"
#include "tributary/uplink/uplink.h"

namespace tributary::testing {

struct KafkaRecord {
  core::EventId id;
  std::string payload;
  int partition;
};

// Makes `rk`, a consumer, a member of its group subscribed to `topic` (its messages come
// through rd_kafka_consumer_poll).
inline rd_kafka_resp_err_t subscribe(rd_kafka_t* rk, const std::string& topic) {
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  const rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  return err;
}

// Stops after `want` records, at `timeout`, or (with `idle` > 0) once `idle` passes without a
// new record after at least one arrived: reading past the end to catch copies. With
// `committed_only`, records of aborted transactions are not seen (read_committed).
inline std::vector<KafkaRecord> read_topic(const std::string& bootstrap, const std::string& topic, int partitions,
                                           std::size_t want, std::chrono::milliseconds timeout,
                                           std::chrono::milliseconds idle = std::chrono::milliseconds(0),
                                           bool committed_only = false) {
  auto rk = uplink::make_handle(
      RD_KAFKA_CONSUMER, uplink::make_conf({{"bootstrap.servers", bootstrap},
                                            {"group.id", "tributary-test-reader"},
                                            {"enable.auto.commit", "false"},
                                            {"isolation.level", committed_only ? "read_committed" : "read_uncommitted"},
                                            // A reset of a position would hide records or show
                                            // them twice: an error, said on stderr, instead.
                                            {"auto.offset.reset", "error"},
                                            {"log_level", "3"}}));
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk.get(), parts);
  rd_kafka_topic_partition_list_destroy(parts);
  std::vector<KafkaRecord> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto last = std::chrono::steady_clock::now();
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (m == nullptr) {
      if (idle.count() > 0 && !out.empty() && std::chrono::steady_clock::now() - last > idle) break;
      continue;
    }
    last = std::chrono::steady_clock::now();
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      auto id = uplink::message_identity(m);
      out.push_back({id.value_or(core::EventId{}), std::string(static_cast<const char*>(m->payload), m->len),
                     m->partition});
    } else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
      std::fprintf(stderr, "read_topic %s [%d]: %s\n", topic.c_str(), m->partition, rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  return out;
}

// Writes `records` records ("{}") to each of `partitions` partitions of `topic` in one
// transaction of its own (transactional.id = `topic`) and aborts it: aborted records and an
// abort marker that a read_committed reader skips. Asserts each step.
inline void abort_a_transaction(const std::string& bootstrap, const std::string& topic, int partitions, int records) {
  const auto message = [](rd_kafka_error_t* e) {
    const std::string s = e ? rd_kafka_error_string(e) : "";
    if (e) rd_kafka_error_destroy(e);
    return s;
  };
  auto rk = uplink::make_handle(RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", bootstrap},
                                                                      {"transactional.id", topic},
                                                                      {"log_level", "3"}}));
  ASSERT_EQ(message(rd_kafka_init_transactions(rk.get(), 30000)), "");
  ASSERT_EQ(message(rd_kafka_begin_transaction(rk.get())), "");
  for (int p = 0; p < partitions; ++p)
    for (int i = 0; i < records; ++i)
      ASSERT_EQ(rd_kafka_producev(rk.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(p),
                                  RD_KAFKA_V_VALUE(const_cast<char*>("{}"), 2), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(rd_kafka_flush(rk.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(message(rd_kafka_abort_transaction(rk.get(), 30000)), "");
}

// Drives `u` until the channel is committed to its end (true) or `timeout` passes.
inline bool ship_all(uplink::Uplink& u, core::Channel& ch,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(60000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (u.do_work() == 0) u.wait(std::chrono::milliseconds(20));
    const auto m = u.metrics();
    if (m.in_flight == 0 && m.committed == ch.stats().write_position) return true;
  }
  return false;
}

}  // namespace tributary::testing
