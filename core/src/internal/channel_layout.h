// The channel's on-file layout (format version 2; version 1 lacks the copies of the cursors and
// the head, and writes unchecked skips) and the process-local state over it.
// Everything here lives in shared memory: fields are std::atomic (lock-free, address-free)
// or written once at creation. Changing any of it means bumping kChannelFormatVersion.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>

#include "tributary/core/channel.h"
#include "tributary/core/crc32c.h"
#include "tributary/core/mapped_file.h"

namespace tributary::core::detail {

inline constexpr char kMagic[8] = {'T', 'R', 'I', 'B', 'C', 'H', 'A', 'N'};
inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::uint32_t kProducerSlots = 128;
inline constexpr std::uint32_t kConsumerSlots = 32;
inline constexpr std::uint64_t kMinCapacity = 64 * 1024;

// Low 3 bits of a tag (record positions are 8-aligned); the rest is the absolute position,
// which is what makes a record from an earlier lap, or payload bytes shaped like a header,
// fail to match.
enum TagKind : std::uint64_t {
  kRecordTag = 1,  // a published record; length in the header
  kPadTag = 2,     // skip to the end of this lap (a record never wraps)
  kSkipTag = 3,    // skip `length` bytes, unchecked: as builds before 2026-11-27 wrote them
  kCheckedSkipTag = 4,  // skip `length` bytes (an abandoned claim or a corrupt region closed by
                        // recovery); its CRC field holds skip_check(position, length)
};
// A skip region must hold its tag, CRC and length fields (a pad needs only the tag).
inline constexpr std::uint64_t kMinSkip = 16;
// A skip's length field has 32 bits: a longer region (a dead claim of a ring above 16 GiB, a
// damaged stretch recovery closes in a ring above 4 GiB) is closed as a chain of skips of at
// most this many bytes each.
inline constexpr std::uint64_t kMaxSkip = std::uint64_t{1} << 30;
// Where the piece of [from, to) that starts at `from` ends when the region is closed as skips:
// `to` if it fits in one, else kMaxSkip on, or kMinSkip less when the rest would be too short
// to be a skip. Both arguments are 8-aligned.
[[nodiscard]] constexpr std::uint64_t skip_piece_end(std::uint64_t from, std::uint64_t to) noexcept {
  if (to - from <= kMaxSkip) return to;
  return to - from - kMaxSkip < kMinSkip ? from + kMaxSkip - kMinSkip : from + kMaxSkip;
}
[[nodiscard]] constexpr std::uint64_t make_tag(std::uint64_t pos, TagKind kind) noexcept { return pos | kind; }

struct RecordHeader {
  std::atomic<std::uint64_t> tag;     // published last, with release order
  std::uint32_t crc;                  // CRC32C of bytes 16..end, seeded with position and length
  std::atomic<std::uint32_t> length;  // payload bytes (record), or region bytes (skip)
  std::uint64_t channel_seq;
  std::int64_t timestamp_ns;
  std::uint64_t source_id;
  std::uint64_t source_seq;
};
static_assert(sizeof(RecordHeader) == kRecordHeaderSize, "record header is part of the file format");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "tags must be lock-free to live in shared memory");

[[nodiscard]] constexpr std::uint64_t record_size(std::uint64_t payload) noexcept { return record_bytes(payload); }

// {write position, next channel sequence}, swapped together with one cmpxchg16b so that the
// channel sequence follows position order across producers.
struct alignas(16) TailWord {
  std::uint64_t pos;
  std::uint64_t seq;
};

// {retention head, consumer-registration generation}: producers raise the head to the floor
// they computed only if no consumer registered meanwhile (see Channel::consumer).
struct alignas(16) HeadWord {
  std::uint64_t head;
  std::uint64_t gen;
};

// ProducerSlot::pid while a consumer moves a dead producer's counters to the retired totals:
// nobody else may take the slot (and count them again) meanwhile.
inline constexpr std::uint32_t kReclaimingPid = UINT32_MAX;

