// What a Kafka topic holds against what an analyzer counted: per source, the events the topic
// holds and those of them the analyzer's ledger lacks, with where the first of those is. On a
// loss this tells a reader's miss (Kafka holds the events) from a loss before Kafka (it does
// not); `tributary demo` prints it when its analyzer falls short.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tributary/analytics/ledger.h"

namespace tributary::tools {

struct SourceInTopic {
  std::uint64_t source_id = 0;
  std::uint64_t in_topic = 0;     // events of the source in the topic, copies included
  std::uint64_t not_counted = 0;  // distinct events of it the ledger lacks
  int partition = -1;             // where the first of those is
  std::int64_t offset = -1;
  std::uint64_t first_seq = 0;
};

struct PartitionInTopic {
  std::int64_t start = -1, end = -1;  // its log start and end when asked (-1: no answer)
};

struct TopicAudit {
  std::vector<PartitionInTopic> partitions;  // by partition
  std::vector<SourceInTopic> sources;  // by source id
  bool complete = false;               // every partition read to the end it had at the start
  std::string errors;                  // consumer errors met, "[p] message;" each
  // Sources the ledger had retired (idle, totals only): their events here show as not counted,
  // though they were; describe() says so.
  analytics::Ledger::Retired retired;
};

// Reads every partition of `topic` from its start to the end offset it has when asked (a
// consumer of its own, read_committed, told each partition's end; a position reset is an
// error, not a skip), identities
// from tributary headers and packed records; records without one are not counted anywhere.
// Gives up after `timeout` (complete = false). Throws core::Error if the topic is not there.
[[nodiscard]] TopicAudit audit_topic(const std::string& bootstrap, const std::string& topic,
                                     const analytics::Ledger& counted, std::chrono::milliseconds timeout);

// The ledger of an analyzer checkpoint file (the checkpoint mode's, analytics/checkpoint.h).
// Throws core::Error naming the file if it is missing, damaged or has no ledger.
[[nodiscard]] analytics::Ledger checkpoint_ledger(const std::filesystem::path& checkpoint);

// One line: "log start..end per partition 0:0..58 1:0..60; source S: N events in Kafka, K of
// them not counted (the first: seq Q at partition P offset O); ..." plus what was not complete.
[[nodiscard]] std::string describe(const TopicAudit& a);

}  // namespace tributary::tools
