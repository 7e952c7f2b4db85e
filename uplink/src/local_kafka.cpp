// LocalKafka: fetch jars with Maven, write KRaft configs, format storage, start/stop brokers.
#include "tributary/uplink/local_kafka.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <thread>

#include "local_kafka_pom.h"  // generated from uplink/kafka/pom.xml
#include "tributary/core/error.h"
#include "tributary/uplink/kafka.h"

extern char** environ;

namespace tributary::uplink {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

bool on_path(const std::string& exe) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && ::access((fs::path(dir) / exe).c_str(), X_OK) == 0) return true;
  return false;
}

// Runs argv (PATH lookup) in `cwd` with stdout/stderr to `log` (or inherited); returns the pid.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& cwd, const fs::path& log, bool detach) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  // In the child only (the process's own working directory is everyone's: a thread resolving
  // a relative path meanwhile would go astray); the opens below are relative to it.
  posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  if (!log.empty()) {
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Signals a caller blocked for its signalfd (the demo's Ctrl-C) are not blocked in the JVM.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, static_cast<short>(POSIX_SPAWN_SETSIGMASK | (detach ? POSIX_SPAWN_SETSID : 0)));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw core::Error(fmt::format("cannot run {}: {}", argv[0], std::strerror(rc)));
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string tail_of(const fs::path& file, std::size_t bytes = 2000) {
  std::ifstream f(file, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), {});
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

// A Kafka Uuid: 16 random bytes, base64url without padding (22 characters).
std::string random_cluster_id() {
  unsigned char b[16];
  // An id starting with '-' would read as an option to kafka-storage ("-t -rh0K..."): redraw,
  // as Kafka's own Uuid.randomUuid() does. '-' is index 62 of the alphabet: the top six bits
  // of the first byte are 0b111110.
  do {
    if (::getrandom(b, sizeof b, 0) != static_cast<ssize_t>(sizeof b)) throw core::Error("getrandom failed");
  } while ((b[0] >> 2) == 62);
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : b) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      out += kAlphabet[(acc >> (bits - 6)) & 63u];
      bits -= 6;
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63u];
  return out;
}

