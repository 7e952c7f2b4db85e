// Producer: the append hot path. One 16-byte CAS reserves {position, channel sequence};
// records are written in place and published by their tag (last-to-first for a batch).
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_map>

#include "internal/channel_layout.h"
#include "internal/os.h"
#include "tributary/core/error.h"

namespace tributary::core {

using namespace detail;

struct Producer::Impl {
  std::shared_ptr<ChannelState> st;
  ProducerSlot* slot = nullptr;
  ProducerOptions opts;
  std::uint64_t limit = 0;  // cached floor + capacity: below it, no need to look at consumers
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;
  std::uint64_t pad_at = kNoPad;  // a pad this reservation wrote (synced with its records)
  static constexpr std::uint64_t kNoPad = UINT64_MAX;
  // A Claim handed out and not yet published: the slot holds its reservation, which a second
  // one would overwrite (a consumer stalled at the first would then step over it).
  bool claim_open = false;

  // Durable checkpoints (SourceSlot): per source this producer commits batches for, the states
  // committed since its checkpoint, each with the sync epoch begun when it was committed. A
  // state is durable once a full msync that began after it has completed (everything it stands
  // on was written before it: the msync wrote it out); the newest such becomes the checkpoint,
  // at the source's next commit or at settle_checkpoints(), whichever comes first.
  struct Committed {
    std::uint64_t next, pos, epoch;
  };
  struct Checkpoints {
    std::uint64_t source_id = 0;
    std::array<Committed, 8> states{};  // oldest first, one per epoch
    std::size_t n = 0;
  };
  std::unordered_map<SourceSlot*, Checkpoints> checkpoints;
  std::uint64_t settled_at = 0;  // sync_epochs_done when every source here was last settled
  std::uint64_t failures_at_start = 0;  // Header::sync_failures when this producer was made

  // A source slot's seqlock update (single writer per source): odd version while `body` writes.
  // The fields are stored with release order so a reader that sees a new value also sees the
  // odd version.
  template <class F>
  static void write_slot(SourceSlot* src, F&& body) noexcept {
    const std::uint32_t v = src->version.load(std::memory_order_relaxed);
    src->version.store(v + 1, std::memory_order_relaxed);
    body();
    src->version.store(v + 2, std::memory_order_release);
  }

  // Writes the newest of `c`'s states a completed sync has passed as `src`'s checkpoint (the
  // caller is in `src`'s seqlock update) and drops those states; true when none is left waiting.
  // After a failed msync (this file's, since this producer began) no state is known durable: a
  // failed writeback may leave pages clean unwritten, which no later msync writes again. The
  // checkpoints made before stay; a producer made later starts afresh.
  bool promote(SourceSlot* src, Checkpoints& c, std::uint64_t done) const noexcept {
    std::size_t k = 0;
    while (k < c.n && c.states[k].epoch < done) ++k;
    if (k == 0) return c.n == 0;
    if (st->hdr->sync_failures.load(std::memory_order_acquire) == failures_at_start)
      src->set_durable(c.source_id, c.states[k - 1].next, c.states[k - 1].pos);
    std::copy(c.states.begin() + static_cast<std::ptrdiff_t>(k), c.states.begin() + static_cast<std::ptrdiff_t>(c.n),
              c.states.begin());
    c.n -= k;
    return c.n == 0;
  }

