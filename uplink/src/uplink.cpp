// Uplink: channel -> librdkafka, commits gated on delivery reports. See uplink.h.
#include "tributary/uplink/uplink.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <fmt/format.h>
#include <mutex>

#include "tributary/core/error.h"

namespace tributary::uplink {

using Clock = std::chrono::steady_clock;

namespace {

// Errors that concern one message and will not go away by re-sending it.
bool permanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
      return true;
    default:
      return false;
  }
}

// Kafka refuses a whole record batch (librdkafka's batch of records; a pack is one too) for one
// cause: the batch larger than the topic's max.message.bytes, or one invalid record in it. So a
// refusal for good is an event's own only when it travelled alone (kPermanent: dead-lettered).
// Otherwise the refused events are sent again (after a rewind): kShrink, in halved batches and
// packs, for a refusal for size; kSplit, one at a time, for any other refusal, or once batches
// and packs cannot shrink any more.
enum class State : std::uint8_t { kPending, kDone, kFailed, kPermanent, kShrink, kSplit };

// A refusal for size: smaller batches (and packs) may pass.
bool too_large(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

struct Entry {
  std::uint64_t pos;   // channel position of the record (rewind target)
  std::uint64_t next;  // position after it (commit target)
  core::EventId id;
  std::span<const std::byte> payload;
  State state = State::kPending;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::uint32_t events = 1;  // > 1 or an empty payload: a pack of the records in [pos, next)
  bool pack = false;
  bool alone = false;  // sent with nothing else in flight: a refusal is this record's own
  std::uint32_t dead_lettered = 0;  // of a refused pack: its first events already in the dead-letter channel
  std::string packed = {};  // a pack's bytes: librdkafka reads them until the delivery report
};

}  // namespace

struct Uplink::Impl {
  core::Channel& channel;
  UplinkOptions opts;
  LogFn log;
  core::Consumer consumer;
  // Declared before the producer, so destroyed after it: librdkafka's threads may read a
  // queued pack's bytes (held by its entry) until rd_kafka_destroy has joined them.
  std::deque<Entry> inflight;  // in channel order
  KafkaHandle rk;
  // The topic's handle, made once per producer when it first has something to send (making
  // it asks the cluster for the topic's metadata, which may auto-create the topic): named by a
  // string, every producev would look the topic up in librdkafka's list under its handle's
  // write lock, once per message. Declared after the producer, so destroyed before it.
  TopicHandle topic;
  std::size_t inflight_events = 0;  // events in `inflight` (a pack holds many)
  std::string pack;                 // packed mode: the record being built
  std::size_t pack_limit = 0;       // packed mode: opts.pack_bytes, halved by packs refused for size
  std::uint64_t batch_limit = 0;    // librdkafka's batch.size, halved by batches refused for size
  std::uint64_t producer_batch = 0; // the batch.size of the current producer
  std::uint64_t batch_first = 0;    // the batch.size configured (the floor is 1 KiB or this)
  std::uint64_t alone_until = 0;    // records before this position are sent one at a time
  Clock::time_point regrow_at = Clock::time_point::max();  // halved batches or packs tried larger then
  std::uint64_t front_ticket = 0;  // ticket of inflight.front(); a message's opaque is its ticket
  std::optional<core::Producer> dlq;
  bool dlq_full_ = false;  // the dead-letter channel refused an event for want of room (logged once)
  Clock::time_point dlq_retry_at_{};  // while dlq_full_: when to try it again
  bool rewinding = false;
  Clock::time_point resume_at{};
  rd_kafka_resp_err_t last_err = RD_KAFKA_RESP_ERR_NO_ERROR;
  UplinkMetrics m;                // owned by the uplink's thread
  UplinkMetrics published;        // copy for other threads (status), under metrics_mu
  mutable std::mutex metrics_mu;

