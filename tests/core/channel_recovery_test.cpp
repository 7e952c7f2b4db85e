// Recovery on open: bit flips, torn tails, stale laps and lost header updates. Every test
// checks what is delivered against what was written: corrupt records never come out, and
// every record not touched by the damage does. The damage models a power loss, so each test
// also drops the clean-close mark, as the reboot after it would (forget_clean_close).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "internal/channel_layout.h"
#include "support/channel_util.h"
#include "support/temp_dir.h"
#include "tributary/core/channel.h"

namespace tributary::core {
namespace {

using testing::data_offset;
using testing::drain;
using testing::forget_clean_close;
using testing::payload_for;
using testing::TempDir;

constexpr std::uint64_t kCapacity = 256 * 1024;

ChannelConfig config() {
  ChannelConfig c;
  c.capacity = kCapacity;
  c.max_payload = 4096;
  c.source_slots = 64;
  return c;
}


void flip_bit(const std::filesystem::path& p, std::uint64_t offset, int bit) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ (1 << bit));
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

void write_bytes(const std::filesystem::path& p, std::uint64_t offset, const std::string& bytes) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void write_u64(const std::filesystem::path& p, std::uint64_t offset, std::uint64_t v) {
  write_bytes(p, offset, std::string(reinterpret_cast<const char*>(&v), sizeof v));
}

// The channel goes on: the next record a producer appends reaches `c`, and nothing else does.
void expect_next_record_reaches(Channel& ch, Consumer& c) {
  Producer p = ch.producer({FullPolicy::kFailFast});
  ASSERT_EQ(p.append({2, 0}, "after"), AppendStatus::kOk);
  const auto got = drain(c, 10, std::chrono::milliseconds(50));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "after");
}

// `c` reads exactly records 0..n-1 of source 1, payloads of `len` bytes, in order.
void expect_source_1_records(Consumer& c, std::uint64_t n, std::size_t len) {
  const auto got = drain(c, n + 10, std::chrono::milliseconds(50));
  ASSERT_EQ(got.size(), n);
  for (std::uint64_t i = 0; i < n; ++i) EXPECT_EQ(got[i].payload, payload_for(1, i, len));
}

// File offsets of the tables, from the layout this build writes.
constexpr detail::Layout kLayout = detail::Layout::compute(kCapacity, 64);
constexpr std::uint64_t consumer_field(std::uint32_t slot, std::size_t field) {
  return kLayout.consumers_off + slot * sizeof(detail::ConsumerSlot) + field;
}
constexpr std::uint64_t producer_field(std::uint32_t slot, std::size_t field) {
  return kLayout.producers_off + slot * sizeof(detail::ProducerSlot) + field;
}

struct Written {
  std::uint64_t position, size, seq;
  std::string payload;
};

// Writes `n` records of varying sizes with a consumer registered at 0 that never commits.
std::vector<Written> fill(const std::filesystem::path& path, int n, std::uint64_t seed) {
  Channel ch = Channel::create(path, config());
  Consumer c = ch.consumer("reader");
  Producer p = ch.producer({FullPolicy::kFailFast});
  std::mt19937_64 rng(seed);
  std::vector<Written> out;
  for (int i = 0; i < n; ++i) {
    const std::string pl = payload_for(1, static_cast<std::uint64_t>(i), rng() % 300);
    if (p.append({1, static_cast<std::uint64_t>(i)}, pl) != AppendStatus::kOk) break;
    out.push_back({0, 0, static_cast<std::uint64_t>(i), pl});
  }
  auto seen = drain(c, out.size());
  for (std::size_t i = 0; i < seen.size(); ++i) {
    out[i].position = seen[i].position;
    out[i].size = (i + 1 < seen.size() ? seen[i + 1].position : ch.stats().write_position) - seen[i].position;
  }
  return out;
}

