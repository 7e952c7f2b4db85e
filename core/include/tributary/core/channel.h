// The channel: a durable, lock-free, multi-producer / multi-consumer ring of variable-length
// records over a preallocated file mapped by every process that uses it.
//
//   Producer (any thread, any process) --append--> [ ring in mmap file ] --poll/commit--> Consumer "name"
//
// - Records: 48-byte header (position tag, length, CRC32C, channel sequence, timestamp,
//   event identity) + payload, 8-byte aligned; a record never wraps (a pad fills the tail).
// - Producers reserve space with one 16-byte compare-and-swap on {write position, channel
//   sequence}, write, then publish by storing the record's tag (its absolute position and
//   kind) with release order. A batch is reserved once and published last-to-first, so a
//   consumer sees all of it or none of it (Flume's put transaction).
// - Consumers are named and durable: each has a committed cursor in the file, reads records
//   in place (valid until it commits) and commits explicitly (Flume's take transaction).
//   Producers never overwrite what the slowest consumer has not committed.
// - A producer killed between reserve and publish is detected by consumers after
//   `abandon_timeout`, and only when its process (pid + start time) is gone; the slot is
//   then skipped and counted. A slow producer is never skipped.
// - On open with no other process attached, the file is recovered (a file cut short is first
//   grown back to its size): records from the oldest
//   committed cursor are validated; torn/corrupt ones are skipped (resynchronising on the
//   next valid header), counted and never delivered; the write head is put after the last
//   record that continues the channel sequence. After a clean close (the last process
//   detached with no writer dead in the file) on this boot, or one synced under a sync
//   policy, the scan is skipped: see OpenOptions::trust_clean_close.
// - A per-source state table (source id -> last sequence, opaque position) is updated in the
//   same transaction as a batch, so collectors resume exactly after a crash.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tributary::core {

// Version 2 (2026-11-27) adds to version 1 checked skips and second copies of the cursors and
// the retention head. Version 3 (2026-11-29) adds the sources' durable checkpoints and the boot
// of the last writers (a version-2 build would leave checkpoints stale behind its own updates),
// and a check in every pad's CRC field (a record's tag damaged into a pad's is told from a pad by
// its CRC). This build reads all three and upgrades an older file when it opens it first
// (exclusively, for writing); an older build then refuses the file by name.
inline constexpr std::uint32_t kChannelFormatVersion = 3;
inline constexpr std::uint32_t kOldestChannelFormatVersion = 1;
inline constexpr std::size_t kRecordHeaderSize = 48;
inline constexpr std::size_t kRecordAlign = 8;
inline constexpr std::size_t kMaxConsumerName = 47;

// Bytes a record of `payload` bytes takes in the ring: its header and payload, 8-aligned. A
// batch (one transaction) may take at most a quarter of the capacity counted this way: a batch
// of many small events is mostly headers.
[[nodiscard]] constexpr std::uint64_t record_bytes(std::uint64_t payload) noexcept {
  return (kRecordHeaderSize + payload + kRecordAlign - 1) & ~std::uint64_t{kRecordAlign - 1};
}

// Identity of an event (see design brief, "Event identity"): dense sequence per source.
struct EventId {
  std::uint64_t source_id = 0;  // 0 means "no identity"
  std::uint64_t sequence = 0;
};

// The source table marks a released slot with this id: no source may use it (nor 0).
inline constexpr std::uint64_t kReleasedSourceId = ~std::uint64_t{0};

enum class SyncPolicy : std::uint8_t {
  kNone,         // data survives process crashes (page cache); power loss may lose anything unsynced
  kInterval,     // msync every `sync_interval`: power loss loses at most that much; a source
                 // state (append_batch) committed before a completed sync is its durable
                 // checkpoint, to which the first opener after the power loss puts the source
                 // back (RecoveryReport::sources_rolled_back), so a tail reads the lost lines again
  kEveryCommit,  // msync after every publish/commit: slowest, loses nothing acknowledged
};