  Impl(core::Channel& ch, UplinkOptions o, LogFn l)
      : channel(ch), opts(std::move(o)), log(std::move(l)), consumer(ch.consumer(opts.name)) {
    if (opts.topic.empty()) throw core::Error("uplink: a topic is required");
    if (opts.regrow_after < std::chrono::milliseconds(1) || opts.regrow_after > std::chrono::hours(24))
      throw core::Error(fmt::format("uplink {}: regrow_after {} ms: expected 1 ms to 24 h", opts.name,
                                    opts.regrow_after.count()));
    if (opts.packed) {
      // A pack Kafka refuses for size would send all its events to the dead-letter channel.
      const auto it = opts.kafka.find("message.max.bytes");
      const std::uint64_t limit = it == opts.kafka.end() ? 1000000 : std::strtoull(it->second.c_str(), nullptr, 10);
      if (opts.pack_bytes + 1024 > limit)
        throw core::Error(fmt::format("uplink {}: pack_bytes {} does not fit message.max.bytes {} (with 1 KiB for the "
                                      "record's key, header and framing): lower pack_bytes",
                                      opts.name, opts.pack_bytes, limit));
    }
    pack_limit = opts.pack_bytes;
    if (opts.dead_letter != nullptr) {
      // Whatever Kafka refuses must fit there: an event the dead-letter channel cannot take
      // either would have nowhere to go.
      const std::uint32_t dl = opts.dead_letter->stats().max_payload, src = channel.stats().max_payload;
      if (dl < src)
        throw core::Error(fmt::format("uplink {}: the dead-letter channel {} takes events of up to {} bytes, less than "
                                      "the {} of channel {}: an event Kafka refuses could be kept nowhere (give the "
                                      "dead-letter channel a max_payload of at least {})",
                                      opts.name, opts.dead_letter->path().string(), dl, src, channel.path().string(),
                                      src));
      // Never blocks the uplink: a full dead-letter channel holds the refused event (and the
      // cursor) where it is until there is room, looked at again on every pass.
      dlq.emplace(opts.dead_letter->producer({.on_full = core::FullPolicy::kFailFast}));
    }
    create_producer();
  }

  void replace_producer() {
    topic.reset();  // before the producer it belongs to
    rk.reset();
    create_producer();
  }