// A skip's length has 32 bits. A region longer than a skip (a dead claim in a ring above 16 GiB,
// a damaged stretch in one above 4 GiB) is closed as a chain of skips: each fits the field and
// is long enough to hold a skip's header, and together they cover the region exactly.
TEST(ChannelRecoveryTest, ARegionLongerThanASkipCanSayIsCutIntoSkipsThatCoverItExactly) {
  constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
  for (const std::uint64_t len : {std::uint64_t{16}, detail::kMaxSkip, detail::kMaxSkip + 8, detail::kMaxSkip + 16,
                                  detail::kMaxSkip + 24, 2 * detail::kMaxSkip + 8, 5 * kGiB + 8, 9 * kGiB + 4096,
                                  (std::uint64_t{1} << 32) + 8}) {
    SCOPED_TRACE("region of " + std::to_string(len) + " bytes");
    const std::uint64_t from = 7 * kGiB + 64;
    std::uint64_t p = from;
    int pieces = 0;
    while (p < from + len) {
      const std::uint64_t end = detail::skip_piece_end(p, from + len);
      ASSERT_GT(end, p);
      ASSERT_LE(end - p, std::uint64_t{UINT32_MAX}) << "the length field would wrap";
      ASSERT_LE(end - p, detail::kMaxSkip);
      ASSERT_GE(end - p, detail::kMinSkip) << "too short to hold a skip's header";
      ASSERT_EQ((end - p) % 8, 0u);
      p = end;
      ++pieces;
    }
    EXPECT_EQ(p, from + len);
    EXPECT_EQ(pieces, static_cast<int>((len + detail::kMaxSkip - 1) / detail::kMaxSkip));
  }
}

TEST(ChannelRecoveryTest, NeverDeliversABitFlippedRecordAndKeepsEveryUntouchedOne) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    TempDir dir;
    const auto path = dir / "a.chan";
    const auto written = fill(path, 600, seed);
    const std::uint64_t base = data_offset(path);
    const std::uint64_t end = written.back().position + written.back().size;
    std::mt19937_64 rng(seed * 7919);
    std::set<std::uint64_t> touched;  // seqs of records with a flipped bit
    for (int k = 0; k < 5; ++k) {
      const std::uint64_t off = rng() % end;
      flip_bit(path, base + off, static_cast<int>(rng() % 8));
      for (const auto& w : written)
        if (off >= w.position && off < w.position + w.size) touched.insert(w.seq);
    }
    forget_clean_close(path);
    Channel ch = Channel::open(path);
    Consumer c = ch.consumer("reader");
    auto got = drain(c, written.size(), std::chrono::milliseconds(50));
    std::set<std::uint64_t> delivered;
    for (const auto& g : got) {
      ASSERT_EQ(g.payload, written.at(g.id.sequence).payload) << "seed " << seed << ": corrupt record delivered";
      ASSERT_TRUE(delivered.insert(g.id.sequence).second) << "seed " << seed << ": delivered twice";
    }
    for (const auto& w : written)
      if (!touched.count(w.seq)) {
        EXPECT_TRUE(delivered.count(w.seq)) << "seed " << seed << ": lost good record " << w.seq;
      }
    const auto rep = ch.stats().last_recovery;
    EXPECT_TRUE(rep.ran);
    EXPECT_EQ(delivered.size() + rep.records_dropped + c.skipped_records(), written.size()) << "seed " << seed;
  }
}

