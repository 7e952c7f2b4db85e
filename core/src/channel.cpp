// Channel: create/open/validate, recovery, consumer registration, the source table, stats.
// The hot paths live in producer.cpp and consumer.cpp.
#include "tributary/core/channel.h"

#include <sys/mman.h>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <fmt/format.h>
#include <random>
#include <thread>

#include "internal/channel_layout.h"
#include "internal/os.h"
#include "tributary/core/crc32c.h"
#include "tributary/core/error.h"

namespace tributary::core {

std::string_view to_string(AppendStatus s) noexcept {
  switch (s) {
    case AppendStatus::kOk: return "ok";
    case AppendStatus::kFull: return "channel full";
    case AppendStatus::kTimeout: return "timed out waiting for space";
    case AppendStatus::kTooLarge: return "too large";
    case AppendStatus::kNoSlot: return "source table full";
    case AppendStatus::kBroken: return "channel file truncated";
    case AppendStatus::kSyncFailed: return "written but not synced to disk (msync failed)";
    case AppendStatus::kClaimOpen: return "a claim of this producer is not published yet";
  }
  return "unknown";
}

namespace detail {

bool cas16(void* addr, std::uint64_t& lo, std::uint64_t& hi, std::uint64_t new_lo, std::uint64_t new_hi) noexcept {
  __extension__ typedef unsigned __int128 u128;
  const u128 expected = (u128{hi} << 64) | lo;
  const u128 desired = (u128{new_hi} << 64) | new_lo;
  const u128 seen = __sync_val_compare_and_swap(static_cast<u128*>(addr), expected, desired);
  if (seen == expected) return true;
  lo = static_cast<std::uint64_t>(seen);
  hi = static_cast<std::uint64_t>(seen >> 64);
  return false;
}


// --- The clean-close mark ------------------------------------------------------------------
// Recovery reads the whole ring: O(capacity), and for a file on disk a read of all of it back
// into the page cache. It rebuilds what a crash may have left half-done. A process that
// detaches last, with no writer dead inside the file, leaves nothing half-done: it writes a
// mark that lets the next exclusive opener skip the scan, as a Kafka broker skips log recovery
// after a clean shutdown. The mark is a digest of the write head, the sequence, the retention
// head and the consumers' cursors (any append or commit after it makes it stale), mixed with
// either
//   - the boot id: trusted only while the page cache it describes is the running kernel's (a
//     power loss or a kernel crash means a new boot, and so a full scan); or
//   - nothing, when the closer synced the whole file before the mark and the mark after it
//     (sync policy interval or every-commit): trusted across reboots.
// The low bit says which. Every writable opener clears the mark before it writes anything, and
// syncs the clearing when the mark was durable.
std::uint64_t clean_close_mark(const Header* h, const ConsumerSlot* consumers, bool durable, std::uint64_t boot) noexcept {
  auto mix = [](std::uint64_t z) {  // splitmix64's finaliser
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  std::uint64_t x = mix(durable ? 0 : boot);
  for (const std::uint64_t v : {load_u64(&h->tail.pos), load_u64(&h->tail.seq), load_u64(&h->head.head), h->capacity})
    x = mix(x ^ v);
  for (std::uint32_t i = 0; i < kConsumerSlots; ++i)  // the cursors a scan would move onto records
    x = mix(x ^ (consumers[i].cursor.load() + consumers[i].state.load()));
  return (x & ~std::uint64_t{3}) | 2u | (durable ? 1u : 0u);  // never 0
}

void ChannelState::mark_clean_close(bool synced) noexcept {
  for (std::uint32_t i = 0; i < kProducerSlots; ++i)
    if (producers[i].pid.load() != 0) return;  // a writer died in the file: the next opener recovers
  if (synced) {
    hdr->clean_close.store(clean_close_mark(hdr, consumers, true, 0));
    if (sync_range(0, sizeof(Header))) return;
  }
  const std::uint64_t boot = boot_id_digest();
  hdr->clean_close.store(boot == 0 ? 0 : clean_close_mark(hdr, consumers, false, boot));
}

ChannelState::~ChannelState() {
  if (syncer.joinable()) {
    {
      std::lock_guard lock(sync_mu);
      stopping = true;
    }
    sync_cv.notify_all();
    syncer.join();
  }
  if (!file.writable() || !opened) return;
  // A forked child shares the parent's open file description, whose lock an upgrade would
  // convert from under the parent: only the process that opened the file marks it.
  const bool opener = static_cast<std::uint32_t>(::getpid()) == opener_pid;
  // The bulk of the writeback before the lock below: a process opening the channel meanwhile
  // waits on that lock only for the pages written since, not for a whole ring's msync.
  const bool written_back = options.sync != SyncPolicy::kNone && sync_all();
  // Last to detach? The upgrade fails while any other open of the file holds its lock (and
  // drops ours then, as closing the file is about to).
  const bool last = opener && !file.faulted() && file.intact() && file.try_lock_exclusive();
  // Durable only if no msync failed since this process opened the file: a failed writeback is
  // reported once, and a later msync that succeeds does not bring those pages back.
  if (last) mark_clean_close(written_back && sync_all() && hdr->sync_failures.load() == sync_failures_at_open);
}

bool ChannelState::sync_all() const noexcept {
  if (!file.writable()) return sync_range(0, file.size());  // (a read-only mapping: nothing of ours to number)
  // Numbered before it begins, counted done once it has written everything: see
  // Header::sync_epochs_started and the producers' durable checkpoints. (A failure is counted
  // in sync_failures, which stops producers from making checkpoints.)
  const std::uint64_t epoch = hdr->sync_epochs_started.fetch_add(1, std::memory_order_seq_cst) + 1;
  if (!sync_range(0, file.size())) return false;
  std::uint64_t done = hdr->sync_epochs_done.load(std::memory_order_relaxed);
  while (done < epoch && !hdr->sync_epochs_done.compare_exchange_weak(done, epoch, std::memory_order_release)) {
  }
  return true;
}

bool ChannelState::sync_range(std::uint64_t offset, std::uint64_t len) const noexcept {
  if (file.sync(offset, len, true) == 0) return true;
  hdr->sync_failures.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void ChannelState::wake_consumers() noexcept {
  hdr->data_futex.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(&hdr->data_futex);
}

void ChannelState::announce_sleeper(std::atomic<std::uint32_t>& waiters) const noexcept {
  waiters.fetch_add(1, std::memory_order_seq_cst);
  if (asymmetric) membarrier_heavy();
}

void ChannelState::wake_producers() noexcept {
  hdr->space_futex.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(&hdr->space_futex);
}

std::uint64_t ChannelState::compute_floor() noexcept {
  std::uint64_t head = load_u64(&hdr->head.head);
  std::uint64_t gen = load_u64(&hdr->head.gen);
  for (;;) {
    std::uint64_t floor = UINT64_MAX;
    for (std::uint32_t i = 0; i < kConsumerSlots; ++i) {
      if (consumers[i].state.load(std::memory_order_acquire) == kActive)
        floor = std::min(floor, consumers[i].cursor.load(std::memory_order_acquire));
    }
    if (floor == UINT64_MAX) return head;  // no consumer: the backlog is kept
    if (floor <= head) return floor;       // a consumer registering behind the head
    // Raise the head only if no consumer registered since we read it (gen unchanged).
    if (cas16(&hdr->head, head, gen, floor, gen)) {
      hdr->head_copy.store(~floor, std::memory_order_relaxed);
      return floor;
    }
  }
}

bool ChannelState::close_region(std::uint64_t from, std::uint64_t to, TagKind kind, bool exclusive) noexcept {
  // Published after all (a writer that stalled, published and died before clearing its claim),
  // or closed by another reader already: nothing to do. Checked before anything is written: the
  // region's owner is dead or is this caller, so nothing can be published in it afterwards.
  if (!exclusive) {
    const std::uint64_t seen = header_at(from)->tag.load(std::memory_order_acquire);
    if ((seen & ~std::uint64_t{7}) == from && (seen & 7) != 0) return false;
  }
  // Pending source transactions whose first record lies in the region never happened.
  for (std::uint32_t i = 0; i < source_slots; ++i) {
    std::uint64_t at = sources[i].pending_at.load(std::memory_order_acquire);
    if (at != 0 && at - 1 >= from && at - 1 < to) sources[i].pending_at.compare_exchange_strong(at, 0);
  }
  // Closed back to front (consumers look only at `from`, which is closed last), piece by piece:
  // two chunks when the region crosses the end of the lap, each cut into skips of at most
  // kMaxSkip bytes (its length field has 32 bits). A piece after a chunk's first is written
  // whatever it holds: readers reach it only through the first, and a record of the dead claim
  // published there (a batch publishes its first record last) is to be skipped with the rest.
  auto close_piece = [&](std::uint64_t a, std::uint64_t b, bool chunk_start) {
    RecordHeader* h = header_at(a);
    std::uint64_t seen = h->tag.load(std::memory_order_acquire);
    // Another consumer closed it already (or, without `exclusive`, it is a live record).
    if (!exclusive && chunk_start && (seen & ~std::uint64_t{7}) == a && (seen & 7) != 0) return false;
    TagKind k = kind == kSkipTag ? kCheckedSkipTag : kind;  // skips are written checked
    if (b == lap_end(a)) {
      k = kPadTag;  // runs to the end of the lap: length implicit (the gap may be < 16 bytes)
      // A record written there (a dead writer's, unpublished; one recovery dropped) would still
      // verify under the pad's tag, and readers take a header whose tag names its position and
      // whose CRC verifies for a record (record_under_flipped_tag): the pad's check replaces it.
      check_pad(*this, a, h);
    } else {
      h->length.store(static_cast<std::uint32_t>(b - a), std::memory_order_relaxed);
      __atomic_store_n(&h->crc, skip_check(a, static_cast<std::uint32_t>(b - a)), __ATOMIC_RELAXED);
    }
    if (exclusive || !chunk_start) {
      h->tag.store(make_tag(a, k), std::memory_order_release);
      return true;
    }
    return h->tag.compare_exchange_strong(seen, make_tag(a, k), std::memory_order_release);
  };
  // One lap's part, back to front; true if its first piece was closed by this call. The pieces'
  // ends are found again from `a` for each (a handful: a chunk is at most one lap).
  auto close_chunk = [&](std::uint64_t a, std::uint64_t b) {
    std::uint64_t n = 0;
    for (std::uint64_t p = a; p < b; p = skip_piece_end(p, b)) ++n;
    bool first = false;
    for (std::uint64_t i = n; i-- > 0;) {
      std::uint64_t p = a;
      for (std::uint64_t j = 0; j < i; ++j) p = skip_piece_end(p, b);
      first = close_piece(p, skip_piece_end(p, b), i == 0);
    }
    return first;
  };
  const std::uint64_t split = std::min(to, lap_end(from));
  if (split < to) (void)close_chunk(split, to);
  return close_chunk(from, split);
}

namespace {

void validate_header(const Header* h, const MappedFile& f) {
  const auto path = f.path().string();
  if (f.size() < sizeof(Header)) throw Error(fmt::format("{} is too small ({} bytes) to be a channel", path, f.size()));
  if (std::memcmp(h->magic, kMagic, sizeof kMagic) != 0)
    throw Error(fmt::format("{} is not a Tributary channel (bad magic)", path));
  if (h->version < kOldestChannelFormatVersion || h->version > kChannelFormatVersion)
    throw Error(fmt::format("{} has channel format version {}, this build reads versions {} to {}", path, h->version,
                            kOldestChannelFormatVersion, kChannelFormatVersion));
  if (h->layout_size != sizeof(Header) || h->producer_slots != kProducerSlots || h->consumer_slots != kConsumerSlots)
    throw Error(fmt::format("{} has header layout size {} with {}/{} slots; this build expects {} with {}/{}", path,
                            h->layout_size, h->producer_slots, h->consumer_slots, sizeof(Header), kProducerSlots,
                            kConsumerSlots));
  const Layout l = Layout::compute(h->capacity, h->source_slots);
  if (!std::has_single_bit(h->capacity) || h->capacity < kMinCapacity || !std::has_single_bit(h->source_slots) ||
      l.header_size != h->header_size || l.file_size != h->file_size)
    throw Error(fmt::format("{} has an inconsistent channel header (capacity {}, source slots {}, header {} bytes)",
                            path, h->capacity, h->source_slots, h->header_size));
  if (f.size() < h->file_size)
    throw Error(fmt::format("{} is truncated: {} bytes on disk, the channel needs {} (the first process to open it "
                            "for writing grows it back and keeps every record before the cut)",
                            path, f.size(), h->file_size));
  if (h->max_payload == 0 || record_size(h->max_payload) > h->capacity / 4)
    throw Error(fmt::format("{} has max payload {} which does not fit a quarter of its capacity {}", path,
                            h->max_payload, h->capacity));
}

std::shared_ptr<ChannelState> attach(MappedFile file, const OpenOptions& options) {
  auto st = std::make_shared<ChannelState>(std::move(file));
  st->options = options;
  auto* base = st->file.data();
  st->hdr = reinterpret_cast<Header*>(base);
  validate_header(st->hdr, st->file);
  const Layout l = Layout::compute(st->hdr->capacity, st->hdr->source_slots);
  st->producers = reinterpret_cast<ProducerSlot*>(base + l.producers_off);
  st->consumers = reinterpret_cast<ConsumerSlot*>(base + l.consumers_off);
  st->sources = reinterpret_cast<SourceSlot*>(base + l.sources_off);
  st->data = base + l.header_size;
  st->capacity = st->hdr->capacity;
  st->mask = st->capacity - 1;
  st->max_payload = st->hdr->max_payload;
  st->source_slots = st->hdr->source_slots;
  st->asymmetric = membarrier_supported();
  if (st->asymmetric) membarrier_register();
  return st;
}


// The source table's repairs, by the exclusive opener, with the data in [floor, end). Also
// after a clean close: a writer killed inside a source update whose slot was given back while
// others ran leaves its version odd, and a clean close does not make it even.
void settle_sources(ChannelState& st, std::uint64_t floor, std::uint64_t end) noexcept {
  // A writer killed inside a source update left its version odd (see source_position).
  for (std::uint32_t i = 0; i < st.source_slots; ++i)
    if (const std::uint32_t v = st.sources[i].version.load(); (v & 1u) != 0) st.sources[i].version.store(v + 1);
  // Released slots no probe needs (left by an earlier build, by a release killed before it
  // emptied them, or in a table that had no empty slot left): emptied, so that lookups of
  // unknown ids stop early again.
  detail::empty_unneeded_tombstones(st);
  // Source transactions whose first record is not in the channel never happened.
  for (std::uint32_t i = 0; i < st.source_slots; ++i) {
    const std::uint64_t at = st.sources[i].pending_at.load();
    if (at == 0) continue;
    std::uint64_t size = 0;
    if (at - 1 < floor || (at - 1 < end && valid_record_at(st, at - 1, &size))) continue;  // resolved on read
    st.sources[i].pending_at.store(0);
  }
}

// After a power loss (the file was last written on another boot): each source whose state is
// past its durable checkpoint goes back to it. Its last committed state may have reached the
// disk without the records of the last sync interval (page writeback keeps no order); those
// records are read again from the source (a tail's file) under the same identities, and copies
// of them that did survive are dropped downstream by identity. A source with no checkpoint (one
// written under every-commit, by an earlier build, new since the last sync, or whose state was
// last set with no events) keeps its state. By the exclusive opener, after settle_sources.
// Returns how many sources went back.
std::uint64_t roll_back_to_durable(ChannelState& st) noexcept {
  std::uint64_t moved = 0;
  for (std::uint32_t i = 0; i < st.source_slots; ++i) {
    SourceSlot& s = st.sources[i];
    const std::uint64_t id = s.source_id.load();
    if (id == 0 || id == kReleasedSourceId) continue;
    const std::uint64_t next = s.next_sequence.load();
    std::uint64_t d_next = 0, d_pos = 0;
    if (!s.durable(id, next, d_next, d_pos)) continue;
    if (d_next == next && d_pos == s.position.load() && s.pending_at.load() == 0) continue;
    const std::uint32_t v = s.version.load();
    s.version.store(v | 1u);
    s.pending_at.store(0);  // an open batch is past the checkpoint too
    s.next_sequence.store(d_next);
    s.position.store(d_pos);
    s.version.store((v | 1u) + 1);
    ++moved;
  }
  return moved;
}

// The retention head and its copy, by the exclusive opener.
void set_head(Header* h, std::uint64_t head) noexcept {
  __atomic_store_n(&h->head.head, head, __ATOMIC_RELEASE);
  h->head_copy.store(~head, std::memory_order_relaxed);
}

// Recovery after every process has detached (we hold the exclusive lock). See channel.h.
// `rebooted`: the file was last written on another boot (see roll_back_to_durable).
RecoveryReport recover(ChannelState& st, bool rebooted) {
  RecoveryReport rep;
  rep.ran = true;
  Header* h = st.hdr;

  // All attached processes are gone: collect the reservations of dead producers. Their slots
  // are cleared only at the end: recovery itself may be killed, and the next one must still
  // know which regions were reserved and never published (without that, a batch published
  // half-way, last record first, would be salvaged as if it had been written whole).
  struct Claim {
    std::uint64_t pos, end, records;
  };
  std::vector<Claim> claims;
  for (std::uint32_t i = 0; i < kProducerSlots; ++i) {
    auto& s = st.producers[i];
    if (s.pid.load() == 0) continue;
    const std::uint64_t pos = s.claim_pos.load(), len = s.claim_len.load();
    // A reservation is whole records (after a pad to the end of a lap, perhaps): record-aligned,
    // a pad shorter than one record and at most a quarter of the ring of records (a larger
    // batch is refused), so at most half the ring. A slot that says otherwise is damaged: its
    // region is left to the scan, which salvages what is valid there.
    if (len != 0 && (pos | len) % kRecordAlign == 0 && len <= st.capacity / 2)
      claims.push_back({pos, pos + len, s.claim_records.load()});
  }
  // Consumers killed while registering never existed. A slot that is neither free nor a
  // registered consumer with a name (a damaged header) is freed: left active, it would hold
  // the ring's floor back for good and block every producer.
  for (std::uint32_t i = 0; i < kConsumerSlots; ++i) {
    ConsumerSlot& c = st.consumers[i];
    c.owner_pid.store(0);
    const std::uint32_t state = c.state.load();
    const bool named = c.name[0] != '\0' && std::memchr(c.name, '\0', sizeof c.name) != nullptr;
    if (state != kFree && (state != kActive || !named)) c.state.store(kFree);
    // A cursor and its copy that disagree (a flipped bit, or a commit cut between the two
    // stores): the lower is kept, never a cursor past records nobody read.
    if (const std::uint64_t v = c.checked_cursor(); c.state.load() == kActive && v != c.cursor.load()) {
      c.set_cursor(v);
      ++rep.cursors_moved;
    }
  }

  // A retention head and its copy that disagree: the lower is kept, as for a cursor.
  if (const std::uint64_t head = load_u64(&h->head.head), v = lower_of_copies(head, h->head_copy.load()); v != head)
    set_head(h, v);
  // Records start 8-aligned; a damaged head or cursor may not be: align the head down (the
  // scan below moves misaligned cursors onto the next record boundary).
  if (const std::uint64_t head = load_u64(&h->head.head); (head & (kRecordAlign - 1)) != 0)
    set_head(h, head & ~std::uint64_t{kRecordAlign - 1});
  // Producers raise the retention head only to the lowest live cursor, and a consumer registers
  // at or after it: a cursor below the head on file is stale (its page older than the header's
  // after a power loss, or zeroed by a cut) and the head is the better bound of where it was.
  // A head past the stored write head (they share a sector: no power loss tears them apart) is
  // damage, and no bound of anything: it goes back to the lowest cursor, within the write head.
  if (const std::uint64_t head = load_u64(&h->head.head), tail = load_u64(&h->tail.pos); head > tail) {
    std::uint64_t lowest = tail >= st.capacity ? tail - st.capacity : 0;  // without consumers: all kept
    bool any = false;
    for (std::uint32_t i = 0; i < kConsumerSlots; ++i)
      if (st.consumers[i].state.load() == kActive) {
        const std::uint64_t at = std::min(st.consumers[i].cursor.load(), tail);
        lowest = any ? std::min(lowest, at) : at;
        any = true;
      }
    set_head(h, lowest & ~std::uint64_t{kRecordAlign - 1});
  }
  for (std::uint32_t i = 0; i < kConsumerSlots; ++i)
    if (const std::uint64_t head = load_u64(&h->head.head);
        st.consumers[i].state.load() == kActive && st.consumers[i].cursor.load() < head) {
      st.consumers[i].set_cursor(head);
      ++rep.cursors_moved;
    }
  std::uint64_t floor = st.compute_floor() & ~std::uint64_t{kRecordAlign - 1};
  // After a power loss the cursors and the retention head may be older than the data: the
  // page holding them was not written back while the ring went on, lapping them. Records
  // say where they belong (the tag is the absolute position): a valid record ending more
  // than a lap past the floor proves the live cursors had reached (its end - capacity), since
  // producers never overwrite what a consumer still needs. Start there, or that whole newer
  // lap would be lost as "not continuing the sequence". (Consumed records may be re-read:
  // duplicates of known identity, never a loss.) The end counts, not the start: a record
  // starting just short of a lap past the floor may still reach over it.
  std::uint64_t newest_end = 0;
  for (std::uint64_t off = 0; off < st.capacity; off += kRecordAlign) {
    const RecordHeader* rh = st.header_at(off);
    const std::uint64_t tag = rh->tag.load(std::memory_order_relaxed);
    const std::uint64_t pos = tag & ~std::uint64_t{kRecordAlign - 1};
    if ((tag & (kRecordAlign - 1)) != kRecordTag || (pos & st.mask) != off || pos < floor) continue;
    const std::uint32_t len = rh->length.load(std::memory_order_relaxed);
    if (len > st.max_payload || pos + record_size(len) <= std::max(floor + st.capacity, newest_end)) continue;
    std::uint64_t size = 0;
    if (valid_record_at(st, pos, &size)) newest_end = pos + size;
  }
  if (newest_end > floor + st.capacity) {
    floor = newest_end - st.capacity;  // 8-aligned, as records are
    for (std::uint32_t i = 0; i < kConsumerSlots; ++i)
      if (st.consumers[i].state.load() == kActive && st.consumers[i].cursor.load() < floor) {
        st.consumers[i].set_cursor(floor);
        ++rep.cursors_moved;
      }
    if (load_u64(&h->head.head) < floor) set_head(h, floor);
  }
  const std::uint64_t limit = floor + st.capacity;
  const std::uint64_t stored_end = load_u64(&h->tail.pos);
  const std::uint64_t stored_seq = load_u64(&h->tail.seq);
  std::uint64_t abandoned_seqs = 0;
  // Consumer cursors, ascending, to be moved onto record boundaries.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> cursors;
  for (std::uint32_t i = 0; i < kConsumerSlots; ++i)
    if (st.consumers[i].state.load() == kActive) cursors.emplace_back(st.consumers[i].cursor.load(), i);
  std::sort(cursors.begin(), cursors.end());
  std::size_t next_cursor = 0;
  auto pass_to = [&](std::uint64_t from, std::uint64_t to) {
    while (next_cursor < cursors.size() && cursors[next_cursor].first <= from) ++next_cursor;
    while (next_cursor < cursors.size() && cursors[next_cursor].first < to) {
      st.consumers[cursors[next_cursor].second].set_cursor(to);
      ++rep.cursors_moved;
      ++next_cursor;
    }
  };

  // Closes [from, to) so that readers step over it: a skip record, or a pad when it runs to
  // the end of the lap (a pad is its tag alone). A region too small for a skip header (it would
  // overwrite the record at `to`) can only be the start of the scan, since records are
  // contiguous within a lap: a damaged cursor, a scan starting inside a dead writer's claim,
  // or the start of a lap found by the pre-scan. Nothing reads from there, so whatever points
  // into it (cursors, the retention head) is moved onto `to` instead.
  // A tag in a slot that names that slot at or after `from` (this lap or a later one) is what a
  // power loss left of a newer record. In a region closed as damaged it is cleared: once
  // producers reach it, a consumer would take the leftover for their record, in the moment
  // between their reservation and their publication. (Only there: elsewhere such a word may be
  // payload bytes of a record still in the ring.)
  auto clear_leftover_tags = [&](std::uint64_t from, std::uint64_t to) {
    for (std::uint64_t q = from; q < to; q += kRecordAlign) {
      std::atomic<std::uint64_t>& tag = st.header_at(q)->tag;
      const std::uint64_t t = tag.load(std::memory_order_relaxed);
      const std::uint64_t named = t & ~std::uint64_t{kRecordAlign - 1};
      if ((t & (kRecordAlign - 1)) != 0 && named >= q && (named & st.mask) == (q & st.mask)) tag.store(0);
    }
  };
  auto close_gap = [&](std::uint64_t from, std::uint64_t to) {
    clear_leftover_tags(from, to);  // before the skip header (its tag names `from`) is written
    if (to - from >= kMinSkip || to == st.lap_end(from)) {
      st.close_region(from, to, kSkipTag, true);
      pass_to(from, to);
      return;
    }
    for (std::uint32_t i = 0; i < kConsumerSlots; ++i) {
      const std::uint64_t at = st.consumers[i].cursor.load();
      if (st.consumers[i].state.load() == kActive && at >= from && at < to) {
        st.consumers[i].set_cursor(to);
        ++rep.cursors_moved;
      }
    }
    if (const std::uint64_t head = load_u64(&h->head.head); head >= from && head < to)
      set_head(h, to);
    while (next_cursor < cursors.size() && cursors[next_cursor].first < to) ++next_cursor;
  };

  bool have_seq = false;
  std::uint64_t last_seq = 0;
  std::uint64_t last_end = 0;  // end of the last valid record
  std::uint64_t p = floor;
  while (p < limit) {
    std::uint64_t size = 0;
    if (valid_record_at(st, p, &size)) {
      const std::uint64_t seq = st.header_at(p)->channel_seq;
      if (!have_seq || seq > last_seq) {
        have_seq = true;
        last_seq = seq;
        abandoned_seqs = 0;  // only claims after the last valid record matter at the end
        ++rep.records_salvaged;
        pass_to(p, p + size);
        p += size;
        last_end = p;
        continue;
      }
    }
    const std::uint64_t tag = st.header_at(p)->tag.load();
    // A record whose tag's kind bits were flipped at rest (the CRC does not cover the tag): read
    // as a pad or a skip it would make the scan jump over every record after it. Its position
    // and its CRC still vouch for it (a pad or skip region whose bytes verify as a record's CRC
    // is a 2^-32 chance): its tag is repaired and it is salvaged as the record it is.
    if (record_under_flipped_tag(st, p, tag, st.header_at(p))) {
      st.header_at(p)->tag.store(make_tag(p, kRecordTag));
      continue;  // read again, as a record
    }
    if (tag == make_tag(p, kPadTag)) {
      pass_to(p, st.lap_end(p));
      p = st.lap_end(p);
      continue;
    }
    if (is_skip_tag(tag, p)) {  // a damaged one is a damaged region (below)
      if (const std::uint32_t len = skip_length(st, p, st.header_at(p), tag); len != 0) {
        pass_to(p, p + len);
        p += len;
        continue;
      }
    }
    // A dead producer's reservation: close it, the whole of it (a batch it published in part,
    // last record first, is not salvaged in part). Never past a lap from the floor, where no
    // producer writes: a claim said to reach further is cut there. A slot's claim is also set
    // while a reservation is only being attempted: one that valid records start inside was
    // never made (others wrote there), and is no claim.
    // Two dead slots may claim one place (one attempted, one made): the shortest is closed, and
    // the scan goes on after it.
    auto c = claims.end();
    for (auto it = claims.begin(); it != claims.end(); ++it)
      if (p >= it->pos && p < it->end && last_end <= it->pos && (c == claims.end() || it->end < c->end)) c = it;
    if (c != claims.end()) {
      std::uint64_t end = std::min(c->end, limit);
      // Cut short into the next lap by less than a skip header: close to the lap's end only.
      if (end > st.lap_end(p) && end - st.lap_end(p) < kMinSkip) end = st.lap_end(p);
      close_gap(p, end);
      h->abandoned_records.fetch_add(c->records);
      abandoned_seqs += c->records;
      h->abandoned_bytes.fetch_add(end - p);
      ++rep.abandoned_claims;
      p = end;
      claims.erase(c);
      continue;
    }
    // End of data, or a torn/corrupt region: look for the next record continuing the sequence.
    std::uint64_t q = p + kRecordAlign;
    for (; q < limit; q += kRecordAlign) {
      if (st.header_at(q)->tag.load(std::memory_order_relaxed) != make_tag(q, kRecordTag)) continue;
      if (valid_record_at(st, q, &size) && (!have_seq || st.header_at(q)->channel_seq > last_seq)) break;
    }
    if (q >= limit) break;  // nothing after p: p is the end of the data
    const std::uint64_t seq = st.header_at(q)->channel_seq;
    if (have_seq) rep.records_dropped += seq - last_seq - 1;
    rep.bytes_dropped += q - p;
    h->corrupt_bytes.fetch_add(q - p);
    h->corrupt_records.fetch_add(have_seq ? seq - last_seq - 1 : 0);
    close_gap(p, q);
    p = q;
  }
  // Past the end, a record header that reached the disk without its payload (a power loss)
  // still carries its own position: a consumer would take it for the next record, fail its
  // CRC and step over whatever producers write there next. Clear every such tag. (Only tags
  // naming their own position: the slots past the end still hold the bytes of consumed records,
  // which `walk` and `dump` may read.)
  for (std::uint64_t q = p; q < limit; q += kRecordAlign) {
    std::atomic<std::uint64_t>& tag = st.header_at(q)->tag;
    if ((tag.load(std::memory_order_relaxed) & ~std::uint64_t{kRecordAlign - 1}) == q) tag.store(0);
  }
  // Records the stored write head says were written after the last valid one (a torn tail),
  // less the reservations of dead writers closed above.
  if (stored_end > p && have_seq && stored_seq > last_seq + 1 + abandoned_seqs)
    rep.records_dropped += stored_seq - (last_seq + 1) - abandoned_seqs;
  // Cursors beyond the end (their records were lost): bring them back to the end.
  for (std::uint32_t i = 0; i < kConsumerSlots; ++i) {
    if (st.consumers[i].state.load() == kActive && st.consumers[i].cursor.load() > p) {
      st.consumers[i].set_cursor(p);
      ++rep.cursors_moved;
    }
  }
  settle_sources(st, floor, p);
  if (rebooted) rep.sources_rolled_back = roll_back_to_durable(st);
  const std::uint64_t next_seq = have_seq ? last_seq + 1 : load_u64(&h->tail.seq);
  __atomic_store_n(&h->tail.pos, p, __ATOMIC_RELEASE);
  __atomic_store_n(&h->tail.seq, std::max(next_seq, have_seq ? last_seq + 1 : 0), __ATOMIC_RELEASE);
  // Now the dead producers' slots can go (their claims are closed in the ring).
  for (std::uint32_t i = 0; i < kProducerSlots; ++i) {
    auto& s = st.producers[i];
    if (s.pid.load() == 0) continue;
    h->retired_records.fetch_add(s.records.load());
    h->retired_bytes.fetch_add(s.bytes.load());
    s.records.store(0);
    s.bytes.store(0);
    s.claim_len.store(0);
    s.pid.store(0);
  }

  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  h->recovery_ns.store(ts.tv_sec * 1'000'000'000LL + ts.tv_nsec);
  h->recovery_salvaged.store(rep.records_salvaged);
  h->recovery_dropped_records.store(rep.records_dropped);
  h->recovery_dropped_bytes.store(rep.bytes_dropped);
  h->recovery_abandoned.store(rep.abandoned_claims);
  h->recovery_cursors_moved.store(rep.cursors_moved);
  h->recovery_sources_rolled_back.store(rep.sources_rolled_back);
  return rep;
}

void start_syncer(ChannelState& st) {
  if (st.options.sync != SyncPolicy::kInterval || !st.file.writable()) return;
  st.syncer = std::thread([&st] {
    std::unique_lock lock(st.sync_mu);
    while (!st.sync_cv.wait_for(lock, st.options.sync_interval, [&] { return st.stopping; })) {
      lock.unlock();
      (void)st.sync_all();  // a failure is counted; the next tick writes the pages again
      lock.lock();
    }
  });
}

// Faults every page of the mapping in now. MADV_POPULATE_WRITE (Linux 5.14) does it in the
// kernel; before that, an atomic add of 0 per page (safe beside live writers) does the same.
void pretouch(std::byte* base, std::uint64_t size) noexcept {
#ifndef MADV_POPULATE_WRITE
  constexpr int MADV_POPULATE_WRITE = 23;
#endif
  if (::madvise(base, size, MADV_POPULATE_WRITE) == 0) return;
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  for (std::uint64_t off = 0; off < size; off += page)
    __atomic_fetch_add(reinterpret_cast<std::uint64_t*>(base + off), 0, __ATOMIC_RELAXED);
}

// A channel file shorter than its header says (its tail lost): grown back with zeros, so that
// recovery can keep every record before the cut. Only by the exclusive opener, and only when
// the header is ours and consistent; anything else is left for validate_header to name.
// Returns the size found, or 0 when the file was whole.
// The header of `file` is a channel header this build can read (the rest may be cut off).
Header* channel_header(const MappedFile& file) noexcept {
  if (file.size() < sizeof(Header)) return nullptr;
  auto* h = reinterpret_cast<Header*>(file.data());
  if (std::memcmp(h->magic, kMagic, sizeof kMagic) != 0 || h->version < kOldestChannelFormatVersion ||
      h->version > kChannelFormatVersion ||
      h->layout_size != sizeof(Header) || !std::has_single_bit(h->capacity) || h->capacity < kMinCapacity ||
      !std::has_single_bit(h->source_slots) || h->capacity > (std::uint64_t{1} << 48))
    return nullptr;
  return h;
}

std::uint64_t restore_truncated(MappedFile& file) {
  const Header* h = channel_header(file);
  if (h == nullptr) return 0;
  const Layout l = Layout::compute(h->capacity, h->source_slots);
  if (l.file_size != h->file_size || file.size() >= l.file_size) return 0;
  const std::uint64_t found = file.size();
  file.extend(l.file_size);
  return found;
}

// Clears the clean-close mark before this process writes anything; returns what it was.
std::uint64_t take_clean_close(ChannelState& st) {
  const std::uint64_t mark = st.hdr->clean_close.exchange(0);
  if ((mark & 1u) != 0)
    if (const int err = st.file.sync(0, sizeof(Header), true); err != 0)
      throw_errno(fmt::format("cannot clear the clean-close mark of {} on disk", st.file.path().string()), err);
  return mark;
}

// True if `mark` (taken by the exclusive opener) vouches for the file as it is now.
bool clean_close_holds(const ChannelState& st, std::uint64_t mark) noexcept {
  if (mark == 0) return false;
  const bool durable = (mark & 1u) != 0;
  const std::uint64_t boot = durable ? 0 : boot_id_digest();
  if (!durable && boot == 0) return false;
  if (clean_close_mark(st.hdr, st.consumers, durable, boot) != mark) return false;
  for (std::uint32_t i = 0; i < kProducerSlots; ++i)
    if (st.producers[i].pid.load() != 0) return false;
  return true;
}

// A version-1 file, opened exclusively and recovered: the copies of the cursors and the head
// are written, then the version, durably.
// The oldest position a reader may still walk from: the lowest active cursor, or the retention
// head (computed without raising the head, as compute_floor would).
std::uint64_t oldest_needed(const ChannelState& st) noexcept {
  std::uint64_t p = load_u64(&st.hdr->head.head);
  for (std::uint32_t i = 0; i < kConsumerSlots; ++i)
    if (st.consumers[i].state.load() == kActive) p = std::min(p, st.consumers[i].cursor.load());
  return p;
}

// Pads of an older format carry no check in their CRC field (record_under_flipped_tag, which
// ignores them until the file says version 3): given one, on the chain readers walk, from the
// oldest position a consumer still needs to the write head (recovered, or closed cleanly).
// Only pads found by walking records: a word of payload shaped like a pad tag is not touched.
void check_old_pads(ChannelState& st) noexcept {
  std::uint64_t p = oldest_needed(st);
  const std::uint64_t end = load_u64(&st.hdr->tail.pos);
  if ((p & (kRecordAlign - 1)) != 0) return;
  while (p < end) {
    RecordHeader* h = st.header_at(p);
    const std::uint64_t tag = h->tag.load(std::memory_order_relaxed);
    if (tag == make_tag(p, kPadTag)) {
      check_pad(st, p, h);
      p = st.lap_end(p);
    } else if (const std::uint32_t skip = is_skip_tag(tag, p) ? skip_length(st, p, h, tag) : 0; skip != 0) {
      p += skip;
    } else if (const std::uint32_t len = h->length.load(std::memory_order_relaxed);
               tag == make_tag(p, kRecordTag) && st.frames(p, len)) {
      p += record_size(len);
    } else {
      return;  // damage a reader stops at too
    }
  }
}

void upgrade(ChannelState& st) {
  for (std::uint32_t i = 0; i < kConsumerSlots; ++i)
    if (st.consumers[i].state.load() == kActive) st.consumers[i].set_cursor(st.consumers[i].cursor.load());
  set_head(st.hdr, load_u64(&st.hdr->head.head));
  auto sync = [&st](std::uint64_t bytes) {
    if (const int err = st.file.sync(0, bytes, true); err != 0)
      throw_errno(fmt::format("cannot upgrade {} to channel format version {}", st.file.path().string(),
                              kChannelFormatVersion),
                  err);
  };
  if (st.hdr->version < 3) {
    check_old_pads(st);
    sync(st.file.size());  // the pads' checks on disk before the version that trusts them
  }
  sync(Layout::compute(st.capacity, st.source_slots).header_size);  // the copies, in the tables
  st.hdr->version = kChannelFormatVersion;
  sync(sizeof(Header));
}

// `fresh`: the file was just created by us; there is nothing to recover. Null when this opener
// waited for the lock of an exclusive opener that died while making the file consistent: the
// caller opens again (and so recovers the file, or waits for whoever does).
std::shared_ptr<ChannelState> try_open_state(const std::filesystem::path& path, const OpenOptions& options,
                                             bool fresh) {
  auto file = MappedFile::open(path, options.read_only ? MappedFile::Access::kReadOnly : MappedFile::Access::kReadWrite);
  int lock_error = 0;
  const bool exclusive = !options.read_only && file.try_lock_exclusive(&lock_error);
  // Refused, not held: without knowing, this opener would skip recovery (and the growing back
  // of a cut file) as if another process had the channel open.
  if (lock_error != 0) throw_errno(fmt::format("cannot lock {} (flock, exclusive)", path.string()), lock_error);
  // Before anything is changed (a cut file grown back, the recovery, the source table settled,
  // the format upgraded): an opener waiting for our lock must learn if we die part-way.
  if (exclusive && !fresh)
    if (Header* h = channel_header(file)) h->last_open.store(kOpening);
  const std::uint64_t found = exclusive && !fresh ? restore_truncated(file) : 0;
  auto st = attach(std::move(file), options);
  if (options.pretouch && !options.read_only) pretouch(st->file.data(), st->file.size());
  LastOpen how = kOpenedAfterScan;
  if (exclusive && !fresh) {
    const std::uint64_t mark = take_clean_close(*st);
    if (found == 0 && options.trust_clean_close && clean_close_holds(*st, mark)) {
      // Every process detached cleanly and no writer is dead in the ring: only the owners are
      // stale, and the source table may hold what a writer killed mid-update left.
      for (std::uint32_t i = 0; i < kConsumerSlots; ++i) {
        st->consumers[i].owner_pid.store(0);
        if (st->consumers[i].state.load() == kRegistering) st->consumers[i].state.store(kFree);
      }
      settle_sources(*st, st->compute_floor() & ~std::uint64_t{kRecordAlign - 1}, load_u64(&st->hdr->tail.pos));
      how = kOpenedAfterCleanClose;
    } else {
      // Written last on another boot: the page cache those writers wrote into is gone (a power
      // loss or a kernel crash in between), so source states may be ahead of their records.
      const std::uint64_t wrote_on = st->hdr->writer_boot.load();
      const std::uint64_t boot = boot_id_digest();
      recover(*st, wrote_on != 0 && boot != 0 && wrote_on != boot);
      st->hdr->recovery_file_bytes.store(found);
      if (st->file.faulted())  // the file shrank while recovery read it: what it wrote is not to be trusted
        throw Error(fmt::format("{} was truncated while it was being recovered; open it again", path.string()));
    }
  }
  // A version-1 file: upgraded by the first opener, so that a version-1 build refuses it from
  // now on rather than meet what this build writes (checked skips it would stop at).
  if (exclusive && !options.read_only && st->hdr->version < kChannelFormatVersion) upgrade(*st);
  if (exclusive && !fresh) st->hdr->last_open.store(how);
  if (!options.read_only) {
    st->file.lock_shared();  // downgrade (or wait for a recovering or closing process)
    if (!exclusive && st->hdr->last_open.load() == kOpening) return nullptr;
    // Joining a version-1 build that has it open is refused: it would meet what we write.
    if (!exclusive && st->hdr->version < kChannelFormatVersion)
      throw Error(fmt::format("{} has channel format version {} and is open in a build that reads only that "
                              "version; stop it before opening the file with this build (format version {})",
                              path.string(), st->hdr->version, kChannelFormatVersion));
    if (!exclusive) (void)take_clean_close(*st);
    // The sync epochs as a torn or damaged header may have left them: none counted done that
    // was not begun (a checkpoint is trusted only after a sync that began after it).
    if (exclusive) {
      const std::uint64_t begun = st->hdr->sync_epochs_started.load();
      if (st->hdr->sync_epochs_done.load() > begun) st->hdr->sync_epochs_done.store(begun);
    }
    if (const std::uint64_t boot = boot_id_digest(); boot != 0 && st->hdr->writer_boot.load() != boot)
      st->hdr->writer_boot.store(boot);
  }
  start_syncer(*st);
  st->opener_pid = static_cast<std::uint32_t>(::getpid());
  st->sync_failures_at_open = st->hdr->sync_failures.load();
  st->opened = true;
  return st;
}

std::shared_ptr<ChannelState> open_state(const std::filesystem::path& path, const OpenOptions& options,
                                         bool fresh = false) {
  // Openers that waited on the same dead one all wake at once and find the mark: each closes
  // the file and tries again after a jittered pause, so that one of them gets the exclusive lock
  // while the others hold none, recovers, and the rest wait for it.
  std::minstd_rand jitter(static_cast<std::uint32_t>(::getpid()) ^
                          static_cast<std::uint32_t>(std::hash<std::thread::id>{}(std::this_thread::get_id())));
  constexpr int kAttempts = 1000;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    // Fresh only the first time: an opener that came in between and died leaves it to recover.
    if (auto st = try_open_state(path, options, fresh && attempt == 0)) return st;
    std::this_thread::sleep_for(std::chrono::microseconds(500 + jitter() % 4500));
  }
  throw Error(fmt::format("cannot open {}: the process that was recovering it died part-way, and {} attempts to "
                          "open it since met other openers; open it again",
                          path.string(), kAttempts));
}

}  // namespace
}  // namespace detail

using namespace detail;

Channel::Channel(std::shared_ptr<ChannelState> state) noexcept : state_(std::move(state)) {}
Channel::Channel(Channel&&) noexcept = default;
Channel& Channel::operator=(Channel&&) noexcept = default;
Channel::~Channel() = default;

Channel Channel::create(const std::filesystem::path& path, const ChannelConfig& config, const OpenOptions& options) {
  if (!std::has_single_bit(config.capacity) || config.capacity < kMinCapacity)
    throw Error(fmt::format("channel capacity must be a power of two of at least {} bytes, not {}", kMinCapacity,
                            config.capacity));
  if (config.max_payload == 0 || record_size(config.max_payload) > config.capacity / 4)
    throw Error(fmt::format("max payload {} must be between 1 and a quarter of the capacity ({} bytes) minus the "
                            "{}-byte record header",
                            config.max_payload, config.capacity / 4, kRecordHeaderSize));
  if (!std::has_single_bit(config.source_slots))
    throw Error(fmt::format("source slots must be a power of two, not {}", config.source_slots));
  const Layout l = Layout::compute(config.capacity, config.source_slots);
  // Write the header into a temporary name and rename it into place, so that no process can
  // ever open a half-initialised channel.
  const auto tmp = std::filesystem::path(path).concat(fmt::format(".creating.{}", ::getpid()));
  {
    auto file = MappedFile::create(tmp, l.file_size, {config.mode, config.group});
    auto* h = reinterpret_cast<Header*>(file.data());
    std::memcpy(h->magic, kMagic, sizeof kMagic);
    h->version = kChannelFormatVersion;
    h->header_size = static_cast<std::uint32_t>(l.header_size);
    h->file_size = l.file_size;
    h->capacity = config.capacity;
    h->max_payload = config.max_payload;
    h->source_slots = config.source_slots;
    h->producer_slots = kProducerSlots;
    h->consumer_slots = kConsumerSlots;
    h->layout_size = sizeof(Header);
    h->head_copy.store(~std::uint64_t{0});  // of head 0
    h->created_ns = realtime_ns(true);
    if (const int err = file.sync(0, l.header_size, true); err != 0) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw_errno(fmt::format("cannot write the header of {} to disk", path.string()), err);
    }
  }
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    std::filesystem::remove(tmp, ec);
    throw Error(fmt::format("cannot create channel {}: the file already exists", path.string()));
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw Error(fmt::format("cannot create channel {}: {}", path.string(), ec.message()));
  }
  return Channel(open_state(path, options, true));
}

Channel Channel::open(const std::filesystem::path& path, const OpenOptions& options) {
  return Channel(open_state(path, options));
}

Channel Channel::open_or_create(const std::filesystem::path& path, const ChannelConfig& config,
                                const OpenOptions& options) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return open(path, options);
  try {
    return create(path, config, options);
  } catch (const Error&) {
    if (std::filesystem::exists(path, ec)) return open(path, options);  // lost a creation race
    throw;
  }
}

