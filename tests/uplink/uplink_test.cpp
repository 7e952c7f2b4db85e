// The uplink against librdkafka's mock cluster: every event delivered with its identity, the
// channel committed only after acknowledgement, nothing lost through a broker outage or
// injected produce errors, refused events in the dead-letter channel.
#include "tributary/uplink/uplink.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "support/channel_util.h"
#include "support/kafka_util.h"
#include "support/temp_dir.h"
#include "tributary/core/error.h"

namespace tributary::uplink {
namespace {

using namespace std::chrono_literals;
using testing::payload_for;
using testing::TempDir;

constexpr std::int16_t kProduceApi = 0;      // Kafka protocol ApiKeys: Produce
constexpr std::int16_t kListOffsetsApi = 2;  // and ListOffsets

core::ChannelConfig cfg() {
  core::ChannelConfig c;
  c.capacity = 16 << 20;
  c.max_payload = 1 << 20;
  return c;
}

void fill(core::Channel& ch, std::uint64_t source, std::uint64_t n, std::size_t len = 60) {
  core::Producer p = ch.producer();
  for (std::uint64_t i = 0; i < n; ++i) ASSERT_EQ(p.append({source, i}, payload_for(source, i, len)), core::AppendStatus::kOk);
}

using testing::ship_all;

// What the tests stand on: a mock cluster with topic "events" (unless partitions is 0), a
// channel, and the uplink's log lines, kept for the assertions.
struct Rig {
  TempDir dir;
  MockCluster mock;
  core::Channel ch;  // dir / "c.chan", made by the constructor
  std::vector<std::pair<std::string, std::string>> logs;

  explicit Rig(int partitions = 1, int brokers = 1, int replication = 1, const core::OpenOptions& open = {})
      : mock(brokers), ch(core::Channel::create(dir / "c.chan", cfg(), open)) {
    if (partitions > 0) mock.create_topic("events", partitions, replication);
  }
  // The mock's bootstrap.servers, and `more`.
  [[nodiscard]] Settings kafka(Settings more = {}) const {
    more.emplace("bootstrap.servers", mock.bootstrap());
    return more;
  }
  [[nodiscard]] LogFn log() {
    return [this](std::string_view level, const std::string& m) { logs.emplace_back(level, m); };
  }
  [[nodiscard]] std::size_t warnings() const {
    return static_cast<std::size_t>(std::count_if(logs.begin(), logs.end(), [](const auto& l) { return l.first == "warn"; }));
  }
  // The index of the first line from the `from`th on containing `text` (at `level`, if
  // given); logs.size() if none.
  [[nodiscard]] std::size_t find(std::string_view text, std::size_t from = 0, std::string_view level = {}) const {
    for (std::size_t i = from; i < logs.size(); ++i)
      if ((level.empty() || logs[i].first == level) && logs[i].second.find(text) != std::string::npos) return i;
    return logs.size();
  }
  // That line (a copy: the log grows while the uplink works), or none.
  [[nodiscard]] std::optional<std::string> said(std::string_view text, std::size_t from = 0,
                                                std::string_view level = {}) const {
    const std::size_t i = find(text, from, level);
    return i < logs.size() ? std::optional(logs[i].second) : std::nullopt;
  }
  [[nodiscard]] std::string log_text() const {
    std::string all;
    for (const auto& [level, m] : logs) all += level + ": " + m + "\n";
    return all;
  }
  // Topic "events" as read back by an independent consumer (testing::read_topic).
  [[nodiscard]] std::vector<testing::KafkaRecord> topic(int partitions, std::size_t max, std::chrono::milliseconds quiet = 0s) const {
    return testing::read_topic(mock.bootstrap(), "events", partitions, max, 30s, quiet);
  }
};

// With a dead-letter channel beside.
struct DeadLetterRig : Rig {
  core::Channel dlq = core::Channel::create(dir / "dlq.chan", cfg());
};

// Every (source, seq) in [0, n) present, duplicates only with identical payload.
void expect_each_at_least_once(const std::vector<testing::KafkaRecord>& got, std::uint64_t source, std::uint64_t n,
                               std::size_t* duplicates = nullptr) {
  std::map<std::uint64_t, int> seen;
  for (const auto& r : got) {
    ASSERT_EQ(r.id.source_id, source);
    ASSERT_LT(r.id.sequence, n);
    ASSERT_EQ(r.payload, payload_for(source, r.id.sequence, 60)) << "same identity, different content";
    ++seen[r.id.sequence];
  }
  EXPECT_EQ(seen.size(), n) << "events missing from the topic";
  if (duplicates) {
    *duplicates = 0;
    for (auto& [s, c] : seen) *duplicates += static_cast<std::size_t>(c - 1);
  }
}

TEST(UplinkTest, DeliversEveryEventOnceWithItsIdentityAndCommitsAfterAcks) {
  Rig rig(3);
  auto& ch = rig.ch;
  fill(ch, 42, 20000);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka()});
  ASSERT_TRUE(ship_all(u, ch));
  const auto got = rig.topic(3, 20000);
  std::size_t dups = 0;
  expect_each_at_least_once(got, 42, 20000, &dups);
  EXPECT_EQ(dups, 0u);
  std::set<int> partitions;
  for (const auto& r : got) partitions.insert(r.partition);
  EXPECT_EQ(partitions.size(), 1u) << "one source keeps its order in one partition";
  const auto m = u.metrics();
  EXPECT_EQ(m.delivered, 20000u);
  EXPECT_EQ(ch.stats().consumers.at(0).committed, ch.stats().write_position);
}

