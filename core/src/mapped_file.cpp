// MappedFile: open/create with clear errors, preallocation, Boost.Interprocess mapping.
#include "tributary/core/mapped_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

#include <atomic>
#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <cerrno>
#include <mutex>
#include <span>
#include <cstring>
#include <utility>
#include <fmt/format.h>

#include "tributary/core/error.h"
#include "tributary/core/fd.h"

namespace tributary::core {

namespace bip = boost::interprocess;

void throw_errno(const std::string& what, int err) {
  throw Error(fmt::format("{}: {}", what, std::strerror(err)));
}

namespace {

std::string describe_owner(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return fmt::format(" (file mode {:04o}, owner uid {} gid {}; this process runs as uid {} gid {})",
                     st.st_mode & 07777, st.st_uid, st.st_gid, ::geteuid(), ::getegid());
}

// --- SIGBUS guard (see MappedFile::faulted) ---------------------------------------------
struct GuardedRange {
  std::atomic<std::uintptr_t> begin{0};  // 0: free slot
  std::atomic<std::uintptr_t> end{0};
  std::atomic<int> fd{-1};               // the mapped file: is the faulting page past its end?
  std::atomic<bool> faulted{false};
};
constexpr std::size_t kGuardSlots = 256;  // mappings guarded at once; more go unguarded
constexpr std::uintptr_t kReserved = 1;   // `begin` of a slot being filled
GuardedRange g_guarded[kGuardSlots];
struct sigaction g_previous_sigbus {};
std::uintptr_t g_page = 4096;

void on_sigbus(int sig, siginfo_t* info, void* ctx) {
  const auto at = reinterpret_cast<std::uintptr_t>(info->si_addr);
  // Only a nonexistent page of the object (BUS_ADRERR) past the file's end is a truncation; a
  // hardware or I/O error (BUS_MCEERR_*, BUS_OBJERR) or a SIGBUS sent by kill must not be
  // papered over with zeros.
  for (auto& r : info->si_code == BUS_ADRERR ? g_guarded : std::span<GuardedRange>{}) {
    const std::uintptr_t b = r.begin.load(std::memory_order_acquire);
    const std::uintptr_t e = r.end.load(std::memory_order_acquire);
    const int fd = r.fd.load(std::memory_order_acquire);
    if (b <= kReserved || at < b || at >= e || r.begin.load(std::memory_order_acquire) != b) continue;
    const std::uintptr_t page = at & ~(g_page - 1);
    struct stat st {};
    if (::fstat(fd, &st) != 0 || static_cast<std::uintptr_t>(st.st_size) > page - b) break;  // backed: not ours
    // mmap is a plain system call: safe here in practice, if not on POSIX's list.
    if (::mmap(reinterpret_cast<void*>(page), e - page, PROT_READ | PROT_WRITE,
               MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) {
      r.faulted.store(true, std::memory_order_release);
      return;  // the faulting access runs again, on zero pages
    }
    break;
  }
  if ((g_previous_sigbus.sa_flags & SA_SIGINFO) != 0 && g_previous_sigbus.sa_sigaction != nullptr) {
    g_previous_sigbus.sa_sigaction(sig, info, ctx);
    return;
  }
  if (g_previous_sigbus.sa_handler != SIG_DFL && g_previous_sigbus.sa_handler != SIG_IGN &&
      g_previous_sigbus.sa_handler != nullptr) {
    g_previous_sigbus.sa_handler(sig);
    return;
  }
  // Not ours: the default action. A fault repeats when we return and kills as usual; a SIGBUS
  // sent with kill() does not repeat, so it is raised again.
  ::signal(SIGBUS, SIG_DFL);
  if (info->si_code <= 0) ::raise(SIGBUS);
}

// Guards [begin, begin+size) of the file open as `fd`; returns the slot, or kGuardSlots when
// the table is full.
std::size_t guard(const void* begin, std::uint64_t size, int fd) noexcept {
  static std::once_flag installed;
  std::call_once(installed, [] {
    g_page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_previous_sigbus);
  });
  const auto b = reinterpret_cast<std::uintptr_t>(begin);
  for (std::size_t i = 0; i < kGuardSlots; ++i) {
    std::uintptr_t expected = 0;
    if (!g_guarded[i].begin.compare_exchange_strong(expected, kReserved, std::memory_order_acquire)) continue;
    g_guarded[i].end.store(b + size, std::memory_order_relaxed);
    g_guarded[i].fd.store(fd, std::memory_order_relaxed);
    g_guarded[i].faulted.store(false, std::memory_order_relaxed);
    g_guarded[i].begin.store(b, std::memory_order_release);
    return i;
  }
  return kGuardSlots;
}

void unguard(std::size_t slot) noexcept {
  if (slot < kGuardSlots) g_guarded[slot].begin.store(0, std::memory_order_release);
}

}  // namespace

struct MappedFile::Impl {
  std::filesystem::path path;
  Fd fd;
  bip::file_mapping mapping;
  bip::mapped_region region;
  bool writable = false;
  std::size_t guard_slot = kGuardSlots;