const std::filesystem::path& Channel::path() const noexcept { return state_->file.path(); }
bool Channel::sync() const noexcept { return state_->sync_all(); }

bool Channel::remove_consumer(std::string_view name) {
  // Under the registration lock (see Channel::consumer): a process adopting the consumer
  // stores its pid, then its start time, and between the two it would look dead here (its pid
  // beside the previous owner's start time), and its slot would be freed under it.
  if (!state_->file.writable())
    throw Error(fmt::format("channel {} is open read-only: removing a consumer writes to it", path().string()));
  const RegistrationLock lock(*state_);
  for (std::uint32_t i = 0; i < kConsumerSlots; ++i) {
    auto& c = state_->consumers[i];
    if (c.state.load() == kActive && name == c.name) {
      // Taken over first, as a consumer adopting it would: a process adopting it meanwhile
      // either wins (and this refuses) or finds it held by us.
      const std::uint32_t self = static_cast<std::uint32_t>(::getpid());
      std::uint32_t owner = c.owner_pid.load();
      for (;;) {
        if (owner != 0 && process_alive(owner, c.owner_start.load()))
          throw Error(fmt::format("consumer '{}' of {} is in use by process {}", name, path().string(), owner));
        if (c.owner_pid.compare_exchange_strong(owner, self)) break;
      }
      c.state.store(kFree);
      std::uint32_t mine = self;  // unless a registration took the freed slot meanwhile
      c.owner_pid.compare_exchange_strong(mine, 0);
      state_->wake_producers();
      return true;
    }
  }
  return false;
}

