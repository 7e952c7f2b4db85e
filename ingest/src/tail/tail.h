// The `tail` source (Flume's TAILDIR, Fluent Bit's in_tail): follows files matching glob
// patterns into channels, exactly once across crashes. Split by concern:
//   tail_source.cpp one file generation (identity by fingerprint, resume, read, frame, append),
//                   discovery (glob + inotify, polling fallback), rotation, the Source API
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tributary/ingest/source.h"

namespace tributary::ingest::tail {

struct TailOptions {
  std::vector<std::string> paths;      // glob patterns
  bool start_at_end = false;           // for files present at start-up and never seen before
  std::size_t max_line = 1 << 20;      // longer lines are split or rejected
  bool split_oversize = true;          // false: reject (skip, counted)
  std::chrono::milliseconds poll_interval{250};
  std::size_t fingerprint_bytes = 256; // a file is identified by its first N bytes
  std::size_t read_buffer = 1 << 20;   // bytes per read
  std::size_t batch_bytes = 1 << 20;   // payload bytes per channel transaction (capped by the channel)
  std::chrono::milliseconds rotate_wait{2000};  // keep reading a rotated-away file this long after EOF
  // Keep an ended generation's position this long (a late copy resumes it), then give its
  // source-table slots back.
  std::chrono::milliseconds forget_after{60000};
};

// Per-generation reader. Owns its descriptor; reads from the committed offset.
class TailFile {
 public:
  TailFile(std::string path, int fd, dev_t dev, ino_t ino, bool initial);
  TailFile(const TailFile&) = delete;
  TailFile& operator=(const TailFile&) = delete;
  ~TailFile();

  std::string path;
  dev_t dev;
  ino_t ino;
  int fd;
  bool initial;           // present at start-up: start_at applies if its source is unknown
  std::uint64_t initial_size = 0;  // its size when found: where start_at = "end" starts
  std::chrono::steady_clock::time_point found = std::chrono::steady_clock::now();
  bool identified = false;
  // Identified while shorter than fingerprint_bytes, by its inode and birth time (the
  // instance chain from `instance`), until it holds them: then read_file moves it to the
  // identity of its content, the one every other file has.
  bool by_instance = false;
  std::uint64_t instance = 0;  // the first id of its instance chain; 0: never identified by it
  bool duplicate = false;  // another open file already is this generation (a copy)
  // A copy of a generation cut from its file, holding nothing that was not read from that file
  // (spent_copy()): not looked at again while its size stays.
  bool spent = false;
  std::uint64_t spent_size = 0;
  bool awaiting_cut = false;  // the generation it may copy was cut, not yet seen by a scan
  // The last bytes before `tail_at` (up to 4 KiB), kept from the read buffer at each commit: what
  // a copy of it must end with, should the file be cut and the copy be shorter than what was read.
  std::string tail_bytes;
  std::uint64_t tail_at = 0;
  bool gone = false;       // no longer reachable under a watched path
  std::uint64_t source_id = 0;
  std::uint64_t chain = 0;   // the first key of its content chain; 0: identified by its instance (or not yet)
  std::uint64_t key = 0;     // the key of the chain that names its generation
  std::uint64_t offset = 0;  // committed: the next byte to read
  std::uint64_t cut_mark = 0;  // what its generation's positions carry: the file it was cut from (0: none)
  std::uint64_t next_seq = 0;
  std::vector<std::uint64_t> channel_next;  // per channel: sequences below are already there
  bool splitting = false;                   // inside an oversize line being split (counted once)
  bool rejecting = false;                   // scanning past an oversize line (reject mode)
  std::uint64_t reject_scan = 0;            // how far the scan got
  std::chrono::steady_clock::time_point eof_since{};
  bool at_eof = false;
};

}  // namespace tributary::ingest::tail
