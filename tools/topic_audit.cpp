#include "topic_audit.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>

#include "tributary/analytics/checkpoint.h"
#include "tributary/core/error.h"
#include "tributary/uplink/kafka.h"

namespace tributary::tools {

TopicAudit audit_topic(const std::string& bootstrap, const std::string& topic, const analytics::Ledger& counted,
                       std::chrono::milliseconds timeout) {
  analytics::Ledger seen = counted;  // marks what was counted, then what is found here once
  const uplink::KafkaHandle rk = uplink::make_handle(
      RD_KAFKA_CONSUMER, uplink::make_conf({{"bootstrap.servers", bootstrap},
                                            {"group.id", "tributary-topic-audit"},
                                            {"enable.auto.commit", "false"},
                                            {"auto.offset.reset", "error"},  // a reset would hide records
                                            {"enable.partition.eof", "true"},  // an end with no record before it
                                            {"log_level", "3"}}));
  const int n = uplink::partition_count(rk.get(), topic);
  if (n == 0) throw core::Error(fmt::format("topic {} is not in the metadata of {}", topic, bootstrap));
  const auto np = static_cast<std::size_t>(n);
  TopicAudit a;
  a.retired = counted.retired();
  a.partitions.resize(np);
  std::vector<bool> done(np, false);  // read to its end (or, where that is unknown, to an end)
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(n);
  for (int p = 0; p < n; ++p) {
    PartitionInTopic& x = a.partitions[static_cast<std::size_t>(p)];
    x.start = uplink::list_offset(rk.get(), topic, p, RD_KAFKA_OFFSET_BEGINNING, 5000).value_or(-1);
    x.end = uplink::list_offset(rk.get(), topic, p, RD_KAFKA_OFFSET_END, 5000).value_or(-1);
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  std::map<std::uint64_t, SourceInTopic> by_source;
  const auto take = [&](core::EventId id, const rd_kafka_message_t& m) {
    SourceInTopic& s = by_source[id.source_id];
    s.source_id = id.source_id;
    ++s.in_topic;
    if (!seen.mark(id)) return;  // counted, or a copy of one found here already
    if (s.not_counted++ == 0) {
      s.partition = m.partition;
      s.offset = m.offset;
      s.first_seq = id.sequence;
    }
  };
  const auto behind = [&] { return std::find(done.begin(), done.end(), false) != done.end(); };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (behind() && std::chrono::steady_clock::now() < deadline) {
    const std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> m(rd_kafka_consumer_poll(rk.get(), 100),
                                                                                rd_kafka_message_destroy);
    if (!m || m->partition < 0 || m->partition >= n) continue;
    const auto p = static_cast<std::size_t>(m->partition);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (a.partitions[p].end >= 0 && m->offset + 1 >= a.partitions[p].end) done[p] = true;
      if (const uplink::RecordTags tags = uplink::record_tags(m.get()); tags.packed) {
        (void)uplink::for_each_packed({static_cast<const char*>(m->payload), m->len},
                                      [&](const uplink::PackedEvent& e) { take(e.id, *m); });
      } else if (tags.identity) {
        take(*tags.identity, *m);
      }
    } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      // At the end it had when asked (past a transaction marker or aborted records, or an
      // empty partition whose log starts above 0), or at some end where that was not known.
      if (a.partitions[p].end < 0 || m->offset >= a.partitions[p].end) done[p] = true;
    } else if (a.errors.size() < 500) {
      a.errors += fmt::format("[{}] {};", m->partition, rd_kafka_message_errstr(m.get()));
    }
  }
  a.complete = !behind();
  rd_kafka_consumer_close(rk.get());
  for (auto& [id, s] : by_source) a.sources.push_back(s);
  return a;
}

analytics::Ledger checkpoint_ledger(const std::filesystem::path& checkpoint) {
  const std::optional<std::string> state = analytics::read_checkpoint(checkpoint);  // its frame and CRC checked
  if (!state) throw core::Error(fmt::format("there is no checkpoint at {}", checkpoint.string()));
  const std::string& text = *state;
  const auto at = text.find("\nledger\n");
  if (at == std::string::npos) throw core::Error(fmt::format("{} holds no ledger", checkpoint.string()));
  return analytics::Ledger::parse(std::string_view(text).substr(at + 8));
}

std::string describe(const TopicAudit& a) {
  const auto known = [](std::int64_t o) { return o >= 0 ? std::to_string(o) : std::string("?"); };
  std::string s = "log start..end per partition";
  for (std::size_t p = 0; p < a.partitions.size(); ++p)
    s += fmt::format(" {}:{}..{}", p, known(a.partitions[p].start), known(a.partitions[p].end));
  for (const SourceInTopic& x : a.sources) {
    s += fmt::format("; source {}: {} events in Kafka, {} of them not counted", x.source_id, x.in_topic,
                     x.not_counted);
    if (x.not_counted > 0)
      s += fmt::format(" (the first: seq {} at partition {} offset {})", x.first_seq, x.partition, x.offset);
  }
  if (a.sources.empty()) s += "; no events with an identity";
  if (a.retired.sources != 0)
    s += fmt::format("; the analyzer had retired {} idle sources ({} events counted): their events here show as "
                     "not counted",
                     a.retired.sources, a.retired.events);
  if (!a.complete) s += "; not read to its end in time";
  if (!a.errors.empty()) s += "; errors: " + a.errors;
  return s;
}

}  // namespace tributary::tools
