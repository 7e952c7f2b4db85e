// Atomic checkpoint files: write, fsync, rename, fsync the directory.
#include "tributary/analytics/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <fstream>

#include "tributary/core/crc32c.h"
#include "tributary/core/error.h"

namespace tributary::analytics {

namespace {
constexpr char kMagic[8] = {'T', 'R', 'I', 'B', 'C', 'K', 'P', '1'};

void write_all(int fd, const void* data, std::size_t n, const std::filesystem::path& p) {
  const auto* c = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      core::throw_errno(fmt::format("cannot write checkpoint {}", p.string()), errno);
    }
    c += w;
    n -= static_cast<std::size_t>(w);
  }
}
}  // namespace

void write_checkpoint(const std::filesystem::path& path, const std::string& payload) {
  const auto tmp = std::filesystem::path(path).concat(".tmp");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) core::throw_errno(fmt::format("cannot create checkpoint {}", tmp.string()), errno);
  const std::uint64_t len = payload.size();
  const std::uint32_t crc = core::crc32c(payload.data(), payload.size());
  try {
    write_all(fd, kMagic, sizeof kMagic, tmp);
    write_all(fd, &len, sizeof len, tmp);
    write_all(fd, &crc, sizeof crc, tmp);
    write_all(fd, payload.data(), payload.size(), tmp);
    if (::fsync(fd) != 0) core::throw_errno(fmt::format("cannot fsync checkpoint {}", tmp.string()), errno);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    core::throw_errno(fmt::format("cannot rename {} to {}", tmp.string(), path.string()), errno);
  // The rename is durable only once the directory is synced: the caller commits its input's
  // position after this returns, so a failure here is an error, not a shrug (after a power loss
  // the old checkpoint could come back behind a cursor already moved on).
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) core::throw_errno(fmt::format("cannot open {} to sync the checkpoint's rename", dir.string()), errno);
  const int synced = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (synced != 0 && err != EINVAL)  // EINVAL: a file system whose directories take no fsync
    core::throw_errno(fmt::format("cannot fsync {} (the checkpoint's rename)", dir.string()), err);
}

std::optional<std::string> read_checkpoint(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && !ec) return std::nullopt;  // no checkpoint yet: a fresh start
  std::ifstream f(path, std::ios::binary);
  // One that exists but cannot be read (permissions, I/O) is an error, never a silent reset.
  if (!f) core::throw_errno(fmt::format("cannot read the checkpoint {}", path.string()), errno != 0 ? errno : EIO);
  char magic[8];
  std::uint64_t len = 0;
  std::uint32_t crc = 0;
  f.read(magic, sizeof magic);
  f.read(reinterpret_cast<char*>(&len), sizeof len);
  f.read(reinterpret_cast<char*>(&crc), sizeof crc);
  if (!f || std::memcmp(magic, kMagic, sizeof kMagic) != 0)
    throw core::Error(fmt::format("{} is not a Tributary checkpoint (bad header)", path.string()));
  // The length is not under the CRC: a damaged one must not make this allocate gigabytes. The
  // size is the open file's (a checkpoint renamed into place meanwhile is another file).
  constexpr std::uint64_t kHeader = sizeof magic + sizeof len + sizeof crc;
  f.seekg(0, std::ios::end);
  const auto end = f.tellg();
  f.seekg(static_cast<std::streamoff>(kHeader));
  const std::uint64_t size = end < 0 ? 0 : static_cast<std::uint64_t>(end);
  if (!f || size < kHeader || len != size - kHeader)
    throw core::Error(fmt::format("checkpoint {} is damaged or truncated (it claims {} bytes, the file holds {})",
                                  path.string(), len, size < kHeader ? 0 : size - kHeader));
  std::string payload(len, '\0');
  f.read(payload.data(), static_cast<std::streamsize>(len));
  if (static_cast<std::uint64_t>(f.gcount()) != len)
    throw core::Error(fmt::format("checkpoint {} is truncated ({} of {} bytes)", path.string(), f.gcount(), len));
  if (core::crc32c(payload.data(), payload.size()) != crc)
    throw core::Error(fmt::format("checkpoint {} is damaged (CRC mismatch)", path.string()));
  return payload;
}

}  // namespace tributary::analytics