  void create_producer() {
    Settings s = {{"enable.idempotence", "true"},
                  {"acks", "all"},
                  {"compression.type", "lz4"},
                  {"linger.ms", "5"},
                  {"batch.size", "1000000"},
                  {"message.timeout.ms", "30000"},
                  {"queue.buffering.max.messages", std::to_string(opts.max_in_flight + 1000)},
                  {"queue.buffering.max.kbytes", "2097151"},
                  {"log_level", "4"}};
    for (const auto& [k, v] : opts.kafka) s[k] = v;
    if (s.count("bootstrap.servers") == 0) throw core::Error("uplink: kafka bootstrap.servers is required");
    // With acks=0 the broker answers nothing and no delivery carries an offset (see on_delivery).
    offsets_reported = !(s["acks"] == "0" || (s.count("request.required.acks") != 0 && s["request.required.acks"] == "0"));
    if (batch_limit == 0) batch_limit = batch_first = std::strtoull(s["batch.size"].c_str(), nullptr, 10);
    else s["batch.size"] = std::to_string(batch_limit);  // lowered after a refusal for size
    producer_batch = batch_limit;
    ConfHandle conf = make_conf(s);
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
      static_cast<Impl*>(opaque)->on_delivery(msg);
    });
    rd_kafka_conf_set_error_cb(conf.get(), [](rd_kafka_t*, int err, const char* reason, void* opaque) {
      static_cast<Impl*>(opaque)->note_error(static_cast<rd_kafka_resp_err_t>(err), reason);
    });
    // librdkafka's own log lines repeat what error_cb reports once per change of state: keep
    // them out of the agent's log unless they are about something else.
    rd_kafka_conf_set_log_cb(conf.get(), [](const rd_kafka_t* rk_, int level, const char* fac, const char* buf) {
      auto* self = static_cast<Impl*>(rd_kafka_opaque(rk_));
      if (self != nullptr && self->log && level <= 2) self->log("error", fmt::format("librdkafka {}: {}", fac, buf));
    });
    rk = make_handle(RD_KAFKA_PRODUCER, std::move(conf));
    topic_known = false;
    topic_retry_at = {};
  }

  // A producer learns a topic's partitions from a metadata request made when it first meets the
  // topic; librdkafka 2.0.2 does not send one while no broker connection is up yet (always the
  // case right after the producer is made) and asks again only at its topic scan, once a
  // second: each start of the uplink held its first events back for about a second. Asked here
  // before a new producer's first record, each wait bounded by half a second (a broker answers
  // in milliseconds); while Kafka does not answer, again every 5 s (nothing is lost meanwhile:
  // the events are in the channel, and librdkafka's own scan still runs).
  //
  // The first time, the topic must also be ready: Kafka (KRaft) names a new partition's leader
  // before that broker has made the partition, and refuses a request sent in between. Such a
  // refusal is no harm in itself (the request is sent again), but librdkafka 2.0.2 then takes
  // the refused messages for delivered when a later request of the partition succeeds (see
  // on_delivery): CI lost three packs of an auto-created topic that way. So the uplink sends
  // nothing until every partition of the topic answers its leader (ListOffsets), at most
  // opts.ready_wait after its first look found Kafka answering (then it sends anyway, and says
  // so); not at all with ready_wait 0, or when the broker refuses to describe the topic to it
  // (authorization: the deliveries fail and say so). While Kafka does not answer it holds the
  // events in the channel, where they are safe anyway.
  bool topic_known = false;
  Clock::time_point topic_retry_at{};
  bool partitions_ready = false;  // once per uplink: a partition stays made
  Clock::time_point ready_by = Clock::time_point::max();
  std::string first_unready;  // why the first look found the topic not ready, said once it is
  bool offsets_reported = true;  // acks is not 0: a delivery the broker confirmed has its offset
  void learn_topic() {
    const rd_kafka_metadata_t* md = nullptr;
    topic_known = rd_kafka_metadata(rk.get(), 0, topic.get(), &md, 500) == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!topic_known) {
      topic_retry_at = Clock::now() + (partitions_ready ? std::chrono::seconds(5) : opts.retry_backoff);
      if (!partitions_ready) resume_at = topic_retry_at;  // Uplink::wait serves librdkafka meanwhile
      return;
    }
    if (!partitions_ready) {
      const rd_kafka_metadata_topic_t* t = md->topic_cnt == 1 ? &md->topics[0] : nullptr;
      std::optional<std::string> unready;
      if (t == nullptr || t->err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partition_cnt <= 0)
        unready = fmt::format("topic {}: {}", opts.topic,
                              t == nullptr                          ? "not in the metadata"
                              : t->err != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(t->err)
                                                                     : "no partitions");
      else
        unready = unready_partition(rk.get(), opts.topic, t->partition_cnt, 500);
      const auto now = Clock::now();  // after the requests, which may have waited
      if (ready_by == Clock::time_point::max()) ready_by = now + opts.ready_wait;
      // Refused for good (no authorization to see the topic): waiting would not change it; the
      // deliveries say so, once.
      const bool refused = t != nullptr && t->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
      if (!unready) {
        partitions_ready = true;
        if (log && !first_unready.empty())
          log("info", fmt::format("uplink {} -> {}: every partition answers after {} ms (at first: {})", opts.name,
                                  opts.topic, std::chrono::duration_cast<std::chrono::milliseconds>(now - (ready_by - opts.ready_wait)).count(),
                                  first_unready));
      } else if (refused || opts.ready_wait.count() <= 0) {
        partitions_ready = true;
      } else if (now >= ready_by) {
        partitions_ready = true;
        if (log)
          log("warn", fmt::format("uplink {} -> {}: sending although the topic is not ready after {} s ({})", opts.name,
                                  opts.topic, opts.ready_wait.count() / 1000.0, *unready));
      } else {
        if (first_unready.empty()) first_unready = *unready;
        topic_known = false;  // asked again shortly: a new partition is made in milliseconds
        resume_at = topic_retry_at = now + std::chrono::milliseconds(50);
      }
    }
    rd_kafka_metadata_destroy(md);
  }

  void note_error(rd_kafka_resp_err_t err, const std::string& reason) {
    if (err == last_err) return;  // once per change of state
    last_err = err;
    m.last_error = reason;
    if (log) log("warn", fmt::format("uplink {} -> {}: {}", opts.name, opts.topic, reason));
  }

  void note_ok() {
    if (last_err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
    last_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    m.last_error.clear();
    if (log) log("info", fmt::format("uplink {} -> {}: deliveries succeed again", opts.name, opts.topic));
  }

  void on_delivery(const rd_kafka_message_t* msg) {
    const auto ticket = reinterpret_cast<std::uintptr_t>(msg->_private);
    Entry& e = inflight[static_cast<std::size_t>(ticket - front_ticket)];
    e.err = msg->err;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR && msg->offset < 0 && offsets_reported) {
      // Reported delivered without an offset: librdkafka 2.0.2 acknowledges the messages of a
      // failed request when a later request of the partition succeeds ("implicitly acked by
      // subsequent batch success", rd_kafka_dr_implicit_ack), assuming they were persisted
      // after all, whatever the failure was. On a partition the broker had only just created
      // (an auto-created topic: NOT_LEADER for the first request, the second accepted from a
      // producer the partition did not know yet) they were not: CI lost the first three packs
      // of a source that way, reported delivered. Not confirmed, so sent again; their identity
      // is kept and the analyzer drops a copy if they were in the log after all.
      e.state = State::kFailed;
      m.failed += e.events;
      note_error(RD_KAFKA_RESP_ERR__INCONSISTENT,
                 "a delivery was reported without an offset (implicitly acknowledged, not confirmed): sent again");
      return;
    }
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      e.state = State::kDone;
      m.delivered += e.events;
      note_ok();
    } else if (permanent(msg->err) && !e.alone) {
      refused_in_batch(e, msg->len);
    } else if (permanent(msg->err)) {
      e.state = State::kPermanent;
    } else {
      e.state = State::kFailed;
      m.failed += e.events;
      note_error(msg->err, fmt::format("delivery failed: {}", rd_kafka_err2str(msg->err)));
    }
  }

  // `e`, a Kafka record of `len` bytes, refused for good by the broker, which may have refused
  // its batch for another record's fault or for the batch's size.
  void refused_in_batch(Entry& e, std::size_t len) {
    const bool one_event = !e.pack || e.events == 1;
    if (too_large(e.err) && one_event && len >= producer_batch) {  // alone in its batch: its own size
      e.state = State::kPermanent;
      return;
    }
    m.resent_refused += e.events;
    // For size: halved batches (from the sending producer's, once per producer: the batches it
    // has in flight may all come back refused), or, once a pack fills at least half a batch,
    // halved packs (from this one's size); neither below 1 KiB.
    const std::size_t pack_before = pack_limit;
    const std::uint64_t batch_before = batch_limit;
    if (too_large(e.err)) {
      regrow_at = Clock::now() + opts.regrow_after;
      if (e.pack && e.events > 1 && 2 * len > producer_batch)
        pack_limit = std::max<std::size_t>(std::min<std::size_t>(1024, opts.pack_bytes), std::min(pack_limit, len / 2));
      else
        batch_limit = std::max<std::uint64_t>(std::min<std::uint64_t>(1024, batch_first), std::min(batch_limit, producer_batch / 2));
    }
    // Sent again in smaller batches or packs than it went in; else one at a time.
    const bool smaller = batch_limit < producer_batch || (e.pack && e.events > 1 && pack_limit < len);
    if (too_large(e.err) && smaller) {
      e.state = State::kShrink;
    } else {
      e.state = State::kSplit;
      alone_until = std::max(alone_until, e.next);
    }
    if (log && (pack_limit != pack_before || batch_limit != batch_before || e.state == State::kSplit))
      log("warn", fmt::format("uplink {} -> {}: a batch holding {} was refused ({}): {}", opts.name, opts.topic,
                              e.pack ? fmt::format("a pack of {} events, {} bytes,", e.events, len) : "an event",
                              rd_kafka_err2str(e.err),
                              e.state == State::kSplit
                                  ? "its events are sent again one at a time"
                                  : fmt::format("its events are sent again, and from now on {}batches are at most {} "
                                                "bytes (is the topic's max.message.bytes small?)",
                                                opts.packed ? fmt::format("packs are at most {} bytes and ", pack_limit)
                                                            : "",
                                                batch_limit)));
  }

  // Moves a permanently failed event (each event of a pack, read again from the channel,
  // which still holds them: the cursor is not past them) to the dead-letter channel. False: the
  // dead-letter channel is full; the entry keeps its place (and the channel cursor stays before
  // it) and is tried again on a later pass, from the first of its events not moved yet.
  [[nodiscard]] bool dead_letter(Entry& e) {
    if (e.pack) {
      std::uint32_t visited = 0;
      bool full = false;
      (void)channel.walk(
          [&](const core::Record& r) {
            if (r.position >= e.next) return false;
            if (visited++ < e.dead_lettered) return true;  // moved on an earlier pass
            Entry one{r.position, r.next, r.id, r.payload, State::kPermanent, e.err, 1, false};
            if (!dead_letter(one)) {
              full = true;
              return false;
            }
            ++e.dead_lettered;
            return true;
          },
          e.pos);
      if (full) return false;
      if (visited < e.events) {  // the walk stops at a damaged record: say what it could not reach
        m.dropped += e.events - visited;
        if (log)
          log("error", fmt::format("uplink {}: {} events of a refused pack from {}/{} dropped: a damaged channel "
                                   "record stopped the walk to the dead-letter channel",
                                   opts.name, e.events - visited, e.id.source_id, e.id.sequence));
      }
      return true;
    }
    const std::string why = rd_kafka_err2str(e.err);
    if (dlq) {
      // Waiting for room (or for a sync that failed): tried again 100 ms later, not on every
      // pass (an append that cannot sync would otherwise write a copy per pass).
      if (dlq_full_ && Clock::now() < dlq_retry_at_) return false;
      const core::AppendStatus st = dlq->append(e.id, e.payload);
      if (st == core::AppendStatus::kOk) {
        ++m.dead_lettered;
        m.dead_letter_waiting = 0;
        if (dlq_full_) {
          dlq_full_ = false;
          if (log) log("info", fmt::format("uplink {}: the dead-letter channel takes events again", opts.name));
        }
        if (log) log("warn", fmt::format("uplink {}: event {}/{} to the dead-letter channel: {}", opts.name,
                                         e.id.source_id, e.id.sequence, why));
        return true;
      }
      // kSyncFailed: in the channel but not known durable: appended again (the same identity),
      // as the channel asks, until it is.
      if (st == core::AppendStatus::kFull || st == core::AppendStatus::kTimeout || st == core::AppendStatus::kSyncFailed) {
        if (!dlq_full_ && log)
          log("warn", fmt::format("uplink {}: the dead-letter channel {} {}: event {}/{} ({}) waits, and the channel "
                                  "cursor with it (a dead-letter channel needs a reader that commits)",
                                  opts.name, opts.dead_letter->path().string(),
                                  st == core::AppendStatus::kSyncFailed ? "could not sync" : "is full",
                                  e.id.source_id, e.id.sequence, why));
        dlq_full_ = true;
        dlq_retry_at_ = Clock::now() + std::chrono::milliseconds(100);
        m.dead_letter_waiting = 1;
        return false;
      }
      if (st == core::AppendStatus::kBroken)
        throw core::Error(fmt::format("uplink {}: the dead-letter channel {} was truncated under this process: "
                                      "stopping (nothing is lost: run again)",
                                      opts.name, opts.dead_letter->path().string()));
      ++m.dropped;  // kTooLarge: cannot be, the channel takes what ours holds (checked at start)
      if (log) log("error", fmt::format("uplink {}: event {}/{} dropped ({}): the dead-letter channel refused it: {}",
                                        opts.name, e.id.source_id, e.id.sequence, why, core::to_string(st)));
      return true;
    }
    ++m.dropped;
    if (log) log("error", fmt::format("uplink {}: event {}/{} dropped ({}): no dead-letter channel is configured",
                                      opts.name, e.id.source_id, e.id.sequence, why));
    return true;
  }

  // Pops delivered (and dead-lettered) events from the front; commits the channel up to them.
  std::size_t advance() {
    std::size_t n = 0;
    std::uint64_t commit_to = 0, records = 0;
    while (!inflight.empty()) {
      Entry& e = inflight.front();
      if (e.state == State::kPermanent) {
        if (!dead_letter(e)) break;  // the dead-letter channel is full: tried again next pass
        e.state = State::kDone;
      }
      if (e.state != State::kDone) break;
      commit_to = e.next;
      records += e.events;
      inflight_events -= e.events;
      inflight.pop_front();
      ++front_ticket;
      ++n;
    }
    if (commit_to != 0) consumer.commit(commit_to, records);  // the entries' own count: no walk
    if (!inflight.empty() && (inflight.front().state == State::kFailed || inflight.front().state == State::kShrink ||
                              inflight.front().state == State::kSplit))
      rewinding = true;
    if (rewinding) {
      // Wait until librdkafka has resolved every message (it holds pointers into the channel
      // only until then), then go back to the first undelivered event.
      const bool unresolved = std::any_of(inflight.begin(), inflight.end(),
                                          [](const Entry& e) { return e.state == State::kPending; });
      if (!unresolved) {
        // Everything from `back` is read and sent again, refused events included: they are
        // dead-lettered when they come back refused (doing it here too would do it twice).
        const std::uint64_t back = inflight.empty() ? consumer.read_position() : inflight.front().pos;
        front_ticket += inflight.size();
        inflight.clear();
        inflight_events = 0;
        (void)consumer.seek(back);
        ++m.rewinds;
        rewinding = false;
        resume_at = Clock::now() + opts.retry_backoff;
        if (rd_kafka_fatal_error(rk.get(), nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
          char reason[512];
          rd_kafka_fatal_error(rk.get(), reason, sizeof reason);
          if (log) log("warn", fmt::format("uplink {}: producer fatal error ({}): new producer", opts.name, reason));
          replace_producer();
        } else if (producer_batch != batch_limit) {  // nothing in flight: a producer with smaller batches
          replace_producer();
        }
      }
    }
    // Nothing in flight: whatever the reader stepped over after the last entry (a dead writer's
    // closed claim, damage it resynchronised past, a pad) holds nothing to send, and the cursor
    // goes past it too; else it would wait there for the next event (and `uplink --drain` for
    // ever). Everything read before it was delivered: the reader seeks back to what it did not
    // hand to librdkafka.
    if (inflight.empty() && !rewinding && consumer.read_position() > consumer.committed()) consumer.commit();
    return n;
  }

  // The record just produced goes out now, alone (flush overrides linger.ms), and its delivery
  // report is served if it comes within 100 ms; else at the next do_work(). (on_delivery only
  // changes entries, never adds or removes one: references into `inflight` stay valid.)
  void send_alone() { (void)rd_kafka_flush(rk.get(), 100); }

  std::size_t produce() {
    const auto now = Clock::now();
    if (rewinding || now < resume_at) return 0;
    if (now >= regrow_at && !regrow()) return 0;
    if (!topic) {
      topic.reset(rd_kafka_topic_new(rk.get(), opts.topic.c_str(), nullptr));
      if (!topic) {  // librdkafka refuses the name: said once, tried again after the back-off
        const rd_kafka_resp_err_t err = rd_kafka_last_error();
        note_error(err, fmt::format("cannot use topic '{}': {}", opts.topic, rd_kafka_err2str(err)));
        resume_at = now + opts.retry_backoff;
        return 0;
      }
    }
    if (!topic_known && now >= topic_retry_at) learn_topic();
    if (!partitions_ready) return 0;
    return opts.packed ? produce_packs() : produce_events();
  }

  // regrow_after without a refusal for size: packs and batches twice as large again, up to the
  // configured sizes. A new batch.size needs a new producer, made once nothing is in flight
  // (false until then: nothing new is sent meanwhile, a pause of about a round trip).
  bool regrow() {
    if (batch_limit < batch_first && !inflight.empty()) return false;
    const std::size_t pack_before = pack_limit;
    const std::uint64_t batch_before = batch_limit;
    pack_limit = std::min(opts.pack_bytes, pack_limit * 2);
    if (batch_limit < batch_first) {
      batch_limit = std::min(batch_first, batch_limit * 2);
      replace_producer();
    }
    const bool smaller = pack_limit < opts.pack_bytes || batch_limit < batch_first;
    regrow_at = smaller ? Clock::now() + opts.regrow_after : Clock::time_point::max();
    if (log && (pack_limit != pack_before || batch_limit != batch_before))
      log("info", fmt::format("uplink {} -> {}: no refusal for size in {} s: {}batches are at most {} bytes again",
                              opts.name, opts.topic, opts.regrow_after.count() / 1000.0,
                              opts.packed ? fmt::format("packs are at most {} bytes and ", pack_limit) : "",
                              batch_limit));
    return true;
  }

  // Packed mode: consecutive records of one source go into one Kafka record (kafka.h has the
  // format), at most opts.pack_bytes; a pack is cut at a change of source and at the end of
  // what the channel has now (latency over fill: librdkafka's linger batches the packs).
  std::size_t produce_packs() {
    std::size_t sent = 0;
    core::Record recs[512];
    std::uint64_t pos = 0, next = 0;
    core::EventId first{};
    std::uint32_t count = 0;
    std::uint64_t bytes = 0;
    // Hands the pack to librdkafka; false: refused for now (the caller stops; the channel is
    // rewound to the pack's first record).
    auto flush = [&]() -> bool {
      if (count == 0) return true;
      unsigned char key[8];
      for (int b = 0; b < 8; ++b) key[b] = static_cast<unsigned char>(first.source_id >> (56 - 8 * b));
      const std::uint64_t ticket = front_ticket + inflight.size();
      inflight.push_back({pos, next, first, {}, State::kPending, RD_KAFKA_RESP_ERR_NO_ERROR, count, true});
      inflight_events += count;
      // The pack's bytes move to its entry (a deque: they stay put) and librdkafka reads them
      // there, without a copy; a pack cut well short of its reserved size gives the rest back.
      std::string& bytes_held = inflight.back().packed;
      bytes_held = std::move(pack);
      if (bytes_held.size() < bytes_held.capacity() / 2) bytes_held.shrink_to_fit();
      pack = std::string();
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          rk.get(), RD_KAFKA_V_RKT(topic.get()), RD_KAFKA_V_MSGFLAGS(0),
          RD_KAFKA_V_VALUE(bytes_held.data(), bytes_held.size()), RD_KAFKA_V_KEY(key, sizeof key),
          RD_KAFKA_V_HEADER(kPackedHeader, "1", 1),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(ticket))), RD_KAFKA_V_END);
      const std::uint32_t n = count;
      const std::size_t len = bytes_held.size();
      count = 0;
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR || permanent(err)) {
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {  // refused before sending: this pack's own fault
          inflight.back().err = err;
          if (n > 1) refused_in_batch(inflight.back(), len);  // (not expected: pack_bytes fits message.max.bytes)
          else inflight.back().state = State::kPermanent;
        } else {
          sent += n;
          m.sent += n;
          m.bytes += bytes;
        }
        bytes = 0;
        return true;
      }
      inflight_events -= inflight.back().events;
      inflight.pop_back();
      (void)consumer.seek(pos);
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        note_error(err, fmt::format("produce refused: {}", rd_kafka_err2str(err)));
        resume_at = Clock::now() + opts.retry_backoff;
      }
      return false;
    };
    while (inflight_events + count < opts.max_in_flight) {
      // One at a time: read one (the rest would be read again after each).
      const std::size_t want = consumer.read_position() < alone_until
                                   ? 1
                                   : std::min<std::size_t>(512, opts.max_in_flight - inflight_events - count);
      const std::size_t n = consumer.poll(std::span(recs, want));
      if (n == 0) break;
      for (std::size_t i = 0; i < n; ++i) {
        const core::Record& r = recs[i];
        const bool one_at_a_time = r.position < alone_until;
        const bool alone = one_at_a_time || kPackedMagicSize + kPackedEntryHeader + r.payload.size() > pack_limit;
        if (count != 0 && (alone || r.id.source_id != first.source_id ||
                           pack.size() + kPackedEntryHeader + r.payload.size() > pack_limit)) {
          if (!flush()) return sent;
        }
        if (one_at_a_time && !inflight.empty()) {  // after the one in flight is resolved
          (void)consumer.seek(r.position);
          return sent;
        }
        if (count == 0) {
          pos = r.position;
          first = r.id;
        }
        // Room for a whole pack at once (appending never moves it); flush() gives back what a
        // short pack does not use.
        if (pack.empty()) pack.reserve(std::max<std::size_t>(pack_limit, kPackedMagicSize + kPackedEntryHeader + r.payload.size()));
        append_packed(pack, r.id, r.timestamp_ns, r.payload);
        next = r.next;
        bytes += r.payload.size();
        ++count;
        // An event larger than a pack travels alone, so that a refusal of it (too large for
        // the topic) dead-letters it and not its neighbours.
        if (alone && !flush()) return sent;
        if (one_at_a_time) {
          if (!inflight.empty()) inflight.back().alone = true;
          (void)consumer.seek(r.next);
          send_alone();
          return sent;
        }
      }
    }
    (void)flush();
    return sent;
  }

  std::size_t produce_events() {
    std::size_t sent = 0;
    core::Record recs[512];
    while (inflight.size() < opts.max_in_flight) {
      const std::size_t want = consumer.read_position() < alone_until
                                   ? 1
                                   : std::min<std::size_t>(512, opts.max_in_flight - inflight.size());
      const std::size_t n = consumer.poll(std::span(recs, want));
      if (n == 0) break;
      for (std::size_t i = 0; i < n; ++i) {
        const core::Record& r = recs[i];
        unsigned char idh[16];
        encode_identity(r.id, idh);
        unsigned char key[8];
        for (int b = 0; b < 8; ++b) key[b] = static_cast<unsigned char>(r.id.source_id >> (56 - 8 * b));
        const bool one_at_a_time = r.position < alone_until;
        if (one_at_a_time && !inflight.empty()) {  // after the one in flight is resolved
          (void)consumer.seek(r.position);
          return sent;
        }
        const std::uint64_t ticket = front_ticket + inflight.size();
        inflight.push_back({r.position, r.next, r.id, r.payload});
        inflight.back().alone = one_at_a_time;
        ++inflight_events;
        const rd_kafka_resp_err_t err = rd_kafka_producev(
            rk.get(), RD_KAFKA_V_RKT(topic.get()),
            RD_KAFKA_V_VALUE(const_cast<std::byte*>(r.payload.data()), r.payload.size()),  // no copy
            RD_KAFKA_V_KEY(key, sizeof key), RD_KAFKA_V_HEADER(kIdentityHeader, idh, sizeof idh),
            // The event's time (the channel record's), not the send time: a re-sent event keeps it,
            // and ingest-time windows agree with packed mode, which carries it per event.
            RD_KAFKA_V_TIMESTAMP(r.timestamp_ns / 1000000),
            RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(ticket))), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          ++sent;
          ++m.sent;
          m.bytes += r.payload.size();
        } else if (permanent(err)) {  // refused before sending (e.g. larger than message.max.bytes)
          inflight.back().state = State::kPermanent;
          inflight.back().err = err;
        }
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR || permanent(err)) {
          if (one_at_a_time) {
            (void)consumer.seek(r.next);
            send_alone();
            return sent;
          }
          continue;
        }
        // Queue full or a transient refusal: take it back and resume from this record later.
        inflight.pop_back();
        --inflight_events;
        (void)consumer.seek(r.position);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          note_error(err, fmt::format("produce refused: {}", rd_kafka_err2str(err)));
          resume_at = Clock::now() + opts.retry_backoff;
        }
        return sent;
      }
    }
    return sent;
  }
};

