// Power loss, simulated the way SQLite's test VFS does it. The test binary is linked with
// -Wl,--wrap=msync: every msync the channel makes copies the synced range into a shadow of
// the file, which is what the disk is known to hold. At a random moment the power fails:
// every page that differs between the shadow and the live mapping was dirty, and the kernel
// may have written it back or not, or torn it at sector granularity, in any order. The
// kernel also writes pages back while the workload runs, so a page may reach the disk in a
// state that later changed again. On top, some cases damage the image further (bit flips,
// zeroed pages, a truncated file), or damage the header and its tables (bit flips anywhere in
// them, or a cut inside them). The workload has two named consumers reading at their own
// pace, and in some cases a writer killed with SIGKILL holding a claim it never published.
//
// The image is then opened (recovery runs) and read by the same named consumers. Checked:
// - recovery never crashes and never delivers a record that was not written exactly so;
// - every record that is intact in the image and was not yet consumed is delivered, also
//   after the damage (salvage, not truncate);
// - with `every-commit`, every acknowledged, unconsumed record is intact in the image
//   (the channel synced what it acknowledged), so none is lost;
// - records missing between delivered ones are reported by recovery as dropped.
// A damaged header is the exception: most of what it holds has no second copy, so only the first
// two hold there, and opening may instead refuse with an error naming the file. The consumers'
// cursors and the retention head do have a second copy: a flipped bit in them must keep every
// check.
// Case count: TRIBUTARY_POWER_LOSS_CASES (default 10000; 2000 in sanitizer builds); first seed:
// TRIBUTARY_POWER_LOSS_SEED (a failure prints the seed that replays it alone).
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "internal/channel_layout.h"
#include "support/channel_util.h"
#include "support/temp_dir.h"
#include "tributary/core/channel.h"
#include "tributary/core/error.h"

// The disk as the test knows it. Test-only state: the wrapper below has no other way in.
namespace {
struct Disk {
  const std::byte* base = nullptr;
  std::size_t size = 0;
  std::vector<std::byte> shadow;
  std::uint64_t syncs = 0;
};
Disk* g_disk = nullptr;
}  // namespace

extern "C" int __real_msync(void* addr, size_t len, int flags);
extern "C" int __wrap_msync(void* addr, size_t len, int flags) {
  const int rc = __real_msync(addr, len, flags);
  if (g_disk != nullptr && rc == 0 && (flags & MS_SYNC) != 0) {
    const auto* a = static_cast<const std::byte*>(addr);
    if (a >= g_disk->base && a < g_disk->base + g_disk->size) {
      const std::size_t off = static_cast<std::size_t>(a - g_disk->base);
      const std::size_t n = std::min(len, g_disk->size - off);
      std::memcpy(g_disk->shadow.data() + off, a, n);
      ++g_disk->syncs;
    }
  }
  return rc;
}

namespace tributary::core {
namespace {

using testing::as_string;
using testing::payload_for;
using testing::TempDir;

constexpr std::size_t kPage = 4096;
constexpr std::size_t kSector = 512;
constexpr std::uint64_t kCapacity = 64 * 1024;

// Start of the mapping of `path` in this process, from /proc/self/maps.
const std::byte* mapping_of(const std::filesystem::path& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.size() < path.string().size() || line.compare(line.size() - path.string().size(), std::string::npos,
                                                            path.string()) != 0)
      continue;
    return reinterpret_cast<const std::byte*>(std::stoull(line.substr(0, line.find('-')), nullptr, 16));
  }
  return nullptr;
}

struct Written {
  EventId id;
  std::uint64_t position = 0;  // filled in from the live run's own walk
  std::uint64_t size = 0;
  bool acknowledged = false;  // append returned kOk
};

enum class Damage { kNone, kBitFlips, kZeroPage, kTruncate, kHeaderFlips, kHeaderCut, kCursorFlips };
constexpr int kDamageKinds = 7;
constexpr bool header_damage(Damage d) { return d == Damage::kHeaderFlips || d == Damage::kHeaderCut; }
constexpr const char* kConsumers[] = {"reader", "second"};
constexpr std::size_t kConsumerCount = std::size(kConsumers);

