// The analyzer's Kafka read-ahead (analytics/src/read_ahead.h) against librdkafka's mock
// cluster: its memory bound per partition, every message handed over once and in order
// through pauses and resumes, and forgetting a partition before a seek.
#include "read_ahead.h"

#include <gtest/gtest.h>

#include <chrono>
#include <atomic>
#include <map>
#include <regex>
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
// librdkafka's own bound on its queue (queued.max.messages.kbytes) and the most one fetch of a
// partition brings (max.partition.fetch.bytes), both small so that the budget is crossed often.
constexpr std::size_t kLibrdkafkaBound = 64 << 10;
constexpr std::size_t kFetchBytes = 64 << 10;
// What a partition may hold: its budget, plus what librdkafka had queued when the read-ahead
// emptied its queue (its bound, overshot by a fetch or two landing), plus one message.
constexpr std::size_t kMostHeld = kBudget + (kLibrdkafkaBound + 2 * kFetchBytes) / kPayload * kCost + kCost;

// librdkafka's statistics of a consumer: the messages it received from the broker in all
// (the top-level "rxmsgs", the last in the report), as last reported. What a pause made it drop
// and fetch again counts twice.
struct Received {
  std::atomic<std::uint64_t> messages{0};
  std::atomic<std::uint64_t> reports{0};
  static int on_stats(rd_kafka_t*, char* json, size_t, void* opaque) {
    static const std::regex kField(R"re("rxmsgs":([0-9]+))re");
    const std::string text(json);
    std::uint64_t last = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), kField); it != std::sregex_iterator(); ++it)
      last = std::stoull((*it)[1].str());
    auto* self = static_cast<Received*>(opaque);
    self->messages = last;
    ++self->reports;
    return 0;  // librdkafka frees the JSON
  }
};

struct Topic {
  uplink::MockCluster mock{1};
  Topic() {
    mock.create_topic("t", 2);
    uplink::KafkaHandle p = uplink::make_handle(
        RD_KAFKA_PRODUCER,
        uplink::make_conf({{"bootstrap.servers", mock.bootstrap()}, {"linger.ms", "5"}, {"batch.size", "8192"}}));
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
  // A consumer assigned both partitions from their start; its statistics go to `received`.
  uplink::KafkaHandle consumer(Received& received) const {
    uplink::ConfHandle conf = uplink::make_conf({{"bootstrap.servers", mock.bootstrap()},
                                                 {"group.id", "read-ahead-test"},
                                                 {"enable.auto.commit", "false"},
                                                 {"queued.min.messages", "10000000"},
                                                 {"queued.max.messages.kbytes", std::to_string(kLibrdkafkaBound >> 10)},
                                                 {"max.partition.fetch.bytes", std::to_string(kFetchBytes)},
                                                 {"statistics.interval.ms", "20"},
                                                 {"fetch.wait.max.ms", "25"}});
    rd_kafka_conf_set_opaque(conf.get(), &received);
    rd_kafka_conf_set_stats_cb(conf.get(), &Received::on_stats);
    uplink::KafkaHandle c = uplink::make_handle(RD_KAFKA_CONSUMER, std::move(conf));
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
  Received received;
  uplink::KafkaHandle c = topic.consumer(received);
  ReadAhead ahead{"t", kBudget, kLibrdkafkaBound};  // destroyed before the consumer
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
  // Paused at the budget, once librdkafka's queue was emptied into the read-ahead.
  for (int part = 0; part < 2; ++part) {
    EXPECT_GE(ahead.held_bytes(part), kBudget);
    EXPECT_LE(ahead.held_bytes(part), kMostHeld);
  }

  // Read as a consumer slower than its fetcher is: each round waits (bounded) until every
  // partition not fetched to its end is paused at its budget, then reads until one resumes.
  std::map<int, std::int64_t> next{{0, 0}, {1, 0}};
  std::size_t most = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  auto fetched_all = [&](int p) { return next[p] + static_cast<std::int64_t>(ahead.held_bytes(p) / kCost) >= kPerPartition; };
  while ((next[0] < kPerPartition || next[1] < kPerPartition) && Clock::now() < deadline) {
    while (!((ahead.paused(0) || fetched_all(0)) && (ahead.paused(1) || fetched_all(1))) && Clock::now() < deadline) {
      ahead.catch_up();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // librdkafka's fetch: polled, bounded above
    }
    most = std::max({most, ahead.held_bytes(0), ahead.held_bytes(1)});
    const bool was_paused[2] = {ahead.paused(0), ahead.paused(1)};
    while ((next[0] < kPerPartition || next[1] < kPerPartition) && Clock::now() < deadline &&
           !((was_paused[0] && !ahead.paused(0)) || (was_paused[1] && !ahead.paused(1)))) {
      const Message m = ahead.poll(100);
      if (!m) continue;
      ASSERT_EQ(m->err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_message_errstr(m.get());
      ASSERT_EQ(m->offset, next[m->partition]) << "partition " << m->partition;
      const std::string v(static_cast<const char*>(m->payload), m->len);
      ASSERT_EQ(v.substr(0, v.find('.')), std::to_string(m->partition) + "/" + std::to_string(m->offset));
      ++next[m->partition];
      most = std::max({most, ahead.held_bytes(0), ahead.held_bytes(1)});
    }
  }
  EXPECT_EQ(next[0], kPerPartition);
  EXPECT_EQ(next[1], kPerPartition);
  EXPECT_LE(most, kMostHeld);
  // 6000 messages of a partition are 30 budgets: paused and resumed many times, the fetcher
  // woken at each resume (the requests sent and answered by the leader).
  EXPECT_GE(ahead.pauses(), 20u);
  // A pause drops no more than a fetch in flight: what librdkafka had queued was taken first.
  // Pausing at the message that crossed the budget dropped the rest of its queue, which was
  // fetched (and decompressed) again after the resume: 3.3 times the topic here, 230 messages
  // per pause; now 0-1 per pause here, 30 under ASan (a slower drain meets more fetches in
  // flight), and never more than a fetch (kFetchBytes) each. The bound is half a fetch per
  // pause. The count is librdkafka's statistics, waited for (bounded) until two more reports
  // came after the read.
  const std::uint64_t reports = received.reports.load();
  const auto stats_deadline = Clock::now() + std::chrono::seconds(10);
  while (received.reports.load() < reports + 2 && Clock::now() < stats_deadline) (void)rd_kafka_poll(c.get(), 10);
  ASSERT_GE(received.reports.load(), reports + 2);
  EXPECT_GE(received.messages.load(), 2u * kPerPartition);
  EXPECT_LE(received.messages.load(), 2u * kPerPartition + ahead.pauses() * (kFetchBytes / kPayload) / 2)
      << ahead.pauses() << " pauses";
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