struct alignas(kCacheLine) ProducerSlot {
  std::atomic<std::uint32_t> pid;  // 0 = free; kReclaimingPid = being retired
  std::atomic<std::uint32_t> unused;
  std::atomic<std::uint64_t> start_time;  // /proc start time: a reused pid is not the same writer
  std::atomic<std::uint64_t> claim_pos;   // reservation being attempted or written
  std::atomic<std::uint64_t> claim_len;   // 0 = no reservation outstanding
  std::atomic<std::uint64_t> claim_records;
  std::atomic<std::uint64_t> records;  // written by this producer (owner-only writes)
  std::atomic<std::uint64_t> bytes;
};
static_assert(sizeof(ProducerSlot) == kCacheLine, "one producer per cache line: no false sharing");

// A word kept with its complement beside it as a second copy (a cursor, the retention head): the
// lower of the two when they disagree, which re-reads and never skips. A copy of 0 is none (a
// version-1 file).
[[nodiscard]] constexpr std::uint64_t lower_of_copies(std::uint64_t value, std::uint64_t copy) noexcept {
  return copy == 0 ? value : std::min(value, ~copy);
}

struct alignas(kCacheLine) ConsumerSlot {
  std::atomic<std::uint32_t> state;  // kFree, kRegistering, kActive
  std::atomic<std::uint32_t> owner_pid;
  std::atomic<std::uint64_t> owner_start;
  char name[kMaxConsumerName + 1];
  alignas(kCacheLine) std::atomic<std::uint64_t> cursor;  // own line: written at every commit
  std::atomic<std::uint64_t> records_committed;
  // ~cursor, stored after it (set_cursor): a second copy in the same sector, so that recovery
  // tells a damaged cursor (a flipped bit) and takes the lower of the two, which re-reads and
  // never skips. 0: never written (a file from before 2026-11-27, where the bytes were padding).
  std::atomic<std::uint64_t> cursor_copy;

  void set_cursor(std::uint64_t v) noexcept {
    cursor.store(v, std::memory_order_seq_cst);
    cursor_copy.store(~v, std::memory_order_relaxed);
  }
  // The cursor as recovery trusts it.
  [[nodiscard]] std::uint64_t checked_cursor() const noexcept { return lower_of_copies(cursor.load(), cursor_copy.load()); }
};
static_assert(sizeof(ConsumerSlot) == 2 * kCacheLine, "consumer slot layout is part of the file format");
enum ConsumerState : std::uint32_t { kFree = 0, kRegistering = 1, kActive = 2 };

// A source's state: the last committed (next_sequence, position), and the durable checkpoint:
// an earlier state of the same source, committed by a batch, whose records a full msync (an
// interval sync's) had written when it completed. After a power loss the first two may have
// reached the disk without the records of the last sync interval (page writeback keeps no
// order); an opener that finds the file last written on another boot puts the source back at its
// checkpoint (see recover), and the collector reads those records again under the same
// identities. Only states committed with records are checkpoints: a state set with no events (a
// tail's identity bookkeeping: ended generations, cut marks, moves) ends the checkpoint, and such
// a source keeps its state after a power loss, as before. The owner writes the checkpoint inside
// its seqlock update, position first and the sequence word last, zero (no checkpoint) in between.
// Files of builds before 2026-11-29 have zeros there: no checkpoint.
struct alignas(kCacheLine) SourceSlot {
  std::atomic<std::uint64_t> source_id;  // 0 = empty, kReleasedSourceId = given back; claimed by CAS
  std::atomic<std::uint32_t> version;    // seqlock: odd while the owner writes
  // kDurableValid | a 7-bit tag of the source id (a slot an earlier build gave back and another
  // source took does not inherit the checkpoint) | the low 24 bits of the checkpoint's
  // next_sequence (at most next_sequence, and less than kDurableSpan below it: the owner drops a
  // checkpoint that falls further behind); 0: no checkpoint.
  std::atomic<std::uint32_t> durable_sequence;
  std::atomic<std::uint64_t> next_sequence;
  std::atomic<std::uint64_t> position;
  std::atomic<std::uint64_t> pending_at;  // 1 + position of the first record of an open batch; 0 none
  std::atomic<std::uint64_t> pending_sequence;
  std::atomic<std::uint64_t> pending_position;
  std::atomic<std::uint64_t> durable_position;  // the checkpoint's position

