// The analyzer's Kafka read-ahead (analytics/src/read_ahead.h) against librdkafka's mock
// cluster: its memory bound per partition, every message handed over once and in order
// through pauses and resumes, and forgetting a partition before a seek.
#include "read_ahead.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tributary/uplink/kafka.h"

#include <librdkafka/rdkafka_mock.h>

namespace tributary::analytics::detail {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kPerPartition = 6000;
constexpr std::size_t kPayload = 200;
constexpr std::size_t kCost = kPayload + ReadAhead::kMessageOverhead;  // no key
constexpr std::size_t kBudget = 200 * kCost;

struct Topic {
  uplink::MockCluster mock{1};
  Topic() {
    mock.create_topic("t", 2);
    uplink::KafkaHandle p = uplink::make_handle(
        RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", mock.bootstrap()}, {"linger.ms", "5"}}));
    const uplink::TopicHandle t(rd_kafka_topic_new(p.get(), "t", nullptr));
    for (int part = 0; part < 2; ++part)
      for (int i = 0; i < kPerPartition; ++i) {
        std::string v = std::to_string(part) + "/" + std::to_string(i);
        v.resize(kPayload, '.');
        while (rd_kafka_produce(t.get(), part, RD_KAFKA_MSG_F_COPY, v.data(), v.size(), nullptr, 0, nullptr) != 0)
          rd_kafka_poll(p.get(), 10);  // the queue is full: let deliveries drain it
      }
    EXPECT_EQ(rd_kafka_flush(p.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  // A consumer assigned both partitions from their start.
  uplink::KafkaHandle consumer() const {
    uplink::KafkaHandle c = uplink::make_handle(
        RD_KAFKA_CONSUMER, uplink::make_conf({{"bootstrap.servers", mock.bootstrap()},
                                              {"group.id", "read-ahead-test"},
                                              {"enable.auto.commit", "false"},
                                              {"queued.min.messages", "10000000"},
                                              {"queued.max.messages.kbytes", "4096"},
                                              {"fetch.wait.max.ms", "25"}}));
    rd_kafka_poll_set_consumer(c.get());
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(2);
    for (int part = 0; part < 2; ++part) rd_kafka_topic_partition_list_add(list, "t", part)->offset = 0;
    EXPECT_EQ(rd_kafka_assign(c.get(), list), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(list);
    return c;
  }
};

// A topic of two partitions, kPerPartition messages each, and a read-ahead of a consumer
// assigned both from the start.
class ReadAheadTest : public ::testing::Test {
 protected:
  void SetUp() override { ahead.attach(c.get()); }
  Topic topic;
  uplink::KafkaHandle c = topic.consumer();
  ReadAhead ahead{"t", kBudget, 4 << 20};  // destroyed before the consumer
};

// Moves what librdkafka has into the read-ahead until both partitions are paused (bounded).
bool fill_until_paused(ReadAhead& ahead) {
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!(ahead.paused(0) && ahead.paused(1))) {
    if (Clock::now() > deadline) return false;
    ahead.catch_up();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Reads on until both partitions are read to their end, each message at the offset expected
// (`next`: where each partition goes on from).
void expect_read_in_order(ReadAhead& ahead, std::map<int, std::int64_t> next) {
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while ((next[0] < kPerPartition || next[1] < kPerPartition) && Clock::now() < deadline) {
    const Message m = ahead.poll(100);
    if (!m) continue;
    ASSERT_EQ(m->err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_message_errstr(m.get());
    ASSERT_EQ(m->offset, next[m->partition]) << "partition " << m->partition;
    ++next[m->partition];
  }
  EXPECT_EQ(next[0], kPerPartition);
  EXPECT_EQ(next[1], kPerPartition);
}

TEST_F(ReadAheadTest, HoldsNoMoreThanItsBudgetPerPartitionAndHandsOverEveryMessageOnceInOrder) {
  ASSERT_TRUE(fill_until_paused(ahead)) << "held " << ahead.held_bytes(0) << " and " << ahead.held_bytes(1);
  // Paused once a message took it to the budget; what librdkafka had fetched past it is dropped
  // by the pause, not handed over.
  for (int part = 0; part < 2; ++part) {
    EXPECT_GE(ahead.held_bytes(part), kBudget);
    EXPECT_LT(ahead.held_bytes(part), kBudget + kCost);
  }

  std::map<int, std::int64_t> next{{0, 0}, {1, 0}};
  std::size_t most = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while ((next[0] < kPerPartition || next[1] < kPerPartition) && Clock::now() < deadline) {
    most = std::max({most, ahead.held_bytes(0), ahead.held_bytes(1)});
    const Message m = ahead.poll(100);
    if (!m) continue;
    ASSERT_EQ(m->err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_message_errstr(m.get());
    ASSERT_EQ(m->offset, next[m->partition]) << "partition " << m->partition;
    const std::string v(static_cast<const char*>(m->payload), m->len);
    ASSERT_EQ(v.substr(0, v.find('.')), std::to_string(m->partition) + "/" + std::to_string(m->offset));
    ++next[m->partition];
  }
  EXPECT_EQ(next[0], kPerPartition);
  EXPECT_EQ(next[1], kPerPartition);
  EXPECT_LT(most, kBudget + kCost);
  // 6000 messages of a partition are 30 budgets: paused and resumed many times, the fetcher
  // woken at each resume (the requests sent and answered by the leader).
  EXPECT_GE(ahead.pauses(), 20u);
  EXPECT_GE(ahead.wakeups(), ahead.pauses() - 2);
  EXPECT_GE(ahead.wakeups_answered(), 1u);
  EXPECT_EQ(ahead.held_messages(), 0u);
  EXPECT_FALSE(ahead.poll(50));
}

TEST_F(ReadAheadTest, AForgottenPartitionLosesWhatWasHeldAndIsReadAgainFromWhereItIsSeeked) {
  ASSERT_TRUE(fill_until_paused(ahead));
  const std::size_t held_1 = ahead.held_bytes(1);

  ahead.forget(0);
  EXPECT_EQ(ahead.held_bytes(0), 0u);
  EXPECT_FALSE(ahead.paused(0));
  EXPECT_EQ(ahead.held_bytes(1), held_1);  // the other partition keeps what it had
  EXPECT_TRUE(ahead.paused(1));
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, "t", 0)->offset = 4321;
  rd_kafka_error_t* err = rd_kafka_seek_partitions(c.get(), list, 10000);
  rd_kafka_topic_partition_list_destroy(list);
  ASSERT_EQ(err, nullptr) << rd_kafka_error_string(err);

  expect_read_in_order(ahead, {{0, 4321}, {1, 0}});
}

TEST_F(ReadAheadTest, ForgettingEverythingResumesEveryPartitionAfterWhatLibrdkafkaHandedOver) {
  ASSERT_TRUE(fill_until_paused(ahead));
  // Nothing handed over yet: the read-ahead holds offsets 0..held-1 of each partition.
  const std::int64_t held[2] = {static_cast<std::int64_t>(ahead.held_bytes(0) / kCost),
                                static_cast<std::int64_t>(ahead.held_bytes(1) / kCost)};
  ahead.forget_all();
  EXPECT_EQ(ahead.held_messages(), 0u);
  EXPECT_FALSE(ahead.paused(0));
  EXPECT_FALSE(ahead.paused(1));
  // Resumed in librdkafka too, from after what it had handed over: what was forgotten is the
  // caller's to read again (it seeks; the analyzer restores and seeks).
  expect_read_in_order(ahead, {{0, held[0]}, {1, held[1]}});
}

// Both partitions paused with messages held; then partition 0 resumed into a failing fetch.
// Returns once the read-ahead holds the error (bounded).
bool hold_an_error(const Topic& topic, ReadAhead& ahead) {
  if (!fill_until_paused(ahead)) return false;
  // Pushed while nothing fetches; three, in case a fetch sent before the pauses takes one.
  constexpr std::int16_t kFetch = 1;  // the Fetch API key
  rd_kafka_mock_push_request_errors(topic.mock.raw(), kFetch, 3, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  ahead.forget(0);  // partition 0 fetches again; partition 1 stays paused with its messages held
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (ahead.held_errors() == 0 && Clock::now() < deadline) {
    ahead.catch_up();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return ahead.held_errors() > 0 && ahead.paused(1) && ahead.held_bytes(1) > 0;
}

TEST_F(ReadAheadTest, AnErrorComesOutBeforeTheMessagesHeldAheadOfIt) {
  ASSERT_TRUE(hold_an_error(topic, ahead));
  const Message m = ahead.poll(0);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->err, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) << rd_kafka_message_errstr(m.get());
}

TEST_F(ReadAheadTest, AnErrorOutlivesForgettingTheMessagesHeld) {
  ASSERT_TRUE(hold_an_error(topic, ahead));
  ahead.forget_all();  // as a revoke or a rewind would, before the job reads on
  const Message m = ahead.poll(0);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->err, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) << rd_kafka_message_errstr(m.get());
}

}  // namespace
}  // namespace tributary::analytics::detail
