// Descriptor starvation for tests: what an agent under a low `ulimit -n` meets.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

namespace tributary::testing {

// Sanitizer runtimes open descriptors of their own at unforeseeable moments (UBSan's vptr check
// probes memory through a pipe): starved, they report errors that are not the code's. Tests that
// starve the process skip in those builds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizerNeedsDescriptors = true;
#else
inline constexpr bool kSanitizerNeedsDescriptors = false;
#endif

// While alive (until restore()), this process can open no new file descriptor: RLIMIT_NOFILE's
// soft limit is set to the lowest free one. Restores the limit when destroyed.
class NoNewDescriptors {
 public:
  NoNewDescriptors() {
    if (::getrlimit(RLIMIT_NOFILE, &saved_) != 0) return;
    const int lowest_free = ::dup(0);
    if (lowest_free < 0) return;
    ::close(lowest_free);
    rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(lowest_free);
    active_ = ::setrlimit(RLIMIT_NOFILE, &low) == 0;
  }
  NoNewDescriptors(const NoNewDescriptors&) = delete;
  NoNewDescriptors& operator=(const NoNewDescriptors&) = delete;
  ~NoNewDescriptors() { restore(); }

  // False if the limit could not be set (the test cannot starve the process).
  [[nodiscard]] bool active() const noexcept { return active_; }
  void restore() noexcept {
    if (active_) (void)::setrlimit(RLIMIT_NOFILE, &saved_);
    active_ = false;
  }

 private:
  rlimit saved_{};
  bool active_ = false;
};

}  // namespace tributary::testing
