// The stats port through the real binaries: hubflowctl reads the token the
// broker wrote and gets the snapshot; a peer without the token, one that
// announces a 1 GiB message, one that sends nothing and one too many are
// turned away without costing the broker memory; an unsafe token directory
// stops the broker at startup.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"
#include "fixtures/loopback_socket.hpp"

using namespace hubflow::test;
using steady = std::chrono::steady_clock;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string embedded_hub_yaml(const std::string& extra = "") {
  return "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(free_port())
         + "]\n" + extra;
}

/// Where docs/hubflowctl.md says the token of `port` is by default.
std::string default_token_dir() {
  if (auto* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg)
    return std::string{xdg} + "/hubflow";
  if (::geteuid() == 0)
    return "/run/hubflow";
  return "/tmp/hubflow-" + std::to_string(::geteuid());
}

std::string default_token_path(std::uint16_t port) {
  return default_token_dir() + "/stats-" + std::to_string(port) + ".token";
}

/// A raw TCP client of the stats port.
class raw_client : public loopback_socket {
public:
  using loopback_socket::loopback_socket;

  bool connected() const {
    return ok();
  }
  /// Sends what it can of `data`; false once the broker closed.
  bool send(const std::string& data) {
    return send_all(data);
  }
  /// Everything until the broker closes (or `timeout`); nullopt when it
  /// did not close in time.
  std::optional<std::string> read_until_closed(std::chrono::milliseconds
                                                 timeout = 10s) {
    if (!wait_closed(deadline_in(timeout)))
      return std::nullopt;
    return received();
  }
};

std::int64_t counter(const nlohmann::json& counters, const std::string& key) {
  return counters.is_object() && counters.contains(key)
           ? counters[key].get<std::int64_t>()
           : -1;
}

int file_mode(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0)
    return -1;
  return static_cast<int>(st.st_mode & 07777);
}

std::size_t count_of(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos;
       at = text.find(part, at + 1))
    ++n;
  return n;
}

std::string ctl(std::uint16_t port, const std::string& args = "") {
  return hubflowctl_binary() + " stats --stats-port " + std::to_string(port)
         + " " + args;
}

} // namespace

