// Consumer: named durable reader. Reads records in place by their tags (no shared read of the
// write position on the hot path; a reader behind a backlog reads it only to bound its
// prefetch, when it gets near the value last read), commits a cursor that bounds what producers
// may reuse, and closes the reservations of dead writers after abandon_timeout.
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "internal/channel_layout.h"
#include "internal/os.h"
#include "tributary/core/error.h"

namespace tributary::core {

using namespace detail;

struct Consumer::Impl {
  std::shared_ptr<ChannelState> st;
  ConsumerSlot* slot = nullptr;
  std::string name;
  ProcessIdentity self;
  std::uint64_t read_pos = 0;
  std::uint64_t committed = 0;
  std::uint64_t uncommitted_records = 0;
  std::uint64_t skipped = 0;
  std::uint64_t tail_seen = 0;  // the write head as last read by poll(): a bound for its prefetch
  std::uint64_t fetched = 0;    // poll() has prefetched the lines below this position
  bool behind = true;           // the last batch poll came back full: a backlog to prefetch
  // Damage resync stepped over since the last commit, as (from, to): a partial commit's walk
  // (commit(position)) jumps it as the reader did, so that it counts the records past it.
  // Bounded; past the bound a partial commit undercounts (records_committed is a statistic).
  static constexpr std::size_t kMaxJumps = 256;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> jumps;
  std::uint64_t stall_pos = UINT64_MAX;
  std::uint32_t stall_spins = 0;
  bool stall_timing = false;
  std::chrono::steady_clock::time_point stall_since{};
  std::atomic<bool> interrupted{false};  // interrupt(): the next wait() returns false
  std::uint64_t released = kNotReleased;  // release(): pages below this position were dropped
  static constexpr std::uint64_t kNotReleased = UINT64_MAX;

  ~Impl() {
    if (slot == nullptr) return;
    std::uint32_t me = self.pid;
    slot->owner_pid.compare_exchange_strong(me, 0);
  }

  // True if poll would make progress at `p`: a record, pad or skip is published there (its tag,
  // below the write head: a tag at or past it is what a power loss left of a newer lap, never
  // published) and can be framed. Damage poll stops at is not readable, so that wait() sleeps
  // on it instead of spinning. The write head is read only when the tag matches.
  [[nodiscard]] bool readable(std::uint64_t p) const noexcept {
    const RecordHeader* h = st->header_at(p);
    const std::uint64_t tag = h->tag.load(std::memory_order_seq_cst);
    if ((tag & ~std::uint64_t{7}) != p || (tag & 7) == 0 || p >= load_u64(&st->hdr->tail.pos)) return false;
    if (tag == make_tag(p, kRecordTag)) return st->frames(p, h->length.load(std::memory_order_relaxed));
    if (record_under_flipped_tag(*st, p, tag, h)) return true;
    if (is_skip_tag(tag, p)) return skip_length(*st, p, h, tag) != 0;
    return tag == make_tag(p, kPadTag);
  }

  void resync(std::uint64_t p) noexcept;