namespace {
std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64 finaliser: spreads sequential ids
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

namespace detail {
SourceSlot* find_source(ChannelState& st, std::uint64_t id, bool create) noexcept {
  if (id == 0 || id == kReleasedSourceId) return nullptr;
  const std::uint32_t mask = st.source_slots - 1;
  // Linear probing from the id's hash. An empty slot (0) ends a probe: ids are never moved, and
  // every slot between an id's hash and its slot is taken or released (kReleasedSourceId), so
  // lookups need no lock. A new source takes the first released slot on its probe, else the
  // empty slot that ended it, under the SourceTableLock; a release, under it too, empties the
  // released slots that end at an empty one: no probe passes them (with no insert under way,
  // an id past them would have its probe through the empty slot).
  {
    std::uint32_t idx = static_cast<std::uint32_t>(mix(id)) & mask;
    for (std::uint32_t i = 0; i < st.source_slots; ++i, idx = (idx + 1) & mask) {
      const std::uint64_t cur = st.sources[idx].source_id.load(std::memory_order_acquire);
      if (cur == id) return &st.sources[idx];
      if (cur == 0) break;
    }
  }
  if (!create) return nullptr;
  std::optional<SourceTableLock> lock;
  try {
    lock.emplace(st);
  } catch (...) {
    return nullptr;  // the kernel refused the byte lock: taken as no slot (the caller retries)
  }
  for (;;) {
    SourceSlot* released = nullptr;
    std::uint32_t i = 0;
    for (std::uint32_t idx = static_cast<std::uint32_t>(mix(id)) & mask; i < st.source_slots;
         ++i, idx = (idx + 1) & mask) {
      SourceSlot& s = st.sources[idx];
      std::uint64_t cur = s.source_id.load(std::memory_order_acquire);
      if (cur == id) return &s;
      if (cur == kReleasedSourceId) {
        if (released == nullptr) released = &s;
        continue;
      }
      if (cur == 0) {
        if (released != nullptr) break;
        if (s.source_id.compare_exchange_strong(cur, id) || cur == id) return &s;
      }
    }
    if (released == nullptr) return nullptr;  // a full table
    // Taken first by a build before this one, which places sources without the lock (channel.h):
    // then probe again (the id is still in no slot: it has one writer, this one).
    std::uint64_t expected = kReleasedSourceId;
    if (released->source_id.compare_exchange_strong(expected, id) || expected == id) return released;
  }
}
}  // namespace detail

namespace detail {
void empty_unneeded_tombstones(ChannelState& st) noexcept {
  const std::uint32_t n = st.source_slots, mask = n - 1;
  try {
    // needed[k]: slot k lies between some live id's hash and its slot. A difference array over
    // two laps of the table marks each id's probe (which may wrap) in one pass.
    std::vector<std::int32_t> diff(2 * std::size_t{n} + 1, 0);
    for (std::uint32_t j = 0; j < n; ++j) {
      const std::uint64_t id = st.sources[j].source_id.load();
      if (id == 0 || id == kReleasedSourceId) continue;
      const auto home = static_cast<std::uint32_t>(mix(id)) & mask;
      const std::uint32_t probe = (j - home) & mask;
      ++diff[home];
      --diff[std::size_t{home} + probe];
    }
    std::vector<bool> needed(n, false);
    std::int32_t open = 0;
    for (std::size_t i = 0; i < 2 * std::size_t{n}; ++i) {
      open += diff[i];
      if (open > 0) needed[i & mask] = true;
    }
    for (std::uint32_t i = 0; i < n; ++i)
      if (!needed[i] && st.sources[i].source_id.load() == kReleasedSourceId) st.sources[i].source_id.store(0);
  } catch (const std::bad_alloc&) {
    // (8 bytes per slot: left as they are, still correct)
  }
}

void empty_tombstones_before(ChannelState& st, std::uint32_t empty) noexcept {
  const std::uint32_t mask = st.source_slots - 1;
  for (std::uint32_t i = (empty - 1) & mask, n = 0; n < st.source_slots; i = (i - 1) & mask, ++n) {
    if (st.sources[i].source_id.load(std::memory_order_acquire) != kReleasedSourceId) break;
    st.sources[i].source_id.store(0, std::memory_order_release);
  }
}
}  // namespace detail

std::optional<SourcePosition> Channel::source_position(std::uint64_t source_id) const {
  ChannelState& st = *state_;
  SourceSlot* s = find_source(st, source_id, false);
  if (s == nullptr) return std::nullopt;
  std::uint64_t next = 0, pos = 0, at = 0, pseq = 0, ppos = 0;
  // A writer killed inside its update leaves the version odd for good. Its stores are ordered
  // so that the fields read consistently even then (pending_at is set last and cleared last),
  // so after a second of an odd version the fields are taken as they are, rather than
  // spinning forever (a restarted collector would hang here while an uplink keeps the channel
  // open, and so unrecovered).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (;;) {
    std::uint32_t v1 = s->version.load(std::memory_order_acquire);
    if ((v1 & 1u) != 0) {
      if (std::chrono::steady_clock::now() < give_up) {
        ::sched_yield();
        continue;
      }
      v1 = UINT32_MAX;  // read once, unversioned
    }
    // Acquire loads (not a fence: TSan understands these): the re-read of the version below
    // cannot move above them.
    next = s->next_sequence.load(std::memory_order_acquire);
    pos = s->position.load(std::memory_order_acquire);
    at = s->pending_at.load(std::memory_order_acquire);
    pseq = s->pending_sequence.load(std::memory_order_acquire);
    ppos = s->pending_position.load(std::memory_order_acquire);
    if (v1 == UINT32_MAX || s->version.load(std::memory_order_relaxed) == v1) break;
  }
  if (at != 0) {
    // An unfinished transaction: it counts if its first record was published (the batch is
    // published last-to-first, so the first record implies all), or if consumers have moved
    // past it (a closed, abandoned batch would have cleared pending_at).
    const std::uint64_t first = at - 1;
    const bool overwritten = first < load_u64(&st.hdr->head.head);
    const bool published = st.header_at(first)->tag.load(std::memory_order_acquire) == make_tag(first, kRecordTag);
    if (overwritten || published) {
      next = pseq;
      pos = ppos;
    } else if (next == 0 && pos == 0) {
      return std::nullopt;  // the source's first batch never made it
    }
  } else if (next == 0 && pos == 0 && s->version.load() == 0) {
    return std::nullopt;
  }
  return SourcePosition{source_id, next, pos};
}