TEST(ChannelRecoveryTest, TornLastRecordIsDroppedAndWritingContinuesTheSequence) {
  TempDir dir;
  const auto path = dir / "a.chan";
  const auto written = fill(path, 50, 3);
  const auto& last = written.back();
  // Tear the last record: its second half never reached the disk.
  write_bytes(path, data_offset(path) + last.position + last.size / 2, std::string(last.size - last.size / 2, '\0'));
  forget_clean_close(path);
  Channel ch = Channel::open(path);
  EXPECT_EQ(ch.stats().write_position, last.position) << "write head after the last record that continues";
  EXPECT_EQ(ch.stats().next_channel_seq, last.seq);
  Producer p = ch.producer();
  ASSERT_EQ(p.append({2, 0}, "fresh"), AppendStatus::kOk);
  Consumer c = ch.consumer("reader");
  auto got = drain(c, written.size(), std::chrono::milliseconds(50));
  ASSERT_EQ(got.size(), written.size());
  for (std::size_t i = 0; i + 1 < got.size(); ++i) EXPECT_EQ(got[i].payload, written[i].payload);
  EXPECT_EQ(got.back().payload, "fresh");
  EXPECT_EQ(got.back().channel_seq, last.seq) << "the channel sequence stays dense";
  EXPECT_EQ(ch.stats().last_recovery.records_dropped, 1u);
  EXPECT_EQ(ch.stats().last_recovery.bytes_dropped, 0u) << "a torn tail is the end of the data, not a hole";
}

TEST(ChannelRecoveryTest, LostWriteHeadUpdateIsRecoveredFromTheRecords) {
  // Power loss can persist record pages but not the header page: the stored write head is
  // stale. Recovery walks on and puts it after the last record that continues the sequence,
  // and never accepts records of an earlier lap lying beyond it.
  TempDir dir;
  const auto path = dir / "a.chan";
  std::uint64_t true_end = 0, total = 0;
  {
    Channel ch = Channel::create(path, config());
    Consumer c = ch.consumer("reader");
    Producer p = ch.producer();
    for (std::uint64_t i = 0; i < 6000; ++i) {  // several laps
      ASSERT_EQ(p.append({1, i}, payload_for(1, i, 100)), AppendStatus::kOk);
      if (i % 100 == 99) {
        ASSERT_EQ(drain(c, 100).size(), 100u);
        c.commit();
      }
    }
    total = 6000;
    true_end = ch.stats().write_position;
  }
  // Rewind the stored write head (header offset 64: the tail word's own cache line).
  const std::uint64_t stale = true_end - 2000;
  write_bytes(path, 64, std::string(reinterpret_cast<const char*>(&stale), 8));
  Channel ch = Channel::open(path);
  EXPECT_EQ(ch.stats().write_position, true_end);
  EXPECT_EQ(ch.stats().next_channel_seq, total);
  Consumer c = ch.consumer("reader");
  EXPECT_TRUE(drain(c, 1, std::chrono::milliseconds(20)).empty()) << "everything was consumed; no stale lap appears";
}

TEST(ChannelRecoveryTest, HeaderShapedBytesInsideAPayloadAreNotARecord) {
  TempDir dir;
  const auto path = dir / "a.chan";
  const auto written = fill(path, 20, 5);
  // Record 10's payload gets bytes shaped like a record header for its own position + 64
  // (right tag, nonsense CRC); then record 10's header is destroyed so recovery must resync.
  const auto& w = written[10];
  const std::uint64_t fake_pos = w.position + 64;
  ASSERT_LT(fake_pos + 16, w.position + w.size) << "payload long enough for the fake header";
  const std::uint64_t fake_tag = fake_pos | 1;
  write_bytes(path, data_offset(path) + fake_pos, std::string(reinterpret_cast<const char*>(&fake_tag), 8));
  write_bytes(path, data_offset(path) + w.position, std::string(8, '\x55'));
  forget_clean_close(path);
  Channel ch = Channel::open(path);
  Consumer c = ch.consumer("reader");
  auto got = drain(c, written.size(), std::chrono::milliseconds(50));
  ASSERT_EQ(got.size(), written.size() - 1);
  for (const auto& g : got) EXPECT_EQ(g.payload, written.at(g.id.sequence).payload);
  EXPECT_EQ(ch.stats().last_recovery.records_dropped, 1u);
}

