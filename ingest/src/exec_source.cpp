// The `exec` source (the paper's Exec source): runs a command with /bin/sh -c and collects
// the lines it prints on stdout.
//
// Delivery: at most once. A command cannot be asked to print again what it printed before a
// crash, so every run of the command is a new source identity (fresh id, sequence from 0);
// lines the agent had read but not yet appended when it died are lost, and downstream sees
// the run end there, never a duplicate. Use `tail` on a file when that is not enough.
//
// Life cycle: the command runs in its own process group with stdin from /dev/null; it dies
// with the agent (PR_SET_PDEATHSIG, also on SIGKILL of the agent). Each exit is logged with
// its status; `restart` says whether it runs again (never / on-failure / always), after
// `restart_delay_ms`, doubled after each run shorter than a minute, up to
// `max_restart_delay_ms`. On stop the group gets SIGTERM, the lines it still prints are
// collected for up to `stop_timeout_ms`, then SIGKILL.
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>
#include <fmt/format.h>

#include "internal/stream.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"
#include "tributary/ingest/source.h"

extern char** environ;

namespace tributary::ingest {
namespace {

using Clock = std::chrono::steady_clock;
using core::Fd;

enum class Restart : std::uint8_t { kNever, kOnFailure, kAlways };
enum class Stderr : std::uint8_t { kLog, kDiscard, kEvents };

struct ExecOptions {
  std::string command;
  Restart restart = Restart::kOnFailure;
  std::chrono::milliseconds restart_delay{1000};
  std::chrono::milliseconds max_restart_delay{60000};
  std::chrono::milliseconds stop_timeout{5000};
  Stderr stderr_mode = Stderr::kLog;
  std::size_t max_line = 1 << 20;
  bool split = true;
};

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = ::sigabbrev_np(WTERMSIG(status));  // null for real-time signals
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), name != nullptr ? name : "RT");
  }
  return fmt::format("ended with wait status {:#x}", status);
}

class ExecSource final : public Source {
 public:
  ExecSource(ExecOptions o, SourceContext ctx)
      : o_(std::move(o)),
        ctx_(std::move(ctx)),
        out_(o_.max_line, o_.split),
        err_(4096, true),
        emitter_(ctx_),
        epoll_(::epoll_create1(EPOLL_CLOEXEC)),
        delay_(o_.restart_delay) {
    if (!epoll_.valid()) core::throw_errno("exec source '" + ctx_.name + "': epoll_create1", errno);
  }

  ~ExecSource() override {
    gave_up_ = true;
    signal_stop(std::chrono::milliseconds(0));
    patient_ = false;  // also after a begin_stop without its drain: no more waiting
    if (running_) kill_and_collect();
  }

  std::size_t do_work() override {
    if (!running_ && !gave_up_ && Clock::now() >= start_at_) start();
    std::size_t work = 0;
    if (running_ && !emitter_.refused()) work += poll_fds(0);
    // No pidfd (pidfd_open refused: a kernel before 5.3, a seccomp profile): the exit is looked
    // for on each turn instead, so that the child is reaped and restarted all the same.
    if (running_ && pid_ > 0 && !pidfd_.valid()) work += reap(false);
    work += emit();
    if (running_ && pid_ <= 0 && !stdout_.valid() && !stderr_.valid() && out_.buffered() == 0) {
      running_ = false;  // the process is gone and everything it printed is in the channel
      end_run();
      ++work;
    }
    return work;
  }

  [[nodiscard]] int wait_fd() const override { return emitter_.refused() ? -1 : epoll_.get(); }
  [[nodiscard]] Clock::time_point next_deadline() const override {
    Clock::time_point t = Clock::time_point::max();
    if (emitter_.refused()) {
      t = emitter_.retry_at();
    } else if (!running_ && !gave_up_) {
      t = start_at_;
    } else if (running_ && pid_ > 0 && !pidfd_.valid()) {
      t = Clock::now() + std::chrono::milliseconds(100);  // see do_work
    }
    return running_ && stopping_ ? std::min(t, stop_by_) : t;  // a stop's SIGKILL is due then
  }
  [[nodiscard]] bool finished() const override { return gave_up_ && !running_; }
  [[nodiscard]] SourceMetrics metrics() const override { return metrics_; }