bool Channel::release_source(std::uint64_t source_id) {
  ChannelState& st = *state_;
  if (st.options.read_only) throw Error(fmt::format("{}: opened read-only, cannot release a source", path().string()));
  const SourceTableLock lock(st);
  SourceSlot* s = find_source(st, source_id, false);
  if (s == nullptr) return false;
  // Cleared under the seqlock, the version back at 0 (never written: source_position tells a
  // source with no committed state by it), then the slot handed back. A source that takes it
  // finds it as a new slot. Killed after the clearing, this leaves the source's id with no
  // state; killed inside it, an odd version (evened by the next exclusive opener) over fields
  // part cleared: a released source is not resumed, so either is harmless.
  s->version.store(s->version.load(std::memory_order_relaxed) | 1u, std::memory_order_relaxed);
  s->pending_at.store(0, std::memory_order_release);
  s->next_sequence.store(0, std::memory_order_release);
  s->position.store(0, std::memory_order_release);
  s->pending_sequence.store(0, std::memory_order_release);
  s->pending_position.store(0, std::memory_order_release);
  s->durable_sequence.store(0, std::memory_order_release);  // no checkpoint for whoever takes it
  s->durable_position.store(0, std::memory_order_release);
  s->version.store(0, std::memory_order_release);
  s->source_id.store(kReleasedSourceId, std::memory_order_release);
  const auto at = static_cast<std::uint32_t>(s - st.sources);
  const std::uint32_t next = (at + 1) & (st.source_slots - 1);
  if (st.sources[next].source_id.load(std::memory_order_acquire) == 0) detail::empty_tombstones_before(st, next);
  return true;
}