struct Case {
  std::uint64_t seed;
  SyncPolicy policy;
  Damage damage;
  std::string describe() const {
    static constexpr const char* kPolicy[] = {"none", "interval", "every-commit"};
    static constexpr const char* kDamage[] = {"power loss only", "bit flips",          "zeroed page",
                                              "truncated file",  "header bit flips",   "file cut in the header",
                                              "a flipped bit in cursors or the head"};
    std::ostringstream o;
    o << "seed " << seed << ", sync " << kPolicy[static_cast<int>(policy)] << ", "
      << kDamage[static_cast<int>(damage)];
    return o.str();
  }
};

// Copies the pages of `mem` that differ from `disk` onto it, each with probability `pct`%:
// the whole page, or (half the time) a random subset of its sectors (a torn write).
template <class Chance>
void write_back(std::byte* disk, const std::byte* mem, std::size_t size, unsigned pct, Chance&& chance) {
  for (std::size_t pg = 0; pg < size; pg += kPage) {
    const std::size_t n = std::min(kPage, size - pg);
    if (std::memcmp(disk + pg, mem + pg, n) == 0 || !chance(pct)) continue;
    const bool torn = chance(50);
    for (std::size_t sec = pg; sec < pg + n; sec += kSector)
      if (!torn || chance(50)) std::memcpy(disk + sec, mem + sec, std::min(kSector, pg + n - sec));
  }
}

// A writer that dies holding a claim: a child process (sharing the mapping) claims a record of
// source 7, writes half of it and kills itself with SIGKILL. Returns "" or what went wrong.
std::string die_holding_a_claim(Channel& ch, std::size_t len) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      Producer p = ch.producer({FullPolicy::kFailFast});
      Producer::Claim claim;
      if (p.claim({7, 0}, len, claim) == AppendStatus::kOk) std::memset(claim.payload().data(), 0x5a, len / 2);
      ::raise(SIGKILL);
    } catch (...) {
    }
    ::_exit(1);  // never back into the test runner
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return "cannot fork the dying writer";
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) return "the dying writer did not die of SIGKILL";
  return "";
}

