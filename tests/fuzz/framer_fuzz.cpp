// Any byte stream, cut into reads at arbitrary points, through the framer in every mode: no
// event is longer than the limit, the buffer never grows past what the limit needs, and in
// lines mode with split on, the events and the newlines give back exactly the input.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "internal/stream.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using tributary::ingest::detail::Framer;
  using tributary::ingest::detail::Framing;
  if (size < 3) return 0;
  const std::size_t max_event = 1 + data[0] % 64;
  const bool split = (data[1] & 1) != 0;
  const Framing framing = (data[1] & 2) != 0 ? Framing::kSyslog : Framing::kLines;
  const std::size_t chunk = 1 + data[2] % 17;
  const std::string_view in(reinterpret_cast<const char*>(data + 3), size - 3);
  Framer f(max_event, split, framing, 8);
  std::vector<std::span<const char>> events;
  std::string joined;  // lines mode, split: events with '\n' after whole lines
  std::size_t at = 0;
  bool eof = false;
  while (!eof) {
    const std::span<char> room = f.space();
    const std::size_t n = std::min({room.size(), chunk, in.size() - at});
    std::memcpy(room.data(), in.data() + at, n);
    f.filled(n);
    at += n;
    eof = at == in.size();
    if (f.capacity() > max_event + 1 + 11) std::abort();
    events.clear();
    const Framer::Scan s = f.scan(eof, events, 5, 1000);
    for (const auto& e : events) {
      if (e.size() > max_event) std::abort();
      joined.append(e.data(), e.size());
      joined += '\x01';
    }
    f.accept(s);
    if (eof && s.complete && f.buffered() != 0) std::abort();  // at EOF everything is consumed
    if (eof && !s.complete) eof = false;                         // whole events left: go on
    if (n == 0 && room.empty() && s.consumed == 0 && s.complete) std::abort();  // stuck
  }
  if (framing == Framing::kLines && split) {
    // Events are the input's lines cut into max_event pieces; removing our separators and
    // the input's newlines must give the same bytes.
    std::string a, b;
    for (const char c : joined)
      if (c != '\x01' && c != '\n') a += c;
    for (const char c : in)
      if (c != '\n') b += c;
    std::string a2, b2;
    for (const char c : a)
      if (c != '\x01') a2 += c;
    for (const char c : b)
      if (c != '\x01') b2 += c;
    if (a2 != b2) std::abort();
  }
  return 0;
}