SourceTableUse Channel::source_table() const {
  const ChannelState& st = *state_;
  SourceTableUse u;
  u.slots = st.source_slots;
  for (std::uint32_t i = 0; i < st.source_slots; ++i) {
    const std::uint64_t id = st.sources[i].source_id.load(std::memory_order_relaxed);
    if (id == kReleasedSourceId) {
      ++u.released;
    } else if (id != 0) {
      ++u.in_use;
    }
  }
  return u;
}

std::vector<SourcePosition> Channel::sources() const {
  const ChannelState& st = *state_;
  std::vector<SourcePosition> out;
  for (std::uint32_t i = 0; i < st.source_slots; ++i) {
    const std::uint64_t id = st.sources[i].source_id.load(std::memory_order_acquire);
    if (id == 0 || id == kReleasedSourceId) continue;
    if (std::optional<SourcePosition> sp = source_position(id)) out.push_back(*sp);
  }
  return out;
}

ChannelStats Channel::stats() const {
  const ChannelState& st = *state_;
  const Header* h = st.hdr;
  ChannelStats s;
  s.capacity = st.capacity;
  s.max_payload = st.max_payload;
  s.write_position = load_u64(&h->tail.pos);
  s.next_channel_seq = load_u64(&h->tail.seq);
  std::uint64_t floor = UINT64_MAX;
  for (std::uint32_t i = 0; i < kConsumerSlots; ++i) {
    const auto& c = st.consumers[i];
    if (c.state.load() != kActive) continue;
    ConsumerInfo info;
    info.name = c.name;
    info.committed = c.cursor.load();
    info.records_committed = c.records_committed.load();
    const std::uint32_t owner = c.owner_pid.load();
    info.owner_pid = (owner != 0 && process_alive(owner, c.owner_start.load())) ? owner : 0;
    floor = std::min(floor, info.committed);
    s.consumers.push_back(std::move(info));
  }
  s.oldest_retained = floor == UINT64_MAX ? load_u64(&h->head.head) : floor;
  s.used_bytes = s.write_position - std::min(s.write_position, s.oldest_retained);
  s.records_written = h->retired_records.load();
  s.bytes_written = h->retired_bytes.load();
  for (std::uint32_t i = 0; i < kProducerSlots; ++i) {
    const auto& p = st.producers[i];
    const std::uint32_t pid = p.pid.load();
    if (pid == 0 || pid == kReclaimingPid) continue;
    s.records_written += p.records.load();
    s.bytes_written += p.bytes.load();
    if (process_alive(pid, p.start_time.load())) ++s.live_producers;
  }
  s.abandoned_records = h->abandoned_records.load();
  s.abandoned_bytes = h->abandoned_bytes.load();
  s.corrupt_records = h->corrupt_records.load();
  s.corrupt_bytes = h->corrupt_bytes.load();
  s.producer_waits = h->producer_waits.load();
  s.full_rejections = h->full_rejections.load();
  s.oversize_rejections = h->oversize_rejections.load();
  s.sync_failures = h->sync_failures.load();
  s.last_recovery.at_ns = h->recovery_ns.load();
  s.last_recovery.ran = s.last_recovery.at_ns != 0;
  s.last_recovery.records_salvaged = h->recovery_salvaged.load();
  s.last_recovery.records_dropped = h->recovery_dropped_records.load();
  s.last_recovery.bytes_dropped = h->recovery_dropped_bytes.load();
  s.last_recovery.abandoned_claims = h->recovery_abandoned.load();
  s.last_recovery.cursors_moved = h->recovery_cursors_moved.load();
  s.last_recovery.sources_rolled_back = h->recovery_sources_rolled_back.load();
  s.last_recovery.file_bytes_found = h->recovery_file_bytes.load();
  s.opened_after_clean_close = h->last_open.load() == kOpenedAfterCleanClose;
  s.closed_cleanly = h->clean_close.load() != 0;
  return s;
}

