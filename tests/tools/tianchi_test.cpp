// The Tianchi generator: deterministic for a seed, the real schema, and the shape the
// experiment depends on (30-34 the largest group of buyers, more female than male orders,
// Double 11 the busiest day); the replayer converts rows and passes malformed ones raw.
#include "tianchi.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fnmatch.h>
#include <glob.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "support/net_util.h"
#include "support/temp_dir.h"
#include "tributary/core/error.h"

namespace tributary::tools {
namespace {

using testing::TempDir;

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

// The demo's tail sources take their paths as glob patterns: a work directory named with glob
// characters must match its own files, and only them.
TEST(GeneratedConfigTest, AnEscapedPathAsAGlobFindsItselfAndNothingElse) {
  testing::TempDir dir;
  const auto odd = dir / "logs [1] *x? \\ y";
  std::filesystem::create_directories(odd);
  std::ofstream(odd / "replay-0.log") << "x\n";
  // What the pattern unescaped also matches ('[1]' is '1', '*' and '?' any, '\\ ' a space).
  const auto decoy = dir / "logs 1 ax1  y";
  std::filesystem::create_directories(decoy);
  std::ofstream(decoy / "replay-0.log") << "x\n";
  ASSERT_EQ(::fnmatch((odd / "replay-0.log").c_str(), (decoy / "replay-0.log").c_str(), FNM_PATHNAME), 0);
  const std::string pattern = tools::glob_escaped((odd / "replay-0.log").string());
  glob_t g{};
  ASSERT_EQ(::glob(pattern.c_str(), 0, nullptr, &g), 0);
  std::vector<std::string> found(g.gl_pathv, g.gl_pathv + g.gl_pathc);
  globfree(&g);
  EXPECT_EQ(found, std::vector<std::string>{(odd / "replay-0.log").string()});
  EXPECT_EQ(::fnmatch(pattern.c_str(), (odd / "replay-0.log").c_str(), FNM_PATHNAME), 0);
}

TEST(TianchiGeneratorTest, IsDeterministicForASeed) {
  TempDir dir;
  GenOptions o;
  o.users = 2000;
  o.rows = 50000;
  o.malformed = 0.01;
  o.duplicates = 0.01;
  generate_tianchi(dir / "a", o);
  generate_tianchi(dir / "b", o);
  EXPECT_EQ(slurp(dir / "a" / "user_log_format1.csv"), slurp(dir / "b" / "user_log_format1.csv"));
  EXPECT_EQ(slurp(dir / "a" / "user_info_format1.csv"), slurp(dir / "b" / "user_info_format1.csv"));
  o.seed = 2;
  generate_tianchi(dir / "c", o);
  EXPECT_NE(slurp(dir / "a" / "user_log_format1.csv"), slurp(dir / "c" / "user_log_format1.csv"));
}

TEST(TianchiGeneratorTest, HasTheSchemaAndTheShapeOfTheRealData) {
  TempDir dir;
  GenOptions o;
  o.users = 20000;
  o.rows = 400000;
  const GenResult r = generate_tianchi(dir.path(), o);
  EXPECT_EQ(r.log_rows, 400000u);
  std::ifstream info(dir / "user_info_format1.csv");
  std::string line;
  std::getline(info, line);
  EXPECT_EQ(line, "user_id,age_range,gender");
  std::map<std::string, std::pair<std::string, std::string>> users;
  std::map<std::string, int> empty_codes;
  while (std::getline(info, line)) {
    std::stringstream ss(line);
    std::string u, a, g;
    std::getline(ss, u, ',');
    std::getline(ss, a, ',');
    std::getline(ss, g, ',');
    users[u] = {a, g};
    empty_codes["age"] += a.empty();
    empty_codes["gender"] += g.empty();
  }
  EXPECT_LT(users.size(), o.users) << "some users are missing from user_info";
  EXPECT_GT(empty_codes["age"], 0);
  EXPECT_GT(empty_codes["gender"], 0);
  std::ifstream log(dir / "user_log_format1.csv");
  std::getline(log, line);
  EXPECT_EQ(line, "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type");
  std::map<std::string, int> by_age, by_gender, by_day;
  std::uint64_t last_user = 0;
  bool ordered = true;
  while (std::getline(log, line)) {
    std::vector<std::string> c;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) c.push_back(cell);
    ASSERT_EQ(c.size(), 7u) << line;
    const std::uint64_t u = std::stoull(c[0]);
    ordered = ordered && u >= last_user;
    last_user = u;
    if (c[6] != "2") continue;
    const auto it = users.find(c[0]);
    if (it != users.end()) {
      ++by_age[it->second.first];
      ++by_gender[it->second.second];
    }
    ++by_day[c[5]];
  }
  EXPECT_TRUE(ordered) << "the log is ordered by user, like the real one";
  for (const auto& [code, n] : by_age) {
    if (code != "4") {
      EXPECT_GT(by_age["4"], n) << "30-34 (code 4) must be the largest group, not " << code;
    }
  }
  EXPECT_GT(by_gender["0"], by_gender["1"]) << "more female than male orders";
  for (const auto& [day, n] : by_day) {
    if (day != "1111") {
      EXPECT_GT(by_day["1111"], n) << "Double 11 is the busiest day, not " << day;
    }
  }
}

TEST(ReplayTest, ConvertsRowsToJsonAndSendsMalformedOnesRaw) {
  TempDir dir;
  std::ofstream(dir / "log.csv") << "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n"
                                    "1,2,3,4,5,1111,2\n\nbad,row\n7,8,9,10,11,511,0\n007,08,x9,-00,0,0511,00\n";
  ReplayOptions o;
  o.input = dir / "log.csv";
  o.out_dir = dir / "logs";
  o.concurrency = 1;
  const ReplayResult r = replay(o);
  ASSERT_EQ(r.lines.size(), 1u);
  EXPECT_EQ(r.lines[0], 4u) << "the empty line is skipped, not sent";
  EXPECT_EQ(r.malformed[0], 1u);
  EXPECT_EQ(slurp(r.files[0]),
            "{\"user_id\":1,\"item_id\":2,\"cat_id\":3,\"seller_id\":4,\"brand_id\":5,\"time_stamp\":1111,\"action_type\":2}\n"
            "bad,row\n"
            "{\"user_id\":7,\"item_id\":8,\"cat_id\":9,\"seller_id\":10,\"brand_id\":11,\"time_stamp\":511,\"action_type\":0}\n"
            // zero-padded: JSON numbers have no leading zeros
            "{\"user_id\":7,\"item_id\":8,\"cat_id\":\"x9\",\"seller_id\":-0,\"brand_id\":0,\"time_stamp\":511,"
            "\"action_type\":0}\n");
  std::ofstream(dir / "wrong.csv") << "a,b\n1,2\n";
  o.input = dir / "wrong.csv";
  EXPECT_THROW(replay(o), core::Error);
}

// Paced, the rows are shared evenly and the whole stream keeps the asked rate: 600 rows at
// 3000/s by 2 writers take at least 0.2 s (each row waits for its place in the stream) and
// give 300 lines per file. (Dealt in 4096-line chunks, they all went to one writer at 1500/s.)
TEST(ReplayTest, PacedRowsAreSharedEvenlyAndKeepTheTotalRate) {
  TempDir dir;
  {
    std::ofstream f(dir / "log.csv");
    f << "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n";
    for (int i = 0; i < 600; ++i) f << i << ",2,3,4,5,1111," << i % 4 << "\n";
  }
  ReplayOptions o;
  o.input = dir / "log.csv";
  o.out_dir = dir / "logs";
  o.concurrency = 2;
  o.rate = 3000;
  const ReplayResult r = replay(o);
  ASSERT_EQ(r.lines.size(), 2u);
  EXPECT_EQ(r.lines[0], 300u);
  EXPECT_EQ(r.lines[1], 300u);
  EXPECT_GE(r.seconds, 0.199) << "rows went out before their time";
}

// A plain TCP receiver (what an agent's tcp source sees): accepts `connections` clients on a
// loopback port and reads each to its end.
class Receiver {
 public:
  explicit Receiver(int connections) : texts_(static_cast<std::size_t>(connections)) {
    for (int k = 0; k < connections; ++k)
      readers_.emplace_back([this, k] {
        const int c = ::accept(listener_.fd(), nullptr, nullptr);  // one client per reader; blocks until the replay connects
        if (c < 0) return;
        char buf[65536];
        for (ssize_t n; (n = ::read(c, buf, sizeof buf)) > 0;) texts_[static_cast<std::size_t>(k)].append(buf, static_cast<std::size_t>(n));
        ::close(c);
      });
  }
  ~Receiver() {
    ::shutdown(listener_.fd(), SHUT_RDWR);  // wakes readers still in accept()
    for (auto& t : readers_) t.join();
  }
  // Waits for every connection to end; the texts received, one per connection.
  std::vector<std::string> texts() {
    for (auto& t : readers_) t.join();
    readers_.clear();
    return texts_;
  }
  [[nodiscard]] int port() const { return listener_.port(); }

