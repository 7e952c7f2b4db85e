// The analyzer's Kafka-transaction mode (see job.h): a consumer-group member whose outputs,
// state changelog and consumed offsets commit in one Kafka transaction, and the read_committed
// reader of its output topic that writes the state dir's files.
#pragma once

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "tributary/analytics/analyzer.h"
#include "render.h"
#include "tributary/analytics/job.h"
#include "tributary/uplink/kafka.h"

namespace tributary::analytics::detail {

using AnalyzerFactory = std::function<std::unique_ptr<Analyzer>()>;

// Runs until `stop_fd` is readable; commits what it has on the way out. Exit status. Throws
// core::Error when it cannot go on (fenced by another instance with the same transactional.id,
// a changelog that disagrees with the committed offsets).
// `failed_fd` readable: the output reader died; stops with an error after a last commit.
int run_transactional(const AnalyzeConfig& cfg, const AnalyzerFactory& make, const JobLog& log, int stop_fd,
                      int failed_fd = -1);

// Reads the output topic (read_committed) from the beginning and keeps the state dir's files
// (outputs, closed windows, status.json) equal to what it holds, until `stop_fd` is readable.
// `publish` writes status.json (and feeds the metrics endpoint) from the figures it summed.
int run_materializer(const AnalyzeConfig& cfg, const JobLog& log, int stop_fd,
                     const std::function<void(render::Figures&)>& publish);

// One Kafka record into `a`: a Tributary record under its identity header, a packed record as
// its events (one batch; `batch` is scratch space), anything else under an identity made of
// partition and offset. Each event's `where` is the record's offset. Returns the events.
std::size_t process_message(Analyzer& a, const rd_kafka_message_t* m, std::uint64_t topic_hash, const JobLog& log,
                            std::vector<Event>& batch);

// The consumer's fetch settings, in both modes; the read-ahead's budget per partition ([input]
// fetch_queue_mb, in memory; see read_ahead.h), and librdkafka's own bound (payload bytes of its
// queue; half the budget, at least 4 MiB: above a fetch response, which lands whole). The
// read-ahead keeps librdkafka's queue near empty, so that bound is reached only while the job
// reads nothing (a commit). fetch.wait.max.ms is short because a fetch waiting at the end of
// one partition holds back the resumed fetch of another on the same connection.
void add_fetch_settings(uplink::Settings& s, const AnalyzeConfig& cfg);
std::size_t fetch_budget(const AnalyzeConfig& cfg);
std::size_t librdkafka_bound(const AnalyzeConfig& cfg);

// The settings every Kafka reader of the analyzer starts from: the input (both modes), the
// changelog's restorer and the output topic's reader. A partition whose position librdkafka has
// to reset (a fetch answered "offset out of range", a failed query of its start) goes back to
// its start, never to its end, librdkafka's default: from the end, every event not read yet
// would be skipped for good, and a restore would come back empty. Read again from the start,
// events are dropped by the ledger, a restore keeps the newest changelog value per key, and the
// output reader writes its files again only once it is back at the end of the topic.
// librdkafka's warnings (an offset reset is one) reach the job's log with its errors
// (logged_conf()).
uplink::Settings reader_settings(const std::string& bootstrap, const std::string& group);

// The opaque of each of the analyzer's librdkafka handles: where librdkafka's own log lines go
// (the job's log, as its other lines, instead of librdkafka's "%4|..." lines on stderr) and,
// for the group consumer, the runner its rebalance callback belongs to. It outlives the handle.
struct HandleContext {
  const JobLog* log = nullptr;  // called from librdkafka's threads too
  void* owner = nullptr;
};
// A librdkafka conf of `settings` with `ctx` as its opaque and its log lines into ctx->log
// (levels 0-3 "error", 4 "warn", else "info"), each "librdkafka HANDLE FACILITY: message".
uplink::ConfHandle logged_conf(const uplink::Settings& settings, HandleContext* ctx);

// Each partition of `list` at the logical RD_KAFKA_OFFSET_BEGINNING gets its log start as an
// absolute offset, asked now (a request per leader, within `timeout_ms`); one without an answer
// keeps OFFSET_BEGINNING. Assigned the logical offset before it knows the partition's leader,
// librdkafka 2.0.2 resolves it only on its 500 ms retry timer: half a second of nothing at
// every start. An absolute offset gone by the time the fetch starts is reset to the start
// again (reader_settings).
void resolve_log_starts(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* list, int timeout_ms);

// Waits for `topic` to exist (false if `stop_fd` fired first); its partition count in `out`.
bool wait_for_topic(rd_kafka_t* rk, const std::string& topic, const std::string& where, int stop_fd, int& out,
                    const JobLog& log);

}  // namespace tributary::analytics::detail