  static constexpr std::uint32_t kDurableValid = 1u << 31;
  static constexpr std::uint64_t kDurableSpan = std::uint64_t{1} << 24;
  [[nodiscard]] static constexpr std::uint32_t durable_tag(std::uint64_t id) noexcept {
    return static_cast<std::uint32_t>((id * 0x9E3779B97F4A7C15ull) >> 57) << 24;
  }
  // Stores the checkpoint (next, pos) of source `id`: by the owner, inside its seqlock update.
  void set_durable(std::uint64_t id, std::uint64_t next, std::uint64_t pos) noexcept {
    durable_sequence.store(0, std::memory_order_release);
    durable_position.store(pos, std::memory_order_release);
    durable_sequence.store(kDurableValid | durable_tag(id) | static_cast<std::uint32_t>(next & (kDurableSpan - 1)),
                           std::memory_order_release);
  }
  void clear_durable() noexcept {
    if (durable_sequence.load(std::memory_order_relaxed) != 0) durable_sequence.store(0, std::memory_order_release);
  }
  // The checkpoint of source `id`, given the slot's next_sequence (`next`); false if none.
  [[nodiscard]] bool durable(std::uint64_t id, std::uint64_t next, std::uint64_t& d_next,
                             std::uint64_t& d_pos) const noexcept {
    const std::uint32_t w = durable_sequence.load(std::memory_order_acquire);
    if ((w & kDurableValid) == 0 || (w & (0x7Fu << 24)) != durable_tag(id)) return false;
    d_pos = durable_position.load(std::memory_order_acquire);
    const std::uint64_t below = (next - w) & (kDurableSpan - 1);  // next - checkpoint, mod 2^24
    d_next = next - below;
    return below <= next;
  }
};
static_assert(sizeof(SourceSlot) == kCacheLine, "source slot layout is part of the file format");

struct alignas(kCacheLine) Header {
  // --- written once at creation ---
  char magic[8];
  std::uint32_t version;
  std::uint32_t header_size;  // offset of the data region
  std::uint64_t file_size;
  std::uint64_t capacity;
  std::uint32_t max_payload;
  std::uint32_t source_slots;
  std::uint32_t producer_slots;
  std::uint32_t consumer_slots;
  std::uint32_t layout_size;  // sizeof(Header): catches a build with a different layout
  std::atomic<std::uint32_t> last_open;  // LastOpen: how the last exclusive opener made the file consistent
  std::int64_t created_ns;

  // --- hot words, each on its own cache line ---
  alignas(kCacheLine) TailWord tail;
  alignas(kCacheLine) HeadWord head;
  // ~head.head, stored after every change of it (a racing older store may leave it lower, never
  // higher): recovery keeps the lower of the two when they disagree, like a cursor and its
  // copy. 0: never written (a file from before 2026-11-27).
  std::atomic<std::uint64_t> head_copy;
  alignas(kCacheLine) std::atomic<std::uint32_t> data_futex;  // bumped when a sleeping consumer must wake
  std::atomic<std::uint32_t> data_waiters;
  alignas(kCacheLine) std::atomic<std::uint32_t> space_futex;  // bumped when a sleeping producer must wake
  std::atomic<std::uint32_t> space_waiters;

