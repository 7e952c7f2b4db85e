// librdkafka helpers: configuration with named errors, identity headers, the mock cluster.
#include "tributary/uplink/kafka.h"

#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "tributary/core/error.h"

namespace tributary::uplink {

ConfHandle make_conf(const Settings& settings) {
  ConfHandle conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
      throw core::Error(fmt::format("kafka setting '{}' = '{}': {}", k, v, err));
  }
  return conf;
}

KafkaHandle make_handle(rd_kafka_type_t type, ConfHandle conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err, sizeof err);
  if (rk == nullptr) throw core::Error(fmt::format("cannot create a Kafka {}: {}", type == RD_KAFKA_PRODUCER ? "producer" : "consumer", err));
  (void)conf.release();  // rd_kafka_new took ownership
  return KafkaHandle(rk);
}

void encode_identity(core::EventId id, unsigned char out[16]) noexcept {
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<unsigned char>(id.source_id >> (56 - 8 * i));
    out[8 + i] = static_cast<unsigned char>(id.sequence >> (56 - 8 * i));
  }
}

std::optional<core::EventId> decode_identity(const void* value, std::size_t size) noexcept {
  if (value == nullptr || size != 16) return std::nullopt;
  const auto* p = static_cast<const unsigned char*>(value);
  core::EventId id;
  for (int i = 0; i < 8; ++i) {
    id.source_id = (id.source_id << 8) | p[i];
    id.sequence = (id.sequence << 8) | p[8 + i];
  }
  return id;
}

std::optional<core::EventId> message_identity(const rd_kafka_message_t* m) noexcept {
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  const void* v = nullptr;
  std::size_t n = 0;
  if (rd_kafka_header_get_last(hdrs, kIdentityHeader, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  return decode_identity(v, n);
}

std::vector<int> partition_counts(rd_kafka_t* rk, const std::vector<std::string>& topics, int timeout_ms) {
  // The metadata of all topics: a request naming a topic would have a broker with
  // auto.create.topics.enable create it, with the broker's default partition count.
  std::vector<int> n(topics.size(), 0);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 1, nullptr, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < md->topic_cnt; ++i)
      for (std::size_t k = 0; k < topics.size(); ++k)
        if (topics[k] == md->topics[i].topic && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
          n[k] = md->topics[i].partition_cnt;
  }
  if (md) rd_kafka_metadata_destroy(md);
  return n;
}

int partition_count(rd_kafka_t* rk, const std::string& topic, int timeout_ms) {
  return partition_counts(rk, {topic}, timeout_ms).front();
}

std::optional<std::int64_t> list_offset(rd_kafka_t* rk, const std::string& topic, int partition, std::int64_t which,
                                        int timeout_ms) {
  // offsets_for_times sends the "timestamp" as given: -2 asks for the earliest offset, -1 the latest.
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = which;
  const bool answered = rd_kafka_offsets_for_times(rk, list, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                        list->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[0].offset >= 0;
  const std::int64_t at = list->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(list);
  if (!answered) return std::nullopt;
  return at;
}

std::optional<std::string> unready_partition(rd_kafka_t* rk, const std::string& topic, int partitions,
                                             int timeout_ms) {
  if (partitions <= 0) return fmt::format("topic {} has no partitions", topic);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_END;
  const rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, list, timeout_ms);
  std::optional<std::string> why;
  for (int i = 0; i < list->cnt && !why; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    if (tp.err != RD_KAFKA_RESP_ERR_NO_ERROR)
      why = fmt::format("partition {} [{}]: {}", topic, tp.partition, rd_kafka_err2str(tp.err));
    else if (tp.offset < 0 && err == RD_KAFKA_RESP_ERR_NO_ERROR)
      why = fmt::format("partition {} [{}]: no offset in the answer", topic, tp.partition);
  }
  // librdkafka 2.0.2 copies no partition's answer back (from any leader) when one partition's
  // ListOffsets answer is an error: which one refused is not known then.
  if (!why && err != RD_KAFKA_RESP_ERR_NO_ERROR)
    why = fmt::format("topic {}: a partition does not answer: {}", topic, rd_kafka_err2str(err));
  rd_kafka_topic_partition_list_destroy(list);
  return why;
}

namespace {

// One CreateTopics for `specs`; throws core::Error naming the first topic refused and why. A
// topic another creator made meanwhile is no error.
void create_topics(rd_kafka_t* rk, const std::vector<const TopicSpec*>& specs) {
  struct NewTopics {
    std::vector<rd_kafka_NewTopic_t*> v;
    ~NewTopics() {
      for (rd_kafka_NewTopic_t* t : v) rd_kafka_NewTopic_destroy(t);
    }
  } topics;
  std::string names;
  for (const TopicSpec* s : specs) {
    char errstr[512];
    rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(s->name.c_str(), s->partitions, s->replication, errstr, sizeof errstr);
    if (nt == nullptr) throw core::Error(fmt::format("topic {}: {}", s->name, errstr));
    topics.v.push_back(nt);
    for (const auto& [k, v] : s->configs) rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
    names += (names.empty() ? "" : ", ") + s->name;
  }
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, topics.v.data(), topics.v.size(), nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  rd_kafka_queue_destroy(q);
  if (ev == nullptr) throw core::Error(fmt::format("topic {}: no answer to CreateTopics within 30 s", names));
  std::string error;
  if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = fmt::format("topic {}: cannot create: {}", names, rd_kafka_event_error_string(ev));
  } else if (const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev)) {
    size_t n = 0;
    const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &n);
    for (size_t i = 0; i < n && error.empty(); ++i) {
      const auto err = rd_kafka_topic_result_error(results[i]);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)  // another creator won
        error = fmt::format("topic {}: cannot create: {}", rd_kafka_topic_result_name(results[i]),
                            rd_kafka_topic_result_error_string(results[i]));
    }
  }
  rd_kafka_event_destroy(ev);
  if (!error.empty()) throw core::Error(error);
}

}  // namespace

