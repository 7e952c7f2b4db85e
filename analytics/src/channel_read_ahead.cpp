#include "channel_read_ahead.h"

#include <fmt/format.h>

#include "tributary/core/error.h"

namespace tributary::analytics::detail {

ChannelReadAhead::ChannelReadAhead(core::Channel& channel, core::Consumer& consumer, bool drain,
                                   std::chrono::milliseconds idle_wait)
    : channel_(channel), consumer_(consumer), drain_(drain), idle_wait_(idle_wait), thread_([this] { run(); }) {}

ChannelReadAhead::~ChannelReadAhead() {
  try {
    stop();
  } catch (...) {  // noexcept destructor: a stop from here has nobody to tell
  }
}

void ChannelReadAhead::run() {
  std::unique_lock lock(mu_);
  try {
    for (;;) {
      // Room for a batch; once full, wait until half the batches are free, so that the job's
      // releases wake this thread once per few batches, not at each (a commit asked for is
      // made meanwhile: producers of a full channel may be waiting for it).
      if (in_use() == kBatches) {
        reader_waiting_ = true;
        reader_cv_.wait(lock, [this] { return stop_ || commit_asked_ || in_use() <= kBatches / 2; });
        reader_waiting_ = false;
      }
      if (stop_) return;
      const bool commit = commit_asked_;
      const std::uint64_t position = commit_position_, records = commit_records_;
      commit_asked_ = false;
      commit_records_ = 0;
      const std::uint64_t done = done_;
      const bool room = in_use() < kBatches;
      Batch& b = batches_ring_[(head_ + filled_) % kBatches];
      lock.unlock();
      if (commit) consumer_.commit(position, records);
      consumer_.release(done);  // the pages of what the job is done with, off the job's thread
      if (!room) {
        lock.lock();
        continue;
      }
      const std::size_t k = consumer_.poll(b.records);
      if (k == 0) {
        // Nothing readable. A drain read up to the write position is at its end (a record
        // reserved and not yet written, or a dead writer's, is not). Either way the thread waits
        // on the channel, which also reclaims a dead writer's record.
        const bool end = drain_ && consumer_.read_position() >= channel_.stats().write_position;
        lock.lock();
        if (end && !at_end_ && job_waiting_) job_cv_.notify_one();
        at_end_ = end;
        if (stop_ || commit_asked_) continue;
        channel_waiting_ = true;  // commit() and stop() interrupt the wait
        lock.unlock();
        if (!consumer_.wait(idle_wait_) && consumer_.broken())
          throw core::Error(fmt::format("channel {} was truncated under the analyzer; stop every process using it "
                                        "and start again (the next open grows the file back and recovers it)",
                                        channel_.path().string()));
        lock.lock();
        channel_waiting_ = false;
        continue;
      }
      b.size = k;
      lock.lock();
      at_end_ = false;
      ++filled_;
      if (job_waiting_) job_cv_.notify_one();
    }
  } catch (...) {  // channel_.stats() allocates; a truncated channel
    if (!lock.owns_lock()) lock.lock();
    channel_waiting_ = false;
    error_ = std::current_exception();
    job_cv_.notify_one();
  }
}

std::span<const core::Record> ChannelReadAhead::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (held_) {
    held_ = false;
    const Batch& done = batches_ring_[(head_ + kBatches - 1) % kBatches];
    if (done.size != 0) done_ = done.records[done.size - 1].next;
    if (reader_waiting_ && filled_ <= kBatches / 2) reader_cv_.notify_one();
  }
  if (filled_ == 0 && !error_ && !at_end_) {
    job_waiting_ = true;
    job_cv_.wait_for(lock, timeout, [this] { return filled_ != 0 || error_ || at_end_; });
    job_waiting_ = false;
  }
  if (error_) std::rethrow_exception(error_);
  if (filled_ == 0) return {};
  Batch& b = batches_ring_[head_];
  head_ = (head_ + 1) % kBatches;
  --filled_;
  held_ = true;
  ++batches_;
  return {b.records.data(), b.size};
}

void ChannelReadAhead::commit(std::uint64_t position, std::uint64_t records) {
  std::unique_lock lock(mu_);
  if (stopped_) {
    lock.unlock();
    consumer_.commit(position, records);
    return;
  }
  if (position <= commit_position_) return;  // nothing new (a checkpoint of an idle input)
  commit_asked_ = true;
  commit_position_ = position;
  commit_records_ += records;
  // Producers waiting for the space would wait for the thread's next look otherwise.
  if (channel_waiting_) consumer_.interrupt();
  reader_cv_.notify_one();  // the thread may wait for a free batch, or at a drain's end
}

bool ChannelReadAhead::waiting_for_room() {
  const std::lock_guard lock(mu_);
  return reader_waiting_;
}

bool ChannelReadAhead::at_end() {
  const std::lock_guard lock(mu_);
  if (error_) std::rethrow_exception(error_);
  return at_end_ && filled_ == 0;
}

void ChannelReadAhead::stop() {
  {
    const std::lock_guard lock(mu_);
    if (stopped_) return;
    stop_ = true;
    if (channel_waiting_) consumer_.interrupt();
  }
  reader_cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  std::unique_lock lock(mu_);
  stopped_ = true;
  const bool commit = commit_asked_;
  commit_asked_ = false;
  lock.unlock();
  if (commit) consumer_.commit(commit_position_, commit_records_);
  consumer_.release(done_);
}

}  // namespace tributary::analytics::detail