  ~Impl() { unguard(guard_slot); }
};

MappedFile::MappedFile(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
MappedFile::MappedFile(MappedFile&&) noexcept = default;
MappedFile& MappedFile::operator=(MappedFile&&) noexcept = default;
MappedFile::~MappedFile() = default;

MappedFile MappedFile::create(const std::filesystem::path& path, std::uint64_t size, const CreateOptions& opts) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, opts.mode));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == EEXIST) throw Error(fmt::format("cannot create {}: the file already exists", path.string()));
    if (err == EACCES || err == EPERM || err == EROFS) {
      const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
      throw Error(fmt::format("cannot create {}: {} in directory {}{}", path.string(),
                              err == EROFS ? "read-only file system" : "permission denied", dir.string(),
                              describe_owner(dir)));
    }
    throw_errno(fmt::format("cannot create {}", path.string()), err);
  }
  bool keep = false;
  struct Unlinker {  // a half-created file must not be mistaken for a channel later
    const std::filesystem::path& p;
    const bool& keep;
    ~Unlinker() {
      if (!keep) ::unlink(p.c_str());
    }
  } unlinker{path, keep};

  if (::fchmod(fd.get(), opts.mode) != 0) throw_errno(fmt::format("cannot chmod {}", path.string()), errno);
  if (opts.group && ::fchown(fd.get(), static_cast<uid_t>(-1), *opts.group) != 0)
    throw_errno(fmt::format("cannot give {} to group {}", path.string(), *opts.group), errno);
  if (const int err = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(size)); err != 0)
    throw_errno(fmt::format("cannot preallocate {} bytes for {} (is the disk full?)", size, path.string()), err);
  MappedFile f = open(path, Access::kReadWrite);
  keep = true;
  return f;
}