std::vector<EnsuredTopic> ensure_topics(rd_kafka_t* rk, const std::vector<TopicSpec>& specs) {
  // An existing topic may have been made a moment ago by another process: a short look at its
  // partitions, never an error (a partition that is down is the writes' business, later).
  std::vector<EnsuredTopic> out(specs.size());
  std::vector<std::string> names;
  for (const TopicSpec& s : specs) names.push_back(s.name);
  const std::vector<int> before = partition_counts(rk, names, 2000);
  std::vector<const TopicSpec*> missing;
  for (std::size_t k = 0; k < specs.size(); ++k)
    if (before[k] == 0) {
      missing.push_back(&specs[k]);
      out[k].created = true;
    }
  if (!missing.empty()) create_topics(rk, missing);
  const auto start = std::chrono::steady_clock::now();
  std::vector<bool> ready(specs.size(), false);
  // Metadata propagates within milliseconds on a healthy cluster: asked again soon, then less often.
  for (auto pause = std::chrono::milliseconds(10);; pause = std::min(pause * 2, std::chrono::milliseconds(100))) {
    const std::vector<int> have = partition_counts(rk, names, 1000);
    bool all = true;
    for (std::size_t k = 0; k < specs.size(); ++k) {
      if (ready[k]) continue;
      const TopicSpec& s = specs[k];
      out[k].partitions = have[k];
      const std::optional<std::string> unready =
          have[k] > 0 ? unready_partition(rk, s.name, have[k], 1000) : "not in the metadata";
      const auto waited = std::chrono::steady_clock::now() - start;
      const bool existed = !out[k].created;
      if (!unready || (existed && have[k] > 0 && waited > std::chrono::seconds(2))) {
        ready[k] = true;
        continue;
      }
      const int wait_s = existed ? 2 : 30;
      if (waited > std::chrono::seconds(wait_s))
        throw core::Error(fmt::format("topic {}: {} but not ready after {} s: {}", s.name,
                                      existed ? "listed" : "created", wait_s, *unready));
      all = false;
    }
    if (all) return out;
    std::this_thread::sleep_for(pause);
  }
}

int ensure_topic(rd_kafka_t* rk, const std::string& topic, int partitions, int replication, const Settings& configs) {
  return ensure_topics(rk, {{topic, partitions, replication, configs}}).front().partitions;
}

