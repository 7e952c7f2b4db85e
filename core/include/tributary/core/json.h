// Writing JSON strings from arbitrary bytes (status files, syslog records). The output is
// always valid JSON and valid UTF-8: quotes, backslashes and control bytes are escaped, and
// each byte of an invalid UTF-8 sequence becomes U+FFFD, so a parser downstream (simdjson
// validates UTF-8) never rejects what Tributary wrote.
#pragma once

#include <string>
#include <string_view>

namespace tributary::core {

// Appends `text` as a quoted JSON string; returns false if it was not valid UTF-8.
bool append_json_string(std::string& out, std::string_view text);

// `text` quoted as a JSON string.
[[nodiscard]] inline std::string json_string(std::string_view text) {
  std::string out;
  append_json_string(out, text);
  return out;
}

}  // namespace tributary::core