MappedFile MappedFile::open(const std::filesystem::path& path, Access access) {
  const bool rw = access == Access::kReadWrite;
  Fd fd(::open(path.c_str(), (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM)
      throw Error(fmt::format("permission denied opening {} for {}{}", path.string(),
                              rw ? "writing" : "reading", describe_owner(path)));
    if (err == ENOENT) throw Error(fmt::format("{} does not exist", path.string()));
    throw_errno(fmt::format("cannot open {}", path.string()), err);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno(fmt::format("cannot stat {}", path.string()), errno);
  if (!S_ISREG(st.st_mode)) throw Error(fmt::format("{} is not a regular file", path.string()));
  if (st.st_size == 0) throw Error(fmt::format("{} is empty (truncated to 0 bytes?)", path.string()));

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->writable = rw;
  try {
    const auto mode = rw ? bip::read_write : bip::read_only;
    impl->mapping = bip::file_mapping(path.c_str(), mode);
    impl->region = bip::mapped_region(impl->mapping, mode, 0, static_cast<std::size_t>(st.st_size));
  } catch (const bip::interprocess_exception& e) {
    throw Error(fmt::format("cannot map {}: {}", path.string(), e.what()));
  }
  impl->fd = std::move(fd);
  impl->guard_slot = guard(impl->region.get_address(), impl->region.get_size(), impl->fd.get());
  return MappedFile(std::move(impl));
}

std::byte* MappedFile::data() const noexcept { return static_cast<std::byte*>(impl_->region.get_address()); }
std::uint64_t MappedFile::size() const noexcept { return impl_->region.get_size(); }
const std::filesystem::path& MappedFile::path() const noexcept { return impl_->path; }
bool MappedFile::writable() const noexcept { return impl_->writable; }

bool MappedFile::faulted() const noexcept {
  return impl_->guard_slot < kGuardSlots && g_guarded[impl_->guard_slot].faulted.load(std::memory_order_acquire);
}

bool MappedFile::intact() const noexcept {
  if (faulted()) return false;
  struct stat st {};
  if (::fstat(impl_->fd.get(), &st) != 0) return false;
  return static_cast<std::uint64_t>(st.st_size) >= size();
}

void MappedFile::extend(std::uint64_t size) {
  const auto& path = impl_->path;
  if (const int err = ::posix_fallocate(impl_->fd.get(), 0, static_cast<off_t>(size)); err != 0)
    throw_errno(fmt::format("cannot extend {} to {} bytes (is the disk full?)", path.string(), size), err);
  unguard(impl_->guard_slot);
  impl_->guard_slot = kGuardSlots;
  try {
    impl_->region = bip::mapped_region(impl_->mapping, bip::read_write, 0, static_cast<std::size_t>(size));
  } catch (const bip::interprocess_exception& e) {
    throw Error(fmt::format("cannot map {}: {}", path.string(), e.what()));
  }
  impl_->guard_slot = guard(impl_->region.get_address(), impl_->region.get_size(), impl_->fd.get());
}

int MappedFile::sync(std::uint64_t offset, std::uint64_t len, bool wait) const noexcept {
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t begin = offset / page * page;
  const std::uint64_t end = std::min(size(), (offset + len + page - 1) / page * page);
  if (end <= begin) return 0;
  return ::msync(data() + begin, end - begin, wait ? MS_SYNC : MS_ASYNC) == 0 ? 0 : errno;
}

bool MappedFile::try_lock_exclusive(int* error) const noexcept {
  int rc = 0;
  while ((rc = ::flock(impl_->fd.get(), LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
  }
  if (error != nullptr) *error = rc == 0 || errno == EWOULDBLOCK ? 0 : errno;
  return rc == 0;
}

namespace {
int byte_lock(int fd, std::uint64_t at, short type, int cmd) noexcept {
  struct flock l {};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = static_cast<off_t>(at);
  l.l_len = 1;
  int rc = 0;
  while ((rc = ::fcntl(fd, cmd, &l)) != 0 && errno == EINTR) {
  }
  return rc;
}
}  // namespace

void MappedFile::lock_byte(std::uint64_t at) const {
  if (byte_lock(impl_->fd.get(), at, F_WRLCK, F_OFD_SETLKW) != 0)
    throw_errno(fmt::format("cannot lock {} (fcntl, byte {})", impl_->path.string(), at), errno);
}

void MappedFile::unlock_byte(std::uint64_t at) const noexcept { (void)byte_lock(impl_->fd.get(), at, F_UNLCK, F_OFD_SETLK); }

void MappedFile::lock_shared() const {
  while (::flock(impl_->fd.get(), LOCK_SH) != 0)
    if (errno != EINTR) throw_errno(fmt::format("cannot lock {} (flock, shared)", impl_->path.string()), errno);
}

}  // namespace tributary::core