std::optional<std::string> topic_config(rd_kafka_t* rk, const std::string& topic, const std::string& name) {
  rd_kafka_ConfigResource_t* res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_DescribeConfigs(rk, &res, 1, nullptr, q);
  rd_kafka_ConfigResource_destroy(res);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  rd_kafka_queue_destroy(q);
  if (ev == nullptr) throw core::Error(fmt::format("topic {}: no answer to DescribeConfigs within 30 s", topic));
  std::optional<std::string> value;
  std::string error;
  if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = rd_kafka_event_error_string(ev);
  } else if (const rd_kafka_DescribeConfigs_result_t* r = rd_kafka_event_DescribeConfigs_result(ev)) {
    size_t n = 0;
    const rd_kafka_ConfigResource_t** rs = rd_kafka_DescribeConfigs_result_resources(r, &n);
    for (size_t i = 0; i < n; ++i) {
      if (rd_kafka_ConfigResource_error(rs[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        error = rd_kafka_ConfigResource_error_string(rs[i]);
        continue;
      }
      size_t entries = 0;
      const rd_kafka_ConfigEntry_t** e = rd_kafka_ConfigResource_configs(rs[i], &entries);
      for (size_t k = 0; k < entries; ++k)
        if (name == rd_kafka_ConfigEntry_name(e[k]) && rd_kafka_ConfigEntry_value(e[k]) != nullptr)
          value = rd_kafka_ConfigEntry_value(e[k]);
    }
  }
  rd_kafka_event_destroy(ev);
  if (!error.empty()) throw core::Error(fmt::format("topic {}: cannot read its configuration: {}", topic, error));
  return value;
}

namespace {
void put_le(char* out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
std::uint64_t get_le(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
}  // namespace

void append_packed(std::string& pack, core::EventId id, std::int64_t timestamp_ns, std::span<const std::byte> payload) {
  if (pack.empty()) pack = "TPK1";
  char h[kPackedEntryHeader];  // built here, appended once
  put_le(h, payload.size(), 4);
  put_le(h + 4, id.source_id, 8);
  put_le(h + 12, id.sequence, 8);
  put_le(h + 20, static_cast<std::uint64_t>(timestamp_ns), 8);
  pack.append(h, sizeof h);
  pack.append(reinterpret_cast<const char*>(payload.data()), payload.size());
}

bool for_each_packed(std::string_view v, const std::function<void(const PackedEvent&)>& fn) {
  if (v.size() < kPackedMagicSize || v.substr(0, kPackedMagicSize) != "TPK1") return false;
  std::size_t at = kPackedMagicSize;
  while (at < v.size()) {
    if (v.size() - at < kPackedEntryHeader) return false;
    const char* h = v.data() + at;
    const std::uint64_t len = get_le(h, 4);
    if (v.size() - at - kPackedEntryHeader < len) return false;
    PackedEvent e;
    e.id = {get_le(h + 4, 8), get_le(h + 12, 8)};
    e.timestamp_ns = static_cast<std::int64_t>(get_le(h + 20, 8));
    e.payload = v.substr(at + kPackedEntryHeader, len);
    fn(e);
    at += kPackedEntryHeader + len;
  }
  return true;
}

bool is_packed(const rd_kafka_message_t* m) noexcept {
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
  const void* v = nullptr;
  std::size_t n = 0;
  return rd_kafka_header_get_last(hdrs, kPackedHeader, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

RecordTags record_tags(const rd_kafka_message_t* m) noexcept {
  RecordTags tags;
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return tags;
  const void* v = nullptr;
  std::size_t n = 0;
  tags.packed = rd_kafka_header_get_last(hdrs, kPackedHeader, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR;
  if (rd_kafka_header_get_last(hdrs, kIdentityHeader, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR)
    tags.identity = decode_identity(v, n);
  return tags;
}

MockCluster::MockCluster(int brokers) {
  handle_ = make_handle(RD_KAFKA_PRODUCER, make_conf({{"test.mock.num.brokers", std::to_string(brokers)},
                                                      {"log_level", "0"}}));
  cluster_ = rd_kafka_handle_mock_cluster(handle_.get());
  if (cluster_ == nullptr) throw core::Error("librdkafka did not create a mock cluster");
}

std::string MockCluster::bootstrap() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }

void MockCluster::create_topic(const std::string& topic, int partitions, int replication) {
  if (const auto err = rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, replication); err)
    throw core::Error(fmt::format("mock cluster: cannot create topic {}: {}", topic, rd_kafka_err2str(err)));
}

}  // namespace tributary::uplink