  // --- counters (cold) ---
  alignas(kCacheLine) std::atomic<std::uint64_t> retired_records;  // of producers that detached
  std::atomic<std::uint64_t> retired_bytes;
  std::atomic<std::uint64_t> abandoned_records;
  std::atomic<std::uint64_t> abandoned_bytes;
  std::atomic<std::uint64_t> corrupt_records;
  std::atomic<std::uint64_t> corrupt_bytes;
  std::atomic<std::uint64_t> producer_waits;
  std::atomic<std::uint64_t> full_rejections;
  std::atomic<std::uint64_t> oversize_rejections;
  std::atomic<std::uint64_t> sync_failures;  // msync calls that failed (data not known durable)
  // Full msyncs begun, and the highest of them known complete (each numbered when it begins):
  // a source state committed while sync_epochs_started was N is on disk once sync_epochs_done
  // reaches N + 1 (the source slots' durable checkpoints). Files of builds before 2026-11-29: 0.
  std::atomic<std::uint64_t> sync_epochs_started;
  std::atomic<std::uint64_t> sync_epochs_done;
  // Digest of the boot id of the processes that last opened the file for writing; 0: unknown
  // (an earlier build). Another boot's means the page cache they wrote into is gone.
  std::atomic<std::uint64_t> writer_boot;
  std::atomic<std::uint64_t> recovery_sources_rolled_back;  // of the last recovery: see recover

  // --- last recovery ---
  alignas(kCacheLine) std::atomic<std::int64_t> recovery_ns;
  std::atomic<std::uint64_t> recovery_salvaged;
  std::atomic<std::uint64_t> recovery_dropped_records;
  std::atomic<std::uint64_t> recovery_dropped_bytes;
  std::atomic<std::uint64_t> recovery_abandoned;
  std::atomic<std::uint64_t> recovery_cursors_moved;
  std::atomic<std::uint64_t> recovery_file_bytes;  // size found when the file was truncated; 0 = whole
  // Set by the last process to detach cleanly, cleared by every writable opener: see
  // clean_close_mark() in channel.cpp. 0 = not closed cleanly since the last attach.
  std::atomic<std::uint64_t> clean_close;
};
static_assert(sizeof(Header) == 8 * kCacheLine, "the header layout is part of the file format");
// kOpening: an exclusive opener is making the file consistent (growing a cut file back,
// recovery, settling the source table, the format upgrade). Found by a writable opener that
// waited for the lock, it means that process died or gave up part-way: the file may be
// half-recovered and is opened again (and recovered). Read-only openers do not look.
enum LastOpen : std::uint32_t { kNeverOpened = 0, kOpenedAfterScan = 1, kOpenedAfterCleanClose = 2, kOpening = 3 };

[[nodiscard]] constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) noexcept { return (v + a - 1) / a * a; }

struct Layout {
  std::uint64_t producers_off, consumers_off, sources_off, header_size, file_size;
  static constexpr Layout compute(std::uint64_t capacity, std::uint32_t source_slots) noexcept {
    Layout l{};
    l.producers_off = align_up(sizeof(Header), kCacheLine);
    l.consumers_off = l.producers_off + kProducerSlots * sizeof(ProducerSlot);
    l.sources_off = l.consumers_off + kConsumerSlots * sizeof(ConsumerSlot);
    l.header_size = align_up(l.sources_off + std::uint64_t{source_slots} * sizeof(SourceSlot), 4096);
    l.file_size = l.header_size + capacity;
    return l;
  }
};

// Process-local view of one mapped channel, shared by the handles made from it.
struct ChannelState {
  MappedFile file;
  OpenOptions options;
  Header* hdr = nullptr;
  std::byte* data = nullptr;
  ProducerSlot* producers = nullptr;
  ConsumerSlot* consumers = nullptr;
  SourceSlot* sources = nullptr;
  std::uint64_t capacity = 0;
  std::uint64_t mask = 0;
  std::uint32_t max_payload = 0;
  std::uint32_t source_slots = 0;
  Crc32cFn crc = crc32c_function();  // resolved once: no feature check per record
  bool asymmetric = false;           // membarrier available: see os.h
  bool opened = false;               // validated and recovered: only then may closing mark it clean
  std::uint32_t opener_pid = 0;      // a forked child holding this state does not mark the file
  std::uint64_t sync_failures_at_open = 0;

