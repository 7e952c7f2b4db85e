// The uplink: ships a channel to a Kafka topic with librdkafka, as a named durable consumer of
// the channel. Events go to librdkafka straight from channel memory (no copy); the channel
// cursor is committed only up to the first event that does not yet have a successful delivery
// report, so the channel is the durable backlog while Kafka is away.
//
// Delivery failures: a message-specific permanent error (too large, invalid record) sends the
// event to the dead-letter channel, if one is configured, with a counted, logged reason; any
// other failure (timeout, broker down, unknown topic, auth) rewinds to the first undelivered
// event and re-sends from there after a back-off. Re-sent events keep their identity (the
// "tributary-id" header), so the analyzer drops the copies that Kafka already had. Errors are
// logged once per change of state, with their cause.
//
// Packed mode puts many events of one source in one Kafka record (a copy into the pack instead
// of zero copy, but one librdkafka message per pack instead of per event); a failed pack
// rewinds like an event, and a permanently refused one dead-letters its events one by one.
//
// Producer defaults (tuned for 2-core nodes, all overridable through `kafka`):
//   enable.idempotence=true acks=all compression.type=lz4 linger.ms=5 batch.size=1000000
//   message.timeout.ms=30000 (a dead broker is noticed in 30 s and the channel holds the rest)
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "tributary/core/channel.h"
#include "tributary/uplink/kafka.h"

namespace tributary::uplink {

struct UplinkOptions {
  std::string name = "uplink";  // consumer name in the channel
  std::string topic;
  Settings kafka;                         // bootstrap.servers and any librdkafka property
  // Permanent per-event failures go here (else: counted, skipped). It must take events as large
  // as `channel`'s (checked: core::Error); while it is full, the event and the cursor wait.
  core::Channel* dead_letter = nullptr;
  // Events handed to librdkafka, not yet acknowledged. librdkafka holds about 1 KB per message
  // in flight (the message, its header list, its copy in a request), so this bounds the uplink's
  // memory; it also bounds its speed to this many events per round trip to the broker. 1.5x
  // librdkafka's batch.num.messages (10,000) lets one batch build while another is in flight:
  // on a local Kafka, 15,000 shipped faster than 100,000 at a sixth of the memory
  // (bench/RESULTS.md). Raise it for a distant cluster.
  std::size_t max_in_flight = 15'000;
  // Packed mode (opt-in): consecutive events of one source in one Kafka record of at most
  // pack_bytes (format in kafka.h; the analyzer reads it natively; plain Kafka consumers see
  // packs). Far fewer records for librdkafka and the broker; per-event records stay the default.
  // Kafka refuses a whole batch (or pack) for good when it is larger than the topic's
  // max.message.bytes or holds one invalid record: its events are sent again, after a refusal
  // for size in packs and batches halved until they fit, else one at a time. Only an event
  // Kafka refuses alone goes to the dead-letter channel.
  bool packed = false;
  std::size_t pack_bytes = 256 << 10;
  std::chrono::milliseconds retry_backoff{500};
  // The topic's first records wait until every partition of it answers its leader (a topic
  // just made, e.g. auto-created, is not ready at once), at most this long after Kafka first
  // answers (then they go, with a warning); meanwhile the events wait in the channel. 0: no
  // wait. A topic the producer may not describe (authorization) is not waited for.
  std::chrono::milliseconds ready_wait{10'000};
  // Batches and packs halved by a refusal for size are tried at twice their size again after
  // this long without another (up to librdkafka's batch.size and pack_bytes as configured): a
  // topic whose max.message.bytes was raised gets full batches back, one that was not costs
  // one refused batch, sent again, per period.
  std::chrono::milliseconds regrow_after{std::chrono::minutes(10)};
};

struct UplinkMetrics {
  // Counts of events (in packed mode too: a pack counts its events).
  std::uint64_t sent = 0;           // events handed to librdkafka
  std::uint64_t bytes = 0;          // their payload bytes
  std::uint64_t delivered = 0;      // events with a successful delivery report
  std::uint64_t failed = 0;         // events whose delivery failed (re-sent later)
  std::uint64_t dead_lettered = 0;  // permanent failures moved to the dead-letter channel
  std::uint64_t dropped = 0;        // permanent failures with no dead-letter channel configured
  // Refused events waiting for room in a full dead-letter channel, the channel cursor with them
  // (a gauge: 0 once it takes them; a dead-letter channel needs a reader that commits)
  std::uint64_t dead_letter_waiting = 0;
  std::uint64_t rewinds = 0;        // times the uplink went back to re-send
  std::uint64_t resent_refused = 0; // events of batches Kafka refused for good, sent again
  std::uint64_t in_flight = 0;
  std::uint64_t committed = 0;      // channel position committed
  std::uint64_t batch_bytes = 0;    // librdkafka's batch.size in use (halved by refusals for size)
  std::uint64_t pack_bytes = 0;     // packed mode: the largest pack in use (likewise); else 0
  std::string last_error;           // empty when healthy
};

using LogFn = std::function<void(std::string_view level, const std::string& message)>;

class Uplink {
 public:
  Uplink(core::Channel& channel, UplinkOptions options, LogFn log = {});
  ~Uplink();
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  // Serves delivery reports, commits, produces what the channel has. Non-blocking.
  std::size_t do_work();
  // Sleeps until there may be work: channel data, delivery reports, or `timeout`.
  void wait(std::chrono::milliseconds timeout);
  // Tries to get everything read so far delivered and committed within `timeout`.
  bool flush(std::chrono::milliseconds timeout);
  // Runs do_work/wait until *stop becomes true, then flushes (up to 10 s).
  void run(const std::atomic<bool>& stop);

  [[nodiscard]] UplinkMetrics metrics() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tributary::uplink