// Runs one case; returns a description of the first violation, or "" when all holds.
std::string run_case(const TempDir& dir, const Case& k, std::uint64_t& delivered_total, std::uint64_t& damaged_total) {
  std::mt19937_64 rng(k.seed);
  auto chance = [&](unsigned pct) { return rng() % 100 < pct; };
  const auto live_path = dir / "live.chan";
  const auto image_path = dir / "image.chan";
  std::filesystem::remove(live_path);
  std::filesystem::remove(image_path);

  ChannelConfig cfg;
  cfg.capacity = kCapacity;
  cfg.max_payload = 2048;
  cfg.source_slots = 16;
  OpenOptions opts;
  opts.sync = k.policy == SyncPolicy::kEveryCommit ? SyncPolicy::kEveryCommit : SyncPolicy::kNone;
  // A consumer stuck at a dead writer's claim closes it at its second wait (below), not after a
  // second: the workload goes on past it.
  opts.abandon_timeout = std::chrono::milliseconds(0);

  std::map<std::pair<std::uint64_t, std::uint64_t>, std::size_t> lengths;  // id -> payload length
  std::vector<Written> written;
  std::vector<std::byte> live;
  std::uint64_t live_committed[kConsumerCount] = {};
  std::map<std::uint64_t, std::uint64_t> checkpoint;  // source -> next sequence of its last acknowledged batch
  std::set<std::uint64_t> had_checkpoint;  // sources with a durable checkpoint when the power failed
  {
    Disk disk;
    Channel ch = Channel::create(live_path, cfg, opts);
    disk.base = mapping_of(live_path);
    if (disk.base == nullptr) return "cannot find the channel's mapping in /proc/self/maps";
    disk.size = std::filesystem::file_size(live_path);
    disk.shadow.assign(disk.size, std::byte{0});
    // Creation synced the header; the rest of a fresh file is zeros on disk too.
    std::memcpy(disk.shadow.data(), disk.base, testing::data_offset(live_path));
    g_disk = &disk;
    std::vector<Consumer> consumers;
    for (const char* name : kConsumers) consumers.push_back(ch.consumer(name));
    ch.sync();  // the agent's set-up: channel and consumers exist on disk

    Producer p = ch.producer({FullPolicy::kFailFast});
    std::uint64_t next_seq[4] = {0, 0, 0, 0};
    auto make = [&](std::uint64_t src) {
      const std::size_t len = chance(70) ? rng() % 200 : rng() % (cfg.max_payload + 1);
      const EventId id{src, next_seq[src]++};
      lengths[{id.source_id, id.sequence}] = len;
      return std::pair(id, payload_for(id.source_id, id.sequence, len));
    };
    std::vector<Record> buf(16);
    const int steps = 1 + static_cast<int>(rng() % 600);
    const int dying_writer_at = chance(20) ? static_cast<int>(rng() % static_cast<std::uint64_t>(steps)) : -1;
    bool writer_died = false;
    for (int s = 0; s < steps; ++s) {
      if (s == dying_writer_at) {
        if (std::string why = die_holding_a_claim(ch, rng() % 300); !why.empty()) return why;
        writer_died = true;
      }
      if (chance(2)) write_back(disk.shadow.data(), disk.base, disk.size, 30, chance);  // the kernel's flusher
      const unsigned what = static_cast<unsigned>(rng() % 100);
      if (what < 60) {
        auto [id, pl] = make(1 + rng() % 3);
        const AppendStatus st = p.append(id, pl);
        if (st == AppendStatus::kOk) {
          written.push_back({id, 0, 0, true});
        } else {
          --next_seq[id.source_id];  // not written: the source retries this sequence later
          lengths.erase({id.source_id, id.sequence});
        }
      } else if (what < 75) {
        const std::uint64_t src = 1 + rng() % 3;
        const std::size_t n = 1 + rng() % 8;
        std::vector<std::pair<EventId, std::string>> evs;
        for (std::size_t i = 0; i < n; ++i) evs.push_back(make(src));
        std::vector<Event> batch;
        for (auto& [id, pl] : evs) batch.push_back({id, std::as_bytes(std::span(pl.data(), pl.size()))});
        const SourcePosition state{src, next_seq[src], next_seq[src] * 100};
        const AppendStatus st = p.append_batch(batch, &state);
        if (st == AppendStatus::kOk) checkpoint[src] = state.next_sequence;
        for (auto& [id, pl] : evs) {
          if (st == AppendStatus::kOk) {
            written.push_back({id, 0, 0, true});
          } else {
            lengths.erase({id.source_id, id.sequence});
          }
        }
        if (st != AppendStatus::kOk) next_seq[src] -= n;
      } else if (what < 95) {
        Consumer& c = consumers[rng() % kConsumerCount];
        const std::size_t n = c.poll(std::span(buf).first(1 + rng() % buf.size()));
        if (n > 0 && chance(80)) c.commit();
        if (n == 0 && writer_died) (void)c.wait(std::chrono::milliseconds(1));  // checks the claim's writer
      } else if (k.policy == SyncPolicy::kInterval) {
        ch.sync();  // the interval syncer's tick
        // The collector, idle: its sources' states committed before that sync become their
        // checkpoints now (else at their next commit).
        if (chance(50)) p.settle_checkpoints();
      }
    }
    // Where each record lives, from the channel's own read-only walk of the live mapping.
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::pair<std::uint64_t, std::uint64_t>> where;
    ch.walk([&](const Record& r) {
      where[{r.id.source_id, r.id.sequence}] = {r.position, r.next - r.position};
      return true;
    });
    for (auto& w : written) {
      if (auto it = where.find({w.id.source_id, w.id.sequence}); it != where.end()) {
        w.position = it->second.first;
        w.size = it->second.second;
      }
    }
    for (std::size_t i = 0; i < kConsumerCount; ++i) live_committed[i] = consumers[i].committed();
    live.assign(disk.base, disk.base + disk.size);
    {
      const std::uint64_t slots = detail::Layout::compute(kCapacity, cfg.source_slots).sources_off;
      for (std::uint32_t i = 0; i < cfg.source_slots; ++i) {
        const auto* slot = reinterpret_cast<const detail::SourceSlot*>(live.data() + slots + i * sizeof(detail::SourceSlot));
        if ((slot->durable_sequence.load() & detail::SourceSlot::kDurableValid) != 0)
          had_checkpoint.insert(slot->source_id.load());
      }
    }
    g_disk = nullptr;

    // The power fails. Dirty pages: written back, not written back, or torn.
    std::vector<std::byte> image = disk.shadow;
    write_back(image.data(), live.data(), live.size(), 67, chance);

    const std::uint64_t data_off = testing::data_offset(live_path);
    std::uint64_t file_len = image.size();
    switch (k.damage) {
      case Damage::kNone:
        break;
      case Damage::kBitFlips:
        for (unsigned i = 0, n = 1 + rng() % 8; i < n; ++i) {
          const std::uint64_t at = data_off + rng() % kCapacity;
          image[at] ^= std::byte(1u << (rng() % 8));
        }
        break;
      case Damage::kZeroPage: {
        const std::uint64_t pg = data_off + (rng() % (kCapacity / kPage)) * kPage;
        std::memset(image.data() + pg, 0, kPage);
        break;
      }
      case Damage::kTruncate:
        file_len = data_off + rng() % kCapacity;
        break;
      case Damage::kHeaderFlips:
        for (unsigned i = 0, n = 1 + rng() % 4; i < n; ++i) image[rng() % data_off] ^= std::byte(1u << (rng() % 8));
        break;
      case Damage::kHeaderCut:
        file_len = rng() % data_off;
        break;
      case Damage::kCursorFlips: {
        // One bit of the first consumer's cursor or of its copy, as often as not of the second's,
        // sometimes of the retention head or its copy: each has a second copy, so nothing may
        // be skipped.
        using detail::ConsumerSlot;
        const std::uint64_t slots = detail::Layout::compute(kCapacity, 1).consumers_off;
        unsigned flipped = 0;
        for (std::uint32_t i = 0; i < detail::kConsumerSlots; ++i) {
          const std::uint64_t at = slots + i * sizeof(ConsumerSlot);
          const char* name = reinterpret_cast<const char*>(image.data() + at + offsetof(ConsumerSlot, name));
          if (std::find(std::begin(kConsumers), std::end(kConsumers), std::string_view(name)) == std::end(kConsumers) ||
              (flipped > 0 && chance(50)))
            continue;
          const std::uint64_t word = chance(50) ? offsetof(ConsumerSlot, cursor) : offsetof(ConsumerSlot, cursor_copy);
          const unsigned bit = static_cast<unsigned>(rng() % 64);
          image[at + word + bit / 8] ^= std::byte(1u << (bit % 8));
          ++flipped;
        }
        if (chance(30)) {  // the retention head, or its copy: the lower of them is kept too
          const std::uint64_t word = chance(50) ? offsetof(detail::Header, head) : offsetof(detail::Header, head_copy);
          const unsigned bit = static_cast<unsigned>(rng() % 64);
          image[word + bit / 8] ^= std::byte(1u << (bit % 8));
        }
        break;  // (no slot found: their page never reached the disk, so no cursor is there to damage)
      }
    }
    // A power loss is a reboot: the image was last written on another boot than the one
    // recovery runs on (unless the damage took the header page's word with it).
    if (file_len >= offsetof(detail::Header, writer_boot) + sizeof(std::uint64_t)) {
      std::uint64_t boot = 0;
      std::memcpy(&boot, image.data() + offsetof(detail::Header, writer_boot), sizeof boot);
      if (boot != 0) {
        boot ^= 0x5eed;  // another boot's digest
        std::memcpy(image.data() + offsetof(detail::Header, writer_boot), &boot, sizeof boot);
        std::memcpy(live.data() + offsetof(detail::Header, writer_boot), &boot, sizeof boot);  // not damage
      }
    }
    std::ofstream(image_path, std::ios::binary)
        .write(reinterpret_cast<const char*>(image.data()), static_cast<std::streamsize>(file_len));
    for (std::size_t i = 0; i < live.size(); ++i) damaged_total += i >= file_len || image[i] != live[i] ? 1 : 0;
    // The image's bytes are what recovery sees; keep them to judge intactness.
    image.resize(file_len);
    const std::uint64_t mask = kCapacity - 1;
    // A record is intact if every byte of it in the image is the live byte.
    auto intact = [&](const Written& w) {
      for (std::uint64_t b = 0; b < w.size; ++b) {
        const std::uint64_t off = data_off + ((w.position + b) & mask);
        if (off >= image.size() || image[off] != live[off]) return false;
      }
      return true;
    };

    // Expectations, fixed before recovery touches anything: per consumer, the records it had
    // not consumed in the live run that are intact in the image. A damaged header has none:
    // its cursors may now say anything.
    std::vector<const Written*> must[kConsumerCount];
    for (const auto& w : written) {
      if (w.size == 0 || header_damage(k.damage)) continue;
      const bool ok = intact(w);
      for (std::size_t i = 0; i < kConsumerCount; ++i) {
        if (w.position < live_committed[i]) continue;
        if (ok) {
          must[i].push_back(&w);
        } else if (k.policy == SyncPolicy::kEveryCommit && k.damage == Damage::kNone && w.acknowledged) {
          return "acknowledged record " + std::to_string(w.id.source_id) + "/" + std::to_string(w.id.sequence) +
                 " at position " + std::to_string(w.position) + " is not on disk: every-commit did not sync it";
        }
      }
    }

    // Reopen the image: recovery runs. (With TRIBUTARY_KEEP_TMP, a copy of the image as the
    // power loss left it stays beside it, for `tributary channel stat/dump`.)
    if (std::getenv("TRIBUTARY_KEEP_TMP") != nullptr)
      std::filesystem::copy_file(image_path, dir / "image.before-recovery.chan",
                                 std::filesystem::copy_options::overwrite_existing);
    std::optional<Channel> rec;
    try {
      rec.emplace(Channel::open(image_path));
    } catch (const Error& e) {
      // A damaged header may be refused, by name; anything else must open.
      if (header_damage(k.damage) && std::string_view(e.what()).find(image_path.string()) != std::string_view::npos)
        return "";
      return std::string("opening the image failed: ") + e.what();
    }
    const RecoveryReport rep = rec->stats().last_recovery;
    if (!rep.ran) return "recovery did not run";
    // Channel sequences missing between delivered records: dropped by recovery, or claims of
    // dead writers closed (in the live run or by recovery).
    // (The dying writer's claim is one record; a consumer that closed it in the live run counted
    // it in the header, whose page the power loss may have taken back.)
    const std::uint64_t missing_allowed =
        rep.records_dropped + std::max<std::uint64_t>(rec->stats().abandoned_records, writer_died ? 1 : 0);
    std::vector<Consumer> readers;
    for (const char* name : kConsumers) readers.push_back(rec->consumer(name));
    for (std::size_t ci = 0; ci < kConsumerCount; ++ci) {
      Consumer& rc = readers[ci];
      const std::string who = std::string("consumer '") + kConsumers[ci] + "': ";
      std::map<std::uint64_t, std::uint64_t> last_seq_of;  // source -> last sequence delivered
      std::map<std::pair<std::uint64_t, std::uint64_t>, bool> got;
      std::uint64_t last_channel_seq = 0, gaps = 0;
      bool first = true;
      for (;;) {
        const std::size_t n = rc.poll(buf);
        if (n == 0) break;
        for (std::size_t i = 0; i < n; ++i) {
          const Record& r = buf[i];
          auto len = lengths.find({r.id.source_id, r.id.sequence});
          if (len == lengths.end())
            return who + "delivered a record nobody wrote: id " + std::to_string(r.id.source_id) + "/" +
                   std::to_string(r.id.sequence);
          if (as_string(r.payload) != payload_for(r.id.source_id, r.id.sequence, len->second))
            return who + "delivered a corrupt payload for " + std::to_string(r.id.source_id) + "/" +
                   std::to_string(r.id.sequence);
          if (auto it = last_seq_of.find(r.id.source_id); it != last_seq_of.end() && it->second >= r.id.sequence)
            return who + "source " + std::to_string(r.id.source_id) + " out of order or duplicated at " +
                   std::to_string(r.id.sequence);
          last_seq_of[r.id.source_id] = r.id.sequence;
          if (!first && r.channel_seq <= last_channel_seq) return who + "channel sequence went backwards";
          if (!first) gaps += r.channel_seq - last_channel_seq - 1;
          first = false;
          last_channel_seq = r.channel_seq;
          got[{r.id.source_id, r.id.sequence}] = true;
          ++delivered_total;
        }
        rc.commit();
      }
      for (const Written* w : must[ci])
        if (!got.count({w->id.source_id, w->id.sequence}))
          return who + "intact unconsumed record " + std::to_string(w->id.source_id) + "/" +
                 std::to_string(w->id.sequence) + " at position " + std::to_string(w->position) + " (live cursor " +
                 std::to_string(live_committed[ci]) + ") was not delivered";
      if (!header_damage(k.damage) && gaps > missing_allowed)
        return who + std::to_string(gaps) + " records missing between delivered ones, recovery reported " +
               std::to_string(rep.records_dropped) + " dropped and the channel " +
               std::to_string(rec->stats().abandoned_records) + " abandoned";
    }
    // The channel goes on: what producers write now reaches every consumer, all of it.
    {
      Producer np = rec->producer({FullPolicy::kFailFast});
      std::vector<std::string> fresh;
      for (std::uint64_t i = 0; i < 40; ++i) {
        fresh.push_back(payload_for(9, i, rng() % 300));
        AppendStatus st = np.append({9, i}, fresh.back());
        if (st == AppendStatus::kFull && header_damage(k.damage)) {
          // A flipped bit in a consumer's name leaves a consumer nobody reads, holding the
          // floor. `channel stat` shows it; the operator removes it (`channel remove-consumer`).
          for (const ConsumerInfo& c : rec->stats().consumers)
            if (std::find(std::begin(kConsumers), std::end(kConsumers), c.name) == std::end(kConsumers))
              (void)rec->remove_consumer(c.name);
          st = np.append({9, i}, fresh.back());
        }
        if (st != AppendStatus::kOk) return "cannot append after recovery: " + std::string(to_string(st));
      }
      for (std::size_t ci = 0; ci < kConsumerCount; ++ci) {
        Consumer& rc = readers[ci];
        std::size_t seen = 0;
        for (std::size_t n; (n = rc.poll(buf)) != 0; rc.commit())
          for (std::size_t i = 0; i < n; ++i, ++seen)
            if (seen >= fresh.size() || buf[i].id.source_id != 9 || buf[i].id.sequence != seen ||
                as_string(buf[i].payload) != fresh[seen])
              return std::string("after recovery, new record ") + std::to_string(seen) + " came out wrong for '" +
                     kConsumers[ci] + "'";
        if (seen != fresh.size())
          return std::string("after recovery, '") + kConsumers[ci] + "' got " + std::to_string(seen) + " of " +
                 std::to_string(fresh.size()) + " new records";
      }
    }
    if (k.policy == SyncPolicy::kEveryCommit && k.damage == Damage::kNone) {
      // The source table is part of the acknowledged transaction: a collector resuming from
      // it neither re-reads nor skips anything.
      for (const auto& [src, next] : checkpoint) {
        const auto pos = rec->source_position(src);
        if (!pos || pos->next_sequence != next || pos->position != next * 100)
          return "source " + std::to_string(src) + " resumes at " +
                 (pos ? std::to_string(pos->next_sequence) : std::string("nothing")) +
                 " after its acknowledged checkpoint " + std::to_string(next);
      }
    }
    if (k.policy == SyncPolicy::kInterval && k.damage == Damage::kNone) {
      // Each source resumes at a state whose records are all on disk (its durable checkpoint:
      // the state of its last batch committed before the last completed sync, or a later one
      // whose records made it too), and at no more than it acknowledged: a record below the
      // resume point is intact, or every consumer had read it before the power failed. The
      // collector reads again what lies above.
      // Only sources that had a checkpoint when the power failed: one committed for the first time
      // since the last completed sync has none (README: its first interval is not covered).
      for (const auto& [src, acked] : checkpoint) {
        if (!had_checkpoint.count(src)) continue;
        const auto pos = rec->source_position(src);
        const std::uint64_t resume = pos ? pos->next_sequence : 0;
        if (pos && pos->position != resume * 100)
          return "source " + std::to_string(src) + " resumes at sequence " + std::to_string(resume) +
                 " with another state's position " + std::to_string(pos->position);
        if (resume > acked)
          return "source " + std::to_string(src) + " resumes at " + std::to_string(resume) +
                 ", past its acknowledged checkpoint " + std::to_string(acked);
        for (const auto& w : written) {
          if (w.id.source_id != src || w.id.sequence >= resume || w.size == 0 || intact(w)) continue;
          for (std::size_t i = 0; i < kConsumerCount; ++i)
            if (w.position + w.size > live_committed[i])
              return "source " + std::to_string(src) + " resumes at " + std::to_string(resume) + " (" +
                     std::to_string(rep.sources_rolled_back) + " sources rolled back) but its record " +
                     std::to_string(w.id.sequence) + " at position " + std::to_string(w.position) +
                     " did not reach the disk and consumer '" + kConsumers[i] + "' had not read it: lost";
        }
      }
    }
    const bool cut = k.damage == Damage::kTruncate || k.damage == Damage::kHeaderCut;
    if (cut ? rep.file_bytes_found != file_len : rep.file_bytes_found != 0)
      return "recovery reported the file cut to " + std::to_string(rep.file_bytes_found) + " bytes; it was " +
             std::to_string(file_len);
  }
  return "";
}

