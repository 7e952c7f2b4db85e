// Any bytes as a syslog message: parsing never crashes, and the JSON written for it (parsed
// or raw) is always valid JSON that simdjson accepts, with the message bytes inside.
#include <simdjson.h>

#include <cstdlib>

#include "net/syslog.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tributary::ingest::syslog;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  Message m;
  std::string out;
  if (parse(in, 1795694400, m)) {
    if (m.facility < 0 || m.facility > 23 || m.severity < 0 || m.severity > 7) std::abort();
    append_json(m, out);
  } else {
    append_raw_json(in, out);
  }
  static simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(out).get(doc) != simdjson::SUCCESS) std::abort();
  if (!doc.is_object() || doc["message"].error() != simdjson::SUCCESS) std::abort();
  return 0;
}
