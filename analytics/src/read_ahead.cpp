#include "read_ahead.h"

#include <algorithm>
#include <utility>

namespace tributary::analytics::detail {
namespace {

// librdkafka's queue is emptied into the read-ahead at least this often (messages handed over):
// a fetch response lands in it whole, so it is kept far below its own bound.
constexpr unsigned kFillEvery = 256;

std::size_t cost(const rd_kafka_message_t& m) noexcept { return m.len + m.key_len + ReadAhead::kMessageOverhead; }
bool counted(const rd_kafka_message_t& m) noexcept { return m.err == RD_KAFKA_RESP_ERR_NO_ERROR && m.partition >= 0; }

}  // namespace

ReadAhead::ReadAhead(std::string topic, std::size_t budget_bytes, std::size_t librdkafka_bound_bytes)
    : topic_(std::move(topic)),
      budget_(std::max<std::size_t>(budget_bytes, 2 * (kMessageOverhead + 1))),
      librdkafka_bound_(librdkafka_bound_bytes) {}

void ReadAhead::attach(rd_kafka_t* rk) {
  queue_.clear();
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
  // Not done: the partition is not assigned (any more); nothing of it is fetched, and a later
  // assignment starts it unpaused.
  part(partition).paused = pause && done;
  if (pause && done) ++pauses_;
}

void ReadAhead::wake(int partition) {
  // Any request through the leader's connection wakes its broker thread, which then decides
  // again what to fetch. The answer itself is not needed.
  std::int64_t low = 0, high = 0;
  (void)rd_kafka_query_watermark_offsets(rk_, topic_.c_str(), partition, &low, &high, 1000);
  ++wakeups_;
}

void ReadAhead::admit(Message m) {
  if (counted(*m)) {
    Part& p = part(m->partition);
    p.seen = true;
    p.bytes += cost(*m);
    if (!p.paused && p.bytes >= budget_) set_paused(m->partition, true);
  }
  queue_.push_back(std::move(m));
}

std::size_t ReadAhead::fill() {
  since_fill_ = 0;
  std::size_t moved = 0;
  while (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 0)) {
    moved += m->len + m->key_len;
    admit(Message(m));
  }
  return moved;
}

Message ReadAhead::poll(int timeout_ms) {
  if (queue_.empty() || since_fill_ >= kFillEvery) fill();
  if (queue_.empty()) {
    Message m(rd_kafka_consumer_poll(rk_, timeout_ms));
    if (!m) return m;
    admit(std::move(m));
    if (queue_.empty()) return {};  // a callback inside forgot it
  }
  Message m = std::move(queue_.front());
  queue_.pop_front();
  ++since_fill_;
  if (counted(*m)) {
    Part& p = part(m->partition);
    p.bytes -= std::min(p.bytes, cost(*m));
    if (p.paused && p.bytes <= budget_ / 2) {
      // Every partition seen here paused: the fetcher has nothing in flight and sleeps.
      const bool fetcher_idle =
          std::all_of(parts_.begin(), parts_.end(), [](const Part& q) { return q.paused || !q.seen; });
      set_paused(m->partition, false);
      if (fetcher_idle) wake(m->partition);
    }
  }
  return m;
}

void ReadAhead::catch_up() {
  if (fill() < librdkafka_bound_ / 2) return;
  for (std::size_t p = 0; p < parts_.size(); ++p)
    if (parts_[p].seen && !parts_[p].paused) wake(static_cast<int>(p));
}

void ReadAhead::forget(int partition) {
  std::erase_if(queue_, [partition](const Message& m) { return m->partition == partition; });
  if (partition < 0 || static_cast<std::size_t>(partition) >= parts_.size()) return;
  if (parts_[static_cast<std::size_t>(partition)].paused) set_paused(partition, false);
  parts_[static_cast<std::size_t>(partition)] = Part{};
}

void ReadAhead::forget_all() {
  queue_.clear();
  for (std::size_t p = 0; p < parts_.size(); ++p)
    if (parts_[p].paused) set_paused(static_cast<int>(p), false);
  parts_.clear();
}

}  // namespace tributary::analytics::detail
