// The demo's loss report: what a topic holds against an analyzer's ledger, on librdkafka's mock
// cluster. Events the ledger lacks are counted once (copies in the topic too), with the partition
// and offset of the first of them, which is where a reader's miss starts.
#include "topic_audit.h"

#include <fmt/format.h>
#include <gtest/gtest.h>


#include "support/channel_util.h"
#include "support/kafka_util.h"
#include "support/local_kafka.h"
#include "support/temp_dir.h"
#include "tributary/analytics/checkpoint.h"
#include "tributary/core/error.h"
#include "tributary/uplink/uplink.h"

namespace tributary::tools {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

// A channel at `path` holding events 0..n-1 of sources 1 and 2 (60-byte payloads).
core::Channel two_sources(const std::filesystem::path& path, std::uint64_t n) {
  core::ChannelConfig cc;
  cc.capacity = 16 << 20;
  core::Channel ch = core::Channel::create(path, cc);
  {
    core::Producer p = ch.producer();  // gone before the channel is returned
    for (std::uint64_t source = 1; source <= 2; ++source)
      for (std::uint64_t i = 0; i < n; ++i)
        EXPECT_EQ(p.append({source, i}, testing::payload_for(source, i, 60)), core::AppendStatus::kOk);
  }
  return ch;
}

// The sequences of the packed record at `partition` `offset` of `topic`.
std::vector<std::uint64_t> sequences_at(const std::string& bootstrap, const std::string& topic, int partition,
                                        std::int64_t offset) {
  auto rk = uplink::make_handle(RD_KAFKA_CONSUMER, uplink::make_conf({{"bootstrap.servers", bootstrap},
                                                                      {"group.id", "topic-audit-test"},
                                                                      {"log_level", "3"}}));
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = offset;
  rd_kafka_assign(rk.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<std::uint64_t> seqs;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (seqs.empty() && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset == offset)
      (void)uplink::for_each_packed({static_cast<const char*>(m->payload), m->len},
                                    [&](const uplink::PackedEvent& e) { seqs.push_back(e.id.sequence); });
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  return seqs;
}

TEST(TopicAuditTest, EventsTheLedgerLacksAreCountedOnceWithWhereTheFirstOfThemIs) {
  TempDir dir;
  uplink::MockCluster mock(1);
  mock.create_topic("events", 2);
  core::Channel ch = two_sources(dir / "c.chan", 3000);
  // Everything shipped twice, packed (a second uplink re-sends the whole channel).
  for (const char* name : {"up", "again"}) {
    uplink::UplinkOptions o{.name = name, .topic = "events", .kafka = {{"bootstrap.servers", mock.bootstrap()}}};
    o.packed = true;
    o.pack_bytes = 16 << 10;
    uplink::Uplink up(ch, o);
    ASSERT_TRUE(testing::ship_all(up, ch, 30s)) << name;
  }
  // The analyzer counted all of source 2 and source 1 but for seq 1000..1499.
  analytics::Ledger counted;
  for (std::uint64_t i = 0; i < 3000; ++i) {
    (void)counted.mark({2, i});
    if (i < 1000 || i >= 1500) (void)counted.mark({1, i});
  }
  const TopicAudit a = audit_topic(mock.bootstrap(), "events", counted, 30s);
  EXPECT_TRUE(a.complete);
  EXPECT_EQ(a.errors, "");
  ASSERT_EQ(a.sources.size(), 2u);
  EXPECT_EQ(a.sources[0].source_id, 1u);
  EXPECT_EQ(a.sources[0].in_topic, 6000u) << "copies are in the topic too";
  EXPECT_EQ(a.sources[0].not_counted, 500u) << "each missing event once, not once per copy";
  EXPECT_EQ(a.sources[0].first_seq, 1000u);
  const std::vector<std::uint64_t> there = sequences_at(mock.bootstrap(), "events", a.sources[0].partition, a.sources[0].offset);
  EXPECT_NE(std::find(there.begin(), there.end(), 1000u), there.end()) << "the record named holds seq 1000";
  EXPECT_EQ(a.sources[1].source_id, 2u);
  EXPECT_EQ(a.sources[1].in_topic, 6000u);
  EXPECT_EQ(a.sources[1].not_counted, 0u);
  EXPECT_NE(describe(a).find("source 1: 6000 events in Kafka, 500 of them not counted (the first: seq 1000 at partition"),
            std::string::npos)
      << describe(a);
  ASSERT_EQ(a.partitions.size(), 2u);
  std::int64_t records = 0;
  for (const PartitionInTopic& x : a.partitions) {
    EXPECT_EQ(x.start, 0);
    records += x.end - x.start;
  }
  EXPECT_GT(records, 2) << "packs of both sources, twice";
  EXPECT_EQ(describe(a).rfind(fmt::format("log start..end per partition 0:0..{} 1:0..{}; source 1:", a.partitions[0].end,
                                          a.partitions[1].end),
                              0),
            0u)
      << describe(a);
}

// Partitions with nothing to count (two empty, one holding only a record without an identity)
// end the read at their ends instead of at the timeout (the mock writes no transaction markers:
// the case of a partition ending in one is TopicAuditKafkaTest's).
TEST(TopicAuditTest, AnEmptyPartitionEndsTheReadWithoutWaitingForItsTimeout) {
  uplink::MockCluster mock(1);
  mock.create_topic("quiet", 3);
  auto rk = uplink::make_handle(RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", mock.bootstrap()},
                                                                      {"log_level", "3"}}));
  ASSERT_EQ(rd_kafka_producev(rk.get(), RD_KAFKA_V_TOPIC("quiet"), RD_KAFKA_V_PARTITION(1),
                              RD_KAFKA_V_VALUE(const_cast<char*>("no identity"), 11), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(rd_kafka_flush(rk.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  const auto t0 = std::chrono::steady_clock::now();
  const TopicAudit a = audit_topic(mock.bootstrap(), "quiet", analytics::Ledger{}, 60s);
  EXPECT_TRUE(a.complete);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s) << "ended by the partitions' ends, not the timeout";
  EXPECT_TRUE(a.sources.empty());
  EXPECT_EQ(describe(a), "log start..end per partition 0:0..0 1:0..1 2:0..0; no events with an identity");
}

class TopicAuditKafkaTest : public testing::LocalKafkaSuite {};

// On a real broker, partitions that end in an aborted transaction (its records skipped by a
// read_committed reader, then the abort marker): the last record read is short of the end
// offset, so the read ends at each partition's end event, not at the timeout.
TEST_F(TopicAuditKafkaTest, PartitionsEndingInAnAbortedTransactionEndTheReadAtTheirEnds) {
  TempDir dir;
  {
    auto admin = uplink::make_handle(RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", bootstrap_},
                                                                           {"log_level", "3"}}));
    ASSERT_EQ(uplink::ensure_topic(admin.get(), "ends-aborted", 2, 1), 2);
  }
  core::Channel ch = two_sources(dir / "c.chan", 500);
  uplink::Uplink up(ch, {.name = "up", .topic = "ends-aborted", .kafka = {{"bootstrap.servers", bootstrap_}}});
  ASSERT_TRUE(testing::ship_all(up, ch, 60s));
  testing::abort_a_transaction(bootstrap_, "ends-aborted", 2, 1);
  const auto t0 = std::chrono::steady_clock::now();
  const TopicAudit a = audit_topic(bootstrap_, "ends-aborted", analytics::Ledger{}, 120s);
  EXPECT_TRUE(a.complete) << describe(a);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s) << "ended by the partitions' ends, not the timeout";
  ASSERT_EQ(a.sources.size(), 2u) << describe(a);
  for (const SourceInTopic& x : a.sources) {
    EXPECT_EQ(x.in_topic, 500u);
    EXPECT_EQ(x.not_counted, 500u) << "an empty ledger counted nothing";
    EXPECT_EQ(x.first_seq, 0u);
  }
}