// Cases long runs found failing, replayed at every run: seed 17057421 (a record's tag flipped
// into a pad's made recovery jump past the rest of its lap) and 17001561 (a record recovery had
// dropped under a pad to the lap's end read again as a flipped record's).
TEST(ChannelPowerLoss, TheCasesLongRunsFoundStayFixed) {
  TempDir dir(std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
  std::uint64_t delivered = 0, damaged = 0;
  for (const std::uint64_t seed : {std::uint64_t{17057421}, std::uint64_t{17001561}}) {
    const Case k{seed, static_cast<SyncPolicy>(seed % 3), static_cast<Damage>((seed / 3) % kDamageKinds)};
    EXPECT_EQ(run_case(dir, k, delivered, damaged), "") << k.describe();
  }
}

TEST(ChannelPowerLoss, RecoveryKeepsEveryIntactRecordAndNeverDeliversACorruptOne) {
  const char* env_cases = std::getenv("TRIBUTARY_POWER_LOSS_CASES");
  const char* env_seed = std::getenv("TRIBUTARY_POWER_LOSS_SEED");
#ifndef TRIBUTARY_POWER_LOSS_DEFAULT_CASES
#define TRIBUTARY_POWER_LOSS_DEFAULT_CASES 10000
#endif
  const int cases = env_cases != nullptr ? std::atoi(env_cases) : TRIBUTARY_POWER_LOSS_DEFAULT_CASES;
  const std::uint64_t seed0 = env_seed != nullptr ? std::strtoull(env_seed, nullptr, 10) : 20261126;
  // msync on tmpfs costs nothing; the shadow is the disk here.
  TempDir dir(std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
  std::uint64_t delivered = 0, damaged = 0;
  int failures = 0;
  for (int i = 0; i < cases; ++i) {
    const std::uint64_t seed = seed0 + static_cast<std::uint64_t>(i);
    const Case k{seed, static_cast<SyncPolicy>(seed % 3), static_cast<Damage>((seed / 3) % kDamageKinds)};
    const std::string why = run_case(dir, k, delivered, damaged);
    if (!why.empty()) {
      ADD_FAILURE() << "case " << i << " (" << k.describe() << "): " << why
                    << "\n  replay: TRIBUTARY_POWER_LOSS_SEED=" << k.seed
                    << " TRIBUTARY_POWER_LOSS_CASES=1";
      if (++failures >= 5) break;
    }
  }
  std::printf("power loss: %d cases, %llu records delivered and checked, %llu bytes damaged\n", cases,
              static_cast<unsigned long long>(delivered), static_cast<unsigned long long>(damaged));
}

}  // namespace
}  // namespace tributary::core