  // Consumer registration, one at a time: between threads of this process (the mutex) and
  // between processes (a byte lock on the file: see Channel::consumer).
  std::mutex register_mu;
  // Source-table inserts and releases, one at a time (the mutex, and a byte lock on the file):
  // a release may then empty tombstones no lookup needs (see find_source).
  std::mutex source_mu;

  // Interval syncer (SyncPolicy::kInterval).
  std::mutex sync_mu;
  std::condition_variable sync_cv;
  bool stopping = false;
  std::thread syncer;

  explicit ChannelState(MappedFile f) : file(std::move(f)) {}
  ~ChannelState();

  [[nodiscard]] RecordHeader* header_at(std::uint64_t pos) const noexcept {
    return reinterpret_cast<RecordHeader*>(data + (pos & mask));
  }
  [[nodiscard]] std::uint64_t lap_end(std::uint64_t pos) const noexcept { return (pos | mask) + 1; }
  // A record of `len` payload bytes at `pos` can be framed: within the maximum and its lap (a
  // record never wraps). Readers deliver nothing else; recovery and wait() judge alike.
  [[nodiscard]] bool frames(std::uint64_t pos, std::uint32_t len) const noexcept {
    return len <= max_payload && pos + record_size(len) <= lap_end(pos);
  }

  // Lowest position any consumer still needs; raises the retention head to it.
  std::uint64_t compute_floor() noexcept;
  // Closes the claimed region [from, to) of a dead writer with skip/pad records so every
  // consumer passes it; clears pending source transactions inside it. True if this call did
  // it (false if another consumer did first). `exclusive` (recovery) overwrites whatever is
  // there, a torn record included.
  bool close_region(std::uint64_t from, std::uint64_t to, TagKind kind, bool exclusive) noexcept;
  // msync (MS_SYNC) of the whole file; false (and counted in the header) if it failed.
  bool sync_all() const noexcept;
  // msync of [offset, offset+len) of the file; false (and counted) if it failed.
  bool sync_range(std::uint64_t offset, std::uint64_t len) const noexcept;
  // Called by the last process to detach (it holds the exclusive lock): see channel.cpp.
  void mark_clean_close(bool synced) noexcept;
  void wake_consumers() noexcept;
  void wake_producers() noexcept;

  // Fast side of a Dekker pair: publish `word` = `value`, then report whether `waiters` is set.
  template <class T>
  [[nodiscard]] bool store_then_check(std::atomic<T>& word, T value, const std::atomic<std::uint32_t>& waiters) const noexcept {
    if (asymmetric) {
      word.store(value, std::memory_order_release);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // compiler barrier; the CPU one is the sleeper's
      return waiters.load(std::memory_order_relaxed) != 0;
    }
    word.store(value, std::memory_order_seq_cst);
    return waiters.load(std::memory_order_seq_cst) != 0;
  }
  // Slow side: announce a sleeper, then a barrier that orders it against every fast side.
  void announce_sleeper(std::atomic<std::uint32_t>& waiters) const noexcept;
};

// A byte of the file locked (an OFD lock, between processes) together with a mutex (between
// threads of this process, which share the open file description). Throws core::Error naming
// the file when the lock cannot be taken (a read-only opener).
class FileByteLock {
 public:
  FileByteLock(std::mutex& mu, const MappedFile& file, std::uint64_t byte) : in_process_(mu), file_(file), byte_(byte) {
    file_.lock_byte(byte_);
  }
  FileByteLock(const FileByteLock&) = delete;
  FileByteLock& operator=(const FileByteLock&) = delete;
  ~FileByteLock() { file_.unlock_byte(byte_); }

