// Syslog parsing: the RFC 5424 and RFC 3164 examples, what real senders write, what does not
// parse, and JSON output that a strict parser (simdjson) accepts.
#include <gtest/gtest.h>

#include <simdjson.h>

#include "net/syslog.h"

namespace tributary::ingest::syslog {
namespace {

// 2026-11-26T12:00:00Z
constexpr std::time_t kNow = 1795694400;

std::string json_of(std::string_view in) {
  Message m;
  std::string out;
  if (parse(in, kNow, m)) append_json(m, out);
  else append_raw_json(in, out);
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  EXPECT_EQ(p.parse(out).get(doc), simdjson::SUCCESS) << "not valid JSON: " << out;
  return out;
}

TEST(SyslogTest, ParsesTheRfc5424Examples) {
  Message m;
  ASSERT_TRUE(parse("<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed",
                    kNow, m));
  EXPECT_EQ(m.facility, 4);
  EXPECT_EQ(m.severity, 2);
  EXPECT_EQ(m.version, 1);
  EXPECT_EQ(m.timestamp, "2003-10-11T22:14:15.003Z");
  EXPECT_EQ(m.host, "mymachine.example.com");
  EXPECT_EQ(m.app, "su");
  EXPECT_EQ(m.procid, "");
  EXPECT_EQ(m.msgid, "ID47");
  EXPECT_EQ(m.message, "'su root' failed") << "the BOM is not part of the message";

  EXPECT_EQ(json_of("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
                    "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] An application event"),
            R"({"facility":20,"severity":5,"version":1,"timestamp":"2003-10-11T22:14:15.003Z",)"
            R"("host":"mymachine.example.com","app":"evntslog","msgid":"ID47",)"
            R"("sd":{"exampleSDID@32473":{"iut":"3","eventSource":"Application","eventID":"1011"}},)"
            R"("message":"An application event"})");
}

TEST(SyslogTest, ParsesStructuredDataWithEscapesAndSeveralElements) {
  Message m;
  ASSERT_TRUE(parse(R"(<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - )"
                    R"([a@1 k="q\"uote\]d\\"][b@2 x="" y="2"])",
                    kNow, m));
  ASSERT_EQ(m.sd.size(), 2u);
  EXPECT_EQ(m.sd[0].id, "a@1");
  EXPECT_EQ(m.sd[0].params[0].value, R"(q"uote]d\)");
  EXPECT_EQ(m.sd[1].params.size(), 2u);
  EXPECT_EQ(m.procid, "8710");
  EXPECT_EQ(m.message, "");
}

// A PARAM-NAME given several times (RFC 5424 7.2.1: several "ip" in "origin") becomes the
// array of its values; an SD-ID given several times has its parameters together. The JSON has
// no duplicate keys (most readers keep only the last of them: the first address was lost).
TEST(SyslogTest, RepeatedParamNamesAndSdIdsKeepEveryValue) {
  const std::string j = json_of(R"(<14>1 2003-10-11T22:14:15Z h app - - [origin ip="192.0.2.1" ip="10.0.0.1" )"
                                R"(software="x"][meta seq="1"][meta seq="2" lang="en"] hi)");
  EXPECT_NE(j.find(R"("sd":{"origin":{"ip":["192.0.2.1","10.0.0.1"],"software":"x"},"meta":{"seq":["1","2"],"lang":"en"}})"),
            std::string::npos)
      << j;
}

TEST(SyslogTest, ParsesBsdMessagesAndInfersTheYear) {
  Message m;
  ASSERT_TRUE(parse("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8", kNow, m));
  EXPECT_EQ(m.timestamp, "2026-10-11T22:14:15");
  EXPECT_EQ(m.host, "mymachine");
  EXPECT_EQ(m.app, "su");
  EXPECT_EQ(m.message, "'su root' failed for lonvick on /dev/pts/8");

  ASSERT_TRUE(parse("<13>Dec  3 01:02:03 web-1 nginx[4711]: GET / 200", kNow, m));
  EXPECT_EQ(m.timestamp, "2025-12-03T01:02:03") << "a date ahead of now is last year's";
  EXPECT_EQ(m.procid, "4711");
  EXPECT_EQ(m.app, "nginx");
  EXPECT_EQ(m.message, "GET / 200");
}

