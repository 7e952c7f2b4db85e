// The analyzer's read-ahead of its Kafka input, with its own flow control.
//
// librdkafka 2.0.2 stops fetching a partition once its local queue holds queued.min.messages
// or queued.max.messages.kbytes, and looks again only when its broker thread next wakes for
// another reason: up to a second later on a quiet connection (fetch.queue.backoff.ms, which
// bounds that wait, came in 2.1). An analyzer that parses slower than the broker sends, which
// is the normal case on a 2-core node that shares its cores with the broker, idled most of each
// second that way. So the messages are taken out of librdkafka's queue as they arrive and held
// here, and the bound is kept here instead, with Kafka's own way to push back: a partition
// whose held bytes reach the budget is paused (rd_kafka_pause_partitions) and resumed once they
// fall to half of it. A pause makes librdkafka drop what it fetched past the last message
// handed over (a version barrier) and, on resume, fetch again from there: no message is
// skipped or handed over twice. So partitions are paused only after librdkafka's queue was
// emptied into the read-ahead, and the pause drops no more than a fetch in flight; a partition
// holds at most its budget plus what librdkafka had queued (its own bound, or twice that when
// it fetches as fast as its queue is emptied) plus one message, memory that librdkafka's queue
// held before. A resume does not wake librdkafka's fetcher
// either (a broker thread with nothing in flight sleeps up to a second), so each resume is
// followed by a request to the partition's leader, which does: a query of its end offset, sent
// from a helper thread so that the job does not wait for the answer (a stop waits for it, at
// most a second).
//
// Messages come out in the order librdkafka handed them over (per partition, the log's), except
// errors (a fatal error, a failed fetch), which come out first. After a seek, a restore or a
// revoke of partitions, the caller forgets what is held of them; errors are never forgotten.
#pragma once

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tributary::analytics::detail {

struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const noexcept { rd_kafka_message_destroy(m); }
};
using Message = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

class ReadAhead {
 public:
  // What a held message costs beside its payload and key: librdkafka's op around it and its
  // share of the fetch buffer (measured: peak RSS per held 110-byte message, about 360 bytes).
  static constexpr std::size_t kMessageOverhead = 256;

  // `budget_bytes`: the memory held per partition, each message counted as its payload, key
  // and kMessageOverhead. `librdkafka_bound_bytes`: queued.max.messages.kbytes as set on the
  // consumer (see catch_up()).
  ReadAhead(std::string topic, std::size_t budget_bytes, std::size_t librdkafka_bound_bytes);
  ~ReadAhead();
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // Reads from `rk` (a consumer whose partitions' messages rd_kafka_consumer_poll returns; not
  // owned; null: none) from now on. Nothing is held.
  void attach(rd_kafka_t* rk);

  // The next message, waiting up to `timeout_ms` for one; null if none came. Error and
  // end-of-partition messages come through in their place. librdkafka's callbacks (a
  // rebalance) run inside, as in rd_kafka_consumer_poll.
  Message poll(int timeout_ms);

  // After the job read nothing for a while (a commit): moves what librdkafka fetched meanwhile
  // into the read-ahead. Whenever that came near librdkafka's own bound (where its fetcher
  // stops and may not look again for a second), the fetcher is woken for every partition not
  // paused.
  void catch_up();

  // Drops what is held of `partition` (resuming it if it was paused here): after a seek or a
  // restore of it, or when it is revoked. forget_all(): every partition. Errors stay.
  void forget(int partition);
  void forget_all();

  [[nodiscard]] std::size_t held_bytes(int partition) const noexcept;
  [[nodiscard]] std::size_t held_messages() const noexcept { return queue_.size(); }
  [[nodiscard]] std::size_t held_errors() const noexcept { return errors_.size(); }
  [[nodiscard]] bool paused(int partition) const noexcept;
  [[nodiscard]] std::uint64_t pauses() const noexcept { return pauses_; }
  [[nodiscard]] std::uint64_t wakeups() const noexcept { return wakeups_; }  // asked for
  [[nodiscard]] std::uint64_t wakeups_answered() const noexcept;             // sent and answered

 private:
  struct Part {
    std::size_t bytes = 0;
    bool paused = false;
    bool seen = false;  // a message of it came (it is assigned here)
  };
  // The helper thread that sends the wake-up requests; started at the first one.
  class Waker {
   public:
    Waker(rd_kafka_t* rk, const std::string& topic);
    ~Waker();
    void wake(int partition);
    [[nodiscard]] std::uint64_t answered() const noexcept { return answered_.load(); }

   private:
    void run();
    rd_kafka_t* rk_;
    std::string topic_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<int> want_;
    bool stop_ = false;
    std::atomic<std::uint64_t> answered_{0};
    std::thread thread_;
  };

  Part& part(int partition);
  void fill();
  void admit(Message m);
  void set_paused(int partition, bool pause);
  void wake(int partition);

  std::string topic_;
  std::size_t budget_;
  std::size_t librdkafka_bound_;
  rd_kafka_t* rk_ = nullptr;
  std::deque<Message> queue_;
  std::deque<Message> errors_;  // handed over first
  std::vector<Part> parts_;     // by partition
  std::unique_ptr<Waker> waker_;
  std::uint64_t pauses_ = 0;
  std::uint64_t wakeups_ = 0;
  std::uint64_t answered_before_ = 0;  // by the wakers of earlier consumers
  unsigned since_fill_ = 0;  // messages handed over since librdkafka's queue was last emptied
};

}  // namespace tributary::analytics::detail