TEST(ChannelRecoveryTest, CursorInsideADamagedRegionMovesToTheNextRecord) {
  TempDir dir;
  const auto path = dir / "a.chan";
  std::uint64_t cursor = 0;
  std::vector<Written> written;
  {
    written = fill(path, 30, 9);
    Channel ch = Channel::open(path);
    Consumer c = ch.consumer("late");  // "reader" stays at 0, so recovery walks from there
    auto got = drain(c, 30);
    cursor = got[12].position;
    c.commit(cursor);
  }
  // Destroy records 11 and 12: the cursor's record is gone.
  write_bytes(path, data_offset(path) + written[11].position, std::string(written[11].size + written[12].size, '\x77'));
  forget_clean_close(path);
  Channel ch = Channel::open(path);
  Consumer c = ch.consumer("late");
  EXPECT_EQ(c.committed(), written[13].position);
  EXPECT_EQ(ch.stats().last_recovery.cursors_moved, 1u);
  auto got = drain(c, 100, std::chrono::milliseconds(50));
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front().id.sequence, 13u);
  EXPECT_EQ(got.size(), 30u - 13u);
}

// After a power loss a consumer's cursor on disk may be older than the records: its page was not
// written back while the consumer went on and producers followed it. A record starting just
// short of a lap past that stale cursor but ending beyond it proves the consumer had moved on;
// recovery starts from there, and never writes over that record to close the stale region.
TEST(ChannelRecoveryTest, ARecordReachingALapPastAStaleCursorIsKept) {
  TempDir dir;
  const auto path = dir / "a.chan";
  std::uint64_t stale = 0, big_at = 0, big_end = 0;
  std::string big;
  {
    Channel ch = Channel::create(path, config());
    Consumer c = ch.consumer("reader");
    Producer p = ch.producer({FullPolicy::kFailFast});
    for (std::uint64_t i = 0; i < 10; ++i) ASSERT_EQ(p.append({1, i}, payload_for(1, i, 100)), AppendStatus::kOk);
    auto got = drain(c, 10);
    ASSERT_EQ(got.size(), 10u);
    stale = got[5].position;  // what the disk keeps of the cursor
    c.commit();               // where it really is
    // Small records up to 200 bytes short of a lap past the stale cursor, then a bigger one
    // reaching over that mark.
    const std::uint64_t target = stale + kCapacity - 200;
    std::uint64_t seq = 10;
    for (;;) {
      const std::uint64_t at = ch.stats().write_position;
      const std::uint64_t left = target - at;
      if (left < 2 * 152) {
        ASSERT_EQ(p.append({1, seq}, payload_for(1, seq, left - kRecordHeaderSize)), AppendStatus::kOk);
        ++seq;
        break;
      }
      ASSERT_EQ(p.append({1, seq}, payload_for(1, seq, 100)), AppendStatus::kOk);
      ++seq;
      if (seq % 200 == 0) {
        ASSERT_FALSE(drain(c, 1000, std::chrono::milliseconds(0)).empty());
        c.commit();
      }
    }
    ASSERT_EQ(ch.stats().write_position, target);
    (void)drain(c, 1000, std::chrono::milliseconds(0));
    c.commit();
    big = payload_for(1, seq, 400);
    big_at = ch.stats().write_position;
    ASSERT_EQ(p.append({1, seq}, big), AppendStatus::kOk);
    big_end = ch.stats().write_position;
    ASSERT_GT(big_end, stale + kCapacity);
  }
  // The header's page as stale as the cursor's: its retention head no higher than the cursor.
  write_u64(path, consumer_field(0, offsetof(detail::ConsumerSlot, cursor)), stale);
  write_u64(path, offsetof(detail::Header, head), stale);
  forget_clean_close(path);
  Channel ch = Channel::open(path);
  EXPECT_EQ(ch.stats().write_position, big_end);
  Consumer c = ch.consumer("reader");
  bool found = false;
  for (const auto& g : drain(c, 2000, std::chrono::milliseconds(50)))
    if (g.position == big_at) found = g.payload == big;
  EXPECT_TRUE(found) << "the record reaching past the stale cursor's lap was lost";
}

