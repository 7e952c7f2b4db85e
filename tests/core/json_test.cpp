// JSON strings from arbitrary bytes: escapes, valid UTF-8 kept, invalid bytes replaced.
#include <gtest/gtest.h>

#include "tributary/core/json.h"

namespace tributary::core {
namespace {

TEST(JsonStringTest, EscapesQuotesBackslashesAndControlBytes) {
  EXPECT_EQ(json_string("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(json_string("l1\nl2\r\t"), R"("l1\nl2\r\t")");
  EXPECT_EQ(json_string(std::string_view("\x01\0x", 3)), R"("\u0001\u0000x")");
}

TEST(JsonStringTest, KeepsValidMultiByteUtf8) {
  std::string out;
  EXPECT_TRUE(append_json_string(out, "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_EQ(out, "\"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80\"");
}

TEST(JsonStringTest, ReplacesEachInvalidByteWithTheReplacementCharacter) {
  const std::string fffd = "\xEF\xBF\xBD";
  struct Case {
    std::string in;
    std::string want;
  } cases[] = {
      {"a\xFF" "b", "\"a" + fffd + "b\""},                  // never valid
      {"\xC3", "\"" + fffd + "\""},                          // truncated sequence
      {"\xC0\xAF", "\"" + fffd + fffd + "\""},               // overlong '/'
      {"\xED\xA0\x80", "\"" + fffd + fffd + fffd + "\""},    // a UTF-16 surrogate
      {"\xF4\x90\x80\x80", "\"" + fffd + fffd + fffd + fffd + "\""},  // above U+10FFFF
  };
  for (const auto& c : cases) {
    std::string out;
    EXPECT_FALSE(append_json_string(out, c.in)) << c.want;
    EXPECT_EQ(out, c.want);
  }
}

// The plain-ASCII run is scanned 8 bytes at a time: every byte value, at every offset of a
// 24-byte string (before, inside and after each 8-byte step), must come out as the byte-by-byte
// rules say.
TEST(JsonStringTest, EveryByteValueAtEveryOffsetOfTheWordScanIsHandled) {
  for (int c = 0; c < 256; ++c) {
    for (std::size_t at = 0; at < 24; ++at) {
      std::string in(24, 'a');
      in[at] = static_cast<char>(c);
      std::string want;
      if (c == '"') want = "\\\"";
      else if (c == '\\') want = "\\\\";
      else if (c == '\n') want = "\\n";
      else if (c == '\r') want = "\\r";
      else if (c == '\t') want = "\\t";
      else if (c < 0x20) want = "\\u00" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
      else if (c >= 0x80) want = "\xEF\xBF\xBD";  // alone, no byte >= 0x80 is valid UTF-8
      else want = std::string(1, static_cast<char>(c));
      std::string out;
      EXPECT_EQ(append_json_string(out, in), c < 0x80) << c << " at " << at;
      ASSERT_EQ(out, "\"" + std::string(at, 'a') + want + std::string(23 - at, 'a') + "\"") << c << " at " << at;
    }
  }
}

}  // namespace
}  // namespace tributary::core
