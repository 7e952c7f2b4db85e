// Reading another process's files in tests: a whole file, and the analyzer's status.json
// (how many events it has accounted for), polled with a bound.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

namespace tributary::testing {

// The file's content, or "" if it cannot be read (yet).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

// counted + filtered + rejected in STATE/status.json (0 before it exists).
inline std::uint64_t accounted(const std::filesystem::path& state) {
  std::uint64_t counted = 0, filtered = 0, rejected = 0;
  if (std::sscanf(slurp(state / "status.json").c_str(), R"({"counted":%lu,"filtered":%lu,"rejected":%lu)", &counted,
                  &filtered, &rejected) != 3)
    return 0;
  return counted + filtered + rejected;
}

// Waits (bounded) until status.json says exactly `n` events were accounted for.
inline bool wait_accounted(const std::filesystem::path& state, std::uint64_t n, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (accounted(state) == n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // another process's progress, bounded above
  }
  return false;
}

}  // namespace tributary::testing
