// Resident set size of this process, for tests that bound memory.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

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

}  // namespace tributary::testing
