// Any bytes as an agent configuration file: loading lists errors or succeeds, never crashes.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tributary/ingest/agent.h"

namespace {
// The input's file, removed when the fuzzer exits (libFuzzer ends its runs with exit()).
struct ScratchFile {
  std::string path = "/tmp/tributary-fuzz-agent-" + std::to_string(::getpid()) + ".toml";
  ScratchFile() = default;
  ~ScratchFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ScratchFile scratch;
  const std::string& path = scratch.path;
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  const auto r = tributary::ingest::load_agent_config(path);
  return r.errors.empty() && r.config.sources.size() > 1000000 ? 1 : 0;
}
