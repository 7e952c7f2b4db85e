// Any bytes as an agent configuration file: loading lists errors or succeeds, never crashes.
#include <unistd.h>

#include <fstream>
#include <string>

#include "tributary/ingest/agent.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/tributary-fuzz-agent-" + std::to_string(::getpid()) + ".toml";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  const auto r = tributary::ingest::load_agent_config(path);
  return r.errors.empty() && r.config.sources.size() > 1000000 ? 1 : 0;
}
