// tail: discovery, identity, rotation and reading. See tail.h for the split and the options.
//
// Identity: a file generation is found by its fingerprint (a hash of its first
// fingerprint_bytes): a key derived from the collector name and the fingerprint names, in the
// channels' source tables, the generation's source id, drawn at random when the generation
// starts (a pointer slot; a generation an earlier build started has the key itself as its id).
// Renames keep the descriptor (device + inode), so a rotated file is read to its end. A
// truncated file, or one whose committed offset is beyond its size, starts a new generation
// whose key is derived from the previous one: resuming walks that chain. The read position is
// the channel's source table, committed in the same transaction as the lines: after a crash
// nothing is lost or doubled. A generation no open file reads any more (its file closed as gone,
// or cut) is forgotten forget_after later: its slots are given back, and the generations of its
// chain still read move to the chain's first keys. A later file with the same first bytes takes
// new ids, so that downstream dedup by identity never takes its events for the old ones. A
// generation cut from its file says so in its id's slot (kCutMark: a hash of the file's inode),
// so that the file, written again as long, is not resumed after a restart; a copy of it (another
// inode) is. A copy shorter than what was read before the cut (copytruncate while the application
// wrote) is known by the bytes kept before the read position and is not read again (kSpentCopy).
//
// A file shorter than fingerprint_bytes (its first bytes may still change) is read at once
// where the file system keeps birth times: it is identified by its inode and birth time (its
// instance, which no later file shares), and once it holds fingerprint_bytes it moves, at its
// committed offset, to the identity of its content: a new source from sequence 0, so that its
// renames and copies are found as any file's. Its instance slot is then marked moved (a
// position past any size, and the content id it moved to), as one cut by a truncation is marked
// truncated (also one found, at a restart, longer than the file or, for a short file, not
// ending a line there: the file was rewritten meanwhile), and kept while the file lives, so that no later generation of
// the inode takes the id again; the chain is released when the file is gone (deleted, or
// renamed out of the patterns). Without birth times a short file waits, or is read by what it
// holds once gone.
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "../internal/intercept.h"
#include "../internal/lines.h"
#include "../internal/stream.h"
#include "tail.h"
#include "tributary/core/units.h"
#include "tributary/ingest/producer.h"

namespace tributary::ingest::tail {

TailFile::TailFile(std::string p, int f, dev_t d, ino_t i, bool init)
    : path(std::move(p)), dev(d), ino(i), fd(f), initial(init) {}

TailFile::~TailFile() {
  if (fd >= 0) ::close(fd);
}

namespace {

using Clock = std::chrono::steady_clock;

// The directory part of a glob pattern as glob() spells the paths it finds, its backslash
// escapes undone (`logs \[1\]/*.log` is in `logs [1]`): "" for a pattern without a slash (the
// current directory), "/" for one at the root; none when it holds a wildcard.
std::optional<std::string> watch_dir(const std::string& pattern) {
  std::size_t slash = std::string::npos;  // the last unescaped '/'
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      ++i;
    } else if (pattern[i] == '/') {
      slash = i;
    }
  }
  if (slash == std::string::npos) return "";
  std::string dir;
  for (std::size_t i = 0; i < std::max<std::size_t>(slash, 1); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      dir += pattern[++i];
    } else if (c == '*' || c == '?' || c == '[') {
      return std::nullopt;
    } else {
      dir += c;
    }
  }
  return dir;
}

// A file `name` in a directory spelled as watch_dir() gives it.
std::string path_in(const std::string& dir, const char* name) {
  if (dir.empty()) return name;
  return dir == "/" ? dir + name : dir + "/" + name;  // glob keeps "logs//" as it is, not "/"
}

