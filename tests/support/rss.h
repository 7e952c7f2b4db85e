// Resident set size of this process, and of its mappings of one file, for tests that bound
// memory.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace tributary::testing {

// RSS in KiB, read without allocating: the test's own garbage must not count (ASan keeps freed
// blocks in quarantine, which would show up as RSS).
inline long rss_kb() {
  char buf[256];
  const int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0L;
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0L;
  buf[n] = '\0';
  long pages = 0, resident = 0;
  if (std::sscanf(buf, "%ld %ld", &pages, &resident) != 2) return 0L;
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

// Resident kB of this process's mappings of `file` (/proc/self/smaps).
inline std::uint64_t mapped_rss_kb(const std::filesystem::path& file) {
  const std::string name = std::filesystem::canonical(file).string();
  std::ifstream in("/proc/self/smaps");
  std::uint64_t kb = 0;
  bool ours = false;
  for (std::string line; std::getline(in, line);) {
    if (line.find('-') < line.find(' ')) {  // a mapping's first line: "start-end perms ... path"
      ours = line.size() >= name.size() && line.compare(line.size() - name.size(), name.size(), name) == 0;
      continue;
    }
    if (ours && line.rfind("Rss:", 0) == 0) kb += std::stoull(line.substr(4));
  }
  return kb;
}

}  // namespace tributary::testing