TEST(SyslogTest, ABsdDateUpToOneDayAheadIsThisYearsAndLaterIsLastYears) {
  Message m;  // now: 2026-11-26T12:00:00Z
  ASSERT_TRUE(parse("<13>Nov 27 12:00:00 h app: clock a day fast", kNow, m));
  EXPECT_EQ(m.timestamp, "2026-11-27T12:00:00");
  ASSERT_TRUE(parse("<13>Nov 27 12:00:01 h app: more than a day ahead", kNow, m));
  EXPECT_EQ(m.timestamp, "2025-11-27T12:00:01");
  ASSERT_TRUE(parse("<13>Jan  1 00:00:00 h app: new year", 1798761600 /* 2027-01-01T00:00:00Z */, m));
  EXPECT_EQ(m.timestamp, "2027-01-01T00:00:00");
  ASSERT_TRUE(parse("<13>Dec 31 23:59:59 h app: old year", 1798761600, m));
  EXPECT_EQ(m.timestamp, "2026-12-31T23:59:59");
}

TEST(SyslogTest, ReadsWhatSendersReallyWrite) {
  Message m;
  // No hostname (the local /dev/log form).
  ASSERT_TRUE(parse("<30>Nov 26 10:00:00 systemd[1]: Started foo.", kNow, m));
  EXPECT_EQ(m.host, "");
  EXPECT_EQ(m.app, "systemd");
  EXPECT_EQ(m.message, "Started foo.");
  // No header at all.
  ASSERT_TRUE(parse("<13>just a message", kNow, m));
  EXPECT_EQ(m.app, "");
  EXPECT_EQ(m.message, "just a message");
  // An RFC 3339 time in a BSD message (rsyslog's forward format).
  ASSERT_TRUE(parse("<13>2026-11-26T10:00:00.5+01:00 host1 app: hello", kNow, m));
  EXPECT_EQ(m.timestamp, "2026-11-26T10:00:00.5+01:00");
  EXPECT_EQ(m.host, "host1");
  EXPECT_EQ(m.app, "app");
  EXPECT_EQ(m.message, "hello");
}

TEST(SyslogTest, RejectsWhatIsNotSyslog) {
  Message m;
  for (std::string_view bad : {"", "no pri", "<>x", "<192>1 - - - - - -", "<1234>x", "<034>x",
                               "<13>1 2003-10-11T22:14:15Z host app - - [unclosed", "<13>1 notatime h a p m -",
                               "<13>1 2003-10-11T22:14:15Z host app"}) {
    EXPECT_FALSE(parse(bad, kNow, m)) << bad;
    EXPECT_NE(json_of(bad).find("\"message\""), std::string::npos);
  }
}

// A timestamp of the right shape but a date or time that does not exist is never passed on as
// a time. RFC 5424: the line is not syslog, kept whole as {"message": ...} (counted malformed).
// BSD (RFC 3164, lenient as rsyslog is): a message without a timestamp, its text kept whole.
TEST(SyslogTest, ImpossibleDatesAndTimesAreNotTakenForTimestamps) {
  Message m;
  for (std::string_view bad : {"<13>1 2003-13-45T22:14:15Z h a - - - x", "<13>1 2003-10-11T99:99:99Z h a - - - x",
                               "<13>1 2003-02-29T10:00:00Z h a - - - x", "<13>1 2003-10-1xT22:14:15Z h a - - - x"}) {
    EXPECT_FALSE(parse(bad, kNow, m)) << bad;
    EXPECT_NE(json_of(bad).find("\"message\""), std::string::npos) << bad;
  }
  for (std::string_view bsd : {"<13>Feb 31 10:00:00 h a: x", "<13>Oct 11 25:00:00 h a: x", "<13>Oct 11 22:61:00 h a: x",
                               "<13>Apr 31 10:00:00 h a: x"}) {
    m = Message{};
    ASSERT_TRUE(parse(bsd, kNow, m)) << bsd;
    EXPECT_TRUE(m.timestamp.empty()) << bsd << ": taken as " << m.timestamp;
    EXPECT_EQ(m.message, bsd.substr(4)) << "the text kept whole";
  }
  for (std::string_view good : {"<13>1 2004-02-29T10:00:00Z h a - - - x", "<13>1 2016-12-31T23:59:60Z h a - - - x",
                                "<13>Oct 11 23:59:59 h a: x"})
    EXPECT_TRUE(parse(good, kNow, m)) << good;
}

TEST(SyslogTest, JsonIsValidForAnyBytes) {
  static constexpr char kBytes[] = "<13>Nov 26 10:00:00 h a: bad \xFF\xFE utf8 \"q\" \x01 nul\0!";
  EXPECT_EQ(json_of(std::string_view(kBytes, sizeof kBytes - 1)),
            "{\"facility\":1,\"severity\":5,\"timestamp\":\"2026-11-26T10:00:00\",\"host\":\"h\",\"app\":\"a\","
            "\"message\":\"bad \xEF\xBF\xBD\xEF\xBF\xBD utf8 \\\"q\\\" \\u0001 nul\\u0000!\"}");
  EXPECT_EQ(json_of("not syslog \"at all\""), R"({"message":"not syslog \"at all\""})");
}

}  // namespace
}  // namespace tributary::ingest::syslog
