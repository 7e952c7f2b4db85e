// CRC32C: known answers, and the hardware path equal to the portable one at every length
// and alignment (the 3-way interleave and its stitching tables are the risky part).
#include "tributary/core/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace tributary::core {
namespace {

TEST(Crc32cTest, MatchesKnownAnswers) {
  // RFC 3720 (iSCSI) B.4 test vectors and the classic "123456789" check value.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  std::vector<unsigned char> zeros(32, 0x00), ones(32, 0xFF), inc(32);
  for (int i = 0; i < 32; ++i) inc[static_cast<std::size_t>(i)] = static_cast<unsigned char>(i);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), inc.size()), 0x46DD794Eu);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

TEST(Crc32cTest, HardwareAndPortableAgreeAtEveryLengthAndAlignment) {
  std::mt19937_64 rng(42);
  std::vector<unsigned char> buf(12 * 1024 + 64);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  for (std::size_t len : {0, 1, 7, 8, 9, 63, 64, 383, 384, 385, 767, 768, 1000, 3071, 3072, 3073, 4096, 9000, 12288}) {
    for (std::size_t off = 0; off < 8; ++off) {
      ASSERT_EQ(crc32c(buf.data() + off, len), crc32c_extend_portable(0, buf.data() + off, len))
          << "len " << len << " offset " << off;
    }
  }
}

TEST(Crc32cTest, ExtendEqualsOneShot) {
  const std::string a = "tributary channel record ", b(5000, 'x');
  const std::string ab = a + b;
  EXPECT_EQ(crc32c_extend(crc32c(a.data(), a.size()), b.data(), b.size()), crc32c(ab.data(), ab.size()));
}

TEST(Crc32cTest, DetectsEverySingleBitFlipInARecord) {
  std::vector<unsigned char> rec(112);
  for (std::size_t i = 0; i < rec.size(); ++i) rec[i] = static_cast<unsigned char>(i * 31 + 7);
  const std::uint32_t good = crc32c(rec.data(), rec.size());
  for (std::size_t bit = 0; bit < rec.size() * 8; ++bit) {
    rec[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    ASSERT_NE(crc32c(rec.data(), rec.size()), good) << "bit " << bit;
    rec[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
  }
}

TEST(Crc32cTest, ThreeStreamsEqualThreeSingleCalls) {
  std::mt19937_64 rng(7);
  std::vector<unsigned char> buf(3 * 2048);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  for (int round = 0; round < 500; ++round) {
    std::uint32_t seed[3];
    const void* data[3];
    std::size_t size[3];
    for (int i = 0; i < 3; ++i) {
      seed[i] = static_cast<std::uint32_t>(rng());
      size[i] = rng() % 1500;
      data[i] = buf.data() + 2048 * i + rng() % 500;
    }
    std::uint32_t out[3];
    crc32c_extend3(seed, data, size, out);
    for (int i = 0; i < 3; ++i) ASSERT_EQ(out[i], crc32c_extend(seed[i], data[i], size[i])) << "round " << round;
  }
}

}  // namespace
}  // namespace tributary::core
