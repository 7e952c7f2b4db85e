// A channel file damaged by the input (XOR patches at offsets it chooses, and a truncation):
// opening recovers or refuses with core::Error, never crashes, and every record a walk or a
// consumer returns is one that was written, byte for byte. The image was closed cleanly; its
// clean-close mark is dropped (damage from a crash or a power loss: recovery scans) unless the
// input ends in one odd byte (damage at rest on the same boot: no scan, the reads' CRC checks
// are what stands between the damage and the output).
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "support/channel_util.h"
#include "tributary/core/channel.h"
#include "tributary/core/error.h"

namespace {

const std::string kDir = "/dev/shm/tributary-fuzz-" + std::to_string(::getpid());

// Removes kDir when the fuzzer exits (libFuzzer ends its runs with exit(), which destroys it).
struct ScratchDir {
  ScratchDir() { std::filesystem::create_directories(kDir); }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(kDir, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
};

// A pristine channel image with known records, built once.
const std::vector<char>& pristine(std::set<std::string>& written) {
  static std::vector<char> image;
  static std::set<std::string> payloads;
  if (image.empty()) {
    static const ScratchDir scratch;
    const std::string p = kDir + "/base.chan";
    std::filesystem::remove(p);
    {
      tributary::core::ChannelConfig c;
      c.capacity = 64 << 10;
      c.max_payload = 4096;
      c.source_slots = 16;
      auto ch = tributary::core::Channel::create(p, c);
      auto prod = ch.producer();
      for (std::uint64_t i = 0; i < 300; ++i) {
        std::string s = "record " + std::to_string(i) + std::string(i % 97, 'x');
        payloads.insert(s);
        if (prod.append({1, i}, s) != tributary::core::AppendStatus::kOk) break;
      }
    }
    std::ifstream f(p, std::ios::binary);
    image.assign(std::istreambuf_iterator<char>(f), {});
  }
  written = payloads;
  return image;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::set<std::string> written;
  std::vector<char> img = pristine(written);
  // Input: [u32 offset, u8 xor] patches; the last 4 bytes, if any left, a truncation length.
  std::size_t i = 0;
  for (; i + 5 <= size; i += 5) {
    std::uint32_t off = 0;
    std::memcpy(&off, data + i, 4);
    img[off % img.size()] ^= static_cast<char>(data[i + 4] == 0 ? 1 : data[i + 4]);
  }
  std::size_t len = img.size();
  const bool keep_mark = size - i == 1;
  if (size - i == 4) {
    std::uint32_t t = 0;
    std::memcpy(&t, data + i, 4);
    len = t % (img.size() + 1);
  }
  const std::string p = kDir + "/case.chan";
  {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(img.data(), static_cast<std::streamsize>(len));
  }
  if (!keep_mark && len >= tributary::testing::kCleanCloseOffset + 8) tributary::testing::forget_clean_close(p);
  try {
    auto ch = tributary::core::Channel::open(p);
    ch.walk([&](const tributary::core::Record& r) {
      if (!written.count(std::string(reinterpret_cast<const char*>(r.payload.data()), r.payload.size())))
        std::abort();  // a record that was never written came out
      return true;
    });
    auto c = ch.consumer("fuzz");
    std::vector<tributary::core::Record> recs(64);
    for (int round = 0; round < 10; ++round) {
      const std::size_t n = c.poll(recs);
      if (n == 0) break;
      for (std::size_t k = 0; k < n; ++k)
        if (!written.count(std::string(reinterpret_cast<const char*>(recs[k].payload.data()), recs[k].payload.size())))
          std::abort();
      c.commit();
    }
  } catch (const tributary::core::Error&) {
  }
  return 0;
}