std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::uint64_t fnv1a(const void* data, std::size_t n, std::uint64_t h = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// Source ids are odd and never core::kReleasedSourceId.
std::uint64_t source_id_of(std::uint64_t x) { return std::min(x | 1, core::kReleasedSourceId - 2); }

// The id of the generation after `id` (truncation / recreation under the same fingerprint).
std::uint64_t next_generation(std::uint64_t id) { return source_id_of(mix64(id ^ 0x7472756e63617465ull)); }

// An instance slot's position once its generation ended, past any size, so that a walk of the
// chain goes on to the next generation and never resumes it. Moved: the file went on as the
// content id in the slot's next_sequence. Truncated: the file was cut below its position.
constexpr std::uint64_t kMovedToContent = ~std::uint64_t{0};
constexpr std::uint64_t kTruncatedAway = ~std::uint64_t{0} - 1;
// A long file's instance slot when the file is a copy of a cut generation holding nothing that
// was not read (spent_copy()): its size is the slot's next_sequence. Kept while the file lives, so
// that a restart does not read it again; released with its instance chain once it is gone.
constexpr std::uint64_t kSpentCopy = ~std::uint64_t{0} - 2;
// A content key's slot is a pointer: its generation's source id in next_sequence, and as
// position 0xFE in the top byte (past any offset; not an instance mark), the tag of the
// collector that made it in the next 24 bits (so that it finds, after a restart, what it left
// behind), and in the low 32 bits 0 while the generation is read, or when it ended (Unix
// seconds: a collector started later forgets it forget_after after that).
constexpr std::uint64_t kPointer = 0xFE00'0000'0000'0000ull;
constexpr bool is_pointer(std::uint64_t position) { return (position >> 56) == (kPointer >> 56); }
constexpr std::uint64_t pointer_tag(std::uint64_t position) { return (position >> 32) & 0xFF'FFFFu; }
constexpr std::uint64_t ended_at(std::uint64_t position) { return position & 0xFFFF'FFFFu; }
// A content generation cut from its file (truncated in place) says so in its id's slot, so that
// a restart does not resume it from that file once the file is as long again: its position holds
// 0xC in the top 4 bits, 20 bits of a hash of the file's device and inode, and the offset in the
// low 40 bits (past any size for an earlier build: never resumed there). A copy of it (another
// inode: copytruncate's) still resumes it at the offset, and keeps the mark in what it commits.
constexpr std::uint64_t kCutMark = 0xC000'0000'0000'0000ull;
// The bytes kept before a file's read position, to know a shorter copy of it (spent_copy()).
constexpr std::uint64_t kTailBytes = 4096;
constexpr std::uint64_t kCutOffsetMask = (std::uint64_t{1} << 40) - 1;
constexpr bool is_cut(std::uint64_t position) { return (position >> 60) == (kCutMark >> 60); }
std::uint64_t inode_hash(dev_t dev, ino_t ino) {
  return mix64(static_cast<std::uint64_t>(dev) * 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(ino)) >> 44;
}
std::uint64_t unix_seconds() {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  return std::max<std::uint64_t>(1, static_cast<std::uint32_t>(s.count()));
}

// The birth time of an open file in ns, if the file system keeps it.
std::optional<std::uint64_t> birth_ns(int fd) {
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &sx) != 0 || (sx.stx_mask & STATX_BTIME) == 0) return std::nullopt;
  return static_cast<std::uint64_t>(sx.stx_btime.tv_sec) * 1'000'000'000u + sx.stx_btime.tv_nsec;
}

class TailSource final : public Source {
 public:
  TailSource(TailOptions opts, SourceContext ctx) : opts_(std::move(opts)), ctx_(std::move(ctx)) {
    // A transaction must fit a quarter of the smallest ring, counted in record bytes (headers
    // included): batches are kept at an eighth, and a line that would take one past that starts
    // the next batch. An event is at most the smallest max_payload, itself under a quarter.
    batch_limit_ = opts_.batch_bytes;
    tag_ = mix64(fnv1a(ctx_.name.data(), ctx_.name.size()) ^ 0x7461670000000000ull) >> 40;
    live_ = kPointer | tag_ << 32;
    for (core::Channel* ch : ctx_.channels) {
      producers_.push_back(ch->producer(ctx_.producer_options));
      const core::ChannelStats st = ch->stats();
      batch_limit_ = std::min<std::size_t>(batch_limit_, st.capacity / 8);
      max_payload_ = std::min<std::size_t>(max_payload_, st.max_payload);
    }
    opts_.max_line = detail::fit_max_event(ctx_, "max_line", opts_.max_line, opts_.split_oversize ? "split" : "rejected");
    buf_.resize(std::max(opts_.read_buffer, opts_.max_line + 1));
    inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_fd_ >= 0) {
      for (const auto& pattern : opts_.paths) {
        const std::optional<std::string> watched = watch_dir(pattern);
        if (!watched) continue;  // a wildcard in the directory: polled only
        const std::string& dir = *watched;
        const int wd = ::inotify_add_watch(inotify_fd_, dir.empty() ? "." : dir.c_str(),
                                           IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_MODIFY | IN_DELETE | IN_ATTRIB |
                                               IN_CLOSE_WRITE);
        if (wd < 0) continue;
        auto& spellings = watch_dirs_[wd];  // one directory may be spelled several ways ("logs", "./logs")
        if (std::find(spellings.begin(), spellings.end(), dir) == spellings.end()) spellings.push_back(dir);
      }
    }
    scan(true);
  }

  ~TailSource() override {
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
  }

  std::size_t do_work() override {
    bool rescan = Clock::now() >= next_scan_;
    if (inotify_fd_ >= 0) {
      alignas(inotify_event) char events[16384];
      ssize_t n = 0;
      while ((n = ::read(inotify_fd_, events, sizeof events)) > 0) {
        rescan = true;  // any change: look again
        follow_renames(events, static_cast<std::size_t>(n));
      }
    }
    if (rescan) scan(false);
    std::size_t done = 0;
    // After a refused batch, the files are read again (and the batch rebuilt) at retry_at_, not
    // on every turn of a busy loop.
    if (!blocked_ || Clock::now() >= retry_at_) {
      for (auto& f : files_) done += read_file(*f);
      close_finished();  // by what this pass found: a file is closed only once read to its end
    }
    retire();
    // Under interval sync: the states of files gone quiet, committed before a completed sync,
    // become their checkpoints for a power loss (core::Producer::settle_checkpoints).
    for (auto& p : producers_) p.settle_checkpoints();
    return done;
  }

  [[nodiscard]] int wait_fd() const override { return inotify_fd_; }
  [[nodiscard]] Clock::time_point next_deadline() const override {
    Clock::time_point at = std::min(retry_at_, next_scan_);
    for (const auto& [chain, gens] : retiring_)
      for (const auto& [id, when] : gens) at = std::min(at, when);
    for (const auto& [key, left] : leftovers_) at = std::min(at, left.second);
    if (!swept_) at = std::min(at, Clock::now());
    return at;
  }

  [[nodiscard]] SourceMetrics metrics() const override {
    SourceMetrics m = metrics_;
    m.open_files = files_.size();
    return m;
  }

 private:
  [[nodiscard]] bool matches(const std::string& path) const {
    return std::any_of(opts_.paths.begin(), opts_.paths.end(),
                       [&](const std::string& p) { return ::fnmatch(p.c_str(), path.c_str(), FNM_PATHNAME) == 0; });
  }

  // A watched file renamed to a name the patterns do not match (app.log -> app.log.1) before
  // we ever opened it would be invisible to the glob: open it under its new name and read it
  // to its end like any rotated-away file. (A file we hold open needs nothing: its descriptor
  // follows the rename.)
  void follow_renames(const char* buf, std::size_t len) {
    for (std::size_t off = 0; off + sizeof(inotify_event) <= len;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += sizeof(inotify_event) + ev->len;
      if ((ev->mask & IN_Q_OVERFLOW) != 0) {
        // The kernel dropped events: the rescan that follows finds every file the patterns match,
        // but a rename out of them in that window is not seen, so a file renamed away before it
        // was opened is not read. Said, and counted, each time.
        ++metrics_.errors;
        log("warn", fmt::format("source '{}': the inotify queue overflowed (fs.inotify.max_queued_events); files "
                                "renamed out of the patterns meanwhile, before they were opened, are not read",
                                ctx_.name));
        continue;
      }
      if (ev->len == 0 || (ev->mask & (IN_MOVED_FROM | IN_MOVED_TO)) == 0) continue;
      const auto dir = watch_dirs_.find(ev->wd);
      if (dir == watch_dirs_.end()) continue;
      // The file's path as a pattern would match it: the first spelling of its directory that
      // does, else the first one.
      std::string path = path_in(dir->second.front(), ev->name);
      for (const std::string& spelling : dir->second) {
        if (std::string p = path_in(spelling, ev->name); matches(p)) {
          path = std::move(p);
          break;
        }
      }
      if ((ev->mask & IN_MOVED_FROM) != 0) {
        if (matches(path)) moved_from_[ev->cookie] = path;
      } else if ((ev->mask & IN_MOVED_TO) != 0) {
        const auto from = moved_from_.find(ev->cookie);
        if (from == moved_from_.end()) continue;
        moved_from_.erase(from);
        if (matches(path)) continue;  // the glob finds it under its new name
        std::set<std::pair<dev_t, ino_t>> ignored;
        const std::size_t before = files_.size();
        consider(path.c_str(), false, ignored);
        if (files_.size() > before) {
          files_.back()->gone = true;  // read it to its end, then close it
          files_.back()->eof_since = Clock::now();
        }
      }
    }
    if (moved_from_.size() > 1024) moved_from_.clear();  // unpaired moves out of the directory
  }

  // Finds files matching the patterns; opens new ones; marks unreachable ones gone.
  void scan(bool initial) {
    next_scan_ = Clock::now() + opts_.poll_interval;
    std::set<std::pair<dev_t, ino_t>> seen;
    for (const auto& pattern : opts_.paths) {
      glob_t g{};
      const int rc = ::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g);
      if (rc == 0) {
        for (std::size_t i = 0; i < g.gl_pathc; ++i) consider(g.gl_pathv[i], initial, seen);
      }
      ::globfree(&g);
    }
    for (auto& f : files_) {
      const bool reachable = seen.count({f->dev, f->ino}) != 0;
      if (!reachable && !f->gone) {
        f->gone = true;
        f->eof_since = Clock::now();
      }
      if (reachable) f->gone = false;
      // Truncated in place (copytruncate, or `> file`): a new generation of the same inode.
      struct stat st {};
      if (f->identified && ::fstat(f->fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < f->offset) {
        log("info", fmt::format("{} was truncated at offset {} (size now {}): new generation", f->path, f->offset,
                                st.st_size));
        ++metrics_.rotations;
        // Its identify walk would find it so only while the file is shorter.
        if (f->by_instance) {
          mark_ended(f->source_id, kTruncatedAway, std::nullopt);
        } else {
          Cut& cut = cut_[f->source_id];
          cut = Cut{f->dev, f->ino, f->offset, {}};
          if (f->tail_at == f->offset) cut.tail = f->tail_bytes;
          f->tail_bytes.clear();
          f->tail_at = 0;
          mark_cut(*f, f->source_id);
          f->cut_mark = 0;  // its next generation's commits carry none
        }
        ended(*f);
        f->identified = false;
        f->initial = false;  // start_at = "end" was for what the file held at start-up
        f->offset = 0;
        f->rejecting = false;
      }
    }
  }

  void consider(const char* path, bool initial, std::set<std::pair<dev_t, ino_t>>& seen) {
    struct stat st {};
    if (::stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return;
    seen.insert({st.st_dev, st.st_ino});
    for (auto& f : files_) {
      if (f->dev == st.st_dev && f->ino == st.st_ino) {
        if (f->path != path) {
          log("info", fmt::format("{} was renamed to {}", f->path, path));
          f->path = path;
        }
        return;
      }
    }
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (error_paths_.insert(path).second) {
        ++metrics_.errors;
        log("error", fmt::format("cannot open {}: {}", path, std::strerror(errno)));
      }
      return;
    }
    error_paths_.erase(path);
    files_.push_back(std::make_unique<TailFile>(path, fd, st.st_dev, st.st_ino, initial));
    files_.back()->initial_size = static_cast<std::uint64_t>(st.st_size);
  }

  // Identifies the file (see the top of this file) and resumes it from the channels' source
  // tables. `whole` (without birth times only): a file that went away while still too short to
  // fingerprint is identified by what it holds (it will not be seen again), so that its lines
  // are read and it is closed.
  bool identify(TailFile& f, bool whole = false) {
    f.awaiting_cut = false;
    std::string head(opts_.fingerprint_bytes, '\0');
    const ssize_t n = ::pread(f.fd, head.data(), head.size(), 0);
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) return false;  // a size of 0 would mark its generations cut
    const auto size = static_cast<std::uint64_t>(st.st_size);
    const std::optional<std::uint64_t> instance = instance_of(f);
    f.instance = instance.value_or(0);  // its slots, if any, are released once the file is gone
    if (instance && spent_before(f, *instance, size)) return false;
    if (instance) {
      // Short: by its instance (empty: nothing to read yet, but a generation it was cut below is
      // marked so). Long, and identified while short before: its instance chain tells where it
      // is: the instance generation it reads (it grew past fingerprint_bytes while not followed:
      // read_file moves it), or the content generation it moved to.
      const bool short_file = n < static_cast<ssize_t>(head.size());
      if (short_file || lookup(*instance).any) {
        const InstanceWalk w = identify_instance(f, *instance, size, /*create=*/short_file && n > 0, short_file);
        if (w.identified) return true;
        if (!short_file && w.moved_to && resume_moved(f, *w.moved_to, head, size)) return true;
      }
      if (short_file) return false;  // empty, or a chain of 1024 generations
    }
    if (n < static_cast<ssize_t>(head.size()) && !(whole && n > 0)) return false;  // too short to be told apart yet
    head.resize(static_cast<std::size_t>(n));
    std::uint64_t fp = fnv1a(head.data(), head.size());
    // Gone while short, on a file system without birth times: short contents repeat (a daily
    // "backup done"), and a later file alike would take this one's identity and be skipped as
    // read. Its identity is this file's own: its inode and when this process found it.
    if (head.size() < opts_.fingerprint_bytes) {
      const auto found = static_cast<std::uint64_t>(f.found.time_since_epoch().count());
      fp = mix64(fp ^ mix64(static_cast<std::uint64_t>(f.dev) * 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(f.ino)) ^
                 found);
    }
    const std::uint64_t chain = content_id(fp);
    std::uint64_t key = chain;
    // Walk the generation chain to the first generation whose offset fits this file; at its end,
    // a new generation.
    for (int hops = 0; hops < 1024; ++hops, key = next_generation(key)) {
      const std::optional<Generation> g = resolve(key);
      if (!g) {
        const std::optional<std::uint64_t> id = new_generation(key, f.path);
        if (!id) return false;  // a channel refused the pointer: tried again at the next pass
        take(f, chain, key, Generation{*id, {}, live_});
        f.channel_next.assign(ctx_.channels.size(), 0);
        start(f, size, false, core::SourcePosition{*id, 0, 0});
        return true;
      }
      const std::uint64_t id = g->id;
      const Lookup& l = g->at;
      if (cut_from(f, id, l)) continue;  // cut from this very file: written again since, even if as long
      if (l.any && l.best.position > size) {  // this generation was longer: it is not this one...
        // ...unless it is a copy of it being written (copytruncate's copy, matched by the glob):
        // its bytes are those of the generation's file still open here. Left alone until that
        // one is truncated or gone; then it resumes as this generation (the lines the copy got
        // after the read position are read from it).
        // (The original may not be identified yet: files are met in no particular order.)
        for (auto& other : files_) {
          if (other.get() == &f || other->duplicate) continue;
          const bool same_generation = other->identified ? other->source_id == id : same_head(*other, head);
          if (!same_generation) continue;
          if (same_tail(f, *other, size)) {
            f.duplicate = true;
            return false;
          }
          // That file was cut since this pass's scan(): what this one is, is told once the next
          // scan has seen the cut (a copy of what was read before it: spent_copy()).
          // (Not a duplicate: one gone meanwhile is not closed unread.)
          struct stat ost {};
          if (other->identified && ::fstat(other->fd, &ost) == 0 && static_cast<std::uint64_t>(ost.st_size) < other->offset) {
            f.awaiting_cut = true;
            return false;
          }
        }
        // ...or a copy of it made when this process had read past the copy's end (the file was
        // written between the copy and the cut): everything in it was read. Not read again.
        if (spent_copy(f, id, size)) {
          log("info", fmt::format("{}: a copy of a file cut at offset {}, read past its end ({} bytes) already: "
                                  "not read again",
                                  f.path, cut_.at(id).position, size));
          f.spent = true;
          f.spent_size = size;
          if (instance) (void)set_position(core::SourcePosition{*instance, size, kSpentCopy}, f.path);  // for a restart
          return false;
        }
        continue;
      }
      // Another open file is this generation already (a copy): leave this one alone.
      if (held_by_another(f, id)) {
        f.duplicate = true;
        return false;
      }
      take(f, chain, key, *g);
      f.channel_next = l.next;
      start(f, size, l.any, l.best);
      return true;
    }
    return false;
  }

  // Where an identified generation starts reading: its committed position, or, for a file found
  // at start-up that no channel knows, its end with start_at = "end".
  void start(TailFile& f, std::uint64_t size, bool known, const core::SourcePosition& at) {
    if (!known && f.initial && opts_.start_at_end) {
      // What the file held at start-up, not at this moment: it may have been too short to
      // identify then. A line cut at that point is skipped to its end, not read as a line.
      f.offset = std::min(size, f.initial_size);
      f.next_seq = 0;
      char last = '\n';
      if (f.offset != 0 && (::pread(f.fd, &last, 1, static_cast<off_t>(f.offset - 1)) != 1 || last != '\n')) {
        f.rejecting = true;
        f.reject_scan = f.offset;
      }
    } else {
      f.offset = at.position;
      f.next_seq = at.next_sequence;
    }
    f.identified = true;
    if (known) log("info", fmt::format("{}: resuming at offset {} (event {})", f.path, f.offset, f.next_seq));
  }

  // Whether an open file other than `f` reads generation `id`.
  [[nodiscard]] bool held_by_another(const TailFile& f, std::uint64_t id) const {
    return std::any_of(files_.begin(), files_.end(), [&](const std::unique_ptr<TailFile>& o) {
      return o.get() != &f && o->identified && o->source_id == id;
    });
  }
  // Whether an open file reads generation `id`.
  [[nodiscard]] bool held_by_any(std::uint64_t id) const {
    return std::any_of(files_.begin(), files_.end(),
                       [&](const std::unique_ptr<TailFile>& o) { return o->identified && o->source_id == id; });
  }

  // Gives source `id`'s slot back in every channel that has it.
  void release_everywhere(std::uint64_t id) {
    for (core::Channel* ch : ctx_.channels) (void)ch->release_source(id);
  }

  [[nodiscard]] std::uint64_t content_id(std::uint64_t fingerprint) const {
    return source_id_of(mix64(fnv1a(ctx_.name.data(), ctx_.name.size()) ^ fingerprint));
  }

  // The first id of a file's instance chain: its inode and birth time, which a later file on a
  // reused inode does not share and a restart finds again. None without birth times.
  [[nodiscard]] std::optional<std::uint64_t> instance_of(const TailFile& f) const {
    const std::optional<std::uint64_t> born = birth_ns(f.fd);
    if (!born) return std::nullopt;
    return source_id_of(mix64(fnv1a(ctx_.name.data(), ctx_.name.size()) ^ 0x696e7374616e6365ull ^
                              mix64(static_cast<std::uint64_t>(f.ino) * 0x9e3779b97f4a7c15ull ^ *born)));
  }

  // One id in every channel's source table: known to any; the lowest position (a channel
  // without it counts as position 0: it has nothing); per channel, the next sequence it holds.
  struct Lookup {
    bool any = false;
    core::SourcePosition best;
    std::vector<std::uint64_t> next;
    std::optional<std::uint64_t> cut_from;  // the inode_hash() of the file a channel says it was cut from
  };
  [[nodiscard]] Lookup lookup(std::uint64_t id) const {
    Lookup l;
    l.next.assign(ctx_.channels.size(), 0);
    std::optional<core::SourcePosition> best;
    for (std::size_t c = 0; c < ctx_.channels.size(); ++c) {
      if (auto sp = ctx_.channels[c]->source_position(id)) {
        l.any = true;
        l.next[c] = sp->next_sequence;
        if (is_cut(sp->position)) {
          l.cut_from = (sp->position & ~kCutMark) >> 40;
          sp->position &= kCutOffsetMask;
        }
        if (!best || sp->position < best->position) best = sp;
      } else {
        best = core::SourcePosition{id, 0, 0};  // this channel has nothing: start there
      }
    }
    l.best = best.value_or(core::SourcePosition{id, 0, 0});
    return l;
  }

  // The generation at content key `key`: the source id its pointer names (a generation an
  // earlier build started is the key itself) and where that id is. None when no channel has the
  // key: the chain ends before it. The id may be known to no channel yet (the pointer is made
  // before the generation's first batch).
  struct Generation {
    std::uint64_t id = 0;
    Lookup at;
    std::uint64_t marker = 0;  // the key slot's position: a pointer (kPointer), or 0 (none: an earlier build's)
  };
  // A slot with nothing (sequence 0 at offset 0, or a pointer to no id) counts as none: a start
  // that committed nothing, or a release killed part-way, which clears a slot's fields one by
  // one; a new generation is made there again.
  [[nodiscard]] std::optional<Generation> resolve(std::uint64_t key) const {
    for (core::Channel* ch : ctx_.channels) {
      if (const auto sp = ch->source_position(key)) {
        const bool pointer = is_pointer(sp->position);
        const std::uint64_t id = pointer ? sp->next_sequence : key;
        if (pointer ? (id & 1) == 0 || id == core::kReleasedSourceId : sp->next_sequence == 0 && sp->position == 0)
          continue;
        return Generation{id, lookup(id), pointer ? sp->position : 0};
      }
    }
    return std::nullopt;
  }

  // `f` reads generation `g`, found at `key` of `chain`. One that had ended is said live again in
  // every channel (else a restart would forget it while read); not said if a channel refuses:
  // this process knows it is read.
  void take(TailFile& f, std::uint64_t chain, std::uint64_t key, const Generation& g) {
    f.source_id = g.id;
    f.chain = chain;
    f.key = key;
    f.by_instance = false;
    f.cut_mark = g.at.cut_from ? kCutMark | *g.at.cut_from << 40 : 0;  // kept by its commits
    if (g.marker != 0 && ended_at(g.marker) != 0)
      (void)set_position(core::SourcePosition{key, g.id, g.marker & ~std::uint64_t{0xFFFF'FFFFu}}, f.path);
    std::erase_if(leftovers_, [&g](const auto& l) { return l.second.first == g.id; });  // its end says anew
  }

  // Starts a generation at content key `key`: a source id drawn at random that no channel knows,
  // named by a pointer at the key in every channel. None (said, once) when a channel refuses:
  // the channels that took the pointer give it back.
  std::optional<std::uint64_t> new_generation(std::uint64_t key, std::string_view path) {
    std::uint64_t id = 0;
    do {
      id = source_id_of(new_source_id());
    } while (id == key || std::any_of(ctx_.channels.begin(), ctx_.channels.end(),
                                      [id](core::Channel* ch) { return ch->source_position(id).has_value(); }));
    if (!set_position(core::SourcePosition{key, id, live_}, path)) {
      release_everywhere(key);
      return std::nullopt;
    }
    return id;
  }

  // Walks the instance chain from `first` to the generation whose position fits the file (later
  // generations of the inode follow truncations; an ended one has a position past any size) and
  // resumes it; at its end, a new generation if `create`. A generation longer than the file was
  // cut below its position: it is marked truncated, or a restart after the file grew past it
  // again would resume it there. `moved_to`: the content id the last moved generation went on as.
  struct InstanceWalk {
    bool identified = false;
    std::optional<std::uint64_t> moved_to;
  };
  InstanceWalk identify_instance(TailFile& f, std::uint64_t first, std::uint64_t size, bool create,
                                 bool check_line_start) {
    InstanceWalk w;
    std::uint64_t id = first;
    for (int hops = 0; hops < 1024; ++hops, id = next_generation(id)) {
      // Moved in any channel: moved (a crash or a full table cut the marking short: finished here).
      std::optional<std::uint64_t> moved;
      for (core::Channel* ch : ctx_.channels)
        if (const auto sp = ch->source_position(id); sp && sp->position == kMovedToContent) moved = sp->next_sequence;
      if (moved) {
        mark_ended(id, kMovedToContent, *moved);
        w.moved_to = moved;
        continue;
      }
      Lookup l = lookup(id);
      // Longer than the file: cut since. A short file resumed where the byte before is not a
      // line's end: cut and written again while nobody looked (say, a status file written with
      // `>`). Positions are committed at line ends, but for an oversize line's pieces: a long
      // file may hold one (it grew while not followed), a short one only with max_line under
      // fingerprint_bytes.
      if (l.any && (l.best.position > size || (check_line_start && !at_line_start(f, l.best.position)))) {
        mark_ended(id, kTruncatedAway, std::nullopt);
        continue;
      }
      if (!l.any && !create) return w;
      f.source_id = id;
      f.by_instance = true;
      f.cut_mark = 0;
      f.channel_next = std::move(l.next);
      // A new generation of an inode followed before is new: read whole, whatever start_at says.
      start(f, size, l.any || hops > 0, l.best);
      w.identified = true;
      return w;
    }
    return w;
  }

  // Whether `position` follows a line's end in the file (or is its start).
  static bool at_line_start(const TailFile& f, std::uint64_t position) {
    if (position == 0) return true;
    char last = 0;
    return ::pread(f.fd, &last, 1, static_cast<off_t>(position - 1)) == 1 && last == '\n';
  }

  // Marks instance generation `id` ended (kMovedToContent, with the content id it moved to as its
  // sequence, or kTruncatedAway, with its own) in every channel that has it and does not say so.
  void mark_ended(std::uint64_t id, std::uint64_t how, std::optional<std::uint64_t> moved_to) {
    for (std::size_t c = 0; c < ctx_.channels.size(); ++c) {
      const std::optional<core::SourcePosition> sp = ctx_.channels[c]->source_position(id);
      if (!sp || sp->position == kMovedToContent || sp->position == how) continue;
      const core::SourcePosition ended{id, moved_to.value_or(sp->next_sequence), how};
      if (producers_[c].append_batch({}, &ended) == core::AppendStatus::kBroken)
        detail::throw_broken(ctx_.channels[c]->path());
    }
  }

  // A file that moved to content id `id` resumes it there, when it still is that generation: the
  // id is in the chain of the file's present first bytes (they changed: it was truncated and
  // written again, and the content walk finds it), no other open file reads it, and its position
  // fits the file. Unlike the content walk, this finds the generation the move took even when
  // another file with the same first bytes took an earlier one.
  bool resume_moved(TailFile& f, std::uint64_t id, const std::string& head, std::uint64_t size) {
    const std::uint64_t chain = content_id(fnv1a(head.data(), head.size()));
    std::optional<Generation> g;
    std::uint64_t key = chain;
    for (int hops = 0;; ++hops, key = next_generation(key)) {
      if (hops == 1024) return false;
      g = resolve(key);
      if (!g) return false;  // the chain ends before it
      if (g->id == id) break;
    }
    const Lookup& l = g->at;
    if (held_by_another(f, id) || cut_from(f, id, l)) return false;
    if (!l.any || l.best.position > size) return false;
    take(f, chain, key, *g);
    f.channel_next = l.next;
    start(f, size, true, l.best);
    return true;
  }

  // A file identified by its instance that now holds fingerprint_bytes moves to the identity of
  // its content at its committed offset (a line boundary): the first generation of that content
  // that no channel and no open file holds, from sequence 0. Made in every channel first, then
  // the instance slot is marked moved (to that id): a crash in between finds the instance again,
  // and the move, made again, takes the same content generation (it holds sequence 0 at this
  // offset). Not while a channel holds more of the instance than the offset (it refused a batch
  // the others took: it catches up first, or it would get those lines again under the content
  // id), nor while a refused batch waits (one refused as kSyncFailed is in its channel already,
  // with channel_next not moved), nor inside a line (being skipped, or split).
  void move_to_content(TailFile& f) {
    if (f.rejecting || f.splitting || blocked_) return;
    for (std::size_t c = 0; c < f.channel_next.size(); ++c)
      if (f.channel_next[c] > f.next_seq) return;
    std::string head(opts_.fingerprint_bytes, '\0');
    if (::pread(f.fd, head.data(), head.size(), 0) != static_cast<ssize_t>(head.size())) return;
    const std::string what = f.path + "'s move to its content's identity";
    const std::uint64_t chain = content_id(fnv1a(head.data(), head.size()));
    // The first key no channel has (a new generation there), or one whose generation a move cut
    // short started: no other file reads it, and every channel has nothing of it or sequence 0
    // at this offset.
    auto cut_short = [&](std::uint64_t id) {
      return !held_by_another(f, id) && std::all_of(ctx_.channels.begin(), ctx_.channels.end(), [&](core::Channel* ch) {
        const std::optional<core::SourcePosition> sp = ch->source_position(id);
        return !sp || (sp->next_sequence == 0 && sp->position == f.offset);
      });
    };
    std::optional<std::uint64_t> id;
    std::uint64_t key = chain;
    for (int hops = 0;; ++hops, key = next_generation(key)) {
      if (hops == 1024) return;
      const std::optional<Generation> g = resolve(key);
      if (!g) {
        id = new_generation(key, what);
        if (!id) return;
        break;
      }
      if (cut_short(g->id)) {
        id = g->id;
        break;
      }
    }
    if (!set_position(core::SourcePosition{*id, 0, f.offset}, what)) {
      // Not left half made: the channels that took it would hold a generation no other has,
      // which a later content walk would read from the start. (The pointer stays: a move made
      // again takes its generation.)
      for (core::Channel* ch : ctx_.channels)
        if (ch->source_position(*id)) (void)ch->release_source(*id);
      return;
    }
    if (!set_position(core::SourcePosition{f.source_id, *id, kMovedToContent}, what)) return;
    take(f, chain, key, Generation{*id, {}, live_});
    f.next_seq = 0;
    f.channel_next.assign(ctx_.channels.size(), 0);
    f.by_instance = false;
  }

  // A source's position with no event, in every channel (for the file at `path`). false (said,
  // once) when a channel refuses: the caller tries again at the file's next read.
  bool set_position(const core::SourcePosition& sp, std::string_view path) {
    for (std::size_t c = 0; c < producers_.size(); ++c) {
      const core::AppendStatus s = producers_[c].append_batch({}, &sp);
      if (s == core::AppendStatus::kBroken) detail::throw_broken(ctx_.channels[c]->path());
      if (s != core::AppendStatus::kOk) {
        refused_slot(c, s, path);
        return false;
      }
    }
    return true;
  }

  // Gives back the slots of an instance chain once its file is gone (no later file has its id),
  // last first: a crash part-way leaves the chain's start, from which the rest is found. Also
  // for a file only renamed out of the patterns (rotation): kept, they would never be given back
  // (it is not followed when it is deleted). Should it come back, short, and cut meanwhile, its
  // new lines would take sequences of the old ones (README).
  void release_instance(const TailFile& f) {
    if (f.instance == 0) return;
    std::vector<std::uint64_t> chain;
    for (std::uint64_t id = f.instance; chain.size() < 1024; id = next_generation(id)) {
      if (!lookup(id).any) break;
      chain.push_back(id);
    }
    for (auto it = chain.rbegin(); it != chain.rend(); ++it)
      release_everywhere(*it);
  }

  // Whether generation `id` was cut from `f`'s inode (while this process followed it).
  // `l`: where the id is. What this process saw is exact; after a restart the slots say, by a
  // 20-bit hash (a copy whose inode hashes alike, one in a million, is read again as new; a
  // device renumbered by a reboot or remount makes the cut file resumable again).
  [[nodiscard]] bool cut_from(const TailFile& f, std::uint64_t id, const Lookup& l) const {
    if (const auto c = cut_.find(id); c != cut_.end()) return c->second.dev == f.dev && c->second.ino == f.ino;
    return l.cut_from && *l.cut_from == inode_hash(f.dev, f.ino);
  }

  // Whether `f` (`size` bytes) is a copy of generation `id`, cut from its file while followed here,
  // that holds nothing beyond what was read from that file: shorter than where it was cut, and
  // ending with the bytes the file had there (the last kTailBytes before the cut; a copy shorter
  // than that, made while the tail was further ahead, cannot be told from another file with the
  // same start, and is read as new). At least 64 bytes are compared, beside the first bytes.
  [[nodiscard]] bool spent_copy(const TailFile& f, std::uint64_t id, std::uint64_t size) const {
    const auto c = cut_.find(id);
    if (c == cut_.end() || c->second.tail.empty()) return false;
    const Cut& cut = c->second;
    const std::uint64_t from = cut.position - cut.tail.size();  // where the kept bytes start
    if (size >= cut.position || size < from + std::min<std::uint64_t>(cut.tail.size(), 64)) return false;
    const auto n = static_cast<std::size_t>(size - from);
    std::string b(n, '\0');
    return ::pread(f.fd, b.data(), n, static_cast<off_t>(from)) == static_cast<ssize_t>(n) &&
           std::memcmp(b.data(), cut.tail.data(), n) == 0;
  }

  // Whether `f`, of `size` bytes, was found a spent copy before (its instance slot says so, with
  // this size: perhaps by a process that ran before this one). One that grew since is no longer:
  // the mark is given back and the file identified anew.
  bool spent_before(TailFile& f, std::uint64_t instance, std::uint64_t size) {
    bool marked = false;
    for (core::Channel* ch : ctx_.channels) {
      const std::optional<core::SourcePosition> sp = ch->source_position(instance);
      if (!sp || sp->position != kSpentCopy) continue;
      if (sp->next_sequence == size) {
        f.spent = true;
        f.spent_size = size;
        return true;
      }
      marked = true;
    }
    if (marked) release_everywhere(instance);
    return false;
  }

  // Keeps the last bytes before `f`'s offset as it moves from `from` to `to` (TailFile::tail_bytes),
  // from the read buffer, which holds the file's bytes from chunk_base_: what was read, not what
  // the file holds by now (it may be cut already).
  void remember_tail(TailFile& f, std::uint64_t from, std::uint64_t to) {
    if (f.by_instance || to <= from) return;
    if (to < chunk_base_ || to - chunk_base_ > chunk_len_) {  // not in the buffer: not known
      f.tail_bytes.clear();
      f.tail_at = 0;
      return;
    }
    const std::uint64_t lo = std::max(from, chunk_base_);  // [lo, to) is in the buffer
    // What is kept goes on only if it ends where the new bytes start.
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(to - lo, kTailBytes));
    if (f.tail_at != from || lo != from) f.tail_bytes.clear();
    if (f.tail_bytes.size() + n > kTailBytes) f.tail_bytes.erase(0, f.tail_bytes.size() + n - kTailBytes);
    if (f.tail_bytes.capacity() < kTailBytes) f.tail_bytes.reserve(kTailBytes);  // and no more
    const char* end = buf_.data() + (to - chunk_base_);
    f.tail_bytes.append(end - n, end);
    f.tail_at = to;
  }

  // Says in every channel that content generation `id` was cut from `f`: the last file it was cut
  // from (a copy that resumed it, cut in turn, replaces its original). Kept as it was where a
  // channel refuses, or where the offset is past the mark's 40 bits (1 TiB; a copy's commits
  // past it drop the mark too): this process still knows.
  void mark_cut(const TailFile& f, std::uint64_t id) {
    const std::uint64_t mark = kCutMark | inode_hash(f.dev, f.ino) << 40;
    for (std::size_t c = 0; c < ctx_.channels.size(); ++c) {
      const std::optional<core::SourcePosition> sp = ctx_.channels[c]->source_position(id);
      if (!sp || is_pointer(sp->position)) continue;
      const std::uint64_t offset = is_cut(sp->position) ? sp->position & kCutOffsetMask : sp->position;
      if (offset > kCutOffsetMask || (offset | mark) == sp->position) continue;
      const core::SourcePosition cut{id, sp->next_sequence, mark | offset};
      if (producers_[c].append_batch({}, &cut) == core::AppendStatus::kBroken) detail::throw_broken(ctx_.channels[c]->path());
    }
  }

  // A content generation that no longer has its file (gone, or cut): forgotten after
  // forget_after, unless an open file reads it again by then.
  // Said in the channels too (not if one refuses), for a collector started before then.
  void ended(const TailFile& f) {
    if (!f.identified || f.by_instance || f.chain == 0) return;
    retiring_[f.chain][f.source_id] = Clock::now() + opts_.forget_after;
    if (f.key != f.source_id) (void)set_position(core::SourcePosition{f.key, f.source_id, live_ | unix_seconds()}, f.path);
  }

  void retire() {
    const auto now = Clock::now();
    if (!swept_ && ++passes_ >= 2) sweep();
    forget_leftovers();
    for (auto it = retiring_.begin(); it != retiring_.end();) {
      auto& gens = it->second;
      const bool due = std::any_of(gens.begin(), gens.end(), [now](const auto& g) { return g.second <= now; });
      if (due && !forget(it->first, gens)) {  // a channel refused a pointer: tried again in a second
        for (auto& [id, when] : gens) when = std::max(when, now + std::chrono::seconds(1));
      }
      it = gens.empty() ? retiring_.erase(it) : std::next(it);
    }
  }

  // Once the first passes have identified the files present: the generations this collector
  // left in the channels (the ids with its tag) that no open file reads, their files gone or cut
  // while it was not running or less than forget_after before it stopped, are forgotten
  // forget_after after they ended (a pointer that does not say when: from now). Those in the
  // chain of a file read are forgotten with the chain's (their keys move); the others from the
  // end of their chains.
  void sweep() {
    swept_ = true;
    const auto now = Clock::now();
    const std::uint64_t wall = unix_seconds();
    for (core::Channel* ch : ctx_.channels) {
      for (const core::SourcePosition& sp : ch->sources()) {
        const std::uint64_t id = sp.next_sequence;
        if (!is_pointer(sp.position) || pointer_tag(sp.position) != tag_ || held_by_any(id)) continue;
        if ((id & 1) == 0 || id == core::kReleasedSourceId) {  // its release was killed part-way: finished
          (void)ch->release_source(sp.source_id);
          continue;
        }
        std::uint64_t when = ended_at(sp.position);
        if (when == 0) {  // its file went away while no collector ran: ended now, said so for a later start
          when = wall;
          (void)set_position(core::SourcePosition{sp.source_id, id, live_ | when}, "a generation left behind");
        }
        const auto since = std::chrono::seconds(wall > when ? wall - when : 0);  // a clock set back: from now
        leftovers_.try_emplace(sp.source_id, id, now + std::max<Clock::duration>(Clock::duration::zero(), opts_.forget_after - since));
      }
    }
    for (auto& f : files_) {
      if (!f->identified || f->by_instance || f->chain == 0) continue;
      std::uint64_t key = f->chain;
      for (int hops = 0; hops < 1024; ++hops, key = next_generation(key)) {
        const std::optional<Generation> g = resolve(key);
        if (!g) break;
        const auto l = leftovers_.find(key);
        if (l == leftovers_.end() || l->second.first != g->id) continue;
        retiring_[f->chain][g->id] = l->second.second;
        leftovers_.erase(l);
      }
    }
  }

  // The leftovers whose time has come, each once the keys after it are gone: its key, then its
  // id, given back. One read again meanwhile, or whose key names another id now, is dropped.
  void forget_leftovers() {
    const auto now = Clock::now();
    for (bool progress = true; progress;) {
      progress = false;
      for (auto it = leftovers_.begin(); it != leftovers_.end();) {
        const auto [key, left] = *it;
        const auto [id, at] = left;
        if (at > now) {
          ++it;
          continue;
        }
        const std::optional<Generation> g = resolve(key);
        if (!g || g->id != id || held_by_any(id)) {
          it = leftovers_.erase(it);
          continue;
        }
        if (resolve(next_generation(key))) {  // not its chain's last: tried again later
          ++it;
          continue;
        }
        release_everywhere(key);
        const bool named_again = std::any_of(leftovers_.begin(), leftovers_.end(), [&, k = key, i = id](const auto& l) {
          return l.first != k && l.second.first == i;
        });
        if (!named_again)  // (a forget cut short may have left two keys naming it)
          release_everywhere(id);
        cut_.erase(id);
        no_slot_logged_ = false;
        it = leftovers_.erase(it);
        progress = true;
      }
    }
    for (auto& [key, left] : leftovers_)  // the chains they end still hold another generation
      if (left.second <= now) left.second = now + std::max<Clock::duration>(opts_.forget_after, std::chrono::seconds(1));
  }

  // Forgets the generations of a content chain that no open file reads, except those ended less
  // than forget_after ago (`ending`: id -> when; one with no entry, an earlier build's, is due).
  // Those kept keep their order and move to the chain's first keys: each key is pointed anew in
  // every channel, then the keys after them are given back, last first, then the ids of the
  // generations forgotten. A crash part-way leaves a chain that walks to every generation kept
  // (one may be named twice, harmless: a file takes a generation once), and at worst ids whose
  // keys are gone. A chain that keeps a generation an earlier build started (its id is its key)
  // is left whole. False if a channel refused a pointer (nothing given back yet). Takes the
  // forgotten generations out of `ending`.
  bool forget(std::uint64_t chain, std::map<std::uint64_t, Clock::time_point>& ending) {
    const auto now = Clock::now();
    struct Gen {
      std::uint64_t key, id, marker;
      bool kept;
      bool again;  // named by an earlier key too (a forget cut short): only the key goes
    };
    std::vector<Gen> gens;
    std::vector<const Gen*> kept;
    std::set<std::uint64_t> named;
    std::uint64_t key = chain;
    for (int hops = 0; hops < 1024; ++hops, key = next_generation(key)) {
      const std::optional<Generation> g = resolve(key);
      if (!g) break;
      const auto e = ending.find(g->id);
      const bool keep = held_by_any(g->id) || (e != ending.end() && e->second > now);
      if (keep && g->id == key) {  // kept, and started by an earlier build: no pointer to move
        std::erase_if(ending, [now](const auto& x) { return x.second <= now; });
        return true;
      }
      const bool again = !named.insert(g->id).second;
      gens.push_back({key, g->id, g->marker, keep && !again, again});
    }
    for (const Gen& g : gens)
      if (g.kept) kept.push_back(&g);
    // Whether key `k`'s slot is a pointer to `id` in every channel (resolve() reads the first
    // that has it: a move refused by a later channel is made again).
    auto points = [this](std::uint64_t k, std::uint64_t id) {
      return std::all_of(ctx_.channels.begin(), ctx_.channels.end(), [&](core::Channel* ch) {
        const std::optional<core::SourcePosition> sp = ch->source_position(k);
        return sp && is_pointer(sp->position) && sp->next_sequence == id;
      });
    };
    for (std::size_t i = 0; i < kept.size(); ++i) {
      if (points(gens[i].key, kept[i]->id)) continue;
      if (!set_position(core::SourcePosition{gens[i].key, kept[i]->id, kept[i]->marker}, "a content chain"))
        return false;
      for (auto& f : files_)  // the file reading it finds it there now
        if (f->identified && f->source_id == kept[i]->id) f->key = gens[i].key;
    }
    // A key that holds an earlier build's generation (its id is the key) in any channel is first
    // made a pointer to nothing, all before any release: a release killed part-way then leaves
    // what resolve() takes for none, not a generation at its position from sequence 0.
    for (std::size_t i = kept.size(); i < gens.size(); ++i) {
      const bool earlier = std::any_of(ctx_.channels.begin(), ctx_.channels.end(), [&](core::Channel* ch) {
        const std::optional<core::SourcePosition> sp = ch->source_position(gens[i].key);
        return sp && !is_pointer(sp->position);
      });
      if (earlier && !set_position(core::SourcePosition{gens[i].key, 0, live_}, "a content chain")) return false;
    }
    for (std::size_t i = gens.size(); i-- > kept.size();)
      release_everywhere(gens[i].key);
    for (const Gen& g : gens) {
      if (g.kept || g.again) continue;
      if (g.id != g.key)
        release_everywhere(g.id);
      ending.erase(g.id);
      cut_.erase(g.id);
    }
    if (gens.size() > kept.size()) no_slot_logged_ = false;  // a full table, met again, is said again
    std::erase_if(ending, [now](const auto& x) { return x.second <= now; });  // no longer in the chain
    return true;
  }

  // True if `other` starts with `head` (the first bytes of another file).
  static bool same_head(const TailFile& other, const std::string& head) {
    std::string b(head.size(), '\0');
    return ::pread(other.fd, b.data(), b.size(), 0) == static_cast<ssize_t>(b.size()) && b == head;
  }

  // True if the `size` bytes of `copy` end as the same bytes of `original` do (the last 4 KiB of
  // them): a prefix of it, not a new file that only starts alike.
  static bool same_tail(const TailFile& copy, const TailFile& original, std::uint64_t size) {
    const std::uint64_t n = std::min<std::uint64_t>(size, 4096);
    std::string a(n, '\0'), b(n, '\0');
    const auto at = static_cast<off_t>(size - n);
    return ::pread(copy.fd, a.data(), n, at) == static_cast<ssize_t>(n) &&
           ::pread(original.fd, b.data(), n, at) == static_cast<ssize_t>(n) && a == b;
  }

  // Appends events [first, ...) to every channel, each channel skipping sequences it holds.
  bool commit(TailFile& f, std::uint64_t new_offset) {
    for (std::size_t c = 0; c < producers_.size(); ++c) {
      std::size_t skip = 0;
      while (skip < batch_.size() && batch_[skip].id.sequence < f.channel_next[c]) ++skip;
      const core::SourcePosition sp{f.source_id, f.next_seq + batch_.size(),
                                    new_offset <= kCutOffsetMask ? new_offset | f.cut_mark : new_offset};
      const core::AppendStatus s =
          producers_[c].append_batch(std::span(batch_).subspan(skip), &sp);
      if (s == core::AppendStatus::kBroken) detail::throw_broken(ctx_.channels[c]->path());
      if (s != core::AppendStatus::kOk) {
        refused_slot(c, s, f.path);
        if (!blocked_) log("warn", fmt::format("channel refused a batch from {}: {}", f.path, core::to_string(s)));
        blocked_ = true;
        retry_at_ = Clock::now() + std::chrono::milliseconds(100);
        batch_.clear();  // its spans point into the read buffer; the lines are re-read on retry
        arena_.clear();
        batch_filtered_ = 0;
        batch_oversize_ = 0;
        return false;    // channels before c hold the batch already and will skip it by sequence
      }
      f.channel_next[c] = f.next_seq + batch_.size();
    }
    if (blocked_) log("info", "channel accepts batches again");
    blocked_ = false;
    retry_at_ = Clock::time_point::max();
    for (const auto& e : batch_) metrics_.bytes += e.payload.size();
    metrics_.events += batch_.size();
    metrics_.filtered += batch_filtered_;
    metrics_.oversize += batch_oversize_;
    metrics_.rejected += batch_oversize_;
    f.next_seq += batch_.size();
    remember_tail(f, f.offset, new_offset);
    f.offset = new_offset;
    batch_.clear();
    arena_.clear();
    batch_filtered_ = 0;
    batch_oversize_ = 0;
    return true;
  }

  void refused_slot(std::size_t c, core::AppendStatus s, std::string_view what) {
    if (s != core::AppendStatus::kNoSlot || no_slot_logged_) return;
    // Said again once a chain's slots were given back and the table is found full anew.
    no_slot_logged_ = true;
    log("error", fmt::format("channel {}: its source table is full (two slots per file followed, kept until "
                             "forget_after_ms after the file was closed or cut): {} waits, and so does any new "
                             "file, until slots are given back; create the channel with a larger source_slots",
                             ctx_.channels[c]->path().string(), what));
  }

  std::size_t read_file(TailFile& f) {
    if (f.duplicate) return 0;
    if (f.spent) {  // looked at again only once its size changed
      struct stat st {};
      if (::fstat(f.fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) == f.spent_size) return 0;
      f.spent = false;
    }
    if (!f.identified) {
      // Gone for rotate_wait while too short to fingerprint: read by what it holds; an empty
      // one has nothing to read and is closed.
      const bool whole = f.gone && Clock::now() - f.eof_since >= opts_.rotate_wait;
      if (!identify(f, whole)) {
        if (whole && !f.duplicate && !f.awaiting_cut) f.at_eof = true;
        return 0;
      }
    }
    if (f.by_instance) move_to_content(f);
    std::size_t events = 0;
    // A batch the channel refused leaves lines unread: the file is not at its end, whatever an
    // earlier call found (a rotated-away file is closed only once at its end).
    auto refused = [&f, &events] {
      f.at_eof = false;
      return events;
    };
    const std::uint64_t start_offset = f.offset, start_scan = f.reject_scan;
    const std::size_t budget = 8u << 20;  // per call, so one busy file does not starve the rest
    std::size_t read_total = 0;
    while (read_total < budget) {
      const std::uint64_t base = f.rejecting ? f.reject_scan : f.offset;
      const ssize_t n = ::pread(f.fd, buf_.data(), buf_.size(), static_cast<off_t>(base));
      chunk_base_ = base;
      chunk_len_ = n > 0 ? static_cast<std::uint64_t>(n) : 0;
      if (n < 0) {
        ++metrics_.errors;
        log("error", fmt::format("read {}: {}", f.path, std::strerror(errno)));
        return events;
      }
      if (n == 0) break;
      read_total += static_cast<std::size_t>(n);
      std::span<const char> data(buf_.data(), static_cast<std::size_t>(n));
      std::size_t pos = 0;
      if (f.rejecting) {  // skipping the rest of an oversize line: find its end
        const void* nl = std::memchr(data.data(), '\n', data.size());
        if (nl == nullptr) {
          f.reject_scan += data.size();
          continue;
        }
        const std::uint64_t end = base + static_cast<std::uint64_t>(static_cast<const char*>(nl) - data.data()) + 1;
        batch_.clear();
        if (!commit(f, end)) return refused();  // commits the skip with no event
        f.rejecting = false;
        continue;
      }
      std::size_t batch_bytes = 0;
      bool stop = false;
      while (!stop) {
        const detail::NextLine l = detail::next_line(data.subspan(pos), opts_.max_line);
        if (l.kind == detail::LineKind::kPartial) break;
        if (l.kind == detail::LineKind::kOversize) {
          if (!f.splitting) ++metrics_.oversize;  // lines, not pieces
          f.splitting = opts_.split_oversize;
          if (!opts_.split_oversize) {
            ++metrics_.rejected;
            const std::size_t k = batch_.size();
            if (k != 0 && !commit(f, base + pos)) return refused();
            events += k;
            f.rejecting = true;
            f.reject_scan = base + pos + l.consumed;
            stop = true;
            break;
          }
        }
        if (l.kind == detail::LineKind::kLine) f.splitting = false;
        const std::string_view raw(data.data() + pos, l.length);
        std::optional<std::string_view> line = raw;
        if (ctx_.interceptors) line = ctx_.interceptors->apply(raw, arena_);
        if (!line) {  // dropped by an interceptor: takes no sequence number
          ++batch_filtered_;
          pos += l.consumed;
          continue;
        }
        if (line->size() > max_payload_) {  // rewritten by an interceptor past what a channel takes
          if (batch_oversize_++ == 0 && !oversize_logged_)
            log("error", fmt::format("{}: a line at offset {} is {} bytes after the interceptors, more than the "
                                     "channel's max_payload ({}): rejected (counted as oversize and rejected)",
                                     f.path, base + pos, line->size(), max_payload_));
          oversize_logged_ = true;
          pos += l.consumed;
          continue;
        }
        std::uint64_t bytes = core::record_bytes(line->size());  // what it takes in the ring
        if (!batch_.empty() && batch_bytes + bytes > batch_limit_) {  // the next batch starts here
          const std::size_t k = batch_.size();
          if (!commit(f, base + pos)) return refused();
          events += k;
          batch_bytes = 0;
          if (ctx_.interceptors) {  // its rewritten bytes went with the batch's arena
            line = ctx_.interceptors->apply(raw, arena_);
            if (!line || line->size() > max_payload_) continue;  // not deterministic: read again
            bytes = core::record_bytes(line->size());
          }
        }
        pos += l.consumed;
        batch_.push_back({{f.source_id, f.next_seq + batch_.size()}, std::as_bytes(std::span(line->data(), line->size()))});
        batch_bytes += bytes;
        if (batch_bytes >= batch_limit_ || batch_.size() >= 65536) {
          const std::size_t k = batch_.size();
          if (!commit(f, base + pos)) return refused();
          events += k;
          batch_bytes = 0;
        }
      }
      if (f.rejecting) continue;
      if (!batch_.empty() || batch_filtered_ != 0 || batch_oversize_ != 0) {  // dropped lines move the offset too
        const std::size_t k = batch_.size();
        if (!commit(f, base + pos)) return refused();
        events += k;
      }
      if (pos == 0) break;  // only a partial line: wait for its end
    }
    // No progress (nothing new, or only a partial last line): at EOF for rotation purposes.
    if (f.offset == start_offset && f.reject_scan == start_scan) {
      if (!f.at_eof) f.eof_since = Clock::now();
      f.at_eof = true;
    } else {
      f.at_eof = false;
    }
    return events;
  }

  // Closes files that were rotated away or deleted and have been at EOF for rotate_wait.
  void close_finished() {
    const auto now = Clock::now();
    std::erase_if(files_, [&](const std::unique_ptr<TailFile>& f) {
      if (!f->gone) return false;
      if (f->duplicate || f->spent) {
        release_instance(*f);
        return true;
      }
      if (!f->at_eof || now - f->eof_since < opts_.rotate_wait) return false;
      log("info", fmt::format("closing {} (rotated or deleted, read to offset {})", f->path, f->offset));
      release_instance(*f);
      ended(*f);
      return true;
    });
    // A copy waiting for its original may now be the only one left.
    for (auto& f : files_)
      if (f->duplicate && !f->gone) f->duplicate = false;
  }

  void log(std::string_view level, const std::string& msg) const {
    if (ctx_.log) ctx_.log(level, msg);
  }

  TailOptions opts_;
  SourceContext ctx_;
  std::vector<core::Producer> producers_;
  std::size_t batch_limit_ = 1 << 20;
  std::vector<std::unique_ptr<TailFile>> files_;
  std::vector<char> buf_;
  std::uint64_t chunk_base_ = 0, chunk_len_ = 0;  // the file offset and length of what buf_ holds
  std::vector<core::Event> batch_;
  detail::Arena arena_;            // lines rewritten by interceptors, until the batch is committed
  std::uint64_t batch_filtered_ = 0;  // lines of the pending batch dropped by interceptors
  std::uint64_t batch_oversize_ = 0;  // lines of the pending batch rewritten past max_payload_
  bool oversize_logged_ = false;      // such a line is logged once per source
  bool no_slot_logged_ = false;       // a channel's source table was found full (logged once)
  // Content chain -> its generations that ended -> when they are forgotten.
  std::map<std::uint64_t, std::map<std::uint64_t, Clock::time_point>> retiring_;
  // Content generations cut by a truncation -> the file (device, inode) they were cut from: never
  // resumed by it again, though it is as long again and starts alike. Forgotten with them.
  // Generations cut from their files while this process followed them: the file, and where it
  // was cut with the bytes before (spent_copy()). Dropped when the generation is forgotten.
  struct Cut {
    dev_t dev;
    ino_t ino;
    std::uint64_t position;
    std::string tail;  // the file's bytes before `position` (empty: not known)
  };
  std::map<std::uint64_t, Cut> cut_;
  // This collector's tag (in its pointers), its pointer for a generation read, and what it left in
  // the channels before it started: key -> (id, when it is forgotten).
  std::uint64_t tag_ = 0;
  std::uint64_t live_ = kPointer;
  std::map<std::uint64_t, std::pair<std::uint64_t, Clock::time_point>> leftovers_;
  bool swept_ = false;
  int passes_ = 0;
  std::size_t max_payload_ = SIZE_MAX;  // the smallest of the channels'
  int inotify_fd_ = -1;
  std::map<int, std::vector<std::string>> watch_dirs_;  // inotify watch descriptor -> its directory's spellings
  std::map<std::uint32_t, std::string> moved_from_;   // rename cookie -> old (matching) path
  Clock::time_point next_scan_{};
  Clock::time_point retry_at_ = Clock::time_point::max();
  bool blocked_ = false;
  std::set<std::string> error_paths_;
  SourceMetrics metrics_;
};

}  // namespace

std::unique_ptr<Source> create_tail(const OptionValues& v, SourceContext ctx) {
  TailOptions o;
  o.paths = v.list("paths");
  o.start_at_end = v.str("start_at") == "end";
  o.max_line = static_cast<std::size_t>(v.integer("max_line"));
  o.split_oversize = v.str("oversize") == "split";
  o.poll_interval = std::chrono::milliseconds(v.integer("poll_interval_ms"));
  o.fingerprint_bytes = static_cast<std::size_t>(v.integer("fingerprint_bytes"));
  o.read_buffer = static_cast<std::size_t>(v.integer("read_buffer"));
  o.batch_bytes = static_cast<std::size_t>(v.integer("batch_bytes"));
  o.rotate_wait = std::chrono::milliseconds(v.integer("rotate_wait_ms"));
  o.forget_after = std::chrono::milliseconds(v.integer("forget_after_ms"));
  return std::make_unique<TailSource>(std::move(o), std::move(ctx));
}

}  // namespace tributary::ingest::tail
