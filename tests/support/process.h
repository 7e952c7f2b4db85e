// Child processes for crash tests: spawn a helper with a stdout pipe, read its lines with a
// bounded wait, signal it, reap it. RAII: a Child still running at scope exit is SIGKILLed.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace tributary::testing {

// True if `exe` is on the PATH (tests skip, saying what to install, when a peer is missing).
inline bool have_command(const std::string& exe) {
  return std::system(("command -v " + exe + " > /dev/null").c_str()) == 0;
}

class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    out_ = fds[0];
    if (rc != 0) {
      ::close(out_);
      throw std::runtime_error("cannot spawn " + argv[0]);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
  }

  // Next line of the child's stdout, or nullopt on EOF or after `timeout` (0: what has already
  // arrived, without waiting).
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        if (left.count() == 0) return std::nullopt;
        continue;
      }
      char tmp[4096];
      const ssize_t n = ::read(out_, tmp, sizeof tmp);
      if (n <= 0) return std::nullopt;
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
  }

  // Sends `sig`. A stop or reload signal (TERM, INT, HUP, USR1, USR2) goes once the child
  // handles it (blocked for a signalfd, caught or ignored), waiting up to 10 s for that: one
  // that arrives before the program set up its handling kills it, which is not what a test of
  // its stop path means to send. Any other signal (KILL, STOP, CONT, ...) goes at once.
  void signal(int sig) const {
    const bool handled_by_programs = sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGUSR1 || sig == SIGUSR2;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (handled_by_programs && !handles(sig) && std::chrono::steady_clock::now() < deadline)
      ::usleep(1000);  // bounded poll: /proc has no change notification
    ::kill(pid_, sig);
  }

  // True if the child blocks, catches or ignores `sig` (its masks in /proc/PID/status).
  [[nodiscard]] bool handles(int sig) const {
    if (sig < 1 || sig > 64) return false;
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    const std::uint64_t bit = 1ull << (sig - 1);
    while (std::getline(status, line))
      if (line.rfind("SigBlk:", 0) == 0 || line.rfind("SigCgt:", 0) == 0 || line.rfind("SigIgn:", 0) == 0)
        if ((std::stoull(line.substr(7), nullptr, 16) & bit) != 0) return true;
    return false;
  }

  // Waits for exit; returns the wait status (-1 if it did not end within `timeout`).
  int wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return status;
      }
      if (std::chrono::steady_clock::now() >= deadline) return -1;
      // Bounded poll on the child's state: there is no fd to wait on for a non-child event.
      ::usleep(1000);
    }
  }

  void kill_and_reap() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buf_;
};

// True once `pid` runs no more: gone, or a zombie nobody reaped yet (a process that is not
// our child cannot be waited for, so its state is read from /proc).
inline bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  const auto close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] == 'Z';
}

// Waits (bounded, polling /proc: there is no fd to wait on for a non-child) until `pid` is gone.
inline bool wait_gone(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!process_gone(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    ::usleep(5000);
  }
  return true;
}

}  // namespace tributary::testing