// Someone truncates the channel file under the uplink: once it has nothing to read it stops
// with an error naming the file (the agent then stops with it), instead of its wait returning
// at once again and again, forever.
TEST(UplinkTest, AChannelTruncatedUnderItStopsItWithAnErrorNamingTheFile) {
  Rig rig;
  fill(rig.ch, 42, 100);
  Uplink u(rig.ch, {.name = "up", .topic = "events", .kafka = rig.kafka()});
  ASSERT_TRUE(ship_all(u, rig.ch));
  const auto path = rig.dir / "c.chan";
  std::filesystem::resize_file(path, testing::data_offset(path) + 64 * 1024);
  std::string error;
  for (const auto end = std::chrono::steady_clock::now() + 10s; error.empty() && std::chrono::steady_clock::now() < end;) {
    try {
      (void)u.do_work();
      u.wait(100ms);
    } catch (const core::Error& e) {
      error = e.what();
    }
  }
  EXPECT_NE(error.find(path.string() + " was truncated"), std::string::npos) << error;
}

// The channel ends with a dead writer's claim (reserved, never published): the reader steps
// over it after the abandon timeout, and the uplink's cursor goes past it too once everything
// before it is delivered, instead of waiting there for the next event (a `--drain` would never
// end).
TEST(UplinkTest, TheCursorGoesPastADeadWritersClaimAtTheEndOfTheChannel) {
  Rig rig(1, 1, 1, {.abandon_timeout = 50ms});
  auto& ch = rig.ch;
  fill(ch, 6, 100);
  const pid_t writer = ::fork();
  ASSERT_GE(writer, 0);
  if (writer == 0) {  // reserves one record and dies holding it
    core::Producer p = ch.producer();
    core::Producer::Claim claim;
    ::_exit(p.claim({6, 100}, 60, claim) == core::AppendStatus::kOk ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(writer, &status, 0), writer);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka()});
  ASSERT_TRUE(ship_all(u, ch, 30s)) << "the cursor stayed at " << u.metrics().committed << " of "
                                    << ch.stats().write_position;
  EXPECT_EQ(u.metrics().delivered, 100u);
  EXPECT_EQ(ch.stats().abandoned_records, 1u);
  expect_each_at_least_once(rig.topic(1, 100), 6, 100);
}

// Decodes packed records back into events (identity, payload, partition).
std::vector<testing::KafkaRecord> unpack(const std::vector<testing::KafkaRecord>& records) {
  std::vector<testing::KafkaRecord> events;
  for (const auto& r : records) {
    std::optional<std::uint64_t> source;  // a pack holds one source's events
    EXPECT_TRUE(for_each_packed(r.payload, [&](const PackedEvent& e) {
      if (!source) source = e.id.source_id;
      EXPECT_EQ(e.id.source_id, *source) << "a pack mixes sources";
      events.push_back({e.id, std::string(e.payload), r.partition});
    })) << "a damaged pack";
  }
  return events;
}

// Produce requests failing with retriable errors (the mock's error injection): nothing lost,
// per-event records or packs.
void expect_injected_errors_lose_nothing(bool packed) {
  Rig rig;
  auto& ch = rig.ch;
  fill(ch, 9, 10000);
  rd_kafka_mock_push_request_errors(rig.mock.raw(), kProduceApi, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                    RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka({{"retry.backoff.ms", "10"}}),
                .packed = packed, .pack_bytes = 8 << 10});
  ASSERT_TRUE(ship_all(u, ch));
  auto got = rig.topic(1, packed ? 1000000 : 10000, packed ? 2s : 0s);
  if (packed) got = unpack(got);
  expect_each_at_least_once(got, 9, 10000);
}

TEST(UplinkTest, InjectedProduceErrorsLoseNothing) { expect_injected_errors_lose_nothing(false); }

TEST(UplinkTest, PackedModeLosesNothingThroughInjectedProduceErrors) { expect_injected_errors_lose_nothing(true); }

// Kafka away for longer than message.timeout.ms: the uplink rewinds and re-sends from the
// channel; nothing is committed meanwhile and nothing is lost (per-event records or packs).
void expect_an_outage_loses_nothing(bool packed) {
  Rig rig;
  auto& ch = rig.ch;
  fill(ch, 7, 5000);
  Uplink u(ch,
           {.name = "up", .topic = "events", .kafka = rig.kafka({{"message.timeout.ms", "1500"}}), .packed = packed,
            .pack_bytes = 8 << 10},
           rig.log());
  ASSERT_TRUE(ship_all(u, ch));
  rd_kafka_mock_broker_set_down(rig.mock.raw(), 1);
  core::Producer p = ch.producer();
  for (std::uint64_t i = 5000; i < 10000; ++i) ASSERT_EQ(p.append({7, i}, payload_for(7, i, 60)), core::AppendStatus::kOk);
  // Three delivery timeouts with the broker away: the events wait in the channel.
  const auto until = std::chrono::steady_clock::now() + 4500ms;
  while (std::chrono::steady_clock::now() < until) {
    if (u.do_work() == 0) u.wait(20ms);
  }
  EXPECT_LT(u.metrics().committed, ch.stats().write_position) << "nothing is committed while Kafka is away";
  EXPECT_GE(u.metrics().rewinds, 1u);
  rd_kafka_mock_broker_set_up(rig.mock.raw(), 1);
  ASSERT_TRUE(ship_all(u, ch));
  auto got = rig.topic(1, packed ? 1000000 : 10000, packed ? 2s : 0s);
  if (packed) got = unpack(got);
  expect_each_at_least_once(got, 7, 10000);
  // Reported once per change of state, not once per failed message.
  EXPECT_LE(rig.warnings(), 10u);
  EXPECT_GE(rig.warnings(), 1u);
}

