// A file mapped shared into memory (Boost.Interprocess), with the descriptor kept for
// locking and for detecting a file shrunk under us. It knows nothing about rings: the
// channel runs over the region this class maps (the ring does not own its memory).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

namespace tributary::core {

class MappedFile {
 public:
  enum class Access { kReadOnly, kReadWrite };

  struct CreateOptions {
    mode_t mode = 0600;            // least privilege; 0660 with `group` to share with a group
    std::optional<gid_t> group;    // chown to this group after creation
  };

  // Creates `path` (must not exist), preallocates `size` bytes with posix_fallocate so a
  // full disk fails here rather than as SIGBUS later, and maps it read-write.
  static MappedFile create(const std::filesystem::path& path, std::uint64_t size, const CreateOptions& opts);
  // Maps an existing file whole. Throws core::Error naming the path and the cause.
  static MappedFile open(const std::filesystem::path& path, Access access);

  MappedFile(MappedFile&&) noexcept;
  MappedFile& operator=(MappedFile&&) noexcept;
  ~MappedFile();

  [[nodiscard]] std::byte* data() const noexcept;
  [[nodiscard]] std::uint64_t size() const noexcept;
  [[nodiscard]] const std::filesystem::path& path() const noexcept;
  [[nodiscard]] bool writable() const noexcept;

  // False when the file on disk is now shorter than the mapping (someone truncated it), or
  // when a touch of the lost pages already raised SIGBUS (see faulted()).
  [[nodiscard]] bool intact() const noexcept;

  // True once this process touched a page of the mapping that the file no longer backs. The
  // SIGBUS that raises is caught: a process-wide handler (signals are process-wide, so its
  // table of guarded mappings is the one piece of global state in core) maps zero pages over
  // the rest of the mapping so the access completes, and marks the mapping faulted; the
  // channel then refuses appends (kBroken) instead of the process dying. Faults outside any
  // guarded mapping go to the handler that was installed before, or kill as usual.
  [[nodiscard]] bool faulted() const noexcept;

  // Grows the file to `size` bytes (zeros, preallocated) and maps it whole again: pointers
  // into the old mapping are invalid afterwards. For a channel file found truncated.
  void extend(std::uint64_t size);

  // msync of [offset, offset+len) (page-aligned outward); `wait` selects MS_SYNC. Returns 0,
  // or the errno of a failed msync (EIO: the disk did not take the pages; ENOMEM, ...).
  [[nodiscard]] int sync(std::uint64_t offset, std::uint64_t len, bool wait) const noexcept;

  // Advisory whole-file locks (flock), released by the kernel when the process dies.
  // try_lock_exclusive: false if another process holds a lock, or if the kernel refuses the
  // lock, in which case `error` (when given) gets its errno (ENOLCK, say) and stays 0 otherwise;
  // lock_shared waits for it, and throws core::Error naming the file if the kernel refuses it:
  // going on unlocked would let another opener recover the ring under us.
  [[nodiscard]] bool try_lock_exclusive(int* error = nullptr) const noexcept;
  void lock_shared() const;
  // A write lock on byte `at` (fcntl F_OFD_SETLKW: owned by this open file, dropped by the
  // kernel when it closes or the process dies; independent of the flock above): a short
  // critical section between processes sharing the file. Threads of one process sharing this
  // MappedFile are not excluded by it. lock_byte throws core::Error naming the file if the
  // kernel refuses the lock.
  void lock_byte(std::uint64_t at) const;
  void unlock_byte(std::uint64_t at) const noexcept;

 private:
  struct Impl;
  explicit MappedFile(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tributary::core