// Fixed at creation, stored in the file.
struct ChannelConfig {
  std::uint64_t capacity = 64ull << 20;  // data bytes, power of two >= 64 KiB; memory = capacity + tables
  std::uint32_t max_payload = 1u << 20;  // larger appends are rejected; <= capacity / 4
  std::uint32_t source_slots = 4096;     // per-source state table size (power of two)
  mode_t mode = 0600;                    // 0660 + group to share with a group of users
  std::optional<gid_t> group;
};

// Per-process behaviour, not stored.
struct OpenOptions {
  SyncPolicy sync = SyncPolicy::kNone;
  std::chrono::milliseconds sync_interval{100};
  // How long a consumer waits on a reserved-but-unpublished record before it checks whether
  // the writer is dead. Shorter frees the channel sooner after a crash; the liveness check
  // means a short value never skips a live writer, it only costs a /proc read per timeout.
  std::chrono::milliseconds abandon_timeout{1000};
  // Verify each record's CRC32C when a consumer reads it (recovery always does). Off saves a
  // pass over the payload on the read side for trusted, RAM-only channels.
  bool verify_on_read = true;
  bool read_only = false;  // map read-only: stat, dump and tap observers
  // Fault the whole mapping in at open (MADV_POPULATE_WRITE), as Aeron pre-touches its log
  // buffers: no page fault on the hot path later, at the cost of the channel's full size
  // resident (shared, file-backed) from the start and a few ms per 100 MiB at open.
  bool pretouch = false;
  // When the last process to detach closed cleanly (no writer died in the file since the last
  // recovery), the next exclusive opener skips the recovery scan: opening is O(1) instead of a
  // read of the whole ring. The mark it trusts is bound to this boot, or, under a sync policy,
  // written after the whole file was synced (channel.cpp, "The clean-close mark"). false scans
  // anyway: a file suspected damaged since it was closed (`tributary channel recover`).
  bool trust_clean_close = true;
};

enum class AppendStatus : std::uint8_t {
  kOk,
  kFull,      // no space and the producer's policy is fail-fast
  kTimeout,   // no space within the producer's max wait
  kTooLarge,  // payload > max_payload, or a batch larger than a quarter of the ring
  kNoSlot,    // source table full, or a reserved source id (only when a source position is given)
  kBroken,    // the file was truncated under us: reopen it (recovery grows it back)
  // every-commit only: the records are in the channel (consumers may read them) but msync
  // failed, so they are not known to be on disk. Do not acknowledge them upstream: append
  // them again (same identities; downstream drops the duplicates), as for kFull.
  kSyncFailed,
  kClaimOpen,  // this producer's Claim is not published yet: publish it first (one at a time)
};
[[nodiscard]] std::string_view to_string(AppendStatus s) noexcept;

enum class FullPolicy : std::uint8_t { kBlock, kFailFast };

struct ProducerOptions {
  FullPolicy on_full = FullPolicy::kBlock;
  std::chrono::milliseconds max_wait{1000};  // with kBlock; futex wait, no spinning
  bool precise_timestamps = false;           // CLOCK_REALTIME per record instead of the coarse clock
};

// One event of a batch.
struct Event {
  EventId id;
  std::span<const std::byte> payload;
};

// A per-source checkpoint committed with a batch: the sequence the source's next event will
// get (= events of that source so far) and an opaque position (a tail collector's file offset
// after the last line it consumed, lines skipped as oversize included).
struct SourcePosition {
  std::uint64_t source_id = 0;
  std::uint64_t next_sequence = 0;
  std::uint64_t position = 0;
};

// A record as a consumer sees it: views into the mapping, valid until that consumer commits
// past it.
struct Record {
  std::uint64_t position;     // absolute byte position in the channel (seek target)
  std::uint64_t next;         // position after this record
  std::uint64_t channel_seq;  // dense per channel
  std::int64_t timestamp_ns;  // producer's clock, ns since the epoch
  EventId id;
  std::span<const std::byte> payload;
};

struct ConsumerInfo {
  std::string name;
  std::uint64_t committed = 0;
  std::uint64_t records_committed = 0;
  std::uint32_t owner_pid = 0;  // 0 when no live process holds it
};