TEST(UplinkTest, BrokerOutageLongerThanTheDeliveryTimeoutLosesNothing) { expect_an_outage_loses_nothing(false); }

// A delivery reported without an offset is not taken as confirmed (librdkafka's implicit
// acknowledgement of a failed request, see Uplink::Impl::on_delivery) except where no delivery
// has one: with acks=0 the broker answers nothing, and every event is still shipped once and
// committed, not sent again forever.
TEST(UplinkTest, WithAcksZeroDeliveriesWithoutAnOffsetAreTakenAsSent) {
  Rig rig;
  auto& ch = rig.ch;
  fill(ch, 5, 2000);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka({{"enable.idempotence", "false"}, {"acks", "0"}})});
  ASSERT_TRUE(ship_all(u, ch, 30s));
  const auto m = u.metrics();
  EXPECT_EQ(m.delivered, 2000u);
  EXPECT_EQ(m.failed, 0u);
  EXPECT_EQ(m.rewinds, 0u);
  expect_each_at_least_once(rig.topic(1, 2000), 5, 2000);
}

// A topic whose partition does not answer its leader yet (as one just auto-created: KRaft names
// the leader before the broker has made the partition): the uplink sends nothing until it
// answers, so librdkafka never sees a refusal it could later take for a delivery (see
// Uplink::Impl::learn_topic). The broker answers ListOffsets "not leader" 5 times: when the
// first event is sent, all 5 have been given, and every event ships.
TEST(UplinkTest, NothingIsSentBeforeEveryPartitionAnswersItsLeader) {
  Rig rig(2);
  auto& ch = rig.ch;
  constexpr auto kNotLeader = RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
  ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(rig.mock.raw(), 1, kListOffsetsApi, 5, kNotLeader, 0, kNotLeader,
                                                         0, kNotLeader, 0, kNotLeader, 0, kNotLeader, 0),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  fill(ch, 3, 500);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka()});
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (u.metrics().sent == 0 && std::chrono::steady_clock::now() < deadline)
    if (u.do_work() == 0) u.wait(20ms);
  ASSERT_GT(u.metrics().sent, 0u) << "the uplink never sent: " << u.metrics().last_error;
  std::size_t refusals_left = 99;
  ASSERT_EQ(rd_kafka_mock_broker_error_stack_cnt(rig.mock.raw(), 1, kListOffsetsApi, &refusals_left),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(refusals_left, 0u) << "the uplink sent before the partitions answered";
  ASSERT_TRUE(ship_all(u, ch, 30s));
  expect_each_at_least_once(rig.topic(2, 500), 3, 500);
}

// A partition that never answers its leader does not hold the events back for ever: after
// ready_wait the uplink sends anyway and says why it waited.
TEST(UplinkTest, APartitionThatNeverAnswersHoldsTheEventsOnlyForTheReadyWait) {
  Rig rig;
  auto& ch = rig.ch;
  std::vector<rd_kafka_resp_err_t> errs(100000, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
  rd_kafka_mock_push_request_errors_array(rig.mock.raw(), kListOffsetsApi, errs.size(), errs.data());
  fill(ch, 4, 300);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka(), .ready_wait = 500ms}, rig.log());
  ASSERT_TRUE(ship_all(u, ch, 30s));
  rd_kafka_mock_clear_request_errors(rig.mock.raw(), kListOffsetsApi);  // the reader below asks too
  expect_each_at_least_once(rig.topic(1, 300), 4, 300);
  const auto said = rig.said("not ready after 0.5 s", 0, "warn");
  ASSERT_TRUE(said) << "the wait must be said; the log:\n" << rig.log_text();
  EXPECT_NE(said->find("Not leader"), std::string::npos) << "with the broker's reason: " << *said;
}

// A topic name librdkafka refuses (longer than Kafka allows) is an error the uplink reports and
// retries after its back-off, with the events kept in the channel; it does not throw out of
// do_work (in the agent, an uplink thread's exception would end the process).
TEST(UplinkTest, ATopicNameLibrdkafkaRefusesIsReportedNotThrown) {
  Rig rig(0);
  auto& ch = rig.ch;
  ASSERT_NO_FATAL_FAILURE(fill(ch, 7, 10));
  Uplink u(ch, {.name = "up", .topic = std::string(1000, 't'), .kafka = rig.kafka()});
  for (int i = 0; i < 3; ++i) EXPECT_NO_THROW(u.do_work());
  EXPECT_NE(u.metrics().last_error.find("cannot use topic"), std::string::npos) << u.metrics().last_error;
  EXPECT_EQ(u.metrics().sent, 0u);
  EXPECT_EQ(u.metrics().committed, 0u) << "the events stay in the channel";
}