  // In `src`'s seqlock update, after its new state (next, pos) was stored by a batch commit.
  // `fresh`: the slot held no state before this batch (new, or given back and taken again).
  void advance_checkpoint(SourceSlot* src, std::uint64_t id, std::uint64_t next, std::uint64_t pos, bool fresh) noexcept {
    if (st->options.sync == SyncPolicy::kEveryCommit) {
      // Synced with its records at every commit: the state itself is durable, and a
      // checkpoint behind it would only put the source back for nothing.
      src->clear_durable();
      checkpoints.erase(src);
      return;
    }
    // The epoch read after the state's stores (a store-load order): as a read-modify-write,
    // which a sync's numbering then reads from, so that the sync begun after it sees them.
    const std::uint64_t epoch = st->hdr->sync_epochs_started.fetch_add(0, std::memory_order_seq_cst);
    Checkpoints* c = nullptr;
    try {
      c = &checkpoints[src];
    } catch (...) {  // no memory for it: the checkpoint stays where it is (a longer re-read)
      return;
    }
    if (c->source_id != id || fresh) *c = Checkpoints{.source_id = id};  // given back and taken again
    // A checkpoint too far behind for the slot's 24 bits (syncs failing for long): none.
    if (std::uint64_t d_next = 0, d_pos = 0; src->durable(id, next, d_next, d_pos) &&
                                             next - d_next >= SourceSlot::kDurableSpan / 2)
      src->clear_durable();
    if (c->n != 0 && c->states[c->n - 1].epoch == epoch) {
      c->states[c->n - 1] = {next, pos, epoch};  // durable with the same sync as the one it follows
    } else {
      if (c->n == c->states.size()) --c->n;  // syncs begun and not done: the newest waits in its place
      c->states[c->n++] = {next, pos, epoch};
    }
    (void)promote(src, *c, st->hdr->sync_epochs_done.load(std::memory_order_acquire));
  }

  void settle_checkpoints() noexcept {
    const std::uint64_t done = st->hdr->sync_epochs_done.load(std::memory_order_acquire);
    if (done == settled_at || checkpoints.empty()) return;
    settled_at = done;
    for (auto it = checkpoints.begin(); it != checkpoints.end();) {
      SourceSlot* src = it->first;
      bool empty = true;
      if (src->source_id.load(std::memory_order_acquire) == it->second.source_id)
        write_slot(src, [&] { empty = promote(src, it->second, done); });
      it = empty ? checkpoints.erase(it) : std::next(it);
    }
  }

  ~Impl() {
    if (slot == nullptr) return;
    if (const std::uint64_t len = slot->claim_len.load(); len != 0) {  // a claim never published
      // Its pad to the end of the lap, if any, is published already (reserve): the region to
      // close starts after it. (Told by the ring: a tag names its absolute position.)
      const std::uint64_t pos = slot->claim_pos.load();
      const bool padded = st->header_at(pos)->tag.load(std::memory_order_acquire) == make_tag(pos, kPadTag);
      const std::uint64_t from = padded ? st->lap_end(pos) : pos;
      if (from < pos + len && st->close_region(from, pos + len, kSkipTag, false)) {
        st->hdr->abandoned_records.fetch_add(slot->claim_records.load());
        st->hdr->abandoned_bytes.fetch_add(pos + len - from);
      }
      st->wake_consumers();
    }
    st->hdr->retired_records.fetch_add(records);
    st->hdr->retired_bytes.fetch_add(bytes);
    slot->records.store(0);
    slot->bytes.store(0);
    slot->claim_len.store(0);
    slot->pid.store(0, std::memory_order_release);
  }