struct RecoveryReport {
  bool ran = false;
  std::int64_t at_ns = 0;              // when it ran (CLOCK_REALTIME)
  std::uint64_t records_salvaged = 0;  // valid records walked
  std::uint64_t records_dropped = 0;   // from gaps in the channel sequence
  std::uint64_t bytes_dropped = 0;     // corrupt or torn bytes skipped
  std::uint64_t abandoned_claims = 0;  // reservations of dead producers closed
  std::uint64_t cursors_moved = 0;     // consumer cursors moved to a record boundary
  // Sources put back at their durable checkpoint: the file was last written on another boot
  // (a power loss or a kernel crash), and their state had moved past what the last completed
  // sync wrote (see SyncPolicy::kInterval).
  std::uint64_t sources_rolled_back = 0;
  // Non-zero: the file had been cut to this many bytes (a file system losing its tail in a
  // power failure, or a careless `truncate`); it was grown back with zeros before recovery,
  // so every record before the cut is kept and the rest counted as dropped.
  std::uint64_t file_bytes_found = 0;
};

struct ChannelStats {
  std::uint64_t capacity = 0;
  std::uint32_t max_payload = 0;
  std::uint64_t write_position = 0;
  std::uint64_t next_channel_seq = 0;
  std::uint64_t oldest_retained = 0;  // min committed cursor (or retention head with no consumer)
  std::uint64_t used_bytes = 0;       // write_position - oldest_retained
  std::uint64_t records_written = 0;
  std::uint64_t bytes_written = 0;    // payload bytes
  std::uint64_t abandoned_records = 0;
  std::uint64_t abandoned_bytes = 0;
  std::uint64_t corrupt_records = 0;
  std::uint64_t corrupt_bytes = 0;
  std::uint64_t producer_waits = 0;   // futex sleeps on a full channel
  std::uint64_t full_rejections = 0;  // kFull / kTimeout returned
  std::uint64_t oversize_rejections = 0;
  std::uint64_t sync_failures = 0;  // msync calls that failed: what they covered is not known durable
  std::uint32_t live_producers = 0;
  std::vector<ConsumerInfo> consumers;
  RecoveryReport last_recovery;  // the last recovery scan
  // The last exclusive opener trusted a clean close and did not scan (last_recovery is older).
  bool opened_after_clean_close = false;
  // No process has opened the file for writing since the last clean close.
  bool closed_cleanly = false;
};

// The per-source state table's slots: taken by a source (in use), given back but still on some
// lookup's probe (released, taken again by the next new source that probes there), empty (never
// used, or given back and emptied). A collector finds it full when in_use reaches slots
// (AppendStatus::kNoSlot).
struct SourceTableUse {
  std::uint32_t slots = 0;
  std::uint32_t in_use = 0;
  std::uint32_t released = 0;
};

class Channel;
namespace detail {
struct ChannelState;
}

// Appends records. One Producer per thread: it owns a slot in the file's producer table
// (that is how consumers tell a dead writer from a slow one). Movable, not copyable.
class Producer {
 public:
  Producer(Producer&&) noexcept;
  Producer& operator=(Producer&&) noexcept;
  ~Producer();

  // One event. Hot path: no syscall unless a consumer sleeps or the channel is full.
  [[nodiscard]] AppendStatus append(EventId id, std::span<const std::byte> payload) noexcept;
  [[nodiscard]] AppendStatus append(EventId id, std::string_view payload) noexcept {
    return append(id, std::as_bytes(std::span(payload.data(), payload.size())));
  }
  // Many events, one reservation, visible all-or-nothing. With `state`, the source table
  // entry is updated in the same transaction. The batch must fit a quarter of the ring.
  [[nodiscard]] AppendStatus append_batch(std::span<const Event> events,
                                          const SourcePosition* state = nullptr) noexcept;
  // Gives each source this producer committed batches for the newest of its states a completed
  // sync has written out as its durable checkpoint (SyncPolicy::kInterval); append_batch does
  // it for the source it commits. Collectors call it when idle, so that a source that went
  // quiet gets its last state as checkpoint too. Cheap when no sync completed since the last.
  void settle_checkpoints() noexcept;