// Every broker answering 2.5 s late with a delivery timeout of 1.5 s, then the partitions' leaders
// moved: the produce requests time out in flight, possibly after the brokers appended them
// (librdkafka's POSSIBLY_PERSISTED), so the uplink rewinds and sends them again under the same
// identity, and the new leaders take the rest. Nothing is lost or committed early; any copy has
// its event's identity and payload (the analyzer's to drop). Whether the mock appended before
// its late answer depends on timing (an ASan run had none): the copies are counted, not
// required.
TEST(UplinkTest, SlowBrokersThenMovedLeadersLoseNothingAndCopiesKeepTheirIdentity) {
  Rig rig(2, 3, 3);
  auto [mock, ch] = std::tie(rig.mock, rig.ch);
  fill(ch, 5, 3000);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka({{"message.timeout.ms", "1500"}})}, rig.log());
  ASSERT_TRUE(ship_all(u, ch));  // connected, leaders known: the next requests reach the brokers
  for (int b = 1; b <= 3; ++b) rd_kafka_mock_broker_set_rtt(mock.raw(), b, 2500);
  core::Producer p = ch.producer();
  for (std::uint64_t i = 3000; i < 6000; ++i) ASSERT_EQ(p.append({5, i}, payload_for(5, i, 60)), core::AppendStatus::kOk);
  const auto until = std::chrono::steady_clock::now() + 4s;  // two delivery timeouts
  while (std::chrono::steady_clock::now() < until)
    if (u.do_work() == 0) u.wait(20ms);
  EXPECT_LT(u.metrics().committed, ch.stats().write_position) << "nothing is committed without an acknowledgement";
  EXPECT_GE(u.metrics().rewinds, 1u);
  for (int b = 1; b <= 3; ++b) rd_kafka_mock_broker_set_rtt(mock.raw(), b, 0);
  rd_kafka_mock_partition_set_leader(mock.raw(), "events", 0, 2);
  rd_kafka_mock_partition_set_leader(mock.raw(), "events", 1, 3);
  ASSERT_TRUE(ship_all(u, ch));
  std::size_t copies = 0;
  expect_each_at_least_once(rig.topic(2, 100000, 2s), 5, 6000, &copies);
  ::testing::Test::RecordProperty("copies", static_cast<int>(copies));
  EXPECT_LE(rig.warnings(), 10u) << "said once per change of state, not per message";
}

// Kafka unreachable from the very start: the uplink starts anyway, commits nothing, warns (a
// few times, not once per message), and ships everything once Kafka is there.
TEST(UplinkTest, KafkaUnreachableAtStartCommitsNothingAndShipsOnceItAppears) {
  Rig rig;
  auto& ch = rig.ch;
  rd_kafka_mock_broker_set_down(rig.mock.raw(), 1);
  fill(ch, 7, 3000);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka({{"message.timeout.ms", "1500"}})}, rig.log());
  const auto until = std::chrono::steady_clock::now() + 3500ms;  // two delivery timeouts
  while (std::chrono::steady_clock::now() < until)
    if (u.do_work() == 0) u.wait(20ms);
  EXPECT_EQ(u.metrics().committed, 0u) << "nothing is committed before Kafka acknowledged it";
  rd_kafka_mock_broker_set_up(rig.mock.raw(), 1);
  ASSERT_TRUE(ship_all(u, ch));
  expect_each_at_least_once(rig.topic(1, 6000, 2s), 7, 3000);
  EXPECT_GE(rig.warnings(), 1u) << "an unreachable Kafka must be said";
  EXPECT_LE(rig.warnings(), 10u) << "said once per change of state, not per message";
}

TEST(UplinkTest, PackedModeLosesNothingThroughABrokerOutage) { expect_an_outage_loses_nothing(true); }

// max_in_flight bounds what librdkafka holds (its memory is about 1 KB per message): while the
// broker answers nothing, the uplink hands it events up to the bound, never past it, and ships
// the rest once the broker answers. In packed mode the bound counts events, not packs.
void expect_in_flight_bounded(bool packed) {
  Rig rig;
  auto [mock, ch] = std::tie(rig.mock, rig.ch);
  fill(ch, 9, 10);
  Uplink u(ch,
           {.name = "up", .topic = "events", .kafka = rig.kafka(), .max_in_flight = 100, .packed = packed,
            .pack_bytes = 4096},  // ~46 events of 60 bytes per pack: the bound falls inside a pack
           rig.log());
  ASSERT_TRUE(ship_all(u, ch));  // connected, the topic ready
  rd_kafka_mock_broker_set_rtt(mock.raw(), 1, 3000);
  core::Producer p = ch.producer();
  for (std::uint64_t i = 10; i < 2010; ++i) ASSERT_EQ(p.append({9, i}, payload_for(9, i, 60)), core::AppendStatus::kOk);
  std::uint64_t most = 0;
  const auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    const std::size_t sent = u.do_work();
    most = std::max(most, u.metrics().in_flight);
    if (sent == 0) u.wait(10ms);
  }
  EXPECT_EQ(most, 100u) << "handed up to the bound, never past it";
  EXPECT_EQ(u.metrics().delivered, 10u) << "nothing acknowledged while the broker is slow";
  rd_kafka_mock_broker_set_rtt(mock.raw(), 1, 0);
  ASSERT_TRUE(ship_all(u, ch));
  auto got = rig.topic(1, packed ? 1000000 : 4020, 1s);
  if (packed) got = unpack(got);
  std::size_t copies = 0;
  expect_each_at_least_once(got, 9, 2010, &copies);
  EXPECT_EQ(copies, 0u);
}