std::uint64_t Channel::walk(const std::function<bool(const Record&)>& f, std::optional<std::uint64_t> from) const {
  const ChannelState& st = *state_;
  std::uint64_t p = from ? *from : oldest_needed(st);
  const std::uint64_t end = load_u64(&st.hdr->tail.pos);
  std::uint64_t n = 0;
  if ((p & (kRecordAlign - 1)) != 0) return 0;  // not a record boundary
  while (p < end) {
    const RecordHeader* h = st.header_at(p);
    const std::uint64_t tag = h->tag.load(std::memory_order_acquire);
    const bool flipped = record_under_flipped_tag(st, p, tag, h);  // a record, its tag damaged at rest
    if (!flipped && tag == make_tag(p, kPadTag)) {
      p = st.lap_end(p);
      continue;
    }
    if (!flipped && is_skip_tag(tag, p)) {
      // A skip written by us is 8-aligned, inside its lap and agrees with its check; anything
      // else is damage at rest (after a clean close no scan has vouched for the ring): stop there.
      const std::uint32_t len = skip_length(st, p, h, tag);
      if (len == 0) break;
      p += len;
      continue;
    }
    std::uint64_t size = 0;
    if (flipped) size = record_size(h->length.load(std::memory_order_relaxed));
    else if (!valid_record_at(st, p, &size)) break;
    const std::uint32_t len = h->length.load(std::memory_order_relaxed);
    Record r{p, p + size, h->channel_seq, h->timestamp_ns, {h->source_id, h->source_seq},
             {reinterpret_cast<const std::byte*>(h) + kRecordHeaderSize, len}};
    ++n;
    if (!f(r)) break;
    p += size;
  }
  return n;
}

}  // namespace tributary::core