TEST(stats_port, hubflowctl_reads_the_default_token_table_and_json) {
  hubflow_server broker(embedded_hub_yaml());
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  std::string json;
  ASSERT_TRUE(wait_until([&] {
    json = broker.stats_json();
    return contains(json, "\"components\"");
  })) << broker.proc().output();
  auto doc = nlohmann::json::parse(json, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << json;
  EXPECT_TRUE(doc.contains("version") && doc.contains("uptime_ms")) << json;
  auto table = run_command(ctl(broker.stats_port()));
  EXPECT_EQ(table.exit_code, 0) << table.output;
  EXPECT_EQ(table.output.rfind("hubflow ", 0), 0u) << table.output;
  auto token = default_token_path(broker.stats_port());
  EXPECT_EQ(file_mode(token), 0600);
  EXPECT_EQ(file_mode(default_token_dir()), 0700);
  // Supervised actors are listed with their restart counters.
  EXPECT_TRUE(wait_until([&] {
    return counter(counters_of(broker.stats_json(), "keeper", "stats"),
                   "restarts")
           == 0;
  })) << broker.stats_json();
  // A clean stop removes the token.
  EXPECT_EQ(broker.proc().stop(SIGTERM, 10s), 0) << broker.proc().output();
  EXPECT_EQ(file_mode(token), -1) << token << " is still there";
}

TEST(stats_port, token_file_in_the_config_and_on_the_command_line) {
  temp_dir dir;
  auto token = dir.path() + "/stats.token";
  hubflow_server broker(
    embedded_hub_yaml("stats:\n  token_file: " + token + "\n"));
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  ASSERT_TRUE(wait_until([&] { return file_mode(token) != -1; }));
  EXPECT_EQ(file_mode(token), 0600);
  auto with_file = run_command(ctl(broker.stats_port(),
                                   "--json --token-file " + token));
  EXPECT_EQ(with_file.exit_code, 0) << with_file.output;
  EXPECT_TRUE(contains(with_file.output, "\"components\""))
    << with_file.output;
  // Without it, hubflowctl looks at the default path and says what it needs.
  // That path is its own runtime directory's: the shared one may hold a
  // token left by another broker killed with -9 on this (reused) port.
  temp_dir runtime;
  auto without = run_command("XDG_RUNTIME_DIR=" + runtime.path() + " "
                             + ctl(broker.stats_port(), "--json"));
  EXPECT_EQ(without.exit_code, 1) << without.output;
  EXPECT_TRUE(contains(without.output,
                       "cannot read the stats token " + runtime.path()
                         + "/hubflow/stats-"
                         + std::to_string(broker.stats_port()) + ".token"))
    << without.output;
  EXPECT_TRUE(contains(without.output, "--token-file")) << without.output;
  auto unreadable = run_command(ctl(broker.stats_port(),
                                    "--token-file " + dir.path() + "/nope"));
  EXPECT_EQ(unreadable.exit_code, 1);
  EXPECT_TRUE(contains(unreadable.output, dir.path() + "/nope"))
    << unreadable.output;
}

TEST(stats_port, the_default_path_follows_xdg_runtime_dir) {
  temp_dir runtime;
  ::chmod(runtime.path().c_str(), 0700);
  auto port = free_port();
  process broker({hubflow_binary(), "--listen",
                  "127.0.0.1:" + std::to_string(free_port()), "--stats-port",
                  std::to_string(port)},
                 {"XDG_RUNTIME_DIR=" + runtime.path()});
  auto token = runtime.path() + "/hubflow/stats-" + std::to_string(port)
               + ".token";
  ASSERT_TRUE(wait_until([&] { return file_mode(token) == 0600; }))
    << broker.output();
  auto res = run_command("XDG_RUNTIME_DIR=" + runtime.path() + " "
                         + ctl(port, "--json"));
  EXPECT_EQ(res.exit_code, 0) << res.output;
  EXPECT_TRUE(contains(res.output, "\"components\"")) << res.output;
}

TEST(stats_port, a_wrong_token_is_refused_counted_and_logged_once) {
  hubflow_server broker(embedded_hub_yaml());
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  for (int i = 0; i < 3; ++i) {
    raw_client peer(broker.stats_port());
    ASSERT_TRUE(peer.connected());
    ASSERT_TRUE(peer.send("HUBFLOW-STATS 1 " + std::string(64, '0') + "\n"));
    EXPECT_EQ(peer.read_until_closed(), "ERR unauthorized\n");
  }
  // Not a stats request at all: answered and counted as an error.
  raw_client stranger(broker.stats_port());
  ASSERT_TRUE(stranger.send("GET / HTTP/1.1\r\n\r\n"));
  EXPECT_EQ(stranger.read_until_closed(), "ERR bad request\n");
  nlohmann::json port_counters;
  EXPECT_TRUE(wait_until([&] {
    port_counters = counters_of(broker.stats_json(), "stats", "port");
    return counter(port_counters, "denied") == 3
           && counter(port_counters, "errors") == 1
           && counter(port_counters, "requests") >= 1;
  })) << port_counters.dump();
  EXPECT_EQ(count_of(broker.proc().output(), "with a wrong token"), 1u)
    << broker.proc().output();
}

TEST(stats_port, a_1_gib_announcement_costs_no_memory) {
  hubflow_server broker(embedded_hub_yaml());
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  ASSERT_FALSE(broker.stats_json().empty()) << broker.proc().output();
  auto before = rss_kib(broker.proc().pid());
  ASSERT_GT(before, 0);
  for (int i = 0; i < 4; ++i) {
    raw_client peer(broker.stats_port());
    ASSERT_TRUE(peer.connected());
    // The shape of CAF's 32-byte BASP header: operation, flags, then a
    // payload length of 1 GiB, followed by garbage that never ends a line.
    std::string header(32, '\0');
    header[0] = 0x00; // server handshake
    header[4] = 0x40; // payload_len = 0x40000000, big-endian
    ASSERT_TRUE(peer.send(header));
    std::string garbage(64 * 1024, 'x');
    int sent = 0;
    while (sent < 256 && peer.send(garbage))
      ++sent;
    EXPECT_LT(sent, 256) << "the broker kept reading a line of 16 MiB";
    auto answer = peer.read_until_closed();
    ASSERT_TRUE(answer) << "the broker did not close";
  }
  auto after = rss_kib(broker.proc().pid());
  EXPECT_FALSE(broker.stats_json().empty()) << broker.proc().output();
  EXPECT_TRUE(broker.proc().running());
  if (auto why = rss_unreliable_reason(); !why.empty())
    GTEST_SKIP() << why;
  EXPECT_LT(after - before, 5 * 1024) << before << " kB -> " << after << " kB";
}

TEST(stats_port, a_silent_peer_is_closed_after_the_deadline) {
  hubflow_server broker(embedded_hub_yaml());
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  raw_client silent(broker.stats_port());
  ASSERT_TRUE(silent.connected());
  auto t0 = steady::now();
  auto answer = silent.read_until_closed(15s);
  auto waited = steady::now() - t0;
  ASSERT_TRUE(answer) << "still open after 15 s";
  EXPECT_EQ(*answer, "");
  EXPECT_GE(waited, 4500ms);
  EXPECT_LT(waited, 8s);
  // Half a line is not enough either.
  raw_client slow(broker.stats_port());
  ASSERT_TRUE(slow.send("HUBFLOW-STATS 1 "));
  EXPECT_TRUE(slow.read_until_closed(15s));
  nlohmann::json port_counters;
  EXPECT_TRUE(wait_until([&] {
    port_counters = counters_of(broker.stats_json(), "stats", "port");
    return counter(port_counters, "timeouts") == 2;
  })) << port_counters.dump();
}

TEST(stats_port, connections_beyond_the_limit_are_turned_away) {
  hubflow_server broker(embedded_hub_yaml());
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  std::vector<std::unique_ptr<raw_client>> idle;
  for (int i = 0; i < 16; ++i)
    idle.push_back(std::make_unique<raw_client>(broker.stats_port()));
  // The broker learns of the 16 in order; the 17th is one too many.
  raw_client extra(broker.stats_port());
  EXPECT_EQ(extra.read_until_closed(), "ERR busy\n");
  idle.clear();
  EXPECT_TRUE(wait_until([&] { return !broker.stats_json().empty(); }))
    << broker.proc().output();
}

TEST(stats_port, an_unsafe_token_directory_stops_the_broker_with_exit_3) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "giving a directory to another user needs root";
  struct case_t {
    const char* what;
    uid_t owner;
    mode_t mode;
    const char* message;
  };
  for (auto c : {case_t{"owned by nobody", 65534, 0700, "belongs to uid 65534"},
                 case_t{"world-writable", 0, 0777, "has mode 0777"},
                 case_t{"group-readable", 0, 0750, "has mode 0750"}}) {
    temp_dir runtime;
    auto dir = runtime.path() + "/hubflow";
    ASSERT_EQ(::mkdir(dir.c_str(), c.mode), 0);
    ASSERT_EQ(::chmod(dir.c_str(), c.mode), 0);
    ASSERT_EQ(::chown(dir.c_str(), c.owner, 0), 0) << "the test runs as root";
    process broker({hubflow_binary(), "--listen",
                    "127.0.0.1:" + std::to_string(free_port()),
                    "--stats-port", std::to_string(free_port())},
                   {"XDG_RUNTIME_DIR=" + runtime.path()});
    auto status = broker.wait_exit(15s);
    ASSERT_TRUE(status) << c.what << ": hubflow kept running";
    EXPECT_EQ(*status, 3) << c.what << "\n" << broker.output();
    EXPECT_TRUE(contains(broker.output(), "the stats token directory " + dir))
      << broker.output();
    EXPECT_TRUE(contains(broker.output(), c.message)) << broker.output();
  }
  // A configured token file in a directory others may write is refused too.
  temp_dir open_dir;
  ASSERT_EQ(::chmod(open_dir.path().c_str(), 0777), 0);
  process broker({hubflow_binary(), "--config",
                  open_dir.write("hubflow.yaml",
                                 embedded_hub_yaml("stats:\n  token_file: "
                                                   + open_dir.path()
                                                   + "/t\n")),
                  "--stats-port", std::to_string(free_port())});
  auto status = broker.wait_exit(15s);
  ASSERT_TRUE(status) << "hubflow kept running";
  EXPECT_EQ(*status, 3) << broker.output();
  EXPECT_TRUE(contains(broker.output(), "stats.token_file: the stats token "
                                        "directory"))
    << broker.output();
}
