// The Kafka-transaction mode: per-partition state, one transaction per commit holding outputs,
// changelog and consumed offsets; restore on assignment; the output topic's reader.
#include "transactional.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "changelog.h"
#include "read_ahead.h"
#include "render.h"
#include "tributary/analytics/checkpoint.h"
#include "tributary/core/crc32c.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"
#include "tributary/uplink/kafka.h"

namespace tributary::analytics::detail {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
namespace fs = std::filesystem;


struct ErrorDeleter {
  void operator()(rd_kafka_error_t* e) const noexcept { rd_kafka_error_destroy(e); }
};
using ErrorHandle = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;
struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const noexcept { rd_kafka_topic_partition_list_destroy(l); }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;
struct GroupMetadataDeleter {
  void operator()(rd_kafka_consumer_group_metadata_t* g) const noexcept { rd_kafka_consumer_group_metadata_destroy(g); }
};

// Whether `stop_fd` is readable, waiting up to `timeout_ms` for it (without one: just waits).
bool stopped(int stop_fd, int timeout_ms = 0) {
  pollfd p{stop_fd, POLLIN, 0};  // a negative fd is ignored by poll()
  return ::poll(&p, 1, timeout_ms) > 0 && stop_fd >= 0;
}

// Thrown out of a restore (a wait for the changelog or the committed offsets) once the job is
// asked to stop: the rebalance callback gives the partitions up unrestored.
struct Stopping {};

// The bytes of a rejected event carried in its dead-letter record (the whole event is at its
// input offset): escaped, at most 6 bytes each, the record stays under Kafka's default 1 MB.
constexpr std::size_t kMaxDeadLetterEvent = 128 << 10;

int broker_count(rd_kafka_t* rk) {
  const rd_kafka_metadata_t* md = nullptr;
  int n = 1;
  if (rd_kafka_metadata(rk, 0, nullptr, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) n = md->broker_cnt;
  if (md) rd_kafka_metadata_destroy(md);
  return std::max(n, 1);
}

// A compacted topic (the latest record per key is the value), to be made by ensure_topics. Small
// segments, so that the cleaner keeps a restore's read short.
uplink::TopicSpec compacted_topic(const std::string& topic, int partitions, int replication) {
  return {topic, partitions, replication,
          {{"cleanup.policy", "compact"}, {"segment.ms", "60000"}, {"min.cleanable.dirty.ratio", "0.1"}}};
}

// Refuses `spec`'s topic as it exists (`have` partitions) if the analyzer cannot keep its state
// or outputs there: not compacted, or, for the changelog (`exact_partitions`), fewer partitions
// than the input (the state of input partition P lives in its partition P).
void refuse_unfit_topic(rd_kafka_t* rk, const uplink::TopicSpec& spec, int have, bool exact_partitions) {
  // The latest record per key is the value: with the delete policy, keys that stop changing
  // would expire after retention.ms, and totals would silently shrink. So also with
  // "compact,delete" (Kafka Streams' windowed changelogs): an input partition idle for longer
  // than retention.ms would find its state gone at the next restore.
  if (const auto policy = uplink::topic_config(rk, spec.name, "cleanup.policy");
      policy && (policy->find("compact") == std::string::npos || policy->find("delete") != std::string::npos))
    throw core::Error(fmt::format("topic {} has cleanup.policy={}: the analyzer's state and outputs need a compacted "
                                  "topic (kafka-configs --alter --add-config cleanup.policy=compact), or name another",
                                  spec.name, *policy));
  if (exact_partitions && have < spec.partitions)
    throw core::Error(fmt::format("topic {} has {} partitions, the input has {}: the state of input partition P "
                                  "lives in its partition P; delete it or name another changelog",
                                  spec.name, have, spec.partitions));
}

// "kafka P:OFFSET" (a partition's position inside its state) -> OFFSET.
std::optional<std::int64_t> state_offset(const std::string& position, int partition) {
  const std::string prefix = fmt::format("kafka {}:", partition);
  std::int64_t v = 0;
  if (position.rfind(prefix, 0) != 0 || !number(std::string_view(position).substr(prefix.size()), v)) return std::nullopt;
  return v;
}

// A window row's value in the output topic ("w/" and "o/" records): END COUNT VALUED SUM MIN
// MAX, tab-separated; the doubles in their shortest exact form.
std::string window_value(std::int64_t end, const Aggregate& a) {
  return fmt::format("{}\t{}\t{}\t{}\t{}\t{}", end, a.count, a.valued, a.sum, a.min, a.max);
}
bool parse_window_value(std::string_view value, WindowRow& r) {
  const auto v = split(value, '\t', 6);
  if (v.size() != 6 || !number(v[0], r.end) || !number(v[1], r.agg.count) || !number(v[2], r.agg.valued)) return false;
  auto real = [](std::string_view t) { return std::strtod(std::string(t).c_str(), nullptr); };  // never throws
  r.agg.sum = real(v[3]);
  r.agg.min = real(v[4]);
  r.agg.max = real(v[5]);
  return true;
}

// A partition's counters, the value of its "s/P" output record, and its audit: a line per source
// its ledger holds (a source with very many holes goes on in more lines of its ranges alone,
// counted 0 and duplicates 0, for the reader to add up), which grows with every source met (each exec run, each tail file, each
// client) and in one record would outgrow the producer's message.max.bytes, aborting every
// transaction from then on. So the audit goes in records of at most kChunkBytes,
// "a/sources/P/I" (the X/NAME/P/... shape of the rows, which OutputView holds back until their
// s/P) for I below the N of the "audit N" line of s/P, written before it in the same
// transaction and output partition: a reader that has s/P has them. Chunks past N that an
// earlier state left are deleted by tombstones, and never read.
struct StatsRecords {
  std::string head;                // s/P
  std::vector<std::string> audit;  // a/sources/P/0 ...
};
StatsRecords stats_records(const Analyzer& a, const AnalyzeConfig& cfg) {
  StatsRecords r;
  std::string& out = r.head;
  const AnalyzerStats& s = a.stats();
  out = fmt::format("stats\t{}\t{}\t{}\t{}\t{}\t{}\n", s.counted, s.filtered, s.duplicates, s.rejected, s.late,
                    s.overflowed);
  for (const auto& [why, n] : s.rejected_by_reason) out += fmt::format("reject\t{}\t{}\n", why, n);
  for (std::size_t w = 0; w < cfg.windows.size(); ++w) {
    const WindowSet& ws = a.window(w);
    const auto wm = ws.watermark();
    // Then what the reader needs to know which rows are final: windows ending by CLOSED_UNTIL are
    // closed here for good, and the late rows of windows starting by RETIRED_THROUGH ("-": none).
    auto bound = [](std::int64_t v) { return v == INT64_MIN ? std::string("-") : std::to_string(v); };
    out += fmt::format("window\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", cfg.windows[w].name, ws.open().size(),
                       ws.closed_total(), ws.late_events(), wm ? std::to_string(*wm) : "-", ws.expired_events(),
                       bound(ws.closed_until()), bound(ws.retired_through()));
  }
  if (const Ledger::Retired& gone = a.ledger().retired(); gone.sources != 0)
    out += fmt::format("retired\t{}\t{}\t{}\n", gone.sources, gone.events, gone.duplicates);
  std::string line;
  const auto put = [&] {
    line += '\n';
    if (r.audit.empty() || r.audit.back().size() + line.size() > kChunkBytes) r.audit.emplace_back();
    r.audit.back() += line;
  };
  for (const auto& src : a.ledger().audit()) {
    line = fmt::format("source\t{}\t{}\t{}\t", src.source_id, src.counted, src.duplicates);
    for (std::size_t i = 0; i < src.ranges.size(); ++i) {
      // A source with so many holes that its line would pass a quarter of a chunk goes on in
      // more lines of its ranges alone (counted 0, duplicates 0: the reader adds them up).
      if (i != 0 && line.size() > kChunkBytes / 4) {
        put();
        line = fmt::format("source\t{}\t0\t0\t", src.source_id);
      } else if (i != 0) {
        line += ',';
      }
      line += fmt::format("{}-{}", src.ranges[i].first, src.ranges[i].second);
    }
    put();
  }
  out += fmt::format("audit\t{}\n", r.audit.size());
  return r;
}

class TransactionalRunner {
 public:
  TransactionalRunner(const AnalyzeConfig& cfg, const AnalyzerFactory& make, const JobLog& log)
      : cfg_(cfg), make_(make), log_(log), topic_hash_(std::hash<std::string>{}(cfg.topic)) {}

  int run(int stop_fd, int failed_fd) {
    const auto& x = cfg_.transaction;
    stop_fd_ = stop_fd;
    producer_ = make_producer();
    int partitions = 0;
    if (!wait_for_topic(producer_.get(), cfg_.topic, cfg_.bootstrap, stop_fd, partitions, log_)) return 0;
    // The changelog, the output and the dead letters (rejected events, in the same
    // transactions), made in one request, waited for together.
    const int replication = std::min(3, broker_count(producer_.get()));
    std::vector<uplink::TopicSpec> topics{compacted_topic(x.changelog, partitions, replication),
                                          compacted_topic(x.topic, partitions, replication)};
    if (!cfg_.dead_letter.empty()) topics.push_back({x.topic + "-dead-letter", partitions, replication, {}});
    // Those that exist are checked first (one metadata request): a refused start makes no
    // topic. One not seen then (made meanwhile by another, or the request went unanswered) is
    // checked once it is there, unless this start created it; a changelog this start meant to
    // create but another made first with fewer partitions, too.
    const std::vector<int> before = uplink::partition_counts(producer_.get(), {topics[0].name, topics[1].name});
    for (std::size_t k = 0; k < 2; ++k)
      if (before[k] > 0) refuse_unfit_topic(producer_.get(), topics[k], before[k], k == 0);
    const std::vector<uplink::EnsuredTopic> got = uplink::ensure_topics(producer_.get(), topics);
    for (std::size_t k = 0; k < 2; ++k) {
      if (got[k].created)
        info(fmt::format("created compacted topic {} ({} partitions, replication {})", topics[k].name,
                         topics[k].partitions, replication));
      if ((!got[k].created && before[k] == 0) || (k == 0 && got[k].partitions < partitions))
        refuse_unfit_topic(producer_.get(), topics[k], got[k].partitions, k == 0);
    }
    changelog_partitions_ = got[0].partitions;
    output_partitions_ = got[1].partitions;
    // Input partition P writes to output partition P modulo their count: with fewer than the
    // input, several share one, and partitions added to the output later would move some of
    // them, leaving their old rows behind in the compacted topic for a reader to take.
    if (output_partitions_ < partitions)
      warn(fmt::format("output topic {} has {} partitions, fewer than the {} of {}: input partitions share them; do "
                       "not add partitions to it later (the rows of the input partitions that move would stay "
                       "behind, stale, in the old ones)",
                       x.topic, output_partitions_, partitions, cfg_.topic));
    if (topics.size() > 2) {
      dead_letter_topic_ = topics[2].name;
      dead_letter_partitions_ = got[2].partitions;
    }
    // Subscribed first: the group join runs in librdkafka's threads while init_transactions
    // waits for the coordinator. Its assignment is served only by the polls below (the
    // rebalance callback restores with the initialised producer).
    consumer_ = make_consumer();
    ahead_.attach(consumer_.get());
    // However run() ends, the consumer is closed here, before the members its rebalance
    // callback uses are destroyed; after an error, the revoke commits nothing.
    struct CloseGuard {
      TransactionalRunner& r;
      ~CloseGuard() {
        if (r.closed_ || !r.consumer_) return;  // none: replace_consumer() failed to make one
        r.closing_ = true;
        rd_kafka_consumer_close(r.consumer_.get());
      }
    } close_guard{*this};
    if (!init_transactions(stop_fd)) return 0;
    uplink::Settings restore = reader_settings(cfg_.bootstrap, cfg_.group + "-restore");
    restore.insert({{"isolation.level", "read_committed"}, {"enable.partition.eof", "true"}, {"fetch.wait.max.ms", "50"}});
    restorer_ = uplink::make_handle(RD_KAFKA_CONSUMER, logged_conf(restore, &handles_));
    info(fmt::format("member of group {} on {} ({} partitions), transactional.id {}, committing every {} ms",
                     cfg_.group, cfg_.topic, partitions, x.id, cfg_.checkpoint_ms));
    // A transaction every checkpoint_ms, and sooner once the input is read to its end and
    // quiet (nothing came for quiet_ms(), an eighth of the interval, 10 to 100 ms): what was
    // read is then committed (visible to read_committed readers) at once instead of up to an
    // interval later. At most 4 per interval; an input that keeps coming with pauses shorter
    // than quiet_ms() commits once per interval.
    auto next = Clock::now() + milliseconds(cfg_.checkpoint_ms);
    auto early = Clock::now() + milliseconds(cfg_.checkpoint_ms / 4);
    for (;;) {
      const bool quiet = pump();
      rethrow();
      const auto now = Clock::now();
      if (now >= next || (quiet && now >= early && caught_up())) {
        commit();
        ahead_.catch_up();
        next = Clock::now() + milliseconds(cfg_.checkpoint_ms);
        early = Clock::now() + milliseconds(cfg_.checkpoint_ms / 4);
      }
      if (stopped(stop_fd)) break;
      if (stopped(failed_fd)) {  // the output reader died: its files would freeze; stop, say why
        commit(false);  // stopping: an abort is not rewound (the next owner redoes it)
        throw core::Error("the reader of the output topic failed (see above); stopping after a last commit");
      }
    }
    commit(false);  // stopping: an abort is not rewound (the next owner redoes it)
    rd_kafka_consumer_close(consumer_.get());  // the revoke commits nothing more: all is clean
    closed_ = true;
    rethrow();
    info(fmt::format("stopped after {} transactions ({} aborted, {} producers replaced)", commits_, aborts_,
                     producers_replaced_));
    return 0;
  }

 private:
  struct Part {
    std::unique_ptr<Analyzer> analyzer;
    std::int64_t next = RD_KAFKA_OFFSET_BEGINNING;  // the next input offset
    bool dirty = false;                              // consumed since the last commit
    bool at_end = false;                             // read to the end of the partition
    std::string dead_letters;                        // rejected since the last commit, JSON lines
    std::vector<std::map<std::string, std::uint64_t>> emitted;  // per grouping: what the output holds
    // Per window: the open rows and the late counts the output holds (the committed state's).
    std::vector<std::map<WindowKey, Aggregate>> open_sent;
    std::vector<std::map<WindowKey, std::uint64_t>> late_sent;
    // Restored: the next transaction writes every open row and late count again, unchanged or
    // not (a changelog written before the output carried them, or any doubt about the output).
    bool republish = false;
    std::size_t audit_emitted = 0;  // "a/sources/P/I" records of the transaction in flight
    std::size_t audit_sent = 0;     // of the last one committed (after a restore: the restored state's)

    // What the output holds once this partition's transaction committed: its state now.
    void sent(const AnalyzeConfig& cfg) {
      emitted.resize(cfg.outputs.size());
      for (std::size_t g = 0; g < cfg.outputs.size(); ++g) emitted[g] = analyzer->totals(g);
      open_sent.resize(cfg.windows.size());
      late_sent.resize(cfg.windows.size());
      for (std::size_t w = 0; w < cfg.windows.size(); ++w) {
        open_sent[w] = analyzer->window(w).open();
        late_sent[w] = analyzer->window(w).late();
      }
      republish = false;
      audit_sent = audit_emitted;
    }
  };

  void info(const std::string& m) const {
    if (log_) log_("info", m);
  }
  void warn(const std::string& m) const {
    if (log_) log_("warn", m);
  }
  void rethrow() {
    if (!fatal_.empty()) throw core::Error(fatal_);
  }
  // No partition held any more (revoked, lost, or about to be restored): their states and what
  // was read ahead of them go.
  void drop_parts() {
    parts_.clear();
    ahead_.forget_all();
  }

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list,
                           void* opaque) {
    auto* self = static_cast<TransactionalRunner*>(static_cast<HandleContext*>(opaque)->owner);
    try {
      if (!self->fatal_.empty() || self->closing_) {
        self->drop_parts();
        rd_kafka_assign(rk, nullptr);
      } else if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        try {
          self->restore(list);
          rd_kafka_assign(rk, list);
        } catch (const Stopping&) {  // asked to stop while waiting: nothing restored, nothing counted
          self->info(fmt::format("stopped while restoring {} partitions; they are left to the group", list->cnt));
          self->drop_parts();
          rd_kafka_assign(rk, nullptr);
        }
      } else {
        if (rd_kafka_assignment_lost(rk)) {
          // Out of the group: another member may own these now. Nothing uncommitted is kept.
          self->warn(fmt::format("lost {} partitions (out of the group); their uncommitted work is dropped", list->cnt));
        } else {
          self->commit(false);  // handed over clean; on an abort the next owner resumes from before it
        }
        self->drop_parts();
        rd_kafka_assign(rk, nullptr);
      }
    } catch (const std::exception& e) {
      self->fatal_ = e.what();
      rd_kafka_assign(rk, nullptr);
    }
  }

