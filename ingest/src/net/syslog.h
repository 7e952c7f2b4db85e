// Syslog messages: RFC 5424, and the BSD format of RFC 3164 as real senders write it
// (rsyslog's and Vector's lenient reading). Framing (RFC 6587 octet counting, newlines) is
// the Framer's job (internal/stream.h); this parses one message and renders it as JSON.
//
//   <165>1 2003-10-11T22:14:15.003Z mymachine evntslog - ID47 [exampleSDID@32473 iut="3"] hi
//   -> {"facility":20,"severity":5,"version":1,"timestamp":"2003-10-11T22:14:15.003Z",
//       "host":"mymachine","app":"evntslog","msgid":"ID47",
//       "sd":{"exampleSDID@32473":{"iut":"3"}},"message":"hi"}
//
//   <34>Oct 11 22:14:15 mymachine su[231]: 'su root' failed
//   -> {"facility":4,"severity":2,"timestamp":"2026-10-11T22:14:15","host":"mymachine",
//       "app":"su","procid":"231","message":"'su root' failed"}
//
// RFC 3164 has no year and no zone: the year is inferred from `now` (a date more than a day
// ahead is last year's), the time is left without a zone. Nil fields ("-") are omitted.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace tributary::ingest::syslog {

struct Param {
  std::string_view name;
  std::string value;  // unescaped
};
struct Element {
  std::string_view id;
  std::vector<Param> params;
};

struct Message {
  int facility = -1;  // -1: no PRI
  int severity = -1;
  int version = 0;    // 1: RFC 5424; 0: BSD
  std::string timestamp;  // RFC 3339 (5424 as written; BSD completed with the inferred year)
  std::string_view host, app, procid, msgid, message;
  std::vector<Element> sd;
};

// Parses `in` (views into it stay valid while `in` does). False: not a syslog message (no
// valid <PRI>, or a 5424 header or structured data that does not parse); `out` is then
// unspecified.
[[nodiscard]] bool parse(std::string_view in, std::time_t now, Message& out);

// Appends `m` as one JSON object (valid UTF-8 always, see core/json.h).
void append_json(const Message& m, std::string& out);

// What a message that does not parse becomes: {"message":"<the bytes as received>"}.
void append_raw_json(std::string_view in, std::string& out);

}  // namespace tributary::ingest::syslog
