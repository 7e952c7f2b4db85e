// librdkafka helpers: configuration with named errors, identity headers, the mock cluster.
#include "tributary/uplink/kafka.h"

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

namespace {
void put_le(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}
std::uint64_t get_le(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
}  // namespace

void append_packed(std::string& pack, core::EventId id, std::int64_t timestamp_ns, std::span<const std::byte> payload) {
  if (pack.empty()) pack = "TPK1";
  put_le(pack, payload.size(), 4);
  put_le(pack, id.source_id, 8);
  put_le(pack, id.sequence, 8);
  put_le(pack, static_cast<std::uint64_t>(timestamp_ns), 8);
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