// A cut inside the tables zeroes a cursor; the retention head, which producers raise only to
// the lowest cursor, bounds where it was. The write head stays, and every consumer, old or
// new, gets what is written next.
TEST(ChannelRecoveryTest, AFileCutInsideItsTablesKeepsItsWriteHeadAndServesEveryConsumer) {
  TempDir dir;
  const auto path = dir / "a.chan";
  std::uint64_t end = 0;
  {
    Channel ch = Channel::create(path, config());
    Consumer c = ch.consumer("reader");
    Producer p = ch.producer({FullPolicy::kFailFast});
    for (std::uint64_t i = 0; i < 5000; ++i) {  // a few laps: the retention head moves up
      ASSERT_EQ(p.append({1, i}, payload_for(1, i, 150)), AppendStatus::kOk);
      if (i % 100 == 99) {
        ASSERT_EQ(drain(c, 100).size(), 100u);
        c.commit();
      }
    }
    end = ch.stats().write_position;
  }
  std::filesystem::resize_file(path, consumer_field(0, offsetof(detail::ConsumerSlot, cursor)));
  Channel ch = Channel::open(path);
  EXPECT_NE(ch.stats().last_recovery.file_bytes_found, 0u);
  EXPECT_GT(ch.stats().write_position, end - kCapacity) << "the write head went back";
  Consumer reader = ch.consumer("reader");
  Consumer second = ch.consumer("second");
  Producer p = ch.producer({FullPolicy::kFailFast});
  for (std::uint64_t i = 0; i < 3; ++i) ASSERT_EQ(p.append({2, i}, payload_for(2, i, 50)), AppendStatus::kOk);
  for (Consumer* c : {&reader, &second}) {
    auto got = drain(*c, 10, std::chrono::milliseconds(50));
    ASSERT_EQ(got.size(), 3u) << c->name();
    for (std::uint64_t i = 0; i < 3; ++i) EXPECT_EQ(got[i].payload, payload_for(2, i, 50));
  }
}

// A retention head flipped past the write head is no bound of the cursors: the backlog stays.
TEST(ChannelRecoveryTest, ARetentionHeadPastTheWriteHeadDoesNotDropTheBacklog) {
  TempDir dir;
  const auto path = dir / "a.chan";
  const auto written = fill(path, 40, 11);
  write_u64(path, offsetof(detail::Header, head), std::uint64_t{1} << 40);
  forget_clean_close(path);
  Channel ch = Channel::open(path);
  Consumer c = ch.consumer("reader");
  const auto got = drain(c, 100, std::chrono::milliseconds(50));
  ASSERT_EQ(got.size(), written.size());
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].payload, written[i].payload);
}

// A damaged claim length in a dead writer's slot must not carry the write head laps ahead.
TEST(ChannelRecoveryTest, AnImplausibleDeadClaimIsNotFollowed) {
  TempDir dir;
  const auto path = dir / "a.chan";
  const auto written = fill(path, 40, 4);
  const std::uint64_t end = written.back().position + written.back().size;
  write_u64(path, producer_field(0, offsetof(detail::ProducerSlot, pid)), 4242);
  write_u64(path, producer_field(0, offsetof(detail::ProducerSlot, claim_pos)), end);
  write_u64(path, producer_field(0, offsetof(detail::ProducerSlot, claim_len)), 2 * kCapacity);
  forget_clean_close(path);
  Channel ch = Channel::open(path);
  EXPECT_EQ(ch.stats().write_position, end);
  Consumer c = ch.consumer("reader");
  EXPECT_EQ(drain(c, 100, std::chrono::milliseconds(50)).size(), written.size());
  ASSERT_NO_FATAL_FAILURE(expect_next_record_reaches(ch, c));
}