  // Reads partition `p`'s newest complete state from the changelog (read_committed, to its end).
  // Its offsets are asked first (each within 2 s; without an answer, the read below, which a
  // stop interrupts, goes from OFFSET_BEGINNING): an empty partition (a first run) holds no
  // state, and a read assigned at the logical OFFSET_BEGINNING before the restorer knows the
  // leader waits for librdkafka 2.0.2's 500 ms offset-query timer; the log start, an absolute
  // offset, does not. The end is the last stable offset (the restorer reads read_committed).
  std::optional<std::string> read_changelog(int p) {
    const std::string& changelog = cfg_.transaction.changelog;
    const auto low = uplink::list_offset(restorer_.get(), changelog, p, RD_KAFKA_OFFSET_BEGINNING, 2000);
    const auto high = low ? uplink::list_offset(restorer_.get(), changelog, p, RD_KAFKA_OFFSET_END, 2000) : std::nullopt;
    if (low && high && *low == *high) return std::nullopt;
    PartitionList list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), changelog.c_str(), p)->offset = low ? *low : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(restorer_.get(), list.get());
    SnapshotAssembler snapshots;
    const auto deadline = Clock::now() + milliseconds(cfg_.transaction.timeout_ms + 60000);
    for (bool eof = false; !eof;) {
      if (stopped(stop_fd_)) {
        rd_kafka_assign(restorer_.get(), nullptr);
        throw Stopping{};
      }
      if (Clock::now() > deadline) {
        rd_kafka_assign(restorer_.get(), nullptr);
        throw core::Error(fmt::format("changelog {} partition {}: not read to its end within {} ms",
                                      cfg_.transaction.changelog, p, cfg_.transaction.timeout_ms + 60000));
      }
      Message m(rd_kafka_consumer_poll(restorer_.get(), 200));
      if (!m) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        eof = true;
      } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        warn(fmt::format("changelog {} partition {}: {}", cfg_.transaction.changelog, p, rd_kafka_message_errstr(m.get())));
      } else if (!snapshots.feed({static_cast<const char*>(m->payload), m->len})) {
        throw core::Error(fmt::format("changelog {} partition {} offset {}: not a state chunk",
                                      cfg_.transaction.changelog, p, m->offset));
      }
    }
    rd_kafka_assign(restorer_.get(), nullptr);
    return snapshots.latest();
  }

  // The group's committed offsets of `list` (stable: a pending transaction's offsets are waited
  // for, KIP-447). RD_KAFKA_OFFSET_INVALID where nothing is committed.
  std::map<int, std::int64_t> committed(const rd_kafka_topic_partition_list_t* list) {
    const auto deadline = Clock::now() + milliseconds(2 * cfg_.transaction.timeout_ms + 30000);
    for (bool told = false;;) {
      PartitionList copy(rd_kafka_topic_partition_list_copy(list));
      auto err = rd_kafka_committed(consumer_.get(), copy.get(), 2000);
      for (int i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && i < copy->cnt; ++i) err = copy->elems[i].err;
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::map<int, std::int64_t> out;
        for (int i = 0; i < copy->cnt; ++i) out[copy->elems[i].partition] = copy->elems[i].offset;
        return out;
      }
      if (Clock::now() > deadline)
        throw core::Error(fmt::format("group {}: the committed offsets of {} cannot be read: {}", cfg_.group,
                                      cfg_.topic, rd_kafka_err2str(err)));
      if (!std::exchange(told, true))
        info(fmt::format("group {}: committed offsets not readable yet ({}); waiting for the open transaction "
                         "of the previous owner to end",
                         cfg_.group, rd_kafka_err2str(err)));
      if (stopped(stop_fd_, 500)) throw Stopping{};
    }
  }

  // For each partition of `list`: its state from the changelog, checked against the committed
  // offset (they commit in one transaction, so they agree once the last one is fully visible);
  // sets the list's offsets to resume from.
  void restore(rd_kafka_topic_partition_list_t* list) {
    for (int i = 0; i < list->cnt; ++i)  // the input grew: partition P's state has no partition P
      if (list->elems[i].partition >= changelog_partitions_ &&
          (changelog_partitions_ = uplink::partition_count(producer_.get(), cfg_.transaction.changelog)) <=
              list->elems[i].partition)
        throw core::Error(fmt::format("input partition {} has no partition in changelog {} ({} partitions): add "
                                      "partitions to the changelog to match {}",
                                      list->elems[i].partition, cfg_.transaction.changelog, changelog_partitions_,
                                      cfg_.topic));
    const std::map<int, std::int64_t> offsets = committed(list);
    drop_parts();
    std::string where;
    for (int i = 0; i < list->cnt; ++i) {
      const int p = list->elems[i].partition;
      const std::int64_t want = offsets.count(p) ? offsets.at(p) : RD_KAFKA_OFFSET_INVALID;
      Part part;
      const auto deadline = Clock::now() + milliseconds(cfg_.transaction.timeout_ms + 30000);
      bool told = false;  // of the mismatch, once
      for (;;) {
        part.analyzer = make_();
        part.next = RD_KAFKA_OFFSET_BEGINNING;
        const std::optional<std::string> state = read_changelog(p);
        std::optional<std::int64_t> at;
        if (state) {
          const std::string position = part.analyzer->restore(*state);
          at = state_offset(position, p);
          if (!at)
            throw core::Error(fmt::format("changelog {} partition {}: the state is of another partition ({})",
                                          cfg_.transaction.changelog, p, position));
          part.next = *at;
        }
        if (want < 0 || (at && *at == want)) break;
        // The commit markers reach the changelog a little after the offsets: read again.
        const std::string holds = at ? fmt::format("the state at {}", *at) : "no state";
        if (Clock::now() > deadline)
          throw core::Error(fmt::format(
              "partition {}: group {} committed offset {} but changelog {} holds {}: the state topic was "
              "deleted or rewritten; refusing to count from a state that does not match",
              p, cfg_.group, want, cfg_.transaction.changelog, holds));
        if (!std::exchange(told, true))
          info(fmt::format("partition {}: group {} committed offset {} but changelog {} holds {}; reading it again "
                           "for up to {} ms (its commit markers may come late)",
                           p, cfg_.group, want, cfg_.transaction.changelog, holds, cfg_.transaction.timeout_ms + 30000));
        if (stopped(stop_fd_, 200)) throw Stopping{};
      }
      if (want < 0 && part.next >= 0)
        warn(fmt::format("partition {}: no committed offset (expired?); resuming at {} from the changelog", p, part.next));
      for (const std::string& gone : part.analyzer->dropped_on_restore())
        warn(fmt::format("partition {}: the changelog holds the state of {}, which the config no longer has: dropped",
                         p, gone));
      // The changelog's state and the outputs committed in one transaction: the output holds the
      // audit chunks of this state's s/P (so that a smaller audit later deletes the rest).
      part.audit_emitted = stats_records(*part.analyzer, cfg_).audit.size();
      part.sent(cfg_);
      part.republish = !cfg_.windows.empty() && part.next >= 0;  // a state with windows came back
      list->elems[i].offset = part.next;
      where += fmt::format(" {}:{}", p, part.next >= 0 ? std::to_string(part.next) : "start");
      if (!dead_letter_topic_.empty())
        part.analyzer->on_reject([this, p](const Event& e, std::string_view reason) {
          // Cut so that the record fits Kafka's default 1 MB whatever the escaping (at most 6
          // bytes per byte): a longer one would fail every transaction.
          render::dead_letter_line(parts_.at(p).dead_letters, e.id, reason, fmt::format("kafka {} {}:{}", cfg_.topic, p, e.where),
                                   e.payload, kMaxDeadLetterEvent);
        });
      parts_[p] = std::move(part);
    }
    resolve_log_starts(consumer_.get(), list, 5000);  // those with no state ("start")
    info(fmt::format("assigned {} partitions of {}, resuming at{}", list->cnt, cfg_.topic, where));
  }

  // How long the input must stay quiet, once read to its end, for an early commit: long enough
  // that an input that keeps coming is not committed on each pause, short beside the interval.
  int quiet_ms() const { return std::clamp(cfg_.checkpoint_ms / 8, 10, 100); }

  // Reads what has come, up to 10 000 events; true if nothing came within the first poll's
  // wait: quiet_ms() once caught up (something to commit early), else 100 ms.
  bool pump() {
    const int wait_ms = caught_up() ? quiet_ms() : 100;
    for (int i = 0, events = 0; i < 10000 && events < 10000; ++i) {
      Message m = ahead_.poll(i == 0 ? wait_ms : 0);
      if (!m) return i == 0;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (const auto it = parts_.find(m->partition); it != parts_.end() && m->offset >= it->second.next)
          it->second.at_end = true;
        continue;
      }
      if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512] = {};
        const auto code = rd_kafka_fatal_error(consumer_.get(), why, sizeof why);
        if (code != RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID)
          throw core::Error(fmt::format("group {} member {}: {}", cfg_.group, cfg_.transaction.id, why));
        m.reset();
        replace_consumer(why);
        return false;
      }
      if (m->err == RD_KAFKA_RESP_ERR_INVALID_SESSION_TIMEOUT)
        throw core::Error(fmt::format("transaction.session_timeout_ms = {} is outside what the broker allows "
                                      "(group.min.session.timeout.ms, default 6000, to group.max.session.timeout.ms)",
                                      cfg_.transaction.session_timeout_ms));
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        warn(fmt::format("consume: {}", rd_kafka_message_errstr(m.get())));
        continue;
      }
      const auto it = parts_.find(m->partition);
      if (it == parts_.end() || m->offset < it->second.next) continue;  // not ours (any more), or before the state
      events += static_cast<int>(process_message(*it->second.analyzer, m.get(), topic_hash_, log_, batch_));
      it->second.next = m->offset + 1;
      it->second.dirty = true;
      it->second.at_end = false;
    }
    return false;
  }

  // Every assigned partition read to its end, and something to commit.
  bool caught_up() const {
    bool dirty = false;
    for (const auto& [p, part] : parts_) {
      if (!part.at_end) return false;
      dirty = dirty || part.dirty || part.republish;
    }
    return dirty;
  }

  // A record of `key`; a tombstone (a null value: the key is gone from the compacted topic)
  // when `value` is null.
  void produce(const std::string& topic, int partition, const std::string& key, const std::string* value) {
    for (;;) {
      const auto err = rd_kafka_producev(
          producer_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
          RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(value ? const_cast<char*>(value->data()) : nullptr, value ? value->size() : 0),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
      if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        // Built again the same after every abort: every transaction would abort, forever. Stop,
        // saying what (the state stays at the last commit).
        fatal_ = fmt::format("the record {} for {} [{}] is {} bytes, more than the producer's message.max.bytes: "
                             "every transaction would abort; stopping (the state stays at the last commit)",
                             key, topic, partition, value ? value->size() : 0);
        produce_error_ = fatal_;
        return;
      }
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        produce_error_ = fmt::format("produce to {} [{}]: {}", topic, partition, rd_kafka_err2str(err));
        return;
      }
      rd_kafka_poll(producer_.get(), 50);
    }
  }
  void produce(const std::string& topic, int partition, const std::string& key, const std::string& value) {
    produce(topic, partition, key, &value);
  }

  void emit(int p, Part& part) {
    Analyzer& a = *part.analyzer;
    const int out = p % std::max(output_partitions_, 1);
    const std::string& topic = cfg_.transaction.topic;
    for (std::size_t g = 0; g < cfg_.outputs.size(); ++g) {
      const auto& sent = part.emitted[g];
      for (const auto& [key, n] : a.totals(g)) {
        const auto it = sent.find(key);
        if (it == sent.end() || it->second != n)
          produce(topic, out, fmt::format("t/{}/{}/{}", cfg_.outputs[g].name, p, key), std::to_string(n));
      }
    }
    // Windows: closed rows once each ("w/"); the open rows as they change ("o/", a tombstone
    // once closed) and the late counts ("l/", a tombstone once final, then "f/" once), so the
    // reader can show them all.
    for (std::size_t w = 0; w < cfg_.windows.size(); ++w) {
      const std::string& name = cfg_.windows[w].name;
      for (const WindowRow& r : a.take_closed(w))
        produce(topic, out, fmt::format("w/{}/{}/{}/{}", name, p, r.start, r.key), window_value(r.end, r.agg));
      const WindowSet& ws = a.window(w);
      const auto& open_sent = part.open_sent[w];
      for (const auto& [k, agg] : ws.open())
        if (const auto it = open_sent.find(k); part.republish || it == open_sent.end() || !(it->second == agg))
          produce(topic, out, fmt::format("o/{}/{}/{}/{}", name, p, k.first, k.second), window_value(k.first + ws.size(), agg));
      for (const auto& [k, agg] : open_sent)
        if (!ws.open().contains(k)) produce(topic, out, fmt::format("o/{}/{}/{}/{}", name, p, k.first, k.second), nullptr);
      const auto& late_sent = part.late_sent[w];
      for (const auto& [k, n] : ws.late())
        if (const auto it = late_sent.find(k); part.republish || it == late_sent.end() || it->second != n)
          produce(topic, out, fmt::format("l/{}/{}/{}/{}", name, p, k.first, k.second), std::to_string(n));
      // Late rows made final (late_retention): "f/" once each, their "l/" deleted.
      for (const auto& [k, n] : a.take_retired(w)) {
        produce(topic, out, fmt::format("f/{}/{}/{}/{}", name, p, k.first, k.second), std::to_string(n));
        produce(topic, out, fmt::format("l/{}/{}/{}/{}", name, p, k.first, k.second), nullptr);
      }
    }
    const StatsRecords stats = stats_records(a, cfg_);
    for (std::size_t i = 0; i < stats.audit.size(); ++i)
      produce(topic, out, fmt::format("a/sources/{}/{}", p, i), stats.audit[i]);
    for (std::size_t i = stats.audit.size(); i < part.audit_sent; ++i)
      produce(topic, out, fmt::format("a/sources/{}/{}", p, i), nullptr);
    part.audit_emitted = stats.audit.size();
    produce(topic, out, fmt::format("s/{}", p), stats.head);
    const std::string key = std::to_string(p);
    for (std::size_t at = 0; at < part.dead_letters.size();) {  // one record per rejected event
      const std::size_t nl = part.dead_letters.find('\n', at);
      produce(dead_letter_topic_, p % std::max(dead_letter_partitions_, 1), key,
              part.dead_letters.substr(at, nl - at));
      at = nl + 1;
    }
    const auto chunks = state_chunks(a.serialize(fmt::format("kafka {}:{}", p, part.next)), rng_());
    for (std::size_t i = 0; i < chunks.size(); ++i)
      produce(cfg_.transaction.changelog, p, fmt::format("p{}/{}", p, i), chunks[i]);
  }

  // A member of the group, subscribed to the input topic.
  uplink::KafkaHandle make_consumer() {
    const auto& x = cfg_.transaction;
    uplink::Settings settings = reader_settings(cfg_.bootstrap, cfg_.group);
    // Static membership (KIP-345): a restarted instance gets its partitions back with no rebalance.
    settings.insert({{"group.instance.id", x.id},
                     {"enable.auto.offset.store", "false"},
                     {"enable.partition.eof", "true"},  // caught up: commit at once (run())
                     {"isolation.level", "read_committed"},
                     {"session.timeout.ms", std::to_string(x.session_timeout_ms)},
                     {"heartbeat.interval.ms", std::to_string(std::max(x.session_timeout_ms / 5, 100))}});
    add_fetch_settings(settings, cfg_);
    uplink::ConfHandle cc = logged_conf(settings, &handles_);
    rd_kafka_conf_set_rebalance_cb(cc.get(), &TransactionalRunner::on_rebalance);
    uplink::KafkaHandle c = uplink::make_handle(RD_KAFKA_CONSUMER, std::move(cc));
    rd_kafka_poll_set_consumer(c.get());
    PartitionList topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), cfg_.topic.c_str(), RD_KAFKA_PARTITION_UA);
    if (const auto err = rd_kafka_subscribe(c.get(), topics.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw core::Error(fmt::format("subscribe to {}: {}", cfg_.topic, rd_kafka_err2str(err)));
    return c;
  }

  // The consumer was fenced as a static member (FENCED_INSTANCE_ID). librdkafka 2.0.2 can
  // fence its own member after the group coordinator fails over; a new consumer with the same
  // group.instance.id rejoins, and its partitions are restored from the changelog. Another
  // process with the same id would fence it back: more than 3 fences in 10 minutes stop the job.
  // True if the consumer failed because it was fenced as a static member, and was replaced.
  bool replaced_fenced_consumer() {
    char why[512] = {};
    if (rd_kafka_fatal_error(consumer_.get(), why, sizeof why) != RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID) return false;
    replace_consumer(why);
    return true;
  }

  void replace_consumer(const std::string& why) {
    const auto now = Clock::now();
    while (!fences_.empty() && now - fences_.front() > std::chrono::minutes(10)) fences_.erase(fences_.begin());
    fences_.push_back(now);
    if (fences_.size() > 3)
      throw core::Error(fmt::format("group {} member {}: {} ({} times in 10 minutes: is another analyzer running "
                                    "with this id?)",
                                    cfg_.group, cfg_.transaction.id, why, fences_.size()));
    warn(fmt::format("{}: rejoining with a new consumer; uncommitted work is dropped and redone", why));
    closing_ = true;  // the revoke hands nothing over: the transaction state is clean between commits
    rd_kafka_consumer_close(consumer_.get());
    closing_ = false;
    drop_parts();
    ahead_.attach(nullptr);  // its messages go before the consumer does
    consumer_.reset();
    consumer_ = make_consumer();
    ahead_.attach(consumer_.get());
  }

  uplink::KafkaHandle make_producer() {
    const auto& x = cfg_.transaction;
    return uplink::make_handle(RD_KAFKA_PRODUCER,
                               logged_conf({{"bootstrap.servers", cfg_.bootstrap},
                                            {"transactional.id", x.id},
                                            {"transaction.timeout.ms", std::to_string(x.timeout_ms)},
                                            {"socket.timeout.ms", std::to_string(std::min(x.timeout_ms, 60000))},
                                            {"acks", "all"},
                                            {"compression.type", "lz4"},
                                            {"linger.ms", "5"},
                                            {"log_level", "3"}},
                                           &handles_));
  }

  // Fences an older producer with the same transactional.id and aborts what it left open.
  // False if `stop_fd` fired while the coordinator was not reachable.
  bool init_transactions(int stop_fd) {
    const auto& x = cfg_.transaction;
    for (const auto deadline = Clock::now() + milliseconds(2 * x.timeout_ms + 30000);;) {
      ErrorHandle e(rd_kafka_init_transactions(producer_.get(), x.timeout_ms + 10000));
      if (!e) return true;
      if (!rd_kafka_error_is_retriable(e.get()) || Clock::now() > deadline)
        throw core::Error(fmt::format("transactional.id {}: init_transactions: {}", x.id, rd_kafka_error_string(e.get())));
      info(fmt::format("init_transactions: {} (retrying)", rd_kafka_error_string(e.get())));
      if (stopped(stop_fd, 500)) return false;
    }
  }

  // After a fatal producer error: a new producer with the same transactional.id, whose
  // init_transactions aborts what the old one left open. librdkafka 2.0.2 turns a transaction
  // coordinator's failover into a fatal INVALID_TXN_STATE, and a coordinator that aborts a
  // transaction past its timeout bumps the epoch: the producer reads that as fenced "by a newer
  // instance" though there is none. A real second instance with this id fences again and again:
  // more than 3 fences in 10 minutes stop the job with the cause.
  void replace_producer(const std::string& what) {
    char reason[512] = {};
    const rd_kafka_resp_err_t code = rd_kafka_fatal_error(producer_.get(), reason, sizeof reason);
    if (code == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
      throw core::Error(fmt::format("transactional.id {}: {}: {}", cfg_.transaction.id, what, reason));
    if (code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED) {
      const auto now = Clock::now();
      while (!producer_fences_.empty() && now - producer_fences_.front() > std::chrono::minutes(10))
        producer_fences_.erase(producer_fences_.begin());
      producer_fences_.push_back(now);
      if (producer_fences_.size() > 3)
        throw core::Error(fmt::format("transactional.id {}: {}: {} ({} times in 10 minutes: is another analyzer "
                                      "running with this id?)",
                                      cfg_.transaction.id, what, reason, producer_fences_.size()));
    }
    if (++replaced_in_a_row_ > 5)
      throw core::Error(fmt::format("transactional.id {}: {} (fatal, {} producers in a row)", cfg_.transaction.id, what,
                                    replaced_in_a_row_));
    warn(fmt::format("{} (fatal for this producer: a new one takes over the transactional.id)", what));
    producer_.reset();
    producer_ = make_producer();
    (void)init_transactions(-1);
    ++producers_replaced_;
  }

  // The outcome of a transactional call: true if it succeeded. A failure is logged; a fatal one
  // is remembered (`fatal_call_`): the producer must be replaced before the next transaction.
  bool ok(rd_kafka_error_t* raw, const char* what) {
    ErrorHandle e(raw);
    if (!e) return true;
    const std::string text = fmt::format("{}: {}", what, rd_kafka_error_string(e.get()));
    if (rd_kafka_error_is_fatal(e.get())) fatal_call_ = text;
    else warn(text);
    // The group told the producer our consumer is no longer a member (another joined with its
    // group.instance.id): the consumer learns it at its next heartbeat; replaced at once.
    if (rd_kafka_error_code(e.get()) == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID) member_fenced_ = text;
    return false;
  }

  // One transaction: outputs, changelog and offsets of every partition that consumed anything.
  // Anything short of a commit aborts it, and the assigned partitions go back to their committed
  // state (`rewind`), unless they are being revoked or the job is stopping (`rewind_on_abort`
  // false); a consumer fenced as a static member rejoins instead.
  void commit(bool rewind_on_abort = true) {
    std::vector<int> dirty;
    for (const auto& [p, part] : parts_)  // a restored partition republishes without new input too
      if (part.dirty || part.republish) dirty.push_back(p);
    if (dirty.empty()) return;
    produce_error_.clear();
    fatal_call_.clear();
    member_fenced_.clear();
    bool good = ok(rd_kafka_begin_transaction(producer_.get()), "begin_transaction");
    if (good) {
      for (const int p : dirty) emit(p, parts_[p]);
      PartitionList offsets(rd_kafka_topic_partition_list_new(static_cast<int>(dirty.size())));
      for (const int p : dirty) rd_kafka_topic_partition_list_add(offsets.get(), cfg_.topic.c_str(), p)->offset = parts_[p].next;
      std::unique_ptr<rd_kafka_consumer_group_metadata_t, GroupMetadataDeleter> group(
          rd_kafka_consumer_group_metadata(consumer_.get()));
      good = produce_error_.empty() &&
             ok(rd_kafka_send_offsets_to_transaction(producer_.get(), offsets.get(), group.get(), -1),
                "send_offsets_to_transaction");
      // Delivered before the end of the transaction (librdkafka issue #4849: an abort during
      // AddPartitionsToTxn fails with INVALID_TXN_STATE).
      if (rd_kafka_flush(producer_.get(), cfg_.transaction.timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) good = false;
      if (!produce_error_.empty()) warn(produce_error_);
      // A retriable error (a timeout, a coordinator moving) is retried with the same
      // transaction until it commits, needs an abort, or turns fatal.
      const auto deadline = Clock::now() + milliseconds(2 * cfg_.transaction.timeout_ms + 30000);
      while (good) {
        rd_kafka_error_t* e = rd_kafka_commit_transaction(producer_.get(), cfg_.transaction.timeout_ms);
        if (e == nullptr) break;
        const bool retry = rd_kafka_error_is_retriable(e) && !rd_kafka_error_txn_requires_abort(e) &&
                           !rd_kafka_error_is_fatal(e) && Clock::now() < deadline;
        good = !ok(e, "commit_transaction") && retry;
      }
    }
    if (good) {
      ++commits_;
      replaced_in_a_row_ = 0;
      for (const int p : dirty) {
        Part& part = parts_[p];
        part.dirty = false;
        part.dead_letters.clear();
        part.sent(cfg_);
      }
      return;
    }
    // Nothing of this transaction counts: abort it (or, after a fatal error, replace the producer,
    // which aborts it), and go back to the last committed state.
    ++aborts_;
    for (const auto deadline = Clock::now() + milliseconds(2 * cfg_.transaction.timeout_ms + 30000);
         fatal_call_.empty();) {
      rd_kafka_error_t* e = rd_kafka_abort_transaction(producer_.get(), cfg_.transaction.timeout_ms);
      if (e == nullptr) break;
      const bool retry = rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e) && Clock::now() < deadline;
      if (!ok(e, "abort_transaction") && !retry && fatal_call_.empty())
        fatal_call_ = "abort_transaction failed";  // not abortable: a new producer aborts it
    }
    if (!fatal_call_.empty()) replace_producer(fatal_call_);
    // Inside the consumer's own callback (a fence surfaces in pump()), or stopping: the next
    // owner (or the next start) redoes what was aborted. Nothing of it may be committed later
    // by this instance (emit() took its closed windows out of the analyzers): a later commit,
    // the revoke's at the consumer's close, would lose those rows.
    if (!rewind_on_abort) {
      drop_parts();
      return;
    }
    if (!member_fenced_.empty()) {  // a rewind would fail (the fenced consumer's seek): rejoin instead
      replace_consumer(member_fenced_);
      return;
    }
    rewind();
  }

  // After an abort: every assigned partition back to its committed state and offset.
  void rewind() {
    // A consumer that learned of its fence first (its heartbeat) cannot be rewound: it rejoins.
    if (replaced_fenced_consumer()) return;
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (const auto err = rd_kafka_assignment(consumer_.get(), &raw); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      drop_parts();  // not rewound: never committed from (see commit())
      throw core::Error(fmt::format("rewinding {} after an abort: its assignment: {}", cfg_.topic, rd_kafka_err2str(err)));
    }
    PartitionList list(raw);
    warn(fmt::format("transaction aborted; {} partitions rewound to their committed state", list->cnt));
    try {
      restore(list.get());
    } catch (const Stopping&) {  // asked to stop meanwhile: what was aborted stays uncommitted
      drop_parts();
      info("stopped while rewinding after an abort; nothing more is committed");
      return;
    }
    // A seek, not a second assign: assigning outside the rebalance callback while the group
    // rebalances trips an assertion in librdkafka 2.0.2 (rd_kafka_assignment_partition_stopped).
    if (ErrorHandle e(rd_kafka_seek_partitions(consumer_.get(), list.get(), 30000)); e) {
      if (replaced_fenced_consumer()) return;
      throw core::Error(fmt::format("rewinding {} after an abort: {}", cfg_.topic, rd_kafka_error_string(e.get())));
    }
    for (int i = 0; i < list->cnt; ++i)
      if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
        throw core::Error(fmt::format("rewinding {} [{}] after an abort: {}", cfg_.topic, list->elems[i].partition,
                                      rd_kafka_err2str(list->elems[i].err)));
  }

  const AnalyzeConfig& cfg_;
  const AnalyzerFactory& make_;
  const JobLog& log_;
  std::uint64_t topic_hash_;
  std::vector<Event> batch_;  // scratch: the events of one packed record
  HandleContext handles_{&log_, this};  // the opaque of the handles below (declared before them)
  uplink::KafkaHandle producer_, consumer_, restorer_;
  int output_partitions_ = 1;
  int changelog_partitions_ = 0;
  std::string dead_letter_topic_;  // empty: none
  int dead_letter_partitions_ = 1;
  std::map<int, Part> parts_;
  ReadAhead ahead_{cfg_.topic, fetch_budget(cfg_), librdkafka_bound(cfg_)};  // of consumer_ (declared after it: destroyed before it)
  std::string fatal_;          // set in a librdkafka callback, thrown by the loop
  int stop_fd_ = -1;           // readable once the job is asked to stop (restore() gives up then)
  bool closing_ = false;       // closed after an error: hand nothing over
  bool closed_ = false;
  std::string produce_error_;  // this transaction cannot commit
  std::mt19937_64 rng_{std::random_device{}()};
  std::uint64_t commits_ = 0, aborts_ = 0, producers_replaced_ = 0;
  int replaced_in_a_row_ = 0;
  std::string fatal_call_;  // the fatal error of this transaction's calls, if any
  std::string member_fenced_;  // this transaction failed because the consumer was fenced (why)
  std::vector<Clock::time_point> fences_;  // when the consumer was fenced as a static member
  std::vector<Clock::time_point> producer_fences_;  // when the producer was fenced
};

// ---- the reader of the output topic

struct SourceTotals {
  std::uint64_t counted = 0, duplicates = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
};

// What the reader has written for good, per window: the rows of every window ending by
// `closed_until` are in the window's file, `closed_bytes` long; the final late rows of every
// window starting by `late_through` are in NAME.late.csv, `late_bytes` long.
struct Written {
  std::uint32_t shape = 0;  // CRC32C of the two files' headers: their columns as written
  std::int64_t closed_until = INT64_MIN, late_through = INT64_MIN;
  std::uint64_t closed_bytes = 0, late_bytes = 0;
  bool operator==(const Written&) const = default;
};

class Materializer {
 public:
  Materializer(const AnalyzeConfig& cfg, const JobLog& log, const std::function<void(render::Figures&)>& publish)
      : cfg_(cfg), log_(log), publish_(publish) {}

  int run(int stop_fd) {
    restore_written();
    uplink::Settings settings = reader_settings(cfg_.bootstrap, cfg_.group + "-materialize");
    settings.insert({{"isolation.level", "read_committed"}, {"enable.partition.eof", "true"}, {"fetch.wait.max.ms", "100"}});
    HandleContext ctx{&log_};
    auto rk = uplink::make_handle(RD_KAFKA_CONSUMER, logged_conf(settings, &ctx));
    int partitions = 0;
    if (!wait_for_topic(rk.get(), cfg_.transaction.topic, cfg_.bootstrap, stop_fd, partitions, log_)) return 0;
    // The input's partitions, asked now: once this handle fetches, a metadata request waits on
    // the broker behind the fetch in flight (a connection's requests are served one at a time),
    // up to fetch.wait.max.ms, and the first files would wait with it.
    (void)input_partitions(rk.get(), -1);
    PartitionList list(rd_kafka_topic_partition_list_new(partitions));
    for (int p = 0; p < partitions; ++p)
      rd_kafka_topic_partition_list_add(list.get(), cfg_.transaction.topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    resolve_log_starts(rk.get(), list.get(), 5000);
    rd_kafka_assign(rk.get(), list.get());
    std::set<int> at_end;  // partitions read to their last stable offset, nothing newer since
    std::map<int, std::int64_t> after;  // per partition: the offset after the last record read
    bool changed = false, caught_up = false;
    auto consume = [&] {
      for (int i = 0; i < 10000; ++i) {
        Message m(rd_kafka_consumer_poll(rk.get(), i == 0 ? 100 : 0));
        if (!m) break;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          at_end.insert(m->partition);
          continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
          if (log_) log_("warn", fmt::format("output topic {}: {}", cfg_.transaction.topic, rd_kafka_message_errstr(m.get())));
          continue;
        }
        at_end.erase(m->partition);
        // Read again from an earlier offset (librdkafka reset the position): older values come
        // back before the newest, so the files wait until the topic is read to its end again.
        const auto [it, first] = after.try_emplace(m->partition, m->offset + 1);
        if (!first && m->offset < it->second) {
          caught_up = false;
          view_.rewind(m->partition);
        }
        it->second = m->offset + 1;
        if (m->key == nullptr) continue;
        std::string key(static_cast<const char*>(m->key), m->key_len);
        std::optional<std::string_view> value;  // none: a tombstone
        if (m->payload != nullptr) value.emplace(static_cast<const char*>(m->payload), m->len);
        if (not_needed(key, value)) continue;  // e.g. written for good, read again after a restart or a rewind
        if (view_.add(m->partition, std::move(key), value, Clock::now())) changed = true;
      }
    };
    // The files are written once the whole topic has been read (never a half-read history that
    // shows smaller totals than the last run did), then as it changes: at most once per
    // min(checkpoint_ms, 1 s), and, while the topic is read to its end (the job's transactions
    // come that way), at most 4 times as often.
    const auto interval = milliseconds(std::min(cfg_.checkpoint_ms, 1000));
    auto next = Clock::now(), early = Clock::now();
    // Rows held back longer than a transaction can stay open (its timeout, then the broker's
    // abort of it, checked every 10 s by default) were not written by one.
    const auto grace = milliseconds(2 * cfg_.transaction.timeout_ms + 10000);
    for (;;) {
      consume();
      for (const int p : at_end)
        if (view_.release(p, Clock::now() - grace)) changed = true;
      const bool all_at_end = static_cast<int>(at_end.size()) == partitions;
      caught_up = caught_up || all_at_end;
      const auto now = Clock::now();
      if (caught_up && changed && (now >= next || (all_at_end && now >= early))) {
        write(rk.get());
        changed = false;
        next = Clock::now() + interval;
        early = Clock::now() + interval / 4;
      }
      if (stopped(stop_fd)) break;
    }
    // Stopping: what was committed until now (the analyzer's last transaction) is read first,
    // bounded, then written.
    for (int round = 0, deadline_rounds = 100; round < deadline_rounds; ++round) {  // 0.3 s to 10 s
      consume();  // each round waits up to 100 ms for a message: a fetch cycle
      if (round >= 2 && static_cast<int>(at_end.size()) == partitions) break;
    }
    if (changed && static_cast<int>(at_end.size()) == partitions) write(rk.get());
    rd_kafka_consumer_close(rk.get());
    return 0;
  }

 private:
  // ---- the files appended for good, and how far they go (STATE_DIR/materialized)
  //
  // A window's row is final once every input partition has closed that window: its end is at or
  // below the lowest of the partitions' CLOSED_UNTIL, as each one's last committed "s/P" says (a
  // partition closes a window once, for good). A late row is final once every partition's late
  // row of it is: its start at or below the lowest of their RETIRED_THROUGH. Both are the
  // analyzers' own figures, so a reader configured otherwise (another late_retention) or a
  // partition restored under a smaller lateness cannot make a row final early.
  // Final rows are appended to the files once, in window order, the state file is written after
  // them (write, fsync, rename), and they leave memory: the reader holds only rows that can
  // still change, however long the run. After a crash the files are cut back to what the state
  // file accounts for; read again from the topic, rows of windows written for good are skipped.

  fs::path state_file() const { return cfg_.state_dir / "materialized"; }
  fs::path late_file(const WindowOutputSpec& w) const { return cfg_.state_dir / (w.name + ".late.csv"); }

  // The headers of a window's two files: a change of columns (by, value) rewrites them.
  static std::uint32_t shape(const WindowOutputSpec& w) {
    const std::string h = render::window_header(w, "count") + render::window_header(w, "late");
    return core::crc32c(h.data(), h.size());
  }

  void restore_written() {
    // One reader per state dir: two would append over each other and cut each other's files.
    const fs::path lock_path = cfg_.state_dir / "materialized.lock";
    lock_ = core::Fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!lock_.valid()) core::throw_errno("open " + lock_path.string(), errno);
    if (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0)
      throw core::Error(fmt::format("another reader of the output topic writes the files of {} (it holds {})",
                                    cfg_.state_dir.string(), lock_path.string()));
    std::map<std::string, Written, std::less<>> saved;
    try {
      if (const auto text = read_checkpoint(state_file())) {
        std::string_view rest = *text;
        while (!rest.empty()) {
          const auto nl = rest.find('\n');
          const auto c = split(rest.substr(0, nl), '\t', 7);
          rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
          Written x;
          if (c.size() == 7 && c[0] == "window" && number(c[2], x.shape) && number(c[3], x.closed_until) &&
              number(c[4], x.closed_bytes) && number(c[5], x.late_through) && number(c[6], x.late_bytes))
            saved[std::string(c[1])] = x;
        }
      }
    } catch (const core::Error& e) {  // the files are a copy of the topic: written again from it
      warn(fmt::format("{}; the window files are written again from the output topic", e.what()));
    }
    for (const WindowOutputSpec& w : cfg_.windows) {
      Written now{.shape = shape(w)};
      const auto it = saved.find(w.name);
      std::error_code ec;
      auto bytes = [&ec](const fs::path& p) -> std::uint64_t { return fs::exists(p, ec) ? fs::file_size(p, ec) : 0; };
      const fs::path closed = cfg_.state_dir / w.file, late = late_file(w);
      if (it != saved.end() && it->second.shape == now.shape && bytes(closed) >= it->second.closed_bytes &&
          bytes(late) >= it->second.late_bytes) {
        now = it->second;
      } else if (it != saved.end()) {
        warn(fmt::format("{} and {} do not match {} (the window's columns changed, or the files were cut): written "
                         "again from the output topic",
                         closed.string(), late.string(), state_file().string()));
      }
      // Rows appended after the state file was last written are appended again.
      if (fs::exists(closed, ec) && bytes(closed) != now.closed_bytes) fs::resize_file(closed, now.closed_bytes);
      if (fs::exists(late, ec) && bytes(late) != now.late_bytes) fs::resize_file(late, now.late_bytes);
      written_[w.name] = now;
    }
  }

  void save_written() const {
    std::string text;
    for (const auto& [name, x] : written_)
      text += fmt::format("window\t{}\t{}\t{}\t{}\t{}\t{}\n", name, x.shape, x.closed_until, x.closed_bytes,
                          x.late_through, x.late_bytes);
    write_checkpoint(state_file(), text);
  }

  // A row the reader never needs again: a closed ("w/") or final late ("f/") row the files have
  // for good, or any row of a window no longer configured.
  bool not_needed(std::string_view key, std::optional<std::string_view> value) const {
    if (key.size() < 2 || key[1] != '/' || std::string_view("wolf").find(key[0]) == std::string_view::npos) return false;
    const auto k = split(key.substr(2), '/', 4);  // WINDOW, P, START, KEY
    if (k.size() != 4) return false;
    const auto it = written_.find(k[0]);
    if (it == written_.end()) return true;
    if (key[0] == 'w') {
      WindowRow r;
      return value && parse_window_value(*value, r) && r.end <= it->second.closed_until;
    }
    std::int64_t start = 0;
    return key[0] == 'f' && number(k[2], start) && start <= it->second.late_through;
  }

  // The input topic's partitions (every one must have closed a window for it to be final): its
  // metadata, asked again every 10 s (at once while unknown), or more if a partition beyond it
  // committed its "s/P".
  int input_partitions(rd_kafka_t* rk, int highest_seen) {
    if (const auto now = Clock::now(); inputs_ <= 0 || now >= inputs_checked_ + std::chrono::seconds(10)) {
      if (const int n = uplink::partition_count(rk, cfg_.topic); n > 0) {
        inputs_checked_ = now;
        inputs_ = std::max(inputs_, n);
      }
    }
    return inputs_ <= 0 ? 0 : std::max(inputs_, highest_seen + 1);
  }

  void warn(const std::string& m) const {
    if (log_) log_("warn", m);
  }

  void write(rd_kafka_t* rk) {
    std::map<std::string, std::map<std::string, std::uint64_t>> totals;  // output -> key -> sum over partitions
    // window -> rows, partitions summed: final (for the window's file) and not yet (open rows,
    // and the closed parts of windows that other partitions have not closed yet)
    std::map<std::string, std::map<WindowKey, Aggregate>> closed, open;
    std::map<std::string, std::map<WindowKey, std::uint64_t>> late, final_late;  // window -> rows, summed
    // window -> input partition -> its CLOSED_UNTIL, and its RETIRED_THROUGH
    std::map<std::string, std::map<int, std::int64_t>> closed_marks, late_marks;
    std::vector<std::string> finished;  // keys of the rows appended now, to leave memory
    AnalyzerStats stats;
    struct WindowStatus {
      std::uint64_t open = 0, closed = 0, late = 0, expired = 0;
      std::optional<std::int64_t> watermark;  // the lowest of the partitions': every one is past it
      bool unknown = false;                   // a partition without a watermark yet
    };
    std::map<std::string, WindowStatus> wstatus;
    std::map<std::uint64_t, SourceTotals> sources;
    Ledger::Retired retired;
    std::size_t stat_partitions = 0;
    // The partitions' counters and audits first: their bounds say which rows are final.
    int highest = -1;
    for (auto it = view_.latest().lower_bound("s/"); it != view_.latest().end() && it->first.rfind("s/", 0) == 0; ++it) {
      ++stat_partitions;
      int p = 0;
      const bool known = number(std::string_view(it->first).substr(2), p);
      if (known) highest = std::max(highest, p);
      std::size_t audit_chunks = 0;  // "audit N": the sources' lines are in a/sources/P/0 .. N-1
      const auto read_lines = [&](std::string_view rest) {
        while (!rest.empty()) {
          const auto nl = rest.find('\n');
          const std::string_view line = rest.substr(0, nl);
          rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
          const auto c = split(line, '\t', 9);
          std::uint64_t a = 0, b = 0, d = 0;
          if (c[0] == "stats" && c.size() == 7) {
            std::uint64_t v[6] = {};
            for (int i = 0; i < 6; ++i) (void)number(c[i + 1], v[i]);
            stats.counted += v[0];
            stats.filtered += v[1];
            stats.duplicates += v[2];
            stats.rejected += v[3];
            stats.late += v[4];
            stats.overflowed += v[5];
          } else if (c[0] == "reject" && c.size() == 3 && number(c[2], a)) {
            stats.rejected_by_reason[std::string(c[1])] += a;
          } else if (c[0] == "retired" && c.size() == 4 && number(c[1], a) && number(c[2], b) && number(c[3], d)) {
            retired.sources += a;
            retired.events += b;
            retired.duplicates += d;
          } else if (c[0] == "window" && (c.size() == 6 || c.size() == 7 || c.size() == 9) && number(c[2], a) &&
                     number(c[3], b) && number(c[4], d)) {  // 6: before the expired column; 9: with the bounds
            WindowStatus& ws = wstatus[std::string(c[1])];
            ws.open += a;
            ws.closed += b;
            ws.late += d;
            if (std::uint64_t e = 0; c.size() >= 7 && number(c[6], e)) ws.expired += e;
            std::int64_t wm = 0;
            if (number(c[5], wm)) ws.watermark = ws.watermark ? std::min(*ws.watermark, wm) : wm;
            else ws.unknown = true;
          } else if (c[0] == "source" && c.size() == 5 && number(c[1], a) && number(c[2], b) && number(c[3], d)) {
            SourceTotals& s = sources[a];
            s.counted += b;
            s.duplicates += d;
            for (const auto range : split(c[4], ',', SIZE_MAX)) {
              const auto dash = range.find('-');
              std::uint64_t first = 0, last = 0;
              if (dash != std::string_view::npos && number(range.substr(0, dash), first) &&
                  number(range.substr(dash + 1), last))
                s.ranges.emplace_back(first, last);
            }
          }
          if (known && c[0] == "window" && c.size() == 9) {  // (fewer columns: an older analyzer's, no bounds)
            if (std::int64_t v = 0; number(c[7], v)) closed_marks[std::string(c[1])][p] = v;
            if (std::int64_t v = 0; number(c[8], v)) late_marks[std::string(c[1])][p] = v;
          }
          if (c[0] == "audit" && c.size() == 2) (void)number(c[1], audit_chunks);
        }
      };
      read_lines(it->second);  // (an older analyzer's s/P holds its source lines itself)
      for (std::size_t i = 0; known && i < audit_chunks; ++i)
        if (const auto chunk = view_.latest().find(fmt::format("a/sources/{}/{}", p, i)); chunk != view_.latest().end())
          read_lines(chunk->second);
    }
    std::map<std::string, Written, std::less<>> next = written_;
    const int inputs = input_partitions(rk, highest);
    // The lowest of every input partition's bound; none while one has none yet.
    auto lowest = [inputs](const std::map<int, std::int64_t>& m, std::vector<int>* waiting) -> std::optional<std::int64_t> {
      std::int64_t low = INT64_MAX;
      bool all = inputs > 0;
      for (int p = 0; p < inputs; ++p) {
        if (const auto it = m.find(p); it != m.end()) {
          low = std::min(low, it->second);
        } else {
          all = false;
          if (waiting != nullptr) waiting->push_back(p);
        }
      }
      return all ? std::optional(low) : std::nullopt;
    };
    for (const WindowOutputSpec& w : cfg_.windows) {
      std::vector<int> waiting;  // a partition that has closed nothing yet holds every window back
      const auto closed_low = lowest(closed_marks[w.name], &waiting);
      if (waiting != waiting_[w.name] && !waiting.empty() && log_)
        log_("info", fmt::format("window {}: no row is final until input partitions {} of {} have closed a window; "
                                 "until then the rows are in {}.open.csv",
                                 w.name, fmt::join(waiting, ","), cfg_.topic, w.name));
      waiting_[w.name] = waiting;
      Written& x = next[w.name];
      if (closed_low) x.closed_until = std::max(x.closed_until, *closed_low);
      if (const auto late_low = lowest(late_marks[w.name], nullptr)) x.late_through = std::max(x.late_through, *late_low);
    }
    for (const auto& [key, value] : view_.latest()) {
      if (key.rfind("t/", 0) == 0) {
        const auto k = split(std::string_view(key).substr(2), '/', 3);  // OUTPUT, P, KEY
        std::uint64_t n = 0;
        if (k.size() == 3 && number(value, n)) totals[std::string(k[0])][std::string(k[2])] += n;
      } else if (key.rfind("w/", 0) == 0 || key.rfind("o/", 0) == 0) {  // a closed or an open row
        const auto k = split(std::string_view(key).substr(2), '/', 4);  // WINDOW, P, START, KEY
        WindowRow r;
        if (k.size() != 4 || !number(k[2], r.start) || !parse_window_value(value, r)) continue;
        const auto x = next.find(k[0]);
        const bool final = key[0] == 'w' && x != next.end() && r.end <= x->second.closed_until;
        if (final) finished.push_back(key);
        auto& rows = final ? closed[std::string(k[0])] : open[std::string(k[0])];
        rows[{r.start, std::string(k[3])}].merge(r.agg);  // the same window and key of other partitions: summed
      } else if (key.rfind("l/", 0) == 0 || key.rfind("f/", 0) == 0) {  // a late row, growing or final
        const auto k = split(std::string_view(key).substr(2), '/', 4);  // WINDOW, P, START, KEY
        std::int64_t start = 0;
        std::uint64_t n = 0;
        if (k.size() != 4 || !number(k[2], start) || !number(value, n)) continue;
        const auto x = next.find(k[0]);
        const bool final = key[0] == 'f' && x != next.end() && start <= x->second.late_through;
        if (final) finished.push_back(key);
        auto& rows = final ? final_late[std::string(k[0])] : late[std::string(k[0])];
        rows[{start, std::string(k[3])}] += n;
      }
    }
    for (const OutputSpec& o : cfg_.outputs) {
      const auto order = cfg_.label_order.find(o.by);
      render::write_file(cfg_.state_dir / o.file,
                         render::totals_csv(o, totals[o.name], stats.counted,
                                            order == cfg_.label_order.end() ? nullptr : &order->second));
    }
    // The final rows, appended once, then the state file that says so; then they leave memory.
    for (const WindowOutputSpec& w : cfg_.windows) {
      Written& x = next[w.name];
      std::string text = x.closed_bytes == 0 ? render::window_header(w, "count") : std::string();
      for (const auto& [k, agg] : closed[w.name]) render::window_row(text, w, {k.first, k.first + w.size_ms, k.second, agg});
      if (!text.empty()) x.closed_bytes = render::append_at(cfg_.state_dir / w.file, x.closed_bytes, text);
      text = x.late_bytes == 0 ? render::window_header(w, "late") : std::string();
      for (const auto& [k, n] : final_late[w.name]) render::late_row(text, w, k, n);
      if (!text.empty()) x.late_bytes = render::append_at(late_file(w), x.late_bytes, text);
    }
    if (next != written_) {
      written_ = std::move(next);
      save_written();
    }
    for (const std::string& key : finished) view_.forget(key);
    render::Figures f;
    for (const WindowOutputSpec& w : cfg_.windows) {
      render::write_file(cfg_.state_dir / (w.name + ".open.csv"), render::open_csv(w, open[w.name]));
      render::write_file(cfg_.state_dir / (w.name + ".late.open.csv"), render::late_csv(w, late[w.name]));
      const WindowStatus& ws = wstatus[w.name];
      f.windows.push_back({w.name, ws.open, ws.closed, ws.late, ws.expired, ws.unknown ? std::nullopt : ws.watermark});
    }
    // A source spread over partitions (another partition key than the source id) is one source.
    for (auto& [id, s] : sources) {
      Ledger::SourceAudit a;
      a.source_id = id;
      a.counted = s.counted;
      a.duplicates = s.duplicates;
      std::sort(s.ranges.begin(), s.ranges.end());
      for (const auto& r : s.ranges) {
        if (!a.ranges.empty() && r.first <= a.ranges.back().second + 1) a.ranges.back().second = std::max(a.ranges.back().second, r.second);
        else a.ranges.push_back(r);
      }
      std::uint64_t covered = 0;
      for (const auto& r : a.ranges) covered += r.second - r.first + 1;
      a.gaps = a.ranges.empty() ? 0 : a.ranges.back().second + 1 - covered;
      f.sources.push_back(std::move(a));
    }
    f.stats = std::move(stats);
    f.retired = retired;
    f.extra = fmt::format(R"(,"partitions":{},"reader_rows":{})", stat_partitions, view_.latest().size() + view_.held_back());
    publish_(f);
  }

  const AnalyzeConfig& cfg_;
  const JobLog& log_;
  const std::function<void(render::Figures&)>& publish_;
  OutputView view_;  // the output topic as a table: key -> newest value, whole transactions only
  std::map<std::string, Written, std::less<>> written_;  // per window
  std::map<std::string, std::vector<int>> waiting_;      // per window: input partitions it waits for
  core::Fd lock_;                                         // STATE_DIR/materialized.lock, held
  int inputs_ = 0;                                        // the input topic's partitions
  Clock::time_point inputs_checked_{};
};

}  // namespace

