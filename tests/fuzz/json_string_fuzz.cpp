// Any bytes written as a JSON string: simdjson accepts the result, and for valid UTF-8 input
// reads back exactly the input.
#include <simdjson.h>

#include <cstdlib>

#include "tributary/core/json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string out;
  const bool valid = tributary::core::append_json_string(out, in);
  if (valid != simdjson::validate_utf8(in.data(), in.size())) std::abort();
  static simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(out).get(doc) != simdjson::SUCCESS) std::abort();
  std::string_view back;
  if (doc.get_string().get(back) != simdjson::SUCCESS) std::abort();
  if (valid && back != in) std::abort();
  return 0;
}