// A region closed by the producer of record 5 (destroyed with its claim unpublished), in a file
// of ten records of source 1; returns the skip's position.
std::uint64_t ten_records_around_a_skip(const std::filesystem::path& path) {
  Channel ch = Channel::create(path, config());
  (void)ch.consumer("reader");
  for (std::uint64_t i = 0; i < 5; ++i) EXPECT_EQ(ch.producer().append({1, i}, payload_for(1, i, 60)), AppendStatus::kOk);
  const std::uint64_t at = ch.stats().write_position;
  {
    Producer p = ch.producer();
    Producer::Claim claim;
    EXPECT_EQ(p.claim({1, 5}, 100, claim), AppendStatus::kOk);
  }
  Producer p = ch.producer();
  for (std::uint64_t i = 5; i < 10; ++i) EXPECT_EQ(p.append({1, i}, payload_for(1, i, 60)), AppendStatus::kOk);
  return at;
}

// A skip region's length says how far readers jump: a flipped bit in it must not carry them over
// the records behind it. The skip's check catches it, and the region is resynchronised instead.
TEST(ChannelRecoveryTest, AFlippedSkipLengthIsNotFollowed) {
  TempDir dir;
  const auto path = dir / "a.chan";
  const std::uint64_t skip_at = ten_records_around_a_skip(path);
  flip_bit(path, data_offset(path) + skip_at + offsetof(detail::RecordHeader, length) + 1, 3);  // +2 KiB
  forget_clean_close(path);
  Channel ch = Channel::open(path);
  Consumer c = ch.consumer("reader");
  ASSERT_NO_FATAL_FAILURE(expect_source_1_records(c, 10, 60));
}

// Skips as builds before the check wrote them (tag kind 3, the CRC field left as it was) are
// still followed, by consumers of a cleanly closed file and by recovery alike.
TEST(ChannelRecoveryTest, AnUncheckedSkipOfAnOlderBuildIsStillFollowed) {
  for (const bool scan : {false, true}) {
    TempDir dir;
    const auto path = dir / "a.chan";
    const std::uint64_t skip_at = ten_records_around_a_skip(path);
    write_u64(path, data_offset(path) + skip_at, detail::make_tag(skip_at, detail::kSkipTag));
    write_bytes(path, data_offset(path) + skip_at + offsetof(detail::RecordHeader, crc), std::string(4, '\x5a'));
    if (scan) forget_clean_close(path);
    Channel ch = Channel::open(path);
    Consumer c = ch.consumer("reader");
    const auto got = drain(c, 100, std::chrono::milliseconds(50));
    ASSERT_EQ(got.size(), 10u) << (scan ? "after recovery" : "without a scan");
  }
}

// The file at `path` as a build of format version 2 left it: closed cleanly, or (`crashed`) so
// that the next opener recovers it; that opener upgrades it.
void as_left_by_a_version_two_build(const std::filesystem::path& path, bool crashed) {
  const std::uint32_t two = 2;
  write_bytes(path, offsetof(detail::Header, version), std::string(reinterpret_cast<const char*>(&two), sizeof two));
  if (crashed) forget_clean_close(path);
}

// A record whose tag's kind bits were flipped at rest, so that it reads as a pad or a skip
// naming its own position: the recovery scan took it for one and jumped, losing every record
// after it in its lap (the power-loss suite found it: seed 17057421); a consumer did the same
// after a clean close. Its CRC still verifies for its position: it is read as the record it is.
TEST(ChannelRecoveryTest, ARecordWhoseTagReadsAsAPadOrASkipIsStillDelivered) {
  for (const detail::TagKind kind : {detail::kPadTag, detail::kSkipTag, detail::kCheckedSkipTag}) {
    for (const bool scan : {false, true}) {
      TempDir dir;
      const auto path = dir / "a.chan";
      const auto written = fill(path, 20, 5);
      ASSERT_EQ(written.size(), 20u);
      write_u64(path, data_offset(path) + written[7].position, detail::make_tag(written[7].position, kind));
      if (scan) forget_clean_close(path);
      Channel ch = Channel::open(path);
      Consumer c = ch.consumer("reader");
      const auto got = drain(c, 100, std::chrono::milliseconds(50));
      ASSERT_EQ(got.size(), 20u) << "tag kind " << kind << (scan ? ", after recovery" : ", without a scan");
      for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].payload, written[i].payload);
      std::size_t walked = 0;
      ch.walk([&](const Record&) { return ++walked, true; });
      EXPECT_EQ(walked, 20u) << "dump and walk read it too";
    }
  }
}

