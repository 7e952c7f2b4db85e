// librdkafka, held by RAII: handles, configuration with clear errors, the event-identity
// header, and librdkafka's mock cluster (a real Kafka-protocol endpoint with fault
// injection, no JVM) for `tributary broker` and the fault tests.
#pragma once

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tributary/core/channel.h"

namespace tributary::uplink {

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const noexcept { rd_kafka_destroy(rk); }
};
using KafkaHandle = std::unique_ptr<rd_kafka_t, KafkaDeleter>;

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const noexcept { rd_kafka_conf_destroy(c); }
};
using ConfHandle = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

// A topic handle; destroyed before the rd_kafka_t it was made from.
struct TopicDeleter {
  void operator()(rd_kafka_topic_t* t) const noexcept { rd_kafka_topic_destroy(t); }
};
using TopicHandle = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;

using Settings = std::map<std::string, std::string>;

// A configuration from `settings`; throws core::Error naming the key librdkafka refused.
[[nodiscard]] ConfHandle make_conf(const Settings& settings);
// rd_kafka_new; the conf is consumed. Throws core::Error with librdkafka's message.
[[nodiscard]] KafkaHandle make_handle(rd_kafka_type_t type, ConfHandle conf);

// Partitions of `topic` in the cluster's metadata; 0 if it does not exist (or no answer).
[[nodiscard]] int partition_count(rd_kafka_t* rk, const std::string& topic, int timeout_ms = 2000);
// The same for each of `topics`, from one metadata request.
[[nodiscard]] std::vector<int> partition_counts(rd_kafka_t* rk, const std::vector<std::string>& topics,
                                                int timeout_ms = 2000);
// The offset of `topic` [`partition`] at `which`: RD_KAFKA_OFFSET_BEGINNING (its log start) or
// RD_KAFKA_OFFSET_END (its end; a read_committed handle gets the last stable offset), asked of
// its leader (ListOffsets) within `timeout_ms`; nullopt without an answer. The request also
// wakes the broker thread that serves the partition. (rd_kafka_query_watermark_offsets of
// librdkafka 2.0.2 waits for its answers without bound when the leader does not reply.)
[[nodiscard]] std::optional<std::int64_t> list_offset(rd_kafka_t* rk, const std::string& topic, int partition,
                                                      std::int64_t which, int timeout_ms);
// Why partitions 0..`partitions`-1 of `topic` are not all ready: one whose leader does not
// answer ListOffsets within `timeout_ms`, with librdkafka's reason (the partition named where
// librdkafka says which); nullopt when every one answers. Kafka (KRaft) names a new
// partition's leader in the metadata before that broker has made the partition, and refuses a
// request sent in between (NOT_LEADER_OR_FOLLOWER).
[[nodiscard]] std::optional<std::string> unready_partition(rd_kafka_t* rk, const std::string& topic, int partitions,
                                                           int timeout_ms);
// A topic to have (ensure_topics): its name, and how to create it if it does not exist.
struct TopicSpec {
  std::string name;
  int partitions = 1;
  int replication = 1;
  Settings configs;  // topic configs, e.g. cleanup.policy
};
struct EnsuredTopic {
  int partitions = 0;    // the topic's own count (an existing topic's may differ from the spec's)
  bool created = false;  // it was not there when asked: this call created it (or lost to another creator)
};
// Creates each topic that does not exist (one Admin CreateTopics for all of them), and waits
// until the metadata shows every one and each partition is ready (unready_partition); throws
// core::Error naming the topic and the broker's reason if that fails within 30 s. An existing
// topic (perhaps made a moment ago by another process) gets up to 2 s to be ready, then its
// partition count is returned ready or not. One result per spec, in order.
[[nodiscard]] std::vector<EnsuredTopic> ensure_topics(rd_kafka_t* rk, const std::vector<TopicSpec>& specs);
// ensure_topics for one topic; returns its partition count.
int ensure_topic(rd_kafka_t* rk, const std::string& topic, int partitions, int replication, const Settings& configs = {});

// A topic's configuration value (DescribeConfigs), e.g. "cleanup.policy"; nullopt if the broker
// does not say. Throws core::Error naming the topic if the request fails.
[[nodiscard]] std::optional<std::string> topic_config(rd_kafka_t* rk, const std::string& topic, const std::string& name);

// Every Kafka record Tributary writes carries the event identity in one header:
// "tributary-id" = source id (8 bytes, big-endian) + sequence (8 bytes, big-endian).
inline constexpr const char* kIdentityHeader = "tributary-id";
void encode_identity(core::EventId id, unsigned char out[16]) noexcept;
[[nodiscard]] std::optional<core::EventId> decode_identity(const void* value, std::size_t size) noexcept;
[[nodiscard]] std::optional<core::EventId> message_identity(const rd_kafka_message_t* m) noexcept;

// Packed records (UplinkOptions::packed): many events of one source in one Kafka record, so
// librdkafka and the broker handle a record per pack instead of per event. The record has the
// header "tributary-packed" = "1" (and no "tributary-id"), the source id as its key, and the
// value
//   "TPK1"                                   magic, version 1
//   then per event, in channel order:
//     u32  payload length   (little-endian)
//     u64  source id        (little-endian)
//     u64  sequence         (little-endian)
//     i64  timestamp, ns since the epoch (the channel record's)
//     payload bytes
// The analyzer reads it natively; other consumers can split it with this description.
inline constexpr const char* kPackedHeader = "tributary-packed";
inline constexpr std::size_t kPackedMagicSize = 4;
inline constexpr std::size_t kPackedEntryHeader = 28;
struct PackedEvent {
  core::EventId id;
  std::int64_t timestamp_ns = 0;
  std::string_view payload;
};
// Appends one event to a pack (the magic first, if `pack` is empty).
void append_packed(std::string& pack, core::EventId id, std::int64_t timestamp_ns, std::span<const std::byte> payload);
// Calls fn(event) for each event of a packed value, in order. False (having called fn for the
// events before it) if the value is not a well-formed pack.
[[nodiscard]] bool for_each_packed(std::string_view value, const std::function<void(const PackedEvent&)>& fn);
// True if the message carries the "tributary-packed" header.
[[nodiscard]] bool is_packed(const rd_kafka_message_t* m) noexcept;
// Both, from one look at the headers: a reader of every record asks this once. (librdkafka 2.0.2
// parses a consumed record's headers again at each rd_kafka_message_headers call when the record
// has none, with an allocation and a free: three looks were 6% of the analyzer's reading.)
struct RecordTags {
  std::optional<core::EventId> identity;  // the "tributary-id" header
  bool packed = false;                    // the "tributary-packed" header
};
[[nodiscard]] RecordTags record_tags(const rd_kafka_message_t* m) noexcept;

// librdkafka's mock cluster on loopback (ports chosen by the OS). Owns the handle it needs.
class MockCluster {
 public:
  explicit MockCluster(int brokers);
  [[nodiscard]] std::string bootstrap() const;
  void create_topic(const std::string& topic, int partitions, int replication = 1);
  [[nodiscard]] rd_kafka_mock_cluster_t* raw() const noexcept { return cluster_; }

 private:
  KafkaHandle handle_;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;  // owned by handle_ (test.mock.num.brokers)
};

}  // namespace tributary::uplink