 private:
  std::lock_guard<std::mutex> in_process_;
  const MappedFile& file_;
  std::uint64_t byte_;
};

// Consumer registration, adoption and removal, one at a time (byte 0 and register_mu).
struct RegistrationLock : FileByteLock {
  explicit RegistrationLock(ChannelState& st) : FileByteLock(st.register_mu, st.file, 0) {}
};

// Held to insert into the source table or release from it (byte 1 and source_mu).
struct SourceTableLock : FileByteLock {
  explicit SourceTableLock(ChannelState& st) : FileByteLock(st.source_mu, st.file, 1) {}
};

SourceSlot* find_source(ChannelState& st, std::uint64_t id, bool create) noexcept;
// Empties the tombstones that end at an empty slot: no probe needs them (a probe that reached
// one would stop at the empty slot after it). By a holder of the SourceTableLock, or by the
// exclusive opener.
void empty_tombstones_before(ChannelState& st, std::uint32_t empty) noexcept;
// Empties every released slot no probe needs (none between a live id's hash and its slot): a
// scan of the table, by the exclusive opener only.
void empty_unneeded_tombstones(ChannelState& st) noexcept;

// Record CRC: one pass over bytes 16..end of the record (header fields, payload and the
// zeroed alignment padding: a whole number of 8-byte words, no byte-wise tail), seeded with
// the folded position (a record copied elsewhere does not verify) and the length (a changed
// length changes the seed; len * odd constant is a bijection).
[[nodiscard]] constexpr std::uint32_t record_crc_seed(std::uint64_t pos, std::uint32_t length) noexcept {
  return static_cast<std::uint32_t>(pos ^ (pos >> 32)) ^ (length * 0x9E3779B1u);
}
[[nodiscard]] constexpr std::size_t record_crc_bytes(std::uint32_t length) noexcept {
  return record_size(length) - 16;
}
[[nodiscard]] inline std::uint32_t record_crc(Crc32cFn fn, std::uint64_t pos, const RecordHeader* h,
                                              std::uint32_t length) noexcept {
  static_assert(offsetof(RecordHeader, channel_seq) == 16, "CRC covers bytes 16.. of the header");
  return fn(record_crc_seed(pos, length), reinterpret_cast<const std::byte*>(h) + 16, record_crc_bytes(length));
}

// A skip region's check, in its header's CRC field: for a given position the seed is a
// bijection of the length, so a flipped bit in the length (which says how far readers jump)
// never goes unnoticed. Written before the skip's tag is published.
[[nodiscard]] constexpr std::uint32_t skip_check(std::uint64_t pos, std::uint32_t length) noexcept {
  return ~record_crc_seed(pos, length);
}
// True if `tag` is a skip region's at `p` (checked, or as older builds wrote it).
[[nodiscard]] constexpr bool is_skip_tag(std::uint64_t tag, std::uint64_t p) noexcept {
  return tag == make_tag(p, kCheckedSkipTag) || tag == make_tag(p, kSkipTag);
}
// The length of the skip region whose header, with tag `tag`, is at `p`: 8-aligned, at least a
// header, inside its lap and, for a checked skip, agreeing with its check; 0 if it is damaged.
[[nodiscard]] inline std::uint32_t skip_length(const ChannelState& st, std::uint64_t p, const RecordHeader* h,
                                               std::uint64_t tag) noexcept {
  const std::uint32_t len = h->length.load(std::memory_order_relaxed);
  if (len < kMinSkip || len % kRecordAlign != 0 || p + len > st.lap_end(p)) return 0;
  if ((tag & (kRecordAlign - 1)) == kCheckedSkipTag && __atomic_load_n(&h->crc, __ATOMIC_RELAXED) != skip_check(p, len))
    return 0;
  return len;
}