// A pad written by an older build (format version 2) carries no check in its CRC field: a
// record under it (a dead writer's, unpublished, or one recovery dropped) is not taken for a
// damaged record's, by readers or by recovery, and the upgrade gives the pad its check.
TEST(ChannelRecoveryTest, APadOfAnOlderFormatOverARecordIsNotTakenForTheRecord) {
  for (const bool scan : {false, true}) {
    TempDir dir;
    const auto path = dir / "a.chan";
    const auto written = fill(path, 20, 5);
    write_u64(path, data_offset(path) + written[7].position, detail::make_tag(written[7].position, detail::kPadTag));
    as_left_by_a_version_two_build(path, scan);
    Channel ch = Channel::open(path);
    Consumer c = ch.consumer("reader");
    const auto got = drain(c, 100, std::chrono::milliseconds(50));
    ASSERT_EQ(got.size(), 7u) << (scan ? "after recovery" : "without a scan") << ": the pad ends the lap";
  }
}

// The upgrade gives old pads their check by walking the records, not by taking any word shaped
// like a pad's tag for one: a payload holding such a word is left as it was written.
TEST(ChannelRecoveryTest, UpgradingAnOlderFileLeavesAPayloadShapedLikeAPadAlone) {
  for (const bool scan : {false, true}) {
    TempDir dir;
    const auto path = dir / "a.chan";
    std::string shaped(40, 'y');
    {
      Channel ch = Channel::create(path, config());
      Consumer c = ch.consumer("reader");
      Producer p = ch.producer();
      ASSERT_EQ(p.append({1, 0}, std::string(40, 'x')), AppendStatus::kOk);  // at 0, 88 bytes
      const std::uint64_t word = 88 + kRecordHeaderSize;                       // the next payload's first word
      const std::uint64_t fake = detail::make_tag(word, detail::kPadTag);
      std::memcpy(shaped.data(), &fake, sizeof fake);
      ASSERT_EQ(p.append({1, 1}, shaped), AppendStatus::kOk);
      ASSERT_EQ(p.append({1, 2}, std::string(40, 'z')), AppendStatus::kOk);
    }
    as_left_by_a_version_two_build(path, scan);
    Channel ch = Channel::open(path);
    Consumer c = ch.consumer("reader");
    const auto got = drain(c, 100, std::chrono::milliseconds(50));
    ASSERT_EQ(got.size(), 3u) << (scan ? "after recovery" : "without a scan");
    EXPECT_EQ(got[1].payload, shaped);
    EXPECT_EQ(ch.stats().corrupt_records, 0u);
  }
}

// Without a scan (a cleanly closed file damaged since), a consumer meeting a checked skip whose
// length no longer agrees with its check stops there instead of jumping.
TEST(ChannelRecoveryTest, AConsumerStopsAtADamagedSkipInsteadOfJumping) {
  TempDir dir;
  const auto path = dir / "a.chan";
  const std::uint64_t skip_at = ten_records_around_a_skip(path);
  flip_bit(path, data_offset(path) + skip_at + offsetof(detail::RecordHeader, length) + 1, 3);
  Channel ch = Channel::open(path);
  ASSERT_TRUE(ch.stats().opened_after_clean_close);
  Consumer c = ch.consumer("reader");
  const auto got = drain(c, 100, std::chrono::milliseconds(50));
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got.back().payload, payload_for(1, 4, 60));
}