TEST(UplinkTest, HandsLibrdkafkaNoMoreThanMaxInFlightEvents) { expect_in_flight_bounded(false); }

TEST(UplinkTest, PackedModeHandsLibrdkafkaNoMoreThanMaxInFlightEvents) { expect_in_flight_bounded(true); }

TEST(UplinkTest, PackedModeRefusesAPackSizeKafkaWouldRefuse) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  try {
    Uplink u(ch, {.name = "up", .topic = "events",
                  .kafka = {{"bootstrap.servers", "127.0.0.1:1"}, {"message.max.bytes", "200000"}},
                  .packed = true, .pack_bytes = 256 << 10});
    FAIL() << "accepted packs larger than message.max.bytes";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("pack_bytes 262144 does not fit message.max.bytes 200000"), std::string::npos)
        << e.what();
  }
}

// Three events, the middle one larger than the topic accepts: it goes to the dead-letter
// channel, its neighbours to Kafka (per-event records, or packs with the big one alone).
void expect_only_the_oversized_event_dead_lettered(bool packed) {
  DeadLetterRig rig;
  auto [ch, dlq] = std::tie(rig.ch, rig.dlq);
  {
    core::Producer p = ch.producer();
    ASSERT_EQ(p.append({5, 0}, "small"), core::AppendStatus::kOk);
    ASSERT_EQ(p.append({5, 1}, std::string(200000, 'L')), core::AppendStatus::kOk);
    ASSERT_EQ(p.append({5, 2}, "small again"), core::AppendStatus::kOk);
  }
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka({{"message.max.bytes", "100000"}}),
                .dead_letter = &dlq, .packed = packed, .pack_bytes = 64 << 10});
  ASSERT_TRUE(ship_all(u, ch));
  auto got = rig.topic(1, 2);
  if (packed) got = unpack(got);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].payload, "small");
  EXPECT_EQ(got[1].payload, "small again");
  core::Consumer dead_reader = dlq.consumer("check");
  const auto dead = testing::drain(dead_reader, 1, 1s);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id.sequence, 1u);
  EXPECT_EQ(dead[0].payload.size(), 200000u);
  EXPECT_EQ(u.metrics().dead_lettered, 1u);
}

TEST(UplinkTest, AnEventKafkaRefusesForGoodGoesToTheDeadLetterChannel) {
  expect_only_the_oversized_event_dead_lettered(false);
}

TEST(UplinkTest, PackedModeSendsAnOversizedEventAloneSoOnlyItIsDeadLettered) {
  expect_only_the_oversized_event_dead_lettered(true);
}

// A dead-letter channel that could not take every event of the channel (a smaller max_payload)
// is refused at start, naming both: such an event would have nowhere to go.
TEST(UplinkTest, ADeadLetterChannelSmallerThanTheChannelIsRefusedAtStart) {
  Rig rig;
  core::ChannelConfig small;
  small.capacity = 1 << 20;
  small.max_payload = 64 << 10;
  auto dlq = core::Channel::create(rig.dir / "dlq.chan", small);
  try {
    Uplink u(rig.ch, {.name = "up", .topic = "events", .kafka = rig.kafka(), .dead_letter = &dlq});
    FAIL() << "accepted a dead-letter channel that takes less than the channel holds";
  } catch (const core::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("takes events of up to 65536 bytes, less than the 1048576 of channel"), std::string::npos)
        << what;
    EXPECT_NE(what.find("dlq.chan"), std::string::npos) << what;
  }
}