bool port_free(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int one = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const bool ok = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

// True while `pid` runs. Reaps it if it is our child (a broker this process started), since a
// zombie still answers kill(pid, 0).
bool running(pid_t pid) {
  ::waitpid(pid, nullptr, WNOHANG);
  return ::kill(pid, 0) == 0;
}

pid_t read_pid(const fs::path& pidfile) {
  std::ifstream f(pidfile);
  pid_t pid = 0;
  f >> pid;
  if (pid <= 0 || ::kill(pid, 0) != 0) return 0;
  std::ifstream cmd(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::string c((std::istreambuf_iterator<char>(cmd)), {});
  return c.find("kafka.Kafka") != std::string::npos ? pid : 0;  // a reused pid is not our broker
}

}  // namespace

bool kafka_answers(const std::string& bootstrap, std::chrono::milliseconds timeout, int brokers) {
  try {
    auto rk = make_handle(RD_KAFKA_PRODUCER, make_conf({{"bootstrap.servers", bootstrap}, {"log_level", "0"}}));
    const rd_kafka_metadata_t* md = nullptr;
    const auto err = rd_kafka_metadata(rk.get(), 0, nullptr, &md, static_cast<int>(timeout.count()));
    const bool all = md != nullptr && md->broker_cnt >= brokers;
    if (md != nullptr) rd_kafka_metadata_destroy(md);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR && all;
  } catch (const core::Error&) {
    return false;
  }
}

LocalKafka::LocalKafka(LocalKafkaOptions options) : o_(std::move(options)) {
  if (o_.brokers != 1 && o_.brokers != 3) throw core::Error("local Kafka runs 1 or 3 brokers");
  if (o_.cache.empty()) {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    o_.cache = fs::path(xdg ? xdg : (fs::path(home ? home : "/tmp") / ".cache")) / "tributary" /
               ("kafka-" + o_.version);
  }
  if (o_.dir.empty()) throw core::Error("the local Kafka's directory is empty: give one (--dir)");
  // Absolute: the brokers and mvn are spawned in directories of their own, where the paths in
  // their arguments and log files (and a relative XDG_CACHE_HOME) would resolve elsewhere.
  o_.dir = fs::absolute(o_.dir);
  o_.cache = fs::absolute(o_.cache);
}

fs::path LocalKafka::jar_dir() const { return o_.cache / "jars"; }

bool LocalKafka::fetched() const { return fs::exists(jar_dir() / fmt::format("kafka_2.13-{}.jar", o_.version)); }

void LocalKafka::fetch() const {
  if (!on_path("java"))
    throw core::Error("java is not installed: apt-get install openjdk-17-jre-headless (it only runs Kafka)");
  if (!on_path("mvn")) throw core::Error("mvn is not installed: apt-get install maven (it fetches Kafka's jars)");
  fs::create_directories(o_.cache);
  const fs::path pom = o_.cache / "pom.xml";
  std::ofstream(pom) << kLocalKafkaPom;
  const fs::path tmp = o_.cache / "jars.partial";
  fs::remove_all(tmp);
  fmt::print(stderr, "fetching Apache Kafka {} from Maven Central into {}\n", o_.version, jar_dir().string());
  const pid_t pid = spawn({"mvn", "-B", "-f", pom.string(), "dependency:copy-dependencies",
                           "-DincludeScope=runtime", "-Dkafka.version=" + o_.version, "-DoutputDirectory=" + tmp.string()},
                          o_.cache, {}, false);
  if (const int rc = wait_exit(pid); rc != 0)
    throw core::Error(fmt::format("mvn failed (exit {}) fetching Kafka {}; see its output above", rc, o_.version));
  fs::remove_all(jar_dir());
  fs::rename(tmp, jar_dir());
}

std::string LocalKafka::bootstrap() const {
  std::string s;
  for (int i = 0; i < o_.brokers; ++i) s += (i ? "," : "") + fmt::format("127.0.0.1:{}", o_.port + i);
  return s;
}

void LocalKafka::start_broker(int id) const {
  const fs::path node = o_.dir / fmt::format("node-{}", id);
  const int port = o_.port + id - 1;
  if (read_pid(node / "kafka.pid") != 0) return;  // already running
  for (int p : {port, port + 100})
    if (!port_free(p)) throw core::Error(fmt::format("port {} is in use: pick another with --port", p));
  fs::create_directories(node / "data");
  std::string voters;
  for (int i = 1; i <= o_.brokers; ++i)
    voters += (i > 1 ? "," : "") + fmt::format("{}@127.0.0.1:{}", i, o_.port + 100 + i - 1);
  const int rf = o_.brokers == 3 ? 3 : 1;
  std::ofstream(node / "server.properties")
      << "process.roles=broker,controller\n"
      << "node.id=" << id << "\n"
      << (o_.brokers == 1 ? fmt::format("controller.quorum.bootstrap.servers=127.0.0.1:{}\n", port + 100)
                          : "controller.quorum.voters=" + voters + "\n")
      << fmt::format("listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}\n", port, port + 100)
      << fmt::format("advertised.listeners=PLAINTEXT://127.0.0.1:{}\n", port)
      << "controller.listener.names=CONTROLLER\n"
      << "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
      << "inter.broker.listener.name=PLAINTEXT\n"
      << "log.dirs=" << (node / "data").string() << "\n"
      << "num.partitions=2\n"
      << "default.replication.factor=" << rf << "\n"
      << "min.insync.replicas=" << (rf == 3 ? 2 : 1) << "\n"
      << "offsets.topic.replication.factor=" << rf << "\n"
      << "transaction.state.log.replication.factor=" << rf << "\n"
      << "transaction.state.log.min.isr=" << (rf == 3 ? 2 : 1) << "\n"
      << "group.initial.rebalance.delay.ms=0\n"
      // A dead producer's open transaction is aborted within a second of its timeout (default
      // 10 s after it), so a partition's new owner waits for it no longer than needed.
      << "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000\n"
      << "auto.create.topics.enable=true\n";
  std::ofstream(node / "log4j2.properties") << "rootLogger.level = WARN\n"
                                               "rootLogger.appenderRef.stdout.ref = STDOUT\n"
                                               "appender.stdout.type = Console\n"
                                               "appender.stdout.name = STDOUT\n"
                                               "appender.stdout.layout.type = PatternLayout\n"
                                               "appender.stdout.layout.pattern = [%d] %p %m (%c)%n\n"
                                               // What happens to each partition's log (created,
                                               // made leader, truncated, deleted): INFO, so that a
                                               // loss can be traced in kafka.log.
                                               "logger.partition.name = kafka.cluster.Partition\n"
                                               "logger.partition.level = INFO\n"
                                               "logger.logs.name = kafka.log\n"
                                               "logger.logs.level = INFO\n"
                                               "logger.storage.name = org.apache.kafka.storage.internals.log\n"
                                               "logger.storage.level = INFO\n"
                                               "logger.change.name = state.change.logger\n"
                                               "logger.change.level = INFO\n";
  const std::string cp = (jar_dir() / "*").string();
  if (!fs::exists(node / "data" / "meta.properties")) {
    const fs::path cluster_file = o_.dir / "cluster.id";
    if (!fs::exists(cluster_file)) std::ofstream(cluster_file) << random_cluster_id();
    std::string cluster;
    std::ifstream(cluster_file) >> cluster;
    std::vector<std::string> fmt_args = {"java", "-cp", cp, "kafka.tools.StorageTool", "format", "-t", cluster,
                                         "-c", (node / "server.properties").string()};
    if (o_.brokers == 1) fmt_args.push_back("--standalone");
    const pid_t f = spawn(fmt_args, node, node / "format.log", false);
    if (wait_exit(f) != 0)
      throw core::Error(fmt::format("formatting Kafka storage in {} failed:\n{}", node.string(), tail_of(node / "format.log")));
  }
  const pid_t pid = spawn({"java", "-Xmx" + o_.heap, "-Xms" + o_.heap, "-XX:+UseG1GC", "-Djava.awt.headless=true",
                           "-Dlog4j2.configurationFile=" + (node / "log4j2.properties").string(), "-cp", cp,
                           "kafka.Kafka", (node / "server.properties").string()},
                          node, node / "kafka.log", true);
  std::ofstream(node / "kafka.pid") << pid;
}

std::string LocalKafka::start(std::chrono::seconds timeout) const {
  if (!fetched()) fetch();
  fs::create_directories(o_.dir);
  for (int id = 1; id <= o_.brokers; ++id) start_broker(id);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int id = 1; id <= o_.brokers; ++id) {
    const fs::path node = o_.dir / fmt::format("node-{}", id);
    const std::string bs = fmt::format("127.0.0.1:{}", o_.port + id - 1);
    // Until its metadata lists every broker: one not registered yet would make the first
    // auto-created topic (replication 3 on 3 brokers) fail.
    while (!kafka_answers(bs, 1000ms, o_.brokers)) {
      if (read_pid(node / "kafka.pid") == 0)
        throw core::Error(fmt::format("Kafka broker {} exited; end of {}:\n{}", id, (node / "kafka.log").string(),
                                      tail_of(node / "kafka.log")));
      if (std::chrono::steady_clock::now() > deadline)
        throw core::Error(fmt::format("Kafka broker {} did not answer, listing all {} brokers, within {} s; end of "
                                      "its log:\n{}",
                                      id, o_.brokers, timeout.count(), tail_of(node / "kafka.log")));
      std::this_thread::sleep_for(200ms);  // the broker is starting: poll it, bounded by the deadline
    }
  }
  return bootstrap();
}