// True if a valid published record starts at `p` (tag, sane length inside the lap, CRC).
[[nodiscard]] inline bool valid_record_at(const ChannelState& st, std::uint64_t p, std::uint64_t* size_out) noexcept {
  if ((p & (kRecordAlign - 1)) != 0) return false;  // a damaged cursor or head: no record there
  const RecordHeader* h = st.header_at(p);
  if (h->tag.load(std::memory_order_acquire) != make_tag(p, kRecordTag)) return false;
  const std::uint32_t len = h->length.load(std::memory_order_relaxed);
  if (!st.frames(p, len) || record_crc(st.crc, p, h, len) != h->crc) return false;
  *size_out = record_size(len);
  return true;
}

// True if the header at `p`, whose tag names `p` with another kind (a pad or a skip), is a
// record's whose tag bits were flipped at rest: it frames, and its CRC verifies for `p` (the CRC
// does not cover the tag; a pad or skip region whose bytes verify so is a 2^-32 chance). Read as
// a pad or a skip, it would make a reader jump over the records after it.
// (Pads get a check in their CRC field since format version 3, skips always had their length
// and check there: neither verifies as a record. A tag of kind 0, unpublished, is never one.)
[[nodiscard]] inline bool record_under_flipped_tag(const ChannelState& st, std::uint64_t p, std::uint64_t tag,
                                                   const RecordHeader* h) noexcept {
  if ((tag & ~std::uint64_t{kRecordAlign - 1}) != p || (tag & (kRecordAlign - 1)) <= kRecordTag) return false;
  if (st.hdr->version < 3) return false;  // pads of older builds carry no check: never told apart
  if (st.lap_end(p) - p < kRecordHeaderSize) return false;  // no record fits: a pad's short gap
  const std::uint32_t len = h->length.load(std::memory_order_relaxed);
  return st.frames(p, len) && record_crc(st.crc, p, h, len) == __atomic_load_n(&h->crc, __ATOMIC_RELAXED);
}
// A pad's check, in its CRC field when the pad leaves room for it (a gap shorter than a skip
// header holds no record either): no record's CRC at `p` equals it but by a 2^-32 chance.
inline void check_pad(const ChannelState& st, std::uint64_t p, RecordHeader* h) noexcept {
  if (st.lap_end(p) - p >= kMinSkip)
    __atomic_store_n(&h->crc, skip_check(p, static_cast<std::uint32_t>(st.lap_end(p) - p)), __ATOMIC_RELAXED);
}

// CRCs of records three at a time (crc32c_extend3): used by batch writes and batch reads.
// Calls `done(i, crc)` for each of the n records at headers[i] with payload lengths lens[i].
template <class Done>
inline void record_crcs(Crc32cFn fn, std::size_t n, const std::uint64_t* positions, const RecordHeader* const* headers,
                        const std::uint32_t* lens, Done&& done) noexcept {
  std::size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    std::uint32_t seed[3], out[3];
    const void* data[3];
    std::size_t size[3];
    for (std::size_t k = 0; k < 3; ++k) {
      seed[k] = record_crc_seed(positions[i + k], lens[i + k]);
      data[k] = reinterpret_cast<const std::byte*>(headers[i + k]) + 16;
      size[k] = record_crc_bytes(lens[i + k]);
    }
    crc32c_extend3(seed, data, size, out);
    for (std::size_t k = 0; k < 3; ++k) done(i + k, out[k]);
  }
  for (; i < n; ++i) done(i, record_crc(fn, positions[i], headers[i], lens[i]));
}

// 16-byte atomics on the tail/head words (cmpxchg16b; the halves are read separately and
// the CAS validates them).
[[nodiscard]] bool cas16(void* addr, std::uint64_t& lo, std::uint64_t& hi, std::uint64_t new_lo, std::uint64_t new_hi) noexcept;
[[nodiscard]] inline std::uint64_t load_u64(const std::uint64_t* p) noexcept { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

}  // namespace tributary::core::detail