  // Zero-copy single record: reserve, write into the returned span, publish. Until publish
  // the slot blocks consumers; if this process dies in between, consumers skip the slot
  // after abandon_timeout. One Claim at a time: until it is published, claim, append and
  // append_batch of this producer return kClaimOpen (the slot records one reservation).
  class Claim {
   public:
    [[nodiscard]] std::span<std::byte> payload() const noexcept { return payload_; }
    [[nodiscard]] bool valid() const noexcept { return header_ != nullptr; }

   private:
    friend class Producer;
    std::byte* header_ = nullptr;
    std::span<std::byte> payload_;
    std::uint64_t position_ = 0;
    std::uint64_t channel_seq_ = 0;
    EventId id_;
  };
  [[nodiscard]] AppendStatus claim(EventId id, std::size_t size, Claim& out) noexcept;
  // kOk, or kSyncFailed (every-commit: published but not known durable).
  [[nodiscard]] AppendStatus publish(Claim& claim) noexcept;

 private:
  friend class Channel;
  struct Impl;
  explicit Producer(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

enum class StartAt : std::uint8_t { kOldest, kLatest };

// Reads a channel as a named, durable consumer. One process (and thread) per name at a time.
class Consumer {
 public:
  Consumer(Consumer&&) noexcept;
  Consumer& operator=(Consumer&&) noexcept;
  ~Consumer();

  // Reads up to out.size() published records from the read position (not the committed
  // cursor); returns how many. Non-blocking. Records stay valid until commit().
  [[nodiscard]] std::size_t poll(std::span<Record> out) noexcept;
  // Blocks (futex) until a record is readable or `timeout` passes; true if readable. Returns
  // false at once on a broken channel (below).
  [[nodiscard]] bool wait(std::chrono::milliseconds timeout) noexcept;
  // True while the channel's file is shorter than its mapping (someone truncated it under this
  // process): what was past the cut is gone, and poll() finds nothing more there. A reader that
  // polls nothing should ask, and stop with an error: the file is whole again only once every
  // process closed it and the next opener grew it back and recovered it. An fstat per call.
  [[nodiscard]] bool broken() const noexcept;
  // Wakes a wait() in progress, which returns at once (true if a record is readable); the first
  // wait() that then finds nothing to read (that one, or the next) returns false at once: an
  // interrupt is never lost, and ends one wait. The one call that is safe from another thread
  // while the consumer's own thread polls or waits (a read-ahead thread's owner handing it a
  // commit, or stopping it). The channel's other sleeping consumers wake, look again and sleep on.
  void interrupt() noexcept;

  // Commits everything read so far (or up to `position`, a record boundary already read).
  void commit() noexcept;
  void commit(std::uint64_t position) noexcept;
  // The same, told how many records poll returned below `position` since the last commit (the
  // caller counted them): a partial commit need not walk the records again to count them for
  // stats().
  void commit(std::uint64_t position, std::uint64_t records) noexcept;
  // Drops this process's page-table entries for the ring's pages read and done with: those
  // below `position` (at most the read position) that hold no byte written within the last lap
  // below the write head at or past `position` (read ahead, or not read yet). The unmapping a
  // process pays at exit for every page it touched is paid as it goes, by the thread that calls
  // this (the analyzer's read-ahead), and the channel's pages leave this process's RSS. The
  // file keeps the bytes: reading (or writing) there again faults them back in, which also
  // undoes a pretouch of them. Acts once 2 MiB have gathered since the last release (after a
  // seek back, since the committed cursor); cheap otherwise. Does nothing on a truncated file.
  void release(std::uint64_t position) noexcept;
  // Moves the read position to `position` (>= committed cursor, a record boundary: a
  // Record::position or Record::next); the next poll reads from there.
  [[nodiscard]] bool seek(std::uint64_t position) noexcept;

  [[nodiscard]] std::uint64_t committed() const noexcept;
  [[nodiscard]] std::uint64_t read_position() const noexcept;
  [[nodiscard]] const std::string& name() const noexcept;
  // Records this consumer skipped because their writer died, or because they were
  // overwritten before this consumer was registered.
  [[nodiscard]] std::uint64_t skipped_records() const noexcept;

 private:
  friend class Channel;
  struct Impl;
  explicit Consumer(std::unique_ptr<Impl> impl) noexcept;
  void commit_counted(std::uint64_t position, std::uint64_t records) noexcept;
  std::unique_ptr<Impl> impl_;
};

// A mapped channel file. Cheap handles (Producer, Consumer) share its mapping and may
// outlive it. Opening and creating throw core::Error with the path and the cause.
class Channel {
 public:
  static Channel create(const std::filesystem::path& path, const ChannelConfig& config,
                        const OpenOptions& options = {});
  static Channel open(const std::filesystem::path& path, const OpenOptions& options = {});
  // Opens, or creates with `config` if the file does not exist.
  static Channel open_or_create(const std::filesystem::path& path, const ChannelConfig& config,
                                const OpenOptions& options = {});

  Channel(Channel&&) noexcept;
  Channel& operator=(Channel&&) noexcept;
  ~Channel();

  [[nodiscard]] Producer producer(const ProducerOptions& options = {});
  // Attaches to consumer `name`, registering it (at `start`) if it does not exist yet.
  [[nodiscard]] Consumer consumer(std::string_view name, StartAt start = StartAt::kOldest);
  // Removes a consumer so it no longer holds back producers. Waits for a registration or an
  // adoption under way (one at a time, across processes), then refuses (core::Error) a
  // consumer whose owner process is alive; false when no consumer has that name. Throws
  // core::Error on a read-only opener.
  bool remove_consumer(std::string_view name);

  // Last committed state of a source, with a half-finished transaction of a dead writer
  // resolved (it counts only if its records were published).
  [[nodiscard]] std::optional<SourcePosition> source_position(std::uint64_t source_id) const;
  // Gives a source's slot in the table back, its state forgotten: for a source that will not
  // resume (the tail's file identities once no file reads them), so that a long-running
  // collector does not fill the table. Killed part-way, the slot keeps the id with its fields
  // part cleared (next_sequence, then position, set to 0): a caller that looks the id up again
  // takes such a state for none. A source has one writer at a time (two creating one id
  // at once may each take a slot), and only it may call this, after its last batch; a later
  // batch with a position takes a slot again, from sequence 0 as far as the table knows.
  // Returns false when the table holds no slot for it; throws core::Error on a read-only
  // opener. A released slot is a tombstone that lookups probe past and new sources reuse; those
  // that end at an empty slot are emptied here (no probe needs them), and the exclusive opener
  // empties every one no probe needs (also in a table left with no empty slot), so lookups of
  // unknown ids stay short. Lookups and updates of existing sources go on
  // lock-free meanwhile; placing a new source and releasing one take a lock (byte 1 of the
  // file). A build before this one placed new sources without it: such a build must not write
  // the channel while this one releases sources.
  bool release_source(std::uint64_t source_id);
  // How full the source table is: a scan of its slots (64 bytes each), not a counter.
  [[nodiscard]] SourceTableUse source_table() const;
  // Every source the table holds, with its state as source_position gives it: a scan of the
  // slots, for housekeeping (a collector finding what it left behind), not per event.
  [[nodiscard]] std::vector<SourcePosition> sources() const;

  // Read-only walk of every published record from `from` (default: the oldest retained),
  // moving no cursor: `tributary channel dump` and `tap`. Stops at the first unpublished.
  // `f` returns false to stop; returns the number of records visited.
  std::uint64_t walk(const std::function<bool(const Record&)>& f,
                     std::optional<std::uint64_t> from = std::nullopt) const;

  [[nodiscard]] ChannelStats stats() const;
  [[nodiscard]] const std::filesystem::path& path() const noexcept;
  // Flushes the mapping to disk now (MS_SYNC). False if msync failed (counted in stats()).
  bool sync() const noexcept;

 private:
  explicit Channel(std::shared_ptr<detail::ChannelState> state) noexcept;
  std::shared_ptr<detail::ChannelState> state_;
};

}  // namespace tributary::core