 private:
  testing::LoopbackListener listener_;
  std::vector<std::string> texts_;
  std::vector<std::thread> readers_;
};

std::multiset<std::string> lines_of(const std::string& text) {
  std::multiset<std::string> s;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) s.insert(l);
  return s;
}

TEST(ReplayTest, OverTcpEachWriterSendsItsShareOnItsOwnConnection) {
  TempDir dir;
  {
    std::ofstream f(dir / "log.csv");
    f << "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n";
    for (int i = 0; i < 20000; ++i) f << (i % 997 == 0 ? "bad," : "") << i << ",2,3,4,5,1111," << i % 4 << "\n";
  }
  ReplayOptions o;
  o.input = dir / "log.csv";
  o.out_dir = dir / "logs";
  o.concurrency = 3;
  const ReplayResult files = replay(o);  // the reference: the same replay into files
  Receiver rx(3);
  o.tcp = "127.0.0.1:" + std::to_string(rx.port());
  const ReplayResult r = replay(o);
  const auto texts = rx.texts();
  EXPECT_TRUE(r.files.empty());
  ASSERT_EQ(r.destinations.size(), 3u);
  EXPECT_EQ(r.destinations[0], o.tcp + " connection 0");
  std::multiset<std::string> got, want;
  std::multiset<std::uint64_t> per_connection, per_writer;
  for (std::size_t k = 0; k < 3; ++k) {
    const auto l = lines_of(texts[k]);
    got.insert(l.begin(), l.end());
    per_connection.insert(l.size());
    per_writer.insert(r.lines[k]);
    const auto w = lines_of(slurp(files.files[k]));
    want.insert(w.begin(), w.end());
  }
  EXPECT_EQ(got, want) << "the same lines as the file replay, each once";
  EXPECT_EQ(per_connection, per_writer) << "each connection carries its writer's reported share";
  EXPECT_EQ(got.size(), 20000u);
  EXPECT_EQ(r.malformed[0] + r.malformed[1] + r.malformed[2], 21u);
}