uplink::ConfHandle logged_conf(const uplink::Settings& settings, HandleContext* ctx) {
  uplink::ConfHandle conf = uplink::make_conf(settings);
  rd_kafka_conf_set_opaque(conf.get(), ctx);
  rd_kafka_conf_set_log_cb(conf.get(), [](const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
    const auto* c = static_cast<const HandleContext*>(rd_kafka_opaque(rk));
    if (c == nullptr || c->log == nullptr || !*c->log) return;
    (*c->log)(level <= 3 ? "error" : level == 4 ? "warn" : "info",
              fmt::format("librdkafka {} {}: {}", rd_kafka_name(rk), fac, buf));
  });
  return conf;
}

uplink::Settings reader_settings(const std::string& bootstrap, const std::string& group) {
  return {{"bootstrap.servers", bootstrap},
          {"group.id", group},
          {"enable.auto.commit", "false"},
          {"auto.offset.reset", "earliest"},
          {"log_level", "4"}};
}

void add_fetch_settings(uplink::Settings& s, const AnalyzeConfig& cfg) {
  s["queued.min.messages"] = "10000000";
  s["queued.max.messages.kbytes"] = std::to_string(librdkafka_bound(cfg) >> 10);
  s["fetch.wait.max.ms"] = "25";
}

std::size_t fetch_budget(const AnalyzeConfig& cfg) { return static_cast<std::size_t>(cfg.fetch_queue_mb) << 20; }
std::size_t librdkafka_bound(const AnalyzeConfig& cfg) { return std::max<std::size_t>(fetch_budget(cfg) / 2, 4 << 20); }