  // Called when nothing is readable at `p`. After abandon_timeout at the same position, looks
  // for the reservation covering it: a live writer is waited for; a dead one's is closed.
  // Busy pollers call this on every empty poll, so it touches nothing shared (the write
  // position is the producers' hottest cache line) and reads the clock only every 1024 calls
  // or when called from wait().
  void check_stall(std::uint64_t p, bool waiting) noexcept {
    if (stall_pos != p) {
      stall_pos = p;
      stall_spins = 0;
      stall_timing = false;
    }
    if (!waiting && (++stall_spins & 1023u) != 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (!stall_timing) {
      stall_timing = true;
      stall_since = now;
      return;
    }
    if (now - stall_since < st->options.abandon_timeout) return;
    stall_since = now;
    if (p >= load_u64(&st->hdr->tail.pos)) return;  // simply empty
    ProducerSlot* dead = nullptr;
    std::uint32_t dead_pid = 0;
    std::uint64_t end = 0;  // of the dead writer's claim, as read beside its pid
    for (std::uint32_t i = 0; i < kProducerSlots; ++i) {
      ProducerSlot& s = st->producers[i];
      const std::uint32_t pid = s.pid.load(std::memory_order_acquire);
      if (pid == 0 || pid == kReclaimingPid) continue;
      const std::uint64_t len = s.claim_len.load(std::memory_order_acquire);
      const std::uint64_t pos = s.claim_pos.load(std::memory_order_acquire);
      if (len == 0 || p < pos || p >= pos + len) continue;
      if (process_alive(pid, s.start_time.load())) return;  // slow, not dead: keep waiting
      // Two dead slots over one place (one attempted, one made): the shorter claim is closed.
      if (dead != nullptr && pos + len >= end) continue;
      dead = &s;
      dead_pid = pid;
      end = pos + len;  // not re-read later: the slot may be retired and reused by then
    }
    if (dead == nullptr) {
      resync(p);
      return;
    }
    if (!st->close_region(p, end, kSkipTag, false)) {
      resync(p);  // a record is published there, damaged: the dead claim was not what stopped us
    } else {
      st->hdr->abandoned_records.fetch_add(dead->claim_records.load());
      st->hdr->abandoned_bytes.fetch_add(end - p);
      // Retire its counters under a sentinel pid, so that a producer reusing the slot at the
      // same moment cannot count them a second time.
      if (dead->pid.compare_exchange_strong(dead_pid, kReclaimingPid)) {
        st->hdr->retired_records.fetch_add(dead->records.load());
        st->hdr->retired_bytes.fetch_add(dead->bytes.load());
        dead->records.store(0);
        dead->bytes.store(0);
        dead->claim_len.store(0);
        dead->pid.store(0, std::memory_order_release);
      }
    }
    st->wake_consumers();
  }
};

// Below the write head, with no reservation over it, a position poll cannot pass is damage that
// no recovery scanned (the file was closed cleanly, then damaged on disk or by hand). The
// consumer goes on at the next record that verifies (CRC) or checked skip, unless a reservation
// lies in between: a live writer's is waited for; at a dead writer's the consumer stops, where
// check_stall closes it. The bytes stepped over are counted as corrupt.
// Why nothing published is stepped over: a claim is announced before the write head moves past
// it (its stores, then the cmpxchg16b, a full barrier) and cleared (release) after the record's
// tag is published. So with the write head read first, then the claims, every record below that
// head which no slot claims has its tag visible to the scan that follows, which starts at `p`
// itself (a writer may have published there since poll looked).
void Consumer::Impl::resync(std::uint64_t p) noexcept {
  if (p != read_pos) return;
  const std::uint64_t tail = load_u64(&st->hdr->tail.pos);
  if (p >= tail) return;
  struct Claim {
    std::uint64_t pos, end;
    std::uint32_t pid;
    std::uint64_t start;
  };
  Claim claims[kProducerSlots];
  std::size_t n = 0;
  for (std::uint32_t i = 0; i < kProducerSlots; ++i) {
    const ProducerSlot& s = st->producers[i];
    const std::uint32_t pid = s.pid.load(std::memory_order_acquire);
    if (pid == 0) continue;
    if (const std::uint64_t len = s.claim_len.load(std::memory_order_acquire); len != 0) {
      const std::uint64_t pos = s.claim_pos.load(std::memory_order_acquire);
      claims[n++] = {pos, pos + len, pid, s.start_time.load(std::memory_order_acquire)};
    }
  }
  std::uint64_t q = align_up(p, kRecordAlign);  // (a damaged cursor may be unaligned)
  for (std::uint64_t size = 0; q < tail; q += kRecordAlign) {
    const RecordHeader* h = st->header_at(q);
    const std::uint64_t tag = h->tag.load(std::memory_order_acquire);
    if ((tag == make_tag(q, kCheckedSkipTag) && skip_length(*st, q, h, tag) != 0) || valid_record_at(*st, q, &size))
      break;
  }
  if (q <= p) return;  // readable after all
  const std::uint64_t scanned = q;
  for (std::size_t i = 0; i < n; ++i) {
    const Claim& c = claims[i];
    if (c.pos >= scanned || c.end <= p) continue;
    if (c.pid == kReclaimingPid) continue;  // closed already, by the consumer retiring its slot
    if (process_alive(c.pid, c.start)) return;  // a live writer's: wait for it
    // A dead writer's. A record published at its start (by it, or by the writer that won the
    // place from it) is damage like the rest; otherwise it was never published: stop there,
    // where check_stall closes it as abandoned.
    if (st->header_at(c.pos)->tag.load(std::memory_order_acquire) == make_tag(c.pos, kRecordTag)) continue;
    if (c.pos <= p) return;
    q = std::min(q, c.pos);
  }
  st->hdr->corrupt_bytes.fetch_add(q - p, std::memory_order_relaxed);
  if (jumps.size() < kMaxJumps) jumps.emplace_back(p, q);
  read_pos = q;
  stall_pos = UINT64_MAX;
}

Consumer::Consumer(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Consumer::Consumer(Consumer&&) noexcept = default;
Consumer& Consumer::operator=(Consumer&&) noexcept = default;
Consumer::~Consumer() = default;

// How far ahead of the record it frames poll() prefetches, and from which batch size.
constexpr std::uint64_t kPrefetchAhead = 4096;
constexpr std::size_t kPrefetchBatch = 16;

std::size_t Consumer::poll(std::span<Record> out) noexcept {
  Impl& c = *impl_;
  const ChannelState& st = *c.st;
  std::uint64_t p = c.read_pos;
  std::size_t n = 0;
  // A backlog: each header's place depends on the previous one's length, a chain of dependent
  // loads that the hardware prefetcher does not run ahead of (an analyzer draining a cold
  // mapping spent a quarter of its time on these loads; a consumer of 1 KiB records fed by a
  // producer on the other core, 85% of poll's: every header is a line that core last wrote,
  // and the payload lines between two headers hide the stride from the prefetcher). Ask for
  // every line up to a page ahead, within the lap and a page short of the reserved write head
  // (lines that producers may still be writing stay theirs); the CRC check and the caller read
  // those lines next anyway. Only while the reader is behind: its last batch poll came back
  // full. Then the write head is read again only when the prefetch gets within two pages of
  // the value last read; a reader at the head (its polls not full, and single-record polls)
  // reads no shared line for it.
  const bool prefetch = c.behind && out.size() >= kPrefetchBatch;
  if (prefetch && c.tail_seen < p + 2 * kPrefetchAhead) c.tail_seen = load_u64(&st.hdr->tail.pos);
  const std::uint64_t head = c.tail_seen > kPrefetchAhead ? c.tail_seen - kPrefetchAhead : 0;
  std::uint64_t fetched = std::max(c.fetched, p);
  while (n < out.size()) {
    const RecordHeader* h = st.header_at(p);
    if (prefetch) {
      if (fetched < p) fetched = p;
      for (const std::uint64_t until = std::min({p + kPrefetchAhead, head, st.lap_end(p)}); fetched < until;
           fetched += 64)
        __builtin_prefetch(st.header_at(fetched));
    }
    const std::uint64_t tag = h->tag.load(std::memory_order_acquire);
    // (A tag naming p as a pad or skip over a record's bytes that verify: a bit flipped at rest
    // in a record's tag, read as the record it is rather than jumped over.)
    if (tag == make_tag(p, kRecordTag) || record_under_flipped_tag(st, p, tag, h)) {
      const std::uint32_t len = h->length.load(std::memory_order_relaxed);
      const std::uint64_t size = record_size(len);
      if (!st.frames(p, len)) break;  // cannot be framed: never delivered
      out[n++] = Record{p,
                        p + size,
                        h->channel_seq,
                        h->timestamp_ns,
                        {h->source_id, h->source_seq},
                        {reinterpret_cast<const std::byte*>(h) + kRecordHeaderSize, len}};
      p += size;
    } else if (tag == make_tag(p, kPadTag)) {
      p = st.lap_end(p);
    } else if (is_skip_tag(tag, p)) {
      const std::uint32_t len = skip_length(st, p, h, tag);
      if (len == 0) break;  // damage, not ours: how far to jump is not known
      p += len;
    } else {
      break;
    }
  }
  c.read_pos = p;
  c.fetched = fetched;
  c.behind = out.size() >= kPrefetchBatch && n == out.size();
  if (n == 0) {
    c.check_stall(p, false);
    return 0;
  }
  if (st.options.verify_on_read) {
    // Verify three records at a time; drop (and count) any whose CRC fails: a bit flip on
    // disk or in memory is never delivered.
    constexpr std::size_t kChunk = 48;
    std::uint64_t positions[kChunk];
    const RecordHeader* headers[kChunk];
    std::uint32_t lens[kChunk];
    std::uint32_t bad[kChunk];
    std::size_t kept = 0;
    bool past_head = false, damaged = false;
    for (std::size_t base = 0; base < n && !past_head && !damaged; base += kChunk) {
      const std::size_t m = std::min(kChunk, n - base);
      for (std::size_t k = 0; k < m; ++k) {
        positions[k] = out[base + k].position;
        headers[k] = st.header_at(positions[k]);
        lens[k] = static_cast<std::uint32_t>(out[base + k].payload.size());
      }
      std::size_t nbad = 0;
      record_crcs(st.crc, m, positions, headers, lens, [&](std::size_t k, std::uint32_t crc) {
        if (crc != headers[k]->crc) bad[nbad++] = static_cast<std::uint32_t>(k);
      });
      for (std::size_t k = 0, b = 0; k < m; ++k) {
        if (b < nbad && bad[b] == k) {
          ++b;
          // At or past the write head nothing was ever published: what fails there is what a
          // power loss left of a newer lap. Stop in front of it; producers will write there.
          if (positions[k] >= load_u64(&st.hdr->tail.pos)) {
            c.read_pos = positions[k];
            past_head = true;
            break;
          }
          ++c.skipped;
          st.hdr->corrupt_records.fetch_add(1, std::memory_order_relaxed);
          // Its length may be what the damage hit, and the walk went on from it by that
          // length: what it framed after it is not trusted. From just past its header, resync
          // finds the next record that verifies (the true next one when only the payload was
          // hit), instead of the intact records a bad length jumped over being lost.
          c.read_pos = positions[k] + kRecordAlign;
          c.resync(c.read_pos);
          damaged = true;
          break;
        }
        out[kept++] = out[base + k];
      }
    }
    n = kept;
  }
  c.uncommitted_records += n;
  return n;
}

bool Consumer::wait(std::chrono::milliseconds timeout) noexcept {
  Impl& c = *impl_;
  ChannelState& st = *c.st;
  Header* h = st.hdr;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (c.readable(c.read_pos)) return true;
    const std::uint32_t v = h->data_futex.load(std::memory_order_seq_cst);
    // After `v`: an interrupt() that comes later also changes the futex word, so the sleep
    // below cannot miss it.
    if (c.interrupted.exchange(false, std::memory_order_seq_cst)) return false;
    st.announce_sleeper(h->data_waiters);
    if (c.readable(c.read_pos)) {
      h->data_waiters.fetch_sub(1, std::memory_order_relaxed);
      return true;
    }
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero() || !st.file.intact()) {
      h->data_waiters.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
    // A reservation is outstanding at our position: wake up in time to check its writer.
    const bool stalled = c.read_pos < load_u64(&h->tail.pos);
    if (stalled) left = std::min<std::chrono::nanoseconds>(left, st.options.abandon_timeout / 4 + std::chrono::milliseconds(1));
    futex_wait(&h->data_futex, v, left);
    h->data_waiters.fetch_sub(1, std::memory_order_relaxed);
    if (stalled) c.check_stall(c.read_pos, true);
  }
}

void Consumer::interrupt() noexcept {
  impl_->interrupted.store(true, std::memory_order_seq_cst);
  impl_->st->wake_consumers();
}

void Consumer::commit() noexcept { commit(impl_->read_pos); }

void Consumer::commit(std::uint64_t position) noexcept {
  Impl& c = *impl_;
  if (position <= c.committed || position > c.read_pos) return;
  ChannelState& st = *c.st;
  std::uint64_t n = c.uncommitted_records;
  if (position != c.read_pos) {  // partial commit: count the records it covers
    n = 0;
    for (std::uint64_t p = c.committed; p < position;) {
      const RecordHeader* h = st.header_at(p);
      const std::uint64_t tag = h->tag.load(std::memory_order_acquire);
      if (const std::uint32_t len = h->length.load(std::memory_order_relaxed);
          (tag == make_tag(p, kRecordTag) && st.frames(p, len)) ||
          record_under_flipped_tag(st, p, tag, h)) {
        ++n;
        p += record_size(len);
      } else if (tag == make_tag(p, kPadTag)) {
        p = st.lap_end(p);
      } else if (const std::uint32_t skip = is_skip_tag(tag, p) ? skip_length(st, p, h, tag) : 0; skip != 0) {
        p += skip;
      } else if (const auto j = std::find_if(c.jumps.begin(), c.jumps.end(), [p](const auto& e) { return e.first == p; });
                 j != c.jumps.end()) {
        p = j->second;  // damage the reader stepped over: jump it as resync did
      } else {
        break;  // not known (past the bound on jumps kept)
      }
    }
  }
  commit_counted(position, n);
}

void Consumer::commit(std::uint64_t position, std::uint64_t records) noexcept {
  Impl& c = *impl_;
  if (position <= c.committed || position > c.read_pos) return;
  commit_counted(position, position == c.read_pos ? c.uncommitted_records : records);
}

void Consumer::commit_counted(std::uint64_t position, std::uint64_t n) noexcept {
  Impl& c = *impl_;
  ChannelState& st = *c.st;
  n = std::min(n, c.uncommitted_records);
  c.uncommitted_records -= n;
  c.committed = position;
  std::erase_if(c.jumps, [position](const auto& e) { return e.first < position; });
  c.slot->records_committed.store(c.slot->records_committed.load(std::memory_order_relaxed) + n,
                                  std::memory_order_relaxed);
  const bool wake = st.store_then_check(c.slot->cursor, position, st.hdr->space_waiters);
  c.slot->cursor_copy.store(~position, std::memory_order_relaxed);
  if (wake) st.wake_producers();
  if (st.options.sync == SyncPolicy::kEveryCommit) {
    // A failure is counted (stats().sync_failures): after a power loss this consumer would
    // re-read from an older cursor, which duplicates (dropped downstream by identity) and
    // never loses.
    (void)st.sync_range(static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(c.slot) - st.file.data()),
                        sizeof(ConsumerSlot));
  }
}

bool Consumer::seek(std::uint64_t position) noexcept {
  Impl& c = *impl_;
  if (position < c.committed) return false;
  const std::uint64_t tail = load_u64(&c.st->hdr->tail.pos);
  if (position > tail) return false;
  if (position != tail && !c.readable(position)) return false;
  c.read_pos = position;
  c.fetched = position;
  c.uncommitted_records = 0;
  return true;
}

bool Consumer::broken() const noexcept { return !impl_->st->file.intact(); }

void Consumer::release(std::uint64_t position) noexcept {
  constexpr std::uint64_t kChunk = 2u << 20;
  Impl& c = *impl_;
  const ChannelState& st = *c.st;
  // A truncated file's mapping is patched with private pages (MappedFile): nothing to give back.
  if (!st.file.intact() || position > c.read_pos) return;
  // The first release (or the first after a seek back) starts at the committed cursor: what
  // this process read before it.
  if (c.released == Impl::kNotReleased || c.released > position) c.released = c.committed;
  if (position < c.released + kChunk) return;
  // A ring page holds a byte of every lap: one that holds a byte written within the last lap
  // below the write head, at or past `position` (read ahead, or not read yet), stays; so does
  // the last page, partly past `position`. The first page, partly below the last release, goes
  // too where it holds nothing of that last lap. Addresses are rounded, not positions: the data
  // region is 4 KiB-aligned, pages may be larger; the header's pages never go.
  const std::uint64_t head = load_u64(&st.hdr->tail.pos);
  const std::uint64_t lap_floor = head > st.capacity ? head - st.capacity : 0;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto addr = [&st](std::uint64_t at) { return reinterpret_cast<std::uintptr_t>(st.data + at); };
  const std::uintptr_t data_lo = (addr(0) + page - 1) / page * page;
  bool first = true;
  for (std::uint64_t from = std::max(c.released, lap_floor); from < position; first = false) {
    const std::uint64_t at = from & st.mask;
    const std::uint64_t len = std::min(position - from, st.capacity - at);
    const std::uintptr_t down = addr(at) / page * page;
    std::uintptr_t begin = first && from - (addr(at) - down) < lap_floor ? down + (addr(at) == down ? 0 : page) : down;
    begin = std::max(begin, data_lo);
    const std::uintptr_t end = addr(at + len) / page * page;
    if (end > begin)  // advice: a failure (mlocked pages) leaves them mapped
      (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
    from += len;
  }
  c.released = position;
}

std::uint64_t Consumer::committed() const noexcept { return impl_->committed; }
std::uint64_t Consumer::read_position() const noexcept { return impl_->read_pos; }
const std::string& Consumer::name() const noexcept { return impl_->name; }
std::uint64_t Consumer::skipped_records() const noexcept { return impl_->skipped; }

Consumer Channel::consumer(std::string_view name, StartAt start) {
  ChannelState& st = *state_;
  if (name.empty() || name.size() > kMaxConsumerName)
    throw Error(fmt::format("consumer name '{}' must be 1 to {} characters", name, kMaxConsumerName));
  if (!st.file.writable())
    throw Error(fmt::format("channel {} is open read-only: a consumer needs to commit", st.file.path().string()));
  auto impl = std::make_unique<Consumer::Impl>();
  impl->jumps.reserve(Consumer::Impl::kMaxJumps);  // resync() is noexcept: it never allocates
  impl->st = state_;
  impl->name = std::string(name);
  impl->self = self_identity();

  auto adopt = [&](ConsumerSlot& s) {
    std::uint32_t owner = s.owner_pid.load();
    for (;;) {
      if (owner != 0 && process_alive(owner, s.owner_start.load()))
        throw Error(fmt::format("consumer '{}' of {} is in use by process {}", name, st.file.path().string(), owner));
      if (s.owner_pid.compare_exchange_strong(owner, impl->self.pid)) break;
    }
    s.owner_start.store(impl->self.start_time);
    impl->slot = &s;
    impl->committed = impl->read_pos = s.cursor.load(std::memory_order_acquire);
  };
  auto find_active = [&]() -> ConsumerSlot* {
    for (std::uint32_t i = 0; i < kConsumerSlots; ++i)
      if (st.consumers[i].state.load(std::memory_order_acquire) == kActive && name == st.consumers[i].name)
        return &st.consumers[i];
    return nullptr;
  };
  // One registration at a time: two processes registering one name at once could each keep a
  // slot (the one that looked first found the other's still registering), and the second
  // slot's cursor, never moved again, would pin the ring. Byte 0 of the file is the lock's.
  const RegistrationLock lock(st);
  if (ConsumerSlot* s = find_active()) {
    adopt(*s);
    return Consumer(std::move(impl));
  }
  for (std::uint32_t i = 0; i < kConsumerSlots; ++i) {
    ConsumerSlot& s = st.consumers[i];
    std::uint32_t free = kFree;
    if (!s.state.compare_exchange_strong(free, kRegistering)) continue;
    std::memset(s.name, 0, sizeof s.name);
    std::memcpy(s.name, name.data(), name.size());
    s.records_committed.store(0);
    s.owner_pid.store(0);
    const std::uint64_t guess =
        start == StartAt::kLatest ? load_u64(&st.hdr->tail.pos) : load_u64(&st.hdr->head.head);
    s.set_cursor(guess);
    s.state.store(kActive, std::memory_order_seq_cst);
    // Bump the registration generation: a producer that computed its floor without us fails
    // its head update and recomputes. The head we bump from is safe to start at.
    std::uint64_t head = load_u64(&st.hdr->head.head), gen = load_u64(&st.hdr->head.gen);
    while (!cas16(&st.hdr->head, head, gen, head, gen + 1)) {
    }
    if (start == StartAt::kOldest && head > guess) s.set_cursor(head);
    // Two processes registering the same name at once: keep the first slot.
    ConsumerSlot* first = find_active();
    if (first != &s) {
      s.state.store(kFree);
      adopt(*first);
      return Consumer(std::move(impl));
    }
    adopt(s);
    return Consumer(std::move(impl));
  }
  throw Error(fmt::format("all {} consumer slots of channel {} are in use", kConsumerSlots, st.file.path().string()));
}

}  // namespace tributary::core