// A full dead-letter channel holds the refused event where it is, and the channel cursor before
// it, until there is room (it used to count the event as dropped and commit past it: in neither
// Kafka nor the dead-letter channel). Said once, and once more when it has room again.
TEST(UplinkTest, AFullDeadLetterChannelHoldsTheRefusedEventAndTheCursorUntilItHasRoom) {
  DeadLetterRig rig;
  auto [ch, dlq] = std::tie(rig.ch, rig.dlq);
  core::Consumer dead_reader = dlq.consumer("check");  // holds what it has not read: the channel fills
  {
    core::Producer filler = dlq.producer({.on_full = core::FullPolicy::kFailFast});
    std::uint64_t i = 0;
    while (filler.append({77, i}, std::string(100000, 'F')) == core::AppendStatus::kOk) ++i;
    ASSERT_GT(i, 0u);
  }
  const std::uint64_t fillers = dlq.stats().records_written;
  {
    core::Producer p = ch.producer();
    ASSERT_EQ(p.append({5, 0}, "small"), core::AppendStatus::kOk);
    ASSERT_EQ(p.append({5, 1}, std::string(200000, 'L')), core::AppendStatus::kOk);  // refused by Kafka for good
    ASSERT_EQ(p.append({5, 2}, "small again"), core::AppendStatus::kOk);
  }
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka({{"message.max.bytes", "100000"}}),
                .dead_letter = &dlq},
           rig.log());
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!rig.said("is full") && std::chrono::steady_clock::now() < deadline)
    if (u.do_work() == 0) u.wait(20ms);
  ASSERT_TRUE(rig.said("is full", 0, "warn")) << rig.log_text();
  for (int i = 0; i < 20; ++i)
    if (u.do_work() == 0) u.wait(10ms);
  auto m = u.metrics();
  EXPECT_EQ(m.dropped, 0u);
  EXPECT_EQ(m.dead_lettered, 0u);
  EXPECT_LE(m.committed, ch.stats().write_position - core::record_bytes(11) - core::record_bytes(200000))
      << "the cursor went past the event that is nowhere yet";
  EXPECT_EQ(rig.find("is full", rig.find("is full") + 1), rig.logs.size()) << "said once";
  EXPECT_EQ(m.dead_letter_waiting, 1u) << "in the metrics while it waits";
  // Room: the refused event goes there, and the cursor past it.
  ASSERT_EQ(testing::drain(dead_reader, fillers, 5s).size(), fillers);
  dead_reader.commit();
  ASSERT_TRUE(ship_all(u, ch));
  m = u.metrics();
  EXPECT_EQ(m.dead_lettered, 1u);
  EXPECT_EQ(m.dropped, 0u);
  EXPECT_EQ(m.dead_letter_waiting, 0u);
  EXPECT_TRUE(rig.said("takes events again", 0, "info")) << rig.log_text();
  const auto dead = testing::drain(dead_reader, 1, 2s);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id.source_id, 5u);
  EXPECT_EQ(dead[0].id.sequence, 1u);
  auto got = rig.topic(1, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].payload, "small again");
}

// Kafka refuses a batch for good (MSG_SIZE_TOO_LARGE, as for a batch or a pack larger than the
// topic's max.message.bytes): its events go again in halved batches (and packs) and reach the
// topic; none is dead-lettered.
void expect_a_refused_batch_resent_smaller(bool packed) {
  DeadLetterRig rig;
  auto [ch, dlq] = std::tie(rig.ch, rig.dlq);
  fill(ch, 9, 10000);
  rd_kafka_mock_push_request_errors(rig.mock.raw(), kProduceApi, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka(), .dead_letter = &dlq, .packed = packed,
                .pack_bytes = 16 << 10},
           rig.log());
  ASSERT_TRUE(ship_all(u, ch));
  auto got = rig.topic(1, 1000000, 2s);
  if (packed) got = unpack(got);
  expect_each_at_least_once(got, 9, 10000);
  const auto m = u.metrics();
  EXPECT_GE(m.resent_refused, 1u);
  EXPECT_EQ(m.dead_lettered, 0u);
  EXPECT_EQ(m.dropped, 0u);
  core::Consumer dead_reader = dlq.consumer("check");
  EXPECT_TRUE(testing::drain(dead_reader, 1, 200ms).empty()) << "an event Kafka takes alone was dead-lettered";
  const auto said = rig.said("was refused", 0, "warn");
  ASSERT_TRUE(said) << "the refusal is logged";
  EXPECT_NE(said->find("batches are at most 500000 bytes"), std::string::npos) << *said;
}

TEST(UplinkTest, ABatchKafkaRefusesForSizeIsSentAgainInSmallerBatchesAndNothingIsDeadLettered) {
  expect_a_refused_batch_resent_smaller(false);
}

TEST(UplinkTest, PackedModeSendsTheEventsOfAPackRefusedForSizeAgainInSmallerPacksAndNothingIsDeadLettered) {
  expect_a_refused_batch_resent_smaller(true);
}

// After a refusal for size, batches (or packs) are halved; with no other refusal for
// regrow_after they go back to their configured size, and every event still arrives.
void expect_halved_sizes_to_grow_back(bool packed) {
  DeadLetterRig rig;
  auto [ch, dlq] = std::tie(rig.ch, rig.dlq);
  fill(ch, 9, 2000);
  rd_kafka_mock_push_request_errors(rig.mock.raw(), kProduceApi, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  // Packed: packs of 16 KiB fill most of a 20 kB batch, so the pack is what gets halved.
  const std::uint64_t batch = packed ? 20000 : 64000, pack = 16 << 10;
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka({{"batch.size", std::to_string(batch)}}),
                .dead_letter = &dlq, .packed = packed, .pack_bytes = pack, .retry_backoff = 10ms,
                .regrow_after = 1s},
           rig.log());
  // Shipped by hand to see the sizes in use: halved after the refusal (the resend uses them:
  // it starts 10 ms later, the sizes grow back a second later).
  std::uint64_t least_batch = batch, least_pack = pack;
  for (const auto deadline = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < deadline;) {
    if (u.do_work() == 0) u.wait(20ms);
    const auto m = u.metrics();
    least_batch = std::min(least_batch, m.batch_bytes);
    if (packed) least_pack = std::min(least_pack, m.pack_bytes);
    if (m.in_flight == 0 && m.committed == ch.stats().write_position) break;
  }
  ASSERT_EQ(u.metrics().committed, ch.stats().write_position);
  if (packed) EXPECT_LT(least_pack, pack) << "the pack was halved";
  else EXPECT_EQ(least_batch, batch / 2) << "the batch was halved";
  const std::size_t halved = rig.find("was refused");
  ASSERT_LT(halved, rig.logs.size()) << "the refusal for size did not happen";
  const std::string refused = rig.logs[halved].second;
  EXPECT_NE(refused.find(packed ? "packs are at most " : "batches are at most 32000 bytes"), std::string::npos) << refused;
  // Grown back, driven by the uplink's own loop with nothing to send.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline &&
         (u.metrics().batch_bytes != batch || u.metrics().pack_bytes != (packed ? pack : 0))) {
    if (u.do_work() == 0) u.wait(20ms);
  }
  EXPECT_EQ(u.metrics().batch_bytes, batch);
  EXPECT_EQ(u.metrics().pack_bytes, packed ? pack : 0);
  const auto grown = rig.said("no refusal for size", halved);
  ASSERT_TRUE(grown) << "the return to the configured size is logged";
  EXPECT_NE(grown->find("batches are at most " + std::to_string(batch) + " bytes again"), std::string::npos) << *grown;
  // More events at full size: all of them, and the first 2000, are in the topic.
  {
    core::Producer p = ch.producer();
    for (std::uint64_t i = 2000; i < 4000; ++i) ASSERT_EQ(p.append({9, i}, payload_for(9, i, 60)), core::AppendStatus::kOk);
  }
  ASSERT_TRUE(ship_all(u, ch));
  auto got = rig.topic(1, 1000000, 2s);
  if (packed) got = unpack(got);
  expect_each_at_least_once(got, 9, 4000);
  EXPECT_EQ(u.metrics().dead_lettered, 0u);
}

