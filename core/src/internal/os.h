// Small OS helpers for the channel: process identity (pid + start time, so a reused pid is
// not mistaken for a live writer) and shared (cross-process) futex waits.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tributary::core::detail {

struct ProcessIdentity {
  std::uint32_t pid = 0;
  std::uint64_t start_time = 0;  // field 22 of /proc/<pid>/stat (clock ticks since boot)
};

[[nodiscard]] ProcessIdentity self_identity() noexcept;
// 0 when the process does not exist (or /proc cannot be read).
[[nodiscard]] std::uint64_t process_start_time(std::uint32_t pid) noexcept;
// True while a process with this pid and start time exists, or may (one that /proc hides from
// this process, as hidepid does for another user's: never taken for dead).
[[nodiscard]] bool process_alive(std::uint32_t pid, std::uint64_t start_time) noexcept;
// A 64-bit digest of this boot's id (/proc/sys/kernel/random/boot_id): it changes with every
// boot, so what it is mixed into is known to come from the running kernel's page cache.
// 0 when it cannot be read.
[[nodiscard]] std::uint64_t boot_id_digest() noexcept;

// FUTEX_WAIT without the private flag: works across processes mapping the same file.
// Returns when woken, on timeout, on a signal, or at once if *word != expected.
void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept;
void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept;

// Asymmetric fences (membarrier GLOBAL_EXPEDITED). The hot side of a Dekker pair (publish a
// record, then check for sleepers) uses a plain release store and a compiler barrier; the
// side about to sleep pays for the full barrier on every CPU running a registered process.
// This keeps a locked instruction out of every append. Falls back to seq_cst on both sides
// where the kernel lacks it.
[[nodiscard]] bool membarrier_supported() noexcept;
void membarrier_register() noexcept;  // once per process that publishes or commits
void membarrier_heavy() noexcept;     // the sleeping side, before re-checking

[[nodiscard]] std::int64_t realtime_ns(bool precise) noexcept;

}  // namespace tributary::core::detail
