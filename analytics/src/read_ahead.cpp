#include "read_ahead.h"

#include <algorithm>
#include <utility>

#include "tributary/uplink/kafka.h"

namespace tributary::analytics::detail {
namespace {

// librdkafka's queue is emptied into the read-ahead at least this often (messages handed over):
// a fetch response lands in it whole, so it is kept far below its own bound.
constexpr unsigned kFillEvery = 256;

std::size_t cost(const rd_kafka_message_t& m) noexcept { return m.len + m.key_len + ReadAhead::kMessageOverhead; }
bool counted(const rd_kafka_message_t& m) noexcept { return m.err == RD_KAFKA_RESP_ERR_NO_ERROR && m.partition >= 0; }

}  // namespace

ReadAhead::Waker::Waker(rd_kafka_t* rk, const std::string& topic) : rk_(rk), topic_(topic), thread_([this] { run(); }) {}

ReadAhead::Waker::~Waker() {
  {
    const std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void ReadAhead::Waker::wake(int partition) {
  {
    const std::lock_guard lock(mu_);
    if (std::find(want_.begin(), want_.end(), partition) == want_.end()) want_.push_back(partition);
  }
  cv_.notify_one();
}

void ReadAhead::Waker::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !want_.empty(); });
    if (stop_) return;
    const int partition = want_.front();
    want_.erase(want_.begin());
    lock.unlock();
    // Any request through the leader's connection wakes its broker thread, which then decides
    // again what to fetch. The answer itself is not needed; the wait for it is bounded, so a
    // stop waits at most that long.
    if (uplink::list_offset(rk_, topic_, partition, RD_KAFKA_OFFSET_END, 1000)) answered_.fetch_add(1);
    lock.lock();
  }
}

ReadAhead::ReadAhead(std::string topic, std::size_t budget_bytes, std::size_t librdkafka_bound_bytes)
    : topic_(std::move(topic)),
      budget_(std::max<std::size_t>(budget_bytes, 2 * (kMessageOverhead + 1))),
      librdkafka_bound_(librdkafka_bound_bytes) {}

ReadAhead::~ReadAhead() { attach(nullptr); }

void ReadAhead::attach(rd_kafka_t* rk) {
  if (waker_) answered_before_ += waker_->answered();
  waker_.reset();  // its last request answered (or given up on), before the handle can go
  queue_.clear();
  errors_.clear();
  parts_.clear();
  since_fill_ = 0;
  rk_ = rk;
}

ReadAhead::Part& ReadAhead::part(int partition) {
  if (static_cast<std::size_t>(partition) >= parts_.size()) parts_.resize(static_cast<std::size_t>(partition) + 1);
  return parts_[static_cast<std::size_t>(partition)];
}

std::size_t ReadAhead::held_bytes(int partition) const noexcept {
  return partition >= 0 && static_cast<std::size_t>(partition) < parts_.size()
             ? parts_[static_cast<std::size_t>(partition)].bytes
             : 0;
}

bool ReadAhead::paused(int partition) const noexcept {
  return partition >= 0 && static_cast<std::size_t>(partition) < parts_.size() &&
         parts_[static_cast<std::size_t>(partition)].paused;
}

void ReadAhead::set_paused(int partition, bool pause) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic_.c_str(), partition);
  const rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(rk_, list) : rd_kafka_resume_partitions(rk_, list);
  const bool done = err == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR;
  rd_kafka_topic_partition_list_destroy(list);
  // Not done: librdkafka does not know the partition (any more), so fetches nothing of it.
  part(partition).paused = pause && done;
  if (pause && done) ++pauses_;
}

void ReadAhead::wake(int partition) {
  if (!waker_) waker_ = std::make_unique<Waker>(rk_, topic_);
  waker_->wake(partition);
  ++wakeups_;
}

void ReadAhead::admit(Message m) {
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    // An error (a fatal one, a failed fetch): not held back by data, not forgotten with it.
    // librdkafka 2.0.2 gives a consumer-wide error partition 0, so the error code tells.
    errors_.push_back(std::move(m));
    return;
  }
  if (counted(*m)) {
    Part& p = part(m->partition);
    p.seen = true;
    p.bytes += cost(*m);
  }
  queue_.push_back(std::move(m));
}

void ReadAhead::fill() {
  since_fill_ = 0;
  std::size_t moved = 0;  // payload bytes, as librdkafka counts its bound
  while (errors_.empty()) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 0);
    if (m == nullptr) break;
    moved += m->len + m->key_len;
    admit(Message(m));
    // librdkafka fetches on while its queue is being emptied: a drain racing a fetcher as fast
    // as it stops at twice librdkafka's bound, so that what is held stays bounded.
    if (moved >= 2 * librdkafka_bound_) break;
  }
  // Paused only now that librdkafka's queue is empty: a pause drops what it still holds of the
  // partition (the version barrier) and fetches it again after the resume. Pausing at the
  // message that crossed the budget dropped the rest of its fetch response and of the queue
  // behind it: 19% of a 1 M-event topic was fetched and decompressed twice (debug=fetch).
  for (std::size_t p = 0; p < parts_.size(); ++p)
    if (!parts_[p].paused && parts_[p].bytes >= budget_) set_paused(static_cast<int>(p), true);
  if (moved < librdkafka_bound_ / 2) return;
  // librdkafka's queue came near its bound: its fetcher may have stopped and gone to sleep.
  for (std::size_t p = 0; p < parts_.size(); ++p)
    if (parts_[p].seen && !parts_[p].paused) wake(static_cast<int>(p));
}

Message ReadAhead::poll(int timeout_ms) {
  if (queue_.empty() || since_fill_ >= kFillEvery) fill();
  if (queue_.empty() && errors_.empty()) {
    Message m(rd_kafka_consumer_poll(rk_, timeout_ms));
    if (!m) return m;
    admit(std::move(m));
    fill();  // what came with it, before any pause
    // fill() may have run a rebalance callback that forgot everything held (a revoke).
    if (queue_.empty() && errors_.empty()) return nullptr;
  }
  std::deque<Message>& from = errors_.empty() ? queue_ : errors_;
  Message m = std::move(from.front());
  from.pop_front();
  ++since_fill_;
  if (counted(*m)) {
    Part& p = part(m->partition);
    p.bytes -= std::min(p.bytes, cost(*m));
    if (p.paused && p.bytes <= budget_ / 2) {
      set_paused(m->partition, false);
      wake(m->partition);
    }
  }
  return m;
}

void ReadAhead::catch_up() { fill(); }

void ReadAhead::forget(int partition) {
  std::erase_if(queue_, [partition](const Message& m) { return m->partition == partition; });
  if (partition < 0 || static_cast<std::size_t>(partition) >= parts_.size()) return;
  if (parts_[static_cast<std::size_t>(partition)].paused) {
    set_paused(partition, false);
    wake(partition);
  }
  parts_[static_cast<std::size_t>(partition)] = Part{};
}

void ReadAhead::forget_all() {
  queue_.clear();
  for (std::size_t p = 0; p < parts_.size(); ++p)
    if (parts_[p].paused) {
      set_paused(static_cast<int>(p), false);
      wake(static_cast<int>(p));
    }
  parts_.clear();
}

std::uint64_t ReadAhead::wakeups_answered() const noexcept {
  return answered_before_ + (waker_ ? waker_->answered() : 0);
}

}  // namespace tributary::analytics::detail