TEST(UplinkTest, BatchesHalvedByARefusalForSizeGrowBackWhenNoOtherFollows) { expect_halved_sizes_to_grow_back(false); }

TEST(UplinkTest, PacksHalvedByARefusalForSizeGrowBackWhenNoOtherFollows) { expect_halved_sizes_to_grow_back(true); }

// Kafka refuses a batch for good for another cause than size (INVALID_RECORD: one bad record
// fails its whole batch): its events go again one at a time, and Kafka takes them all, so
// nothing is dead-lettered. Then one event alone in flight, refused twice: once with its batch
// (of one, but not known to be alone), once sent alone: that event, and only it, is
// dead-lettered.
TEST(UplinkTest, ABatchRefusedForOneBadRecordIsSentAgainOneAtATimeAndOnlyAnEventRefusedAloneIsDeadLettered) {
  DeadLetterRig rig;
  auto [ch, dlq] = std::tie(rig.ch, rig.dlq);
  fill(ch, 9, 2000);
  rd_kafka_mock_push_request_errors(rig.mock.raw(), kProduceApi, 1, RD_KAFKA_RESP_ERR_INVALID_RECORD);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka(), .dead_letter = &dlq, .retry_backoff = 10ms});
  ASSERT_TRUE(ship_all(u, ch));
  EXPECT_EQ(u.metrics().dead_lettered, 0u);
  EXPECT_GE(u.metrics().resent_refused, 1u);
  // The one more event, refused with its batch and then alone.
  rd_kafka_mock_push_request_errors(rig.mock.raw(), kProduceApi, 2, RD_KAFKA_RESP_ERR_INVALID_RECORD,
                                    RD_KAFKA_RESP_ERR_INVALID_RECORD);
  {
    core::Producer p = ch.producer();
    ASSERT_EQ(p.append({9, 2000}, payload_for(9, 2000, 60)), core::AppendStatus::kOk);
  }
  ASSERT_TRUE(ship_all(u, ch));
  core::Consumer dead_reader = dlq.consumer("check");
  const auto dead = testing::drain(dead_reader, 2, 1s);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id.sequence, 2000u);
  EXPECT_EQ(dead[0].payload, payload_for(9, 2000, 60));
  EXPECT_EQ(u.metrics().dead_lettered, 1u);
  std::set<std::uint64_t> seen;
  for (const auto& r : rig.topic(1, 1000000, 2s)) seen.insert(r.id.sequence);
  EXPECT_EQ(seen.size(), 2000u);
  EXPECT_FALSE(seen.contains(2000));
}

TEST(UplinkTest, PackedModeShipsEveryEventOnceInFewRecordsEachSourceInOnePartition) {
  Rig rig(4);
  auto& ch = rig.ch;
  fill(ch, 7, 10000);
  fill(ch, 8, 10000);
  Uplink u(ch, {.name = "up", .topic = "events", .kafka = rig.kafka(), .packed = true, .pack_bytes = 16 << 10});
  ASSERT_TRUE(ship_all(u, ch));
  const auto records = rig.topic(4, 1000000, 2s);
  EXPECT_LT(records.size(), 20000u / 50) << "packs of ~16 KiB hold ~180 events of 60 B";
  const auto events = unpack(records);
  std::vector<testing::KafkaRecord> of7, of8;
  std::map<std::uint64_t, std::set<int>> partitions;
  for (const auto& e : events) {
    (e.id.source_id == 7 ? of7 : of8).push_back(e);
    partitions[e.id.source_id].insert(e.partition);
  }
  std::size_t dups = 1;
  expect_each_at_least_once(of7, 7, 10000, &dups);
  EXPECT_EQ(dups, 0u);
  expect_each_at_least_once(of8, 8, 10000, &dups);
  EXPECT_EQ(dups, 0u);
  EXPECT_EQ(partitions[7].size(), 1u);
  EXPECT_EQ(partitions[8].size(), 1u);
  for (const auto* of : {&of7, &of8})
    for (std::size_t i = 1; i < of->size(); ++i) ASSERT_EQ((*of)[i].id.sequence, (*of)[i - 1].id.sequence + 1) << "order kept";
  EXPECT_EQ(u.metrics().delivered, 20000u);
  EXPECT_EQ(ch.stats().consumers.at(0).committed, ch.stats().write_position);
}

