// EventProducer: identity assignment over core::Producer.
#include "tributary/ingest/producer.h"

#include <sys/random.h>

#include <cerrno>

#include "tributary/core/error.h"

namespace tributary::ingest {

std::uint64_t new_source_id() {
  for (;;) {
    std::uint64_t id = 0;
    const ssize_t n = ::getrandom(&id, sizeof id, 0);
    if (n == static_cast<ssize_t>(sizeof id)) {
      if (id != 0 && id != core::kReleasedSourceId) return id;
      continue;
    }
    if (n < 0 && errno != EINTR) core::throw_errno("getrandom", errno);
  }
}

EventProducer::EventProducer(core::Channel& channel, const core::ProducerOptions& options)
    : EventProducer(channel, new_source_id(), 0, options) {}

EventProducer::EventProducer(core::Channel& channel, std::uint64_t source_id, std::uint64_t next_sequence,
                             const core::ProducerOptions& options)
    : producer_(channel.producer(options)), source_id_(source_id), next_(next_sequence) {}

core::AppendStatus EventProducer::append(std::span<const std::byte> payload) noexcept {
  const core::AppendStatus s = producer_.append({source_id_, next_}, payload);
  if (s == core::AppendStatus::kOk) ++next_;
  return s;
}

core::AppendStatus EventProducer::append_batch(std::span<const std::span<const std::byte>> payloads,
                                               const std::uint64_t* position) {
  scratch_.clear();
  for (std::size_t i = 0; i < payloads.size(); ++i) scratch_.push_back({{source_id_, next_ + i}, payloads[i]});
  const core::SourcePosition sp{source_id_, next_ + payloads.size(), position ? *position : 0};
  const core::AppendStatus s = producer_.append_batch(scratch_, position ? &sp : nullptr);
  if (s == core::AppendStatus::kOk) next_ += payloads.size();
  return s;
}

}  // namespace tributary::ingest
