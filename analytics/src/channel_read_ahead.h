// The analyzer's read-ahead of a channel input: a thread that polls the channel (framing each
// record, checking its CRC32C, the first touch of the mapping's pages) while the job parses the
// batch before, and drops the mapping of the pages behind what the job is done with
// (Consumer::release). On a 2-core node that is a third of a drain's time moved off the parsing
// thread, and the unmapping a process otherwise pays at exit.
//
// The consumer is the thread's alone between start and stop(): the job hands it commits, which
// it makes before its next poll (a commit or a stop interrupts its wait on an empty channel),
// and stop() makes the last one asked for. Batches come out in the channel's order; each stays valid until the
// next call to next() (its records point into the mapping, which the consumer keeps until it
// commits past them, and the job commits only what it has processed).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "tributary/core/channel.h"

namespace tributary::analytics::detail {

class ChannelReadAhead {
 public:
  static constexpr std::size_t kBatch = 512;   // records per poll
  static constexpr std::size_t kBatches = 8;   // polled ahead at most (the reader waits for half free)

  // Starts reading `consumer` (of `channel`, both outliving this) from its read position.
  // `drain`: at the end of what is written, at_end() turns true (the job stops then).
  // `idle_wait`: how long one wait on an empty channel lasts at most (Consumer::wait also
  // reclaims a dead writer's record).
  ChannelReadAhead(core::Channel& channel, core::Consumer& consumer, bool drain,
                   std::chrono::milliseconds idle_wait = std::chrono::milliseconds(100));
  ~ChannelReadAhead();  // stop(), errors dropped
  ChannelReadAhead(const ChannelReadAhead&) = delete;
  ChannelReadAhead& operator=(const ChannelReadAhead&) = delete;

  // The next batch, waiting up to `timeout` for one; empty if none came. Releases the batch the
  // previous call returned. Rethrows what stopped the thread.
  std::span<const core::Record> next(std::chrono::milliseconds timeout);

  // Asks for consumer.commit(position, records): made by the thread before its next poll (at
  // once if it waits on an empty channel or for a free batch), or by this call once stopped. A
  // position not past the last one asked for is no request. A later request replaces an
  // earlier one not yet made (`records` count from the last commit made: they are added up).
  void commit(std::uint64_t position, std::uint64_t records);

  // Drain only: everything written to the channel was polled and handed over.
  [[nodiscard]] bool at_end();

  // Stops and joins the thread, then makes the commit asked for last and releases the pages of
  // what the job is done with. Idempotent.
  void stop();

  [[nodiscard]] std::uint64_t batches() const noexcept { return batches_; }  // handed over
  // The thread waits for the job to free batches: it is as far ahead as it goes.
  [[nodiscard]] bool waiting_for_room();

 private:
  struct Batch {
    std::vector<core::Record> records = std::vector<core::Record>(kBatch);
    std::size_t size = 0;
  };
  void run();
  std::size_t in_use() const noexcept { return filled_ + (held_ ? 1 : 0); }  // batches; under mu_

  core::Channel& channel_;
  core::Consumer& consumer_;
  const bool drain_;
  const std::chrono::milliseconds idle_wait_;
  std::mutex mu_;
  std::condition_variable reader_cv_;  // a batch freed, a stop
  std::condition_variable job_cv_;     // a batch filled, the end, an error
  Batch batches_ring_[kBatches];
  std::size_t head_ = 0;    // next batch to hand over
  std::size_t filled_ = 0;  // ready to hand over
  bool held_ = false;       // the job holds the batch before head_
  bool reader_waiting_ = false;   // for a free batch
  bool channel_waiting_ = false;  // in consumer_.wait()
  bool job_waiting_ = false;
  bool at_end_ = false;
  bool stop_ = false;
  bool stopped_ = false;
  bool commit_asked_ = false;
  std::uint64_t commit_position_ = 0;
  std::uint64_t commit_records_ = 0;
  std::uint64_t batches_ = 0;
  std::uint64_t done_ = 0;  // the end of the last batch the job released
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace tributary::analytics::detail