// One connection dropped by its receiver, the other never read: the failure of the first
// stops the second at once (its blocked send is cut), and the replay says which one failed.
TEST(ReplayTest, OneLostConnectionStopsEveryWriterWithAnError) {
  TempDir dir;
  {
    std::ofstream f(dir / "log.csv");
    f << "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n";
    for (int i = 0; i < 400000; ++i) f << i << ",2,3,4,5,1111," << i % 4 << "\n";  // ~45 MB of JSON
  }
  const testing::LoopbackListener listener;
  const int fd = listener.fd();
  std::vector<int> accepted;
  std::thread acceptor([&] {
    const int first = ::accept(fd, nullptr, nullptr);
    const int second = ::accept(fd, nullptr, nullptr);
    linger reset{1, 0};  // close with a reset: the writer's next send fails
    ::setsockopt(first, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    ::close(first);
    accepted.push_back(second);  // never read
  });
  ReplayOptions o;
  o.input = dir / "log.csv";
  o.tcp = "127.0.0.1:" + std::to_string(listener.port());
  o.concurrency = 2;
  const auto t0 = std::chrono::steady_clock::now();
  std::string error;
  try {
    (void)replay(o);
  } catch (const core::Error& e) {
    error = e.what();
  }
  acceptor.join();
  for (const int c : accepted) ::close(c);
  EXPECT_NE(error.find(o.tcp + " connection"), std::string::npos) << "the error names the connection: " << error;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30))
      << "the unread connection did not hold the replay until its 60 s stall limit";
}

TEST(ReplayTest, ARefusedConnectionOrAnUnwritableDirectoryIsAnErrorNamingIt) {
  TempDir dir;
  std::ofstream(dir / "log.csv") << "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n1,2,3,4,5,1111,2\n";
  int port = 0;
  {  // a port nothing listens on: bound, then closed
    Receiver gone(0);
    port = gone.port();
  }
  ReplayOptions o;
  o.input = dir / "log.csv";
  o.tcp = "127.0.0.1:" + std::to_string(port);
  try {
    (void)replay(o);
    ADD_FAILURE() << "replay to a closed port succeeded";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot connect to 127.0.0.1:" + std::to_string(port)), std::string::npos)
        << e.what();
  }
  o.tcp = "nowhere";
  EXPECT_THROW((void)replay(o), core::Error);
  o.tcp.clear();
  std::ofstream(dir / "file") << "x";
  o.out_dir = dir / "file" / "logs";  // under a regular file: cannot be created
  EXPECT_THROW((void)replay(o), std::exception);
}

}  // namespace
}  // namespace tributary::tools