// A retention head flipped past the write head, in a channel no consumer reads yet: the backlog
// it keeps for the first consumer stays.
TEST(ChannelRecoveryTest, ARetentionHeadPastTheWriteHeadKeepsTheBacklogWithoutConsumers) {
  TempDir dir;
  const auto path = dir / "a.chan";
  {
    Channel ch = Channel::create(path, config());
    Producer p = ch.producer();
    for (std::uint64_t i = 0; i < 30; ++i) ASSERT_EQ(p.append({1, i}, payload_for(1, i, 80)), AppendStatus::kOk);
  }
  write_u64(path, offsetof(detail::Header, head), std::uint64_t{1} << 40);
  forget_clean_close(path);
  Channel ch = Channel::open(path);
  Consumer c = ch.consumer("first");
  ASSERT_NO_FATAL_FAILURE(expect_source_1_records(c, 30, 80));
}

// A producer slot records a claim while the reservation is only attempted: a writer killed then
// leaves a "claim" over a region other producers went on to write. Valid records inside it mean
// it was never made; recovery keeps them and does not close the rest of it, which would leave a
// consumer stuck at the end of the data.
TEST(ChannelRecoveryTest, AClaimOverRecordsOthersWroteIsNoClaim) {
  TempDir dir;
  const auto path = dir / "a.chan";
  const auto written = fill(path, 10, 12);
  const Written& last = written.back();
  write_u64(path, producer_field(0, offsetof(detail::ProducerSlot, pid)), 4242);
  write_u64(path, producer_field(0, offsetof(detail::ProducerSlot, claim_pos)), last.position);
  write_u64(path, producer_field(0, offsetof(detail::ProducerSlot, claim_len)), last.size + 8);
  forget_clean_close(path);
  Channel ch = Channel::open(path);
  EXPECT_EQ(ch.stats().write_position, last.position + last.size);
  Consumer c = ch.consumer("reader");
  EXPECT_EQ(drain(c, 100, std::chrono::milliseconds(50)).size(), written.size());
  ASSERT_NO_FATAL_FAILURE(expect_next_record_reaches(ch, c));
}

// A free consumer slot turned "active" by a flipped bit has no name: no consumer registered it.
// Left active it would hold the floor back for good; recovery frees it.
TEST(ChannelRecoveryTest, AnActiveConsumerSlotWithoutANameIsFreed) {
  TempDir dir;
  const auto path = dir / "a.chan";
  (void)fill(path, 10, 6);
  write_bytes(path, consumer_field(3, offsetof(detail::ConsumerSlot, state)), std::string(1, '\x02'));
  forget_clean_close(path);
  Channel ch = Channel::open(path);
  ASSERT_EQ(ch.stats().consumers.size(), 1u);
  EXPECT_EQ(ch.stats().consumers[0].name, "reader");
}

// A record header at the write head that fails its CRC was never published (what a power loss
// left of a newer lap, in a file opened without a scan): a consumer stops in front of it, and
// gets the records producers write there next.
TEST(ChannelRecoveryTest, AConsumerDoesNotStepOverACorruptHeaderAtTheWriteHead) {
  TempDir dir;
  const auto path = dir / "a.chan";
  const auto written = fill(path, 10, 8);
  const std::uint64_t end = written.back().position + written.back().size;
  write_u64(path, data_offset(path) + (end % kCapacity), detail::make_tag(end, detail::kRecordTag));
  write_bytes(path, data_offset(path) + (end % kCapacity) + 12, std::string("\x20\0\0\0", 4));  // length 32
  Channel ch = Channel::open(path);
  ASSERT_TRUE(ch.stats().opened_after_clean_close) << "no scan: the consumer meets the header itself";
  Consumer c = ch.consumer("reader");
  EXPECT_EQ(drain(c, 100, std::chrono::milliseconds(20)).size(), written.size());
  ASSERT_NO_FATAL_FAILURE(expect_next_record_reaches(ch, c));
  EXPECT_EQ(c.skipped_records(), 0u);
}

}  // namespace
}  // namespace tributary::core