void LocalKafka::kill_broker(int id) const {
  const fs::path pidfile = o_.dir / fmt::format("node-{}", id) / "kafka.pid";
  if (const pid_t pid = read_pid(pidfile); pid != 0) {
    ::kill(pid, SIGKILL);
    while (running(pid)) std::this_thread::sleep_for(10ms);
  }
  fs::remove(pidfile);
}

void LocalKafka::stop(std::chrono::seconds grace) const {
  std::vector<pid_t> pids;
  for (int id = 1; id <= o_.brokers; ++id)
    if (const pid_t pid = read_pid(o_.dir / fmt::format("node-{}", id) / "kafka.pid"); pid != 0) {
      ::kill(pid, SIGTERM);
      pids.push_back(pid);
    }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (pid_t pid : pids) {
    while (running(pid) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
    if (running(pid)) {
      ::kill(pid, SIGKILL);
      while (running(pid)) std::this_thread::sleep_for(10ms);
    }
  }
  std::error_code ec;  // stop() runs in destructors (the demo's guard): it must not throw
  for (int id = 1; id <= o_.brokers; ++id) fs::remove(o_.dir / fmt::format("node-{}", id) / "kafka.pid", ec);
}

std::vector<BrokerState> LocalKafka::status() const {
  std::vector<BrokerState> out;
  for (int id = 1; id <= o_.brokers; ++id) {
    const int port = o_.port + id - 1;
    const pid_t pid = read_pid(o_.dir / fmt::format("node-{}", id) / "kafka.pid");
    out.push_back({id, port, pid, pid != 0 && kafka_answers(fmt::format("127.0.0.1:{}", port), 2000ms)});
  }
  return out;
}

}  // namespace tributary::uplink