// Sources the analyzer's ledger retired are not in it any more: their events in the topic show as
// not counted, and the description says why, with the retired totals of the checkpoint.
TEST(TopicAuditTest, RetiredSourcesOfTheCheckpointAreNamedInTheDescription) {
  TempDir dir;
  analytics::write_checkpoint(dir / "checkpoint",
                              "tributary-analyzer 4\nposition\tkafka 0:5\nledger\nclock 9000 9000 2 50 1\n7 0 @9000 0-9\n");
  TopicAudit a;
  a.retired = checkpoint_ledger(dir / "checkpoint").retired();
  EXPECT_NE(describe(a).find("the analyzer had retired 2 idle sources (50 events counted): their events here show as "
                             "not counted"),
            std::string::npos)
      << describe(a);
}

TEST(TopicAuditTest, ACheckpointWithoutALedgerIsNamed) {
  TempDir dir;
  EXPECT_THROW((void)checkpoint_ledger(dir / "checkpoint"), core::Error) << "no checkpoint at all";
  analytics::write_checkpoint(dir / "checkpoint", "tributary-analyzer 3\nposition\tkafka 0:5\n");
  try {
    (void)checkpoint_ledger(dir / "checkpoint");
    FAIL() << "no error";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "checkpoint").string() + " holds no ledger"), std::string::npos) << e.what();
  }
  analytics::write_checkpoint(dir / "checkpoint", "tributary-analyzer 3\nposition\tkafka 0:5\nledger\n7 0 0-9 20-29\n");
  const analytics::Ledger l = checkpoint_ledger(dir / "checkpoint");
  ASSERT_EQ(l.audit().size(), 1u);
  EXPECT_EQ(l.audit()[0].counted, 20u);
  EXPECT_EQ(l.audit()[0].gaps, 10u);
}

}  // namespace
}  // namespace tributary::tools