  void begin_stop() override {
    gave_up_ = true;  // no restart after this
    signal_stop(o_.stop_timeout);
  }
  // Its own deadline: stop_timeout_ms after the SIGTERM (begin_stop), not the agent's.
  bool drain_step(Clock::time_point) override {
    if (!running_) return true;
    if (Clock::now() < stop_by_) {
      if (emitter_.refused()) {
        if (pid_ > 0) reap(false);  // the channel is full: nothing read meanwhile
      } else {
        poll_fds(0);
        if (pid_ > 0 && !pidfd_.valid()) reap(false);  // no pidfd: see do_work
      }
      while (emit() != 0) {  // every whole event buffered, not one batch per round
      }
      if (pid_ > 0 || stdout_.valid() || emitter_.refused() || out_.buffered() != 0) return false;
    }
    kill_and_collect();
    return true;
  }

 private:
  void start() {
    int out[2] = {-1, -1};
    int err[2] = {-1, -1};
    if (::pipe2(out, O_CLOEXEC) != 0 || (o_.stderr_mode == Stderr::kLog && ::pipe2(err, O_CLOEXEC) != 0)) {
      spawn_failed(fmt::format("pipe: {}", std::strerror(errno)));
      for (const int fd : {out[0], out[1], err[0], err[1]})
        if (fd >= 0) ::close(fd);
      return;
    }
    Fd out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
    Fd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    // Everything the child needs is prepared here: after fork() it may only make
    // async-signal-safe calls (the agent has other threads: uplinks, librdkafka).
    const char* argv[] = {"sh", "-c", o_.command.c_str(), nullptr};
    sigset_t none;
    sigemptyset(&none);
    const pid_t parent = ::getpid();
    const int err_target = o_.stderr_mode == Stderr::kLog      ? err_w.get()
                           : o_.stderr_mode == Stderr::kEvents ? out_w.get()
                                                               : devnull.get();
    const pid_t pid = ::fork();
    if (pid < 0) {
      spawn_failed(fmt::format("fork: {}", std::strerror(errno)));
      return;
    }
    if (pid == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the agent died before prctl
      ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the agent blocks SIGTERM for its signalfd
      ::signal(SIGPIPE, SIG_DFL);
      if (::dup2(devnull.get(), 0) < 0 || ::dup2(out_w.get(), 1) < 0 || ::dup2(err_target, 2) < 0) ::_exit(127);
      ::syscall(SYS_close_range, 3U, ~0U, 0U);
      ::execve("/bin/sh", const_cast<char* const*>(argv), environ);
      ::_exit(127);
    }
    pid_ = pid;
    pgid_ = pid;  // setpgid(0, 0) in the child: its group id is its pid
    running_ = true;
    started_ = Clock::now();
    ++runs_;
    if (runs_ > 1) {
      ++metrics_.restarts;
      emitter_.new_identity();  // a run is a source: it cannot replay what the last one printed
    }
    pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    stdout_ = std::move(out_r);
    stderr_ = std::move(err_r);
    for (const Fd* fd : {&stdout_, &stderr_, &pidfd_}) {
      if (!fd->valid()) continue;
      if (fd != &pidfd_) ::fcntl(fd->get(), F_SETFL, O_NONBLOCK);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd->get();
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd->get(), &ev);
    }
    stdout_eof_ = false;
    stderr_lines_ = 0;
    if (ctx_.log) ctx_.log("info", fmt::format("started `{}` (pid {}, source {:016x})", o_.command, pid, emitter_.source_id()));
  }

  void spawn_failed(const std::string& why) {
    ++metrics_.errors;
    if (ctx_.log) ctx_.log("error", fmt::format("cannot start `{}`: {}", o_.command, why));
    schedule_restart(true);  // a failure (out of processes or descriptors, often passing): on-failure tries again
  }

  // Handles what epoll reports within `timeout_ms`: output read (bounded), exit collected.
  std::size_t poll_fds(int timeout_ms) {
    epoll_event ev[3];
    const int n = ::epoll_wait(epoll_.get(), ev, 3, timeout_ms);
    std::size_t work = 0;
    for (int i = 0; i < n; ++i) {
      const int fd = ev[i].data.fd;
      if (fd == stdout_.get()) {
        work += read_into(stdout_, out_, stdout_eof_);
      } else if (fd == stderr_.get()) {
        bool eof = false;
        work += read_into(stderr_, err_, eof);
        log_stderr(eof);
      } else if (fd == pidfd_.get()) {
        work += reap(false);
      }
    }
    return work;
  }

  std::size_t read_into(Fd& fd, detail::Framer& framer, bool& eof) {
    std::size_t got = 0;
    for (int round = 0; round < 4; ++round) {
      const std::span<char> room = framer.space();
      if (room.empty()) break;
      const ssize_t n = ::read(fd.get(), room.data(), room.size());
      if (n > 0) {
        framer.filled(static_cast<std::size_t>(n));
        got += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (n < 0) {
        ++metrics_.errors;
        if (ctx_.log) ctx_.log("error", fmt::format("read from `{}`: {}", o_.command, std::strerror(errno)));
      }
      eof = true;
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd.get(), nullptr);
      fd.reset();
      break;
    }
    return got != 0 ? 1 : 0;
  }

  std::size_t emit() {
    events_.clear();
    const auto scan = out_.scan(stdout_eof_, events_, 65536, emitter_.batch_bytes());
    if (emitter_.emit(events_, metrics_) != detail::Emitter::Result::kOk) return 0;
    metrics_.oversize += scan.oversize;
    metrics_.rejected += scan.rejected;
    out_.accept(scan);
    return events_.size() + (scan.complete ? 0 : 1);
  }

  // The command's stderr goes to the agent's log, a bounded number of lines per run.
  void log_stderr(bool eof) {
    lines_.clear();
    const auto scan = err_.scan(eof, lines_, SIZE_MAX, SIZE_MAX);
    for (const auto& l : lines_) {
      if (++stderr_lines_ <= kStderrLinesLogged && ctx_.log)
        ctx_.log("warn", fmt::format("`{}` stderr: {}", o_.command, std::string_view(l.data(), l.size())));
    }
    err_.accept(scan);
  }

  // Collects the exit status once the process is gone (pidfd readable) or, with `wait`, blocks.
  std::size_t reap(bool wait) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, wait ? 0 : WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) return 0;
    if (pidfd_.valid()) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, pidfd_.get(), nullptr);
    pidfd_.reset();
    failed_ = r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    exit_ = r < 0 ? std::string(std::strerror(errno)) : describe_status(status);
    ran_ = Clock::now() - started_;
    if (ctx_.log)
      ctx_.log(failed_ && !stopping_ ? "warn" : "info",
               fmt::format("`{}` (pid {}) {} after {} ms", o_.command, pid_, exit_,
                           std::chrono::duration_cast<std::chrono::milliseconds>(ran_).count()));
    if (failed_ && !stopping_) ++metrics_.errors;
    pid_ = -1;
    return 1;
  }

  // The run is over (exited, output drained): say so, and maybe start again.
  void end_run() {
    if (stderr_lines_ > kStderrLinesLogged && ctx_.log)
      ctx_.log("warn", fmt::format("`{}` wrote {} more lines on stderr (not logged)", o_.command,
                                   stderr_lines_ - kStderrLinesLogged));
    if (!stopping_) schedule_restart(failed_, ran_);
  }

  void schedule_restart(bool failed, Clock::duration ran = {}) {
    const bool again = o_.restart == Restart::kAlways || (o_.restart == Restart::kOnFailure && failed);
    if (!again) {
      gave_up_ = true;
      return;
    }
    if (ran >= std::chrono::minutes(1)) delay_ = o_.restart_delay;
    start_at_ = Clock::now() + delay_;
    if (ctx_.log) ctx_.log("info", fmt::format("restarting `{}` in {} ms", o_.command, delay_.count()));
    delay_ = std::min(delay_ * 2, o_.max_restart_delay);
  }

  // A stop: SIGTERM to the group (also when the shell is gone but a background child still holds
  // its stdout), then (drain_step) collect the last lines and append them until it exits and all
  // it wrote is in the channel, or `timeout` after the SIGTERM (one budget for both: a full
  // channel does not double it), then (kill_and_collect) SIGKILL; what the pipe still holds and
  // the last line without '\n' are appended too. With a timeout of 0, nothing more is appended.
  void signal_stop(std::chrono::milliseconds timeout) {
    if (!running_ || stopping_) return;
    stopping_ = true;
    patient_ = timeout.count() > 0;
    stop_by_ = Clock::now() + timeout;
    ::kill(-pgid_, SIGTERM);
  }

  void kill_and_collect() {
    ::kill(-pgid_, SIGKILL);  // whatever of the group is left
    if (pid_ > 0) reap(true);
    // What the killed group wrote and nobody read yet is in the pipe: that much is read (a
    // process that left the group may still hold the pipe and write on: not waited for).
    int in_pipe = 0;
    if (patient_ && stdout_.valid() && ::ioctl(stdout_.get(), FIONREAD, &in_pipe) != 0) in_pipe = 0;
    for (auto left = static_cast<std::size_t>(std::max(in_pipe, 0)); left > 0 && !emitter_.refused();) {
      const std::span<char> room = out_.space();
      if (room.empty()) {  // a whole event is buffered: append it first (or skip it: oversize)
        const std::size_t before = out_.buffered();
        if (emit() == 0 && out_.buffered() == before) break;
        continue;
      }
      const ssize_t n = ::read(stdout_.get(), room.data(), std::min(room.size(), left));
      if (n <= 0) break;
      out_.filled(static_cast<std::size_t>(n));
      left -= static_cast<std::size_t>(n);
      (void)emit();
    }
    if (patient_ && !emitter_.refused()) {  // the stream ends here: a line begun goes as it is
      stdout_eof_ = true;
      while (out_.buffered() != 0 && emit() != 0) {
      }
    }
    if (patient_ && (out_.buffered() != 0 || emitter_.refused())) {
      metrics_.rejected += emitter_.held();
      if (ctx_.log)
        ctx_.log("warn", fmt::format("`{}`: {} bytes of output ({} events of them waiting) not appended at stop "
                                     "(channel full)",
                                     o_.command, out_.buffered(), emitter_.held()));
    }
    stdout_.reset();
    stderr_.reset();
    running_ = false;
    end_run();
  }

  static constexpr std::uint64_t kStderrLinesLogged = 20;

  ExecOptions o_;
  SourceContext ctx_;
  detail::Framer out_;
  detail::Framer err_;
  detail::Emitter emitter_;
  Fd epoll_;
  Fd stdout_;
  Fd stderr_;
  Fd pidfd_;
  pid_t pid_ = -1;
  pid_t pgid_ = -1;       // the command's process group (outlives the shell's exit)
  bool running_ = false;  // a run: from start until the process is gone and its output drained
  bool failed_ = false;
  std::string exit_;
  Clock::duration ran_{};
  bool stdout_eof_ = false;
  bool stopping_ = false;
  bool patient_ = false;          // this stop appends what is left (not the destructor's)
  Clock::time_point stop_by_{};  // when a stop SIGKILLs what is left of the command
  bool gave_up_ = false;
  std::uint64_t runs_ = 0;
  std::uint64_t stderr_lines_ = 0;
  Clock::time_point started_{};
  Clock::time_point start_at_{};
  std::chrono::milliseconds delay_;
  std::vector<std::span<const char>> events_;
  std::vector<std::span<const char>> lines_;
  SourceMetrics metrics_;
};

}  // namespace

std::unique_ptr<Source> create_exec(const OptionValues& v, SourceContext ctx) {
  ExecOptions o;
  o.command = v.str("command");
  const std::string& restart = v.str("restart");
  o.restart = restart == "never" ? Restart::kNever : restart == "always" ? Restart::kAlways : Restart::kOnFailure;
  o.restart_delay = std::chrono::milliseconds(v.integer("restart_delay_ms"));
  o.max_restart_delay = std::max(o.restart_delay, std::chrono::milliseconds(v.integer("max_restart_delay_ms")));
  o.stop_timeout = std::chrono::milliseconds(v.integer("stop_timeout_ms"));
  const std::string& err = v.str("stderr");
  o.stderr_mode = err == "discard" ? Stderr::kDiscard : err == "events" ? Stderr::kEvents : Stderr::kLog;
  o.split = v.str("oversize") == "split";
  o.max_line = detail::fit_max_event(ctx, "max_line", static_cast<std::size_t>(v.integer("max_line")),
                                     o.split ? "split" : "rejected");
  return std::make_unique<ExecSource>(std::move(o), std::move(ctx));
}

}  // namespace tributary::ingest