void resolve_log_starts(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* list, int timeout_ms) {
  PartitionList ask(rd_kafka_topic_partition_list_new(list->cnt));
  for (int i = 0; i < list->cnt; ++i)  // offsets_for_times takes -2 as "the earliest offset"
    if (list->elems[i].offset == RD_KAFKA_OFFSET_BEGINNING)
      rd_kafka_topic_partition_list_add(ask.get(), list->elems[i].topic, list->elems[i].partition)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
  if (ask->cnt == 0 || rd_kafka_offsets_for_times(rk, ask.get(), timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  for (int i = 0; i < ask->cnt; ++i) {
    const rd_kafka_topic_partition_t& a = ask->elems[i];
    if (a.err != RD_KAFKA_RESP_ERR_NO_ERROR || a.offset < 0) continue;
    if (rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_find(list, a.topic, a.partition)) tp->offset = a.offset;
  }
}

bool wait_for_topic(rd_kafka_t* rk, const std::string& topic, const std::string& where, int stop_fd, int& out,
                    const JobLog& log) {
  for (int attempt = 0;; ++attempt) {
    if ((out = uplink::partition_count(rk, topic)) > 0) return true;
    if (attempt == 0 && log) log("info", fmt::format("waiting for topic {} at {}", topic, where));
    // Not there yet: asked again soon (a topic being made appears within a few hundred ms), then
    // every 500 ms, unless stopped.
    if (stopped(stop_fd, std::min(500, 25 << std::min(attempt, 5)))) return false;
  }
}

std::size_t process_message(Analyzer& a, const rd_kafka_message_t* m, std::uint64_t topic_hash, const JobLog& log,
                            std::vector<Event>& batch) {
  const std::string_view value(static_cast<const char*>(m->payload), m->len);
  const uplink::RecordTags tags = uplink::record_tags(m);
  if (tags.packed) {  // many events, each with its identity (uplink packed mode)
    batch.clear();
    const bool whole = uplink::for_each_packed(value, [&](const uplink::PackedEvent& e) {
      batch.push_back({e.id, e.payload, e.timestamp_ns < 0 ? 0 : e.timestamp_ns / 1000000, m->offset});
    });
    a.process_batch(batch);  // the events before a damage are counted either way
    if (whole) return batch.size();
  }
  // Tributary records carry their identity; others are identified by partition and offset.
  const core::EventId fallback{(topic_hash ^ static_cast<std::uint64_t>(m->partition + 1)) | (1ull << 63),
                               static_cast<std::uint64_t>(m->offset)};
  rd_kafka_timestamp_type_t tstype;
  const std::int64_t ts = rd_kafka_message_timestamp(m, &tstype);
  const Event e{tags.identity.value_or(fallback), value, ts < 0 ? 0 : ts, m->offset};
  if (tags.packed) {
    // A damaged pack: its events after the damage are gaps of their own sources; the record
    // itself is rejected (counted, sampled, dead-lettered) under no identity of its own, so
    // that the audit shows no source for it.
    if (log) log("warn", fmt::format("partition {} offset {}: a damaged packed record", m->partition, m->offset));
    a.reject_record(e, "damaged packed record");
    return batch.size() + 1;
  }
  (void)a.process(e);
  return 1;
}

int run_transactional(const AnalyzeConfig& cfg, const AnalyzerFactory& make, const JobLog& log, int stop_fd,
                      int failed_fd) {
  TransactionalRunner runner(cfg, make, log);
  return runner.run(stop_fd, failed_fd);
}

int run_materializer(const AnalyzeConfig& cfg, const JobLog& log, int stop_fd,
                     const std::function<void(render::Figures&)>& publish) {
  Materializer m(cfg, log, publish);
  return m.run(stop_fd);
}

}  // namespace tributary::analytics::detail