Uplink::Uplink(core::Channel& channel, UplinkOptions options, LogFn log)
    : impl_(std::make_unique<Impl>(channel, std::move(options), std::move(log))) {}

Uplink::~Uplink() = default;

std::size_t Uplink::do_work() {
  Impl& u = *impl_;
  rd_kafka_poll(u.rk.get(), 0);
  std::size_t n = u.advance();
  n += u.produce();
  u.m.in_flight = u.inflight_events;
  u.m.committed = u.consumer.committed();
  u.m.batch_bytes = u.batch_limit;
  u.m.pack_bytes = u.opts.packed ? u.pack_limit : 0;
  std::lock_guard lock(u.metrics_mu);
  u.published = u.m;
  return n;
}

void Uplink::wait(std::chrono::milliseconds timeout) {
  Impl& u = *impl_;
  if (!u.inflight.empty() || u.rewinding || Clock::now() < u.resume_at) {
    rd_kafka_poll(u.rk.get(), static_cast<int>(std::min<long long>(timeout.count(), 10)));
  } else if (!u.consumer.wait(timeout) && u.consumer.broken()) {
    throw core::Error(fmt::format("uplink '{}': channel {} was truncated under it; stop every process using it and "
                                  "start again (the next open grows the file back and recovers it)",
                                  u.opts.name, u.channel.path().string()));
  }
}

bool Uplink::flush(std::chrono::milliseconds timeout) {
  Impl& u = *impl_;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    rd_kafka_poll(u.rk.get(), 10);
    u.advance();
    if (u.inflight.empty() && !u.rewinding) return true;
  }
  return false;
}

void Uplink::run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
    if (do_work() == 0) wait(std::chrono::milliseconds(100));
  }
  flush(std::chrono::seconds(10));
}

UplinkMetrics Uplink::metrics() const {
  std::lock_guard lock(impl_->metrics_mu);
  return impl_->published;
}

}  // namespace tributary::uplink