  AppendStatus wait_for_space(std::uint64_t end) noexcept {
    Header* h = st->hdr;
    // Waiting or refused, this producer holds no reservation (a claim announced for a lost
    // compare-and-swap would otherwise stay, and be closed over another's records at the end).
    slot->claim_len.store(0, std::memory_order_release);
    if (opts.on_full == FullPolicy::kFailFast) {
      h->full_rejections.fetch_add(1, std::memory_order_relaxed);
      return AppendStatus::kFull;
    }
    const auto deadline = std::chrono::steady_clock::now() + opts.max_wait;
    for (;;) {
      const std::uint32_t v = h->space_futex.load(std::memory_order_seq_cst);
      st->announce_sleeper(h->space_waiters);
      limit = st->compute_floor() + st->capacity;
      if (end <= limit) {
        h->space_waiters.fetch_sub(1, std::memory_order_relaxed);
        return AppendStatus::kOk;
      }
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::nanoseconds::zero() || !st->file.intact()) {
        h->space_waiters.fetch_sub(1, std::memory_order_relaxed);
        h->full_rejections.fetch_add(1, std::memory_order_relaxed);
        return st->file.intact() ? AppendStatus::kTimeout : AppendStatus::kBroken;
      }
      h->producer_waits.fetch_add(1, std::memory_order_relaxed);
      futex_wait(&h->space_futex, v, left);
      h->space_waiters.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  // Reserves `size` contiguous bytes for `count` records; pads to the end of the lap first if
  // they would wrap. On success `pos` is the first record's position, `seq` its channel seq.
  AppendStatus reserve(std::uint64_t size, std::uint64_t count, std::uint64_t& pos, std::uint64_t& seq) noexcept {
    Header* h = st->hdr;
    std::uint64_t lo = load_u64(&h->tail.pos);
    std::uint64_t hi = load_u64(&h->tail.seq);
    for (;;) {
      const std::uint64_t idx = lo & st->mask;
      const std::uint64_t pad = idx + size > st->capacity ? st->capacity - idx : 0;
      const std::uint64_t end = lo + pad + size;
      if (end > limit) {
        limit = st->compute_floor() + st->capacity;
        if (end > limit) {
          if (const AppendStatus s = wait_for_space(end); s != AppendStatus::kOk) return s;
          lo = load_u64(&h->tail.pos);
          hi = load_u64(&h->tail.seq);
          continue;
        }
      }
      // Announce the attempt before the CAS (which is a full barrier): if this process dies
      // after winning it, consumers find the claim and, once we are gone, close it.
      slot->claim_pos.store(lo, std::memory_order_relaxed);
      slot->claim_records.store(count, std::memory_order_relaxed);
      slot->claim_len.store(pad + size, std::memory_order_relaxed);
      if (cas16(&h->tail, lo, hi, end, hi + count)) {
        pad_at = pad != 0 ? lo : kNoPad;
        if (pad != 0) {
          check_pad(*st, lo, st->header_at(lo));
          st->header_at(lo)->tag.store(make_tag(lo, kPadTag), std::memory_order_release);
        }
        pos = lo + pad;
        seq = hi;
        return AppendStatus::kOk;
      }
    }
  }

  // Header fields and payload, without the CRC.
  RecordHeader* write_fields(std::uint64_t pos, std::uint64_t seq, std::int64_t ts, EventId id,
                             std::span<const std::byte> payload) noexcept {
    RecordHeader* h = st->header_at(pos);
    const auto len = static_cast<std::uint32_t>(payload.size());
    h->length.store(len, std::memory_order_relaxed);
    h->channel_seq = seq;
    h->timestamp_ns = ts;
    h->source_id = id.source_id;
    h->source_seq = id.sequence;
    std::byte* body = reinterpret_cast<std::byte*>(h) + kRecordHeaderSize;
    if (len % kRecordAlign != 0) {  // zero the alignment padding: the CRC covers it
      const std::uint64_t zero = 0;
      std::memcpy(body + (len & ~std::uint32_t{kRecordAlign - 1}), &zero, sizeof zero);
    }
    if (len != 0) std::memcpy(body, payload.data(), len);
    return h;
  }

  // One record. Its CRC is computed from the caller's bytes, not read back from the ring: a
  // consumer polling the record's tag pulls that line away between the stores and such loads.
  void write(std::uint64_t pos, std::uint64_t seq, std::int64_t ts, EventId id,
             std::span<const std::byte> payload) noexcept {
    const auto len = static_cast<std::uint32_t>(payload.size());
    const std::uint64_t fields[4] = {seq, static_cast<std::uint64_t>(ts), id.source_id, id.sequence};
    static_assert(sizeof fields == kRecordHeaderSize - 16, "the CRC's header part: bytes 16..47");
    std::uint32_t crc = st->crc(record_crc_seed(pos, len), fields, sizeof fields);
    crc = st->crc(crc, payload.data(), len);
    if (const std::uint32_t pad = static_cast<std::uint32_t>(record_crc_bytes(len) - sizeof fields) - len; pad != 0) {
      constexpr std::uint64_t zero = 0;
      crc = st->crc(crc, &zero, pad);
    }
    RecordHeader* h = write_fields(pos, seq, ts, id, payload);
    h->crc = crc;
  }

  // `src`: the source-table slot this transaction updated (synced with the records). Returns
  // kSyncFailed if every-commit could not make the transaction durable.
  AppendStatus finish(std::uint64_t first_pos, std::uint64_t end_pos, std::uint64_t n, std::uint64_t payload_bytes,
                      const SourceSlot* src = nullptr) noexcept {
    Header* h = st->hdr;
    if (st->file.faulted()) [[unlikely]] {
      // The file was cut under us and these records went (partly) to zero pages
      // (MappedFile::faulted): never publish them; close the reservation so readers skip it.
      st->close_region(first_pos, end_pos, kSkipTag, false);
      slot->claim_len.store(0, std::memory_order_release);
      st->wake_consumers();
      return AppendStatus::kBroken;
    }
    // Dekker pair with Consumer::wait: publish, then check for a sleeping consumer.
    if (st->store_then_check(st->header_at(first_pos)->tag, make_tag(first_pos, kRecordTag), h->data_waiters))
      st->wake_consumers();
    records += n;
    bytes += payload_bytes;
    slot->records.store(records, std::memory_order_relaxed);
    slot->bytes.store(bytes, std::memory_order_relaxed);
    slot->claim_len.store(0, std::memory_order_release);
    if (st->options.sync != SyncPolicy::kEveryCommit) return AppendStatus::kOk;
    // What a reader needs after a power loss: the pad that leads to the records (recovery
    // would rebuild it, but it costs one msync per lap), the records, the write head, the
    // source's checkpoint.
    const auto data_off = static_cast<std::uint64_t>(st->data - st->file.data());
    bool ok = true;
    if (pad_at != kNoPad) ok &= st->sync_range(data_off + (pad_at & st->mask), sizeof(std::uint64_t));
    ok &= st->sync_range(data_off + (first_pos & st->mask), end_pos - first_pos);
    ok &= st->sync_range(0, sizeof(Header));
    if (src != nullptr)
      ok &= st->sync_range(static_cast<std::uint64_t>(reinterpret_cast<const std::byte*>(src) - st->file.data()),
                           sizeof(SourceSlot));
    return ok ? AppendStatus::kOk : AppendStatus::kSyncFailed;
  }
};

Producer::Producer(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Producer::Producer(Producer&&) noexcept = default;
Producer& Producer::operator=(Producer&&) noexcept = default;
Producer::~Producer() = default;

AppendStatus Producer::append(EventId id, std::span<const std::byte> payload) noexcept {
  Impl& p = *impl_;
  if (p.claim_open) return AppendStatus::kClaimOpen;
  if (payload.size() > p.st->max_payload) {
    p.st->hdr->oversize_rejections.fetch_add(1, std::memory_order_relaxed);
    return AppendStatus::kTooLarge;
  }
  const std::uint64_t size = record_size(payload.size());
  std::uint64_t pos = 0, seq = 0;
  if (const AppendStatus s = p.reserve(size, 1, pos, seq); s != AppendStatus::kOk) return s;
  p.write(pos, seq, realtime_ns(p.opts.precise_timestamps), id, payload);
  return p.finish(pos, pos + size, 1, payload.size());
}

void Producer::settle_checkpoints() noexcept { impl_->settle_checkpoints(); }

AppendStatus Producer::append_batch(std::span<const Event> events, const SourcePosition* state) noexcept {
  Impl& p = *impl_;
  if (p.claim_open) return AppendStatus::kClaimOpen;
  ChannelState& st = *p.st;
  std::uint64_t total = 0, payload_bytes = 0;
  for (const Event& e : events) {
    if (e.payload.size() > st.max_payload) {
      st.hdr->oversize_rejections.fetch_add(1, std::memory_order_relaxed);
      return AppendStatus::kTooLarge;
    }
    total += record_size(e.payload.size());
    payload_bytes += e.payload.size();
  }
  if (total > st.capacity / 4) return AppendStatus::kTooLarge;
  SourceSlot* src = nullptr;
  bool fresh = false;  // the slot holds no state yet (see advance_checkpoint)
  if (state != nullptr) {
    src = find_source(st, state->source_id, true);
    if (src == nullptr) return AppendStatus::kNoSlot;
    fresh = src->version.load(std::memory_order_relaxed) == 0;
  }
  auto write_state = [src](auto&& body) { Impl::write_slot(src, body); };
  if (events.empty()) {
    // The state as given, over a transaction a killed writer left open too (its resolution, if
    // it counts, is what the caller resumed from): left set, it would answer in its place.
    // Cleared last, as after a batch.
    // A new state set with no events ends the source's checkpoint (SourceSlot): its meaning is
    // the caller's (a tail's ended generation, cut mark or move), which a checkpoint from before
    // it would undo. The state a batch already committed, set again (a retry: the channel held
    // the batch's events), keeps it.
    if (src != nullptr) {
      const bool changed = src->next_sequence.load(std::memory_order_relaxed) != state->next_sequence ||
                           src->position.load(std::memory_order_relaxed) != state->position;
      write_state([&] {
        src->next_sequence.store(state->next_sequence, std::memory_order_release);
        src->position.store(state->position, std::memory_order_release);
        src->pending_at.store(0, std::memory_order_release);
        if (changed) src->clear_durable();
      });
      if (changed) p.checkpoints.erase(src);
    }
    return AppendStatus::kOk;
  }
  std::uint64_t pos = 0, seq = 0;
  if (const AppendStatus s = p.reserve(total, events.size(), pos, seq); s != AppendStatus::kOk) return s;
  if (src != nullptr)
    write_state([&] {
      src->pending_sequence.store(state->next_sequence, std::memory_order_release);
      src->pending_position.store(state->position, std::memory_order_release);
      src->pending_at.store(pos + 1, std::memory_order_release);
    });
  const std::int64_t ts = realtime_ns(p.opts.precise_timestamps);
  std::uint64_t q = pos;
  // Write in chunks; checksum each chunk's records three at a time (independent CRC streams).
  constexpr std::size_t kChunk = 48;
  std::uint64_t positions[kChunk];
  RecordHeader* headers[kChunk];
  std::uint32_t lens[kChunk];
  for (std::size_t base = 0; base < events.size(); base += kChunk) {
    const std::size_t n = std::min(kChunk, events.size() - base);
    for (std::size_t k = 0; k < n; ++k) {
      const Event& e = events[base + k];
      positions[k] = q;
      lens[k] = static_cast<std::uint32_t>(e.payload.size());
      headers[k] = p.write_fields(q, seq + base + k, ts, e.id, e.payload);
      q += record_size(e.payload.size());
    }
    record_crcs(st.crc, n, positions, headers, lens, [&](std::size_t k, std::uint32_t crc) { headers[k]->crc = crc; });
  }
  // Publish last-to-first: a consumer stops at the first unpublished record, so it sees the
  // batch only once the first record's tag is stored, i.e. all of it.
  for (std::size_t i = events.size(); i-- > 1;) {
    q -= record_size(events[i].payload.size());
    st.header_at(q)->tag.store(make_tag(q, kRecordTag), std::memory_order_release);
  }
  const AppendStatus durable = p.finish(pos, pos + total, events.size(), payload_bytes, src);
  // Only a durable, published batch moves the checkpoint. Otherwise the pending entry stays:
  // it counts exactly when the batch's first record is in the channel (source_position).
  if (src != nullptr && durable == AppendStatus::kOk)
    write_state([&] {
      src->next_sequence.store(state->next_sequence, std::memory_order_release);
      src->position.store(state->position, std::memory_order_release);
      src->pending_at.store(0, std::memory_order_release);
      p.advance_checkpoint(src, state->source_id, state->next_sequence, state->position, fresh);
    });
  return durable;
}

AppendStatus Producer::claim(EventId id, std::size_t size, Claim& out) noexcept {
  Impl& p = *impl_;
  if (p.claim_open) return AppendStatus::kClaimOpen;
  if (size > p.st->max_payload) {
    p.st->hdr->oversize_rejections.fetch_add(1, std::memory_order_relaxed);
    return AppendStatus::kTooLarge;
  }
  std::uint64_t pos = 0, seq = 0;
  if (const AppendStatus s = p.reserve(record_size(size), 1, pos, seq); s != AppendStatus::kOk) return s;
  RecordHeader* h = p.st->header_at(pos);
  h->length.store(static_cast<std::uint32_t>(size), std::memory_order_relaxed);
  out.header_ = reinterpret_cast<std::byte*>(h);
  if (size % kRecordAlign != 0) {  // zero the alignment padding (the CRC covers it)
    const std::uint64_t zero = 0;
    std::memcpy(out.header_ + kRecordHeaderSize + (size & ~std::size_t{kRecordAlign - 1}), &zero, sizeof zero);
  }
  out.payload_ = {out.header_ + kRecordHeaderSize, size};
  out.position_ = pos;
  out.channel_seq_ = seq;
  out.id_ = id;
  p.claim_open = true;
  return AppendStatus::kOk;
}

AppendStatus Producer::publish(Claim& c) noexcept {
  if (c.header_ == nullptr) return AppendStatus::kOk;
  Impl& p = *impl_;
  auto* h = reinterpret_cast<RecordHeader*>(c.header_);
  const auto len = static_cast<std::uint32_t>(c.payload_.size());
  h->channel_seq = c.channel_seq_;
  h->timestamp_ns = realtime_ns(p.opts.precise_timestamps);
  h->source_id = c.id_.source_id;
  h->source_seq = c.id_.sequence;
  h->crc = record_crc(p.st->crc, c.position_, h, len);
  c.header_ = nullptr;
  p.claim_open = false;
  return p.finish(c.position_, c.position_ + record_size(len), 1, len);
}

Producer Channel::producer(const ProducerOptions& options) {
  ChannelState& st = *state_;
  if (!st.file.writable())
    throw Error(fmt::format("channel {} is open read-only: cannot produce", st.file.path().string()));
  const ProcessIdentity self = self_identity();
  auto impl = std::make_unique<Producer::Impl>();
  impl->st = state_;
  impl->opts = options;
  impl->failures_at_start = st.hdr->sync_failures.load();
  const std::uint64_t floor = st.compute_floor();
  for (std::uint32_t i = 0; i < kProducerSlots && impl->slot == nullptr; ++i) {
    ProducerSlot& s = st.producers[i];
    std::uint32_t pid = s.pid.load(std::memory_order_acquire);
    if (pid == 0) {
      if (s.pid.compare_exchange_strong(pid, self.pid)) impl->slot = &s;
      continue;
    }
    // A dead producer's slot is reusable once nothing of it is outstanding (and no consumer is
    // retiring it right now).
    if (pid == kReclaimingPid) continue;
    const std::uint64_t len = s.claim_len.load();
    if (process_alive(pid, s.start_time.load())) continue;
    if (len != 0 && s.claim_pos.load() + len > floor) continue;
    const std::uint64_t dead_records = s.records.load(), dead_bytes = s.bytes.load();
    if (s.pid.compare_exchange_strong(pid, self.pid)) {
      st.hdr->retired_records.fetch_add(dead_records);
      st.hdr->retired_bytes.fetch_add(dead_bytes);
      impl->slot = &s;
    }
  }
  if (impl->slot == nullptr)
    throw Error(fmt::format("all {} producer slots of channel {} are in use", kProducerSlots, st.file.path().string()));
  impl->slot->claim_len.store(0);
  impl->slot->records.store(0);
  impl->slot->bytes.store(0);
  impl->slot->start_time.store(self.start_time, std::memory_order_release);
  return Producer(std::move(impl));
}

}  // namespace tributary::core