// record_tags reads a consumed record's identity and packed mark in one look: records with no
// header, with the identity, and with both.
TEST(RecordTagsTest, ReadsTheIdentityAndThePackedMarkOfConsumedRecords) {
  Rig rig;
  {
    auto p = make_handle(RD_KAFKA_PRODUCER, make_conf({{"bootstrap.servers", rig.mock.bootstrap()}, {"log_level", "3"}}));
    unsigned char id[16];
    encode_identity({7, 42}, id);
    ASSERT_EQ(rd_kafka_producev(p.get(), RD_KAFKA_V_TOPIC("events"), RD_KAFKA_V_VALUE(const_cast<char*>("a"), 1),
                                RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_producev(p.get(), RD_KAFKA_V_TOPIC("events"), RD_KAFKA_V_VALUE(const_cast<char*>("b"), 1),
                                RD_KAFKA_V_HEADER(kIdentityHeader, id, sizeof id), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_producev(p.get(), RD_KAFKA_V_TOPIC("events"), RD_KAFKA_V_VALUE(const_cast<char*>("c"), 1),
                                RD_KAFKA_V_HEADER(kIdentityHeader, id, sizeof id),
                                RD_KAFKA_V_HEADER(kPackedHeader, "1", 1), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(p.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  auto c = make_handle(RD_KAFKA_CONSUMER, make_conf({{"bootstrap.servers", rig.mock.bootstrap()},
                                                      {"group.id", "tags"},
                                                      {"log_level", "3"}}));
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, "events", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(c.get(), parts);
  rd_kafka_topic_partition_list_destroy(parts);
  std::map<std::string, RecordTags> seen;
  for (const auto deadline = std::chrono::steady_clock::now() + 20s;
       seen.size() < 3 && std::chrono::steady_clock::now() < deadline;) {
    std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> m(rd_kafka_consumer_poll(c.get(), 100),
                                                                          rd_kafka_message_destroy);
    if (!m || m->err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    const RecordTags once = record_tags(m.get()), again = record_tags(m.get());
    EXPECT_EQ(once.packed, again.packed);
    EXPECT_EQ(once.identity.has_value(), again.identity.has_value());
    EXPECT_EQ(once.packed, is_packed(m.get()));
    EXPECT_EQ(once.identity.has_value(), message_identity(m.get()).has_value());
    seen[std::string(static_cast<const char*>(m->payload), m->len)] = once;
  }
  rd_kafka_consumer_close(c.get());
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_FALSE(seen["a"].identity);
  EXPECT_FALSE(seen["a"].packed);
  ASSERT_TRUE(seen["b"].identity);
  EXPECT_EQ(seen["b"].identity->source_id, 7u);
  EXPECT_EQ(seen["b"].identity->sequence, 42u);
  EXPECT_FALSE(seen["b"].packed);
  ASSERT_TRUE(seen["c"].identity);
  EXPECT_TRUE(seen["c"].packed);
}

TEST(PackedFormatTest, RoundTripsAndADamagedPackStopsAtTheDamage) {
  std::string pack;
  const std::string a = "first", b(70000, 'x'), c;
  append_packed(pack, {1, 10}, 111, std::as_bytes(std::span(a)));
  append_packed(pack, {1, 11}, 222, std::as_bytes(std::span(b)));
  append_packed(pack, {2, 0}, -5, std::as_bytes(std::span(c)));
  ASSERT_EQ(pack.substr(0, 4), "TPK1");
  std::vector<PackedEvent> got;
  ASSERT_TRUE(for_each_packed(pack, [&](const PackedEvent& e) { got.push_back(e); }));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].id.source_id, 1u);
  EXPECT_EQ(got[0].id.sequence, 10u);
  EXPECT_EQ(got[0].timestamp_ns, 111);
  EXPECT_EQ(got[0].payload, a);
  EXPECT_EQ(got[1].payload, b);
  EXPECT_EQ(got[2].id.source_id, 2u);
  EXPECT_EQ(got[2].timestamp_ns, -5);
  EXPECT_TRUE(got[2].payload.empty());
  for (std::size_t cut : {pack.size() - 1, std::size_t{4 + 28 + 5 + 10}, std::size_t{3}}) {
    std::size_t seen = 0;
    EXPECT_FALSE(for_each_packed(std::string_view(pack).substr(0, cut), [&](const PackedEvent&) { ++seen; })) << cut;
    EXPECT_LE(seen, 2u);
  }
  EXPECT_FALSE(for_each_packed("TPK2" + pack.substr(4), [](const PackedEvent&) {}));
  EXPECT_TRUE(for_each_packed("TPK1", [](const PackedEvent&) { ADD_FAILURE(); })) << "an empty pack is well formed";
}

}  // namespace
}  // namespace tributary::uplink
