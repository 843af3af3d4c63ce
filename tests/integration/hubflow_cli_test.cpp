// The command lines of build/bin/hubflow and build/bin/hubflowctl: exit
// codes and what they print on stdout and stderr, for valid and invalid
// configs, refused plugins, bad options and a stats port nobody serves.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <string>

#include "fixtures/fixtures.hpp"

using namespace hubflow::test;

namespace {

struct outcome {
  int exit_code;
  std::string out; // stdout
  std::string err; // stderr
};

/// Runs a command with stdout and stderr captured separately.
outcome run(const std::string& cmd) {
  temp_dir dir;
  auto out_file = dir.path() + "/out";
  auto err_file = dir.path() + "/err";
  // In a subshell: run_command merges the subshell's stderr, not ours.
  auto res = run_command("(" + cmd + " >" + out_file + " 2>" + err_file + ")");
  auto read = [](const std::string& path) {
    return run_command("cat " + path).output;
  };
  return {res.exit_code, read(out_file), read(err_file)};
}

std::string hubflow_cmd(const std::string& args) {
  return hubflow_binary() + " --plugin-dir " + plugin_dir() + " " + args;
}

/// A config file with a function using `plugin`, under an external hub
/// nothing needs to reach (--check never connects).
std::string config_with_plugin(const temp_dir& dir, const std::string& plugin) {
  return dir.write("hubflow.yaml", "hub:\n"
                                   "  address: tcp://127.0.0.1:1\n"
                                   "rules:\n"
                                   "  - clientid: r1\n"
                                   "    subscribe: {topic: t, qos: 1}\n"
                                   "    function: {name: f}\n"
                                   "    publish: {topic: t/hi, qos: 1}\n"
                                   "functions:\n"
                                   "  - name: f\n"
                                   "    plugin: "
                                     + plugin + "\n");
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

TEST(hubflow_cli, check_accepts_a_valid_config) {
  temp_dir dir;
  auto path = config_with_plugin(dir, "sayhi");
  auto res = run(hubflow_cmd("--check --config " + path));
  EXPECT_EQ(res.exit_code, 0) << res.err;
  EXPECT_EQ(res.out, path + ": valid (1 rules, 1 functions, 0 endpoints)\n");
}

TEST(hubflow_cli, check_refuses_a_wrong_abi_plugin_naming_file_and_version) {
  temp_dir dir;
  auto path = config_with_plugin(dir, "wrong_abi");
  auto res = run(hubflow_cmd("--check --config " + path));
  EXPECT_EQ(res.exit_code, 1);
  // Position of the function, its key, the .so and both versions.
  EXPECT_TRUE(contains(res.err, path + ":9:5: functions[0].plugin: "
                                  + plugin_dir() + "/wrong_abi.so: "
                                  "unsupported plugin ABI version 99 (this "
                                  "hubflow supports version 1)"))
    << res.err;
  EXPECT_TRUE(contains(res.err, "the config is invalid (1 error)")) << res.err;
  EXPECT_TRUE(res.out.empty()) << res.out;
}

TEST(hubflow_cli, running_with_a_wrong_abi_plugin_fails_the_same_way) {
  temp_dir dir;
  auto path = config_with_plugin(dir, "wrong_abi");
  process broker({hubflow_binary(), "--config", path, "--plugin-dir",
                  plugin_dir(), "--stats-port", std::to_string(free_port())});
  auto status = broker.wait_exit(15s);
  ASSERT_TRUE(status) << "hubflow kept running with a refused plugin";
  EXPECT_EQ(*status, 1);
  EXPECT_TRUE(contains(broker.output(), "wrong_abi.so: unsupported plugin "
                                        "ABI version 99"))
    << broker.output();
}

TEST(hubflow_cli, check_refuses_a_plugin_without_entry_symbol) {
  temp_dir dir;
  auto path = config_with_plugin(dir, "no_entry");
  auto res = run(hubflow_cmd("--check --config " + path));
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_TRUE(contains(res.err, "no_entry.so: not a hubflow plugin: it does "
                                "not export hubflow_plugin_entry"))
    << res.err;
}

TEST(hubflow_cli, check_refuses_an_unknown_plugin_listing_the_dirs) {
  temp_dir dir;
  auto path = config_with_plugin(dir, "nosuch");
  auto res = run(hubflow_cmd("--plugin-dir " + dir.path() + " --check --config "
                             + path));
  EXPECT_EQ(res.exit_code, 1);
  // --plugin-dir in the given order, then the build's own plugin dir.
  EXPECT_TRUE(contains(res.err, "unknown plugin 'nosuch': no nosuch.so in "
                                  + plugin_dir() + ", " + dir.path()))
    << res.err;
}

TEST(hubflow_cli, check_reports_config_errors_with_positions) {
  temp_dir dir;
  auto path = dir.write("bad.yaml", "hub:\n"
                                    "  address: tcp://127.0.0.1:1883\n"
                                    "rules:\n"
                                    "  - subscribe: {topic: t}\n"
                                    "    function: {name: pyhi}\n"
                                    "    publish: {topic: t/hi, qos: 7}\n");
  auto res = run(hubflow_cmd("--check --config " + path));
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_TRUE(contains(res.err, path + ":6:33: rules[0].publish.qos: "))
    << res.err;
  // Schema errors stop the load before references are checked.
  EXPECT_TRUE(contains(res.err, "the config is invalid (1 error)")) << res.err;
}

TEST(hubflow_cli, every_example_config_is_valid) {
  // The examples live in config/examples of the source tree (three levels
  // above this file); the ones with secrets read them from the environment.
  namespace fs = std::filesystem;
  auto root = fs::path(__FILE__).parent_path().parent_path().parent_path();
  int checked = 0;
  for (auto& entry : fs::directory_iterator(root / "config" / "examples")) {
    if (entry.path().extension() != ".yaml")
      continue;
    auto res = run("HUB_PASSWORD=secret " + hubflow_cmd("--check --config "
                                                        + entry.path().string()));
    EXPECT_EQ(res.exit_code, 0) << entry.path() << "\n" << res.err;
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(hubflow_cli, check_without_a_config_checks_the_embedded_default) {
  auto res = run(hubflow_cmd("--check"));
  EXPECT_EQ(res.exit_code, 0) << res.err;
  EXPECT_TRUE(contains(res.out, "<embedded default>: valid")) << res.out;
}

TEST(hubflow_cli, missing_config_file_is_a_config_error) {
  auto res = run(hubflow_cmd("--check --config /nonexistent/hubflow.yaml"));
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_TRUE(contains(res.err, "/nonexistent/hubflow.yaml: cannot open the "
                                "config file"))
    << res.err;
}

TEST(hubflow_cli, unknown_option_exits_2) {
  auto res = run(hubflow_binary() + " --no-such-option");
  EXPECT_EQ(res.exit_code, 2);
  EXPECT_TRUE(contains(res.err, "no-such-option")) << res.err;
  EXPECT_TRUE(contains(res.err, "hubflow --help")) << res.err;
}

TEST(hubflow_cli, unknown_log_level_exits_2) {
  auto res = run(hubflow_binary() + " --check --log-level verbose");
  EXPECT_EQ(res.exit_code, 2);
  EXPECT_TRUE(contains(res.err, "--log-level 'verbose' is not one of"))
    << res.err;
  EXPECT_EQ(run(hubflow_binary() + " --check --log-level debug").exit_code, 0);
}

TEST(hubflow_cli, help_documents_every_option_and_the_exit_codes) {
  auto res = run(hubflow_binary() + " --help");
  EXPECT_EQ(res.exit_code, 0);
  for (auto option : {"--config", "--check", "--log-level", "--plugin-dir",
                      "--version", "--stats-port", "Exit codes",
                      "3  the config is valid but the broker cannot start"})
    EXPECT_TRUE(contains(res.out, option)) << option;
}

TEST(hubflow_cli, version) {
  auto res = run(hubflow_binary() + " --version");
  EXPECT_EQ(res.exit_code, 0);
  EXPECT_EQ(res.out.rfind("hubflow ", 0), 0u) << res.out;
}

/// A loopback TCP listener that holds its port while it lives.
class port_holder {
public:
  port_holder() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 4);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~port_holder() {
    ::close(fd_);
  }
  std::uint16_t port() const {
    return port_;
  }

private:
  int fd_;
  std::uint16_t port_;
};

TEST(hubflow_cli, taken_stats_port_exits_3) {
  port_holder taken;
  temp_dir dir;
  auto path = config_with_plugin(dir, "sayhi");
  process broker({hubflow_binary(), "--config", path, "--plugin-dir",
                  plugin_dir(), "--stats-port", std::to_string(taken.port())});
  auto status = broker.wait_exit(15s);
  ASSERT_TRUE(status) << "hubflow kept running without its stats port";
  EXPECT_EQ(*status, 3) << broker.output();
  EXPECT_TRUE(contains(broker.output(),
                       "cannot serve stats: cannot listen on 127.0.0.1:"
                         + std::to_string(taken.port())
                         + ": address already in use"))
    << broker.output();
}

TEST(hubflow_cli, taken_listen_port_exits_3) {
  port_holder taken;
  process broker({hubflow_binary(), "--listen",
                  "127.0.0.1:" + std::to_string(taken.port()), "--stats-port",
                  std::to_string(free_port())});
  auto status = broker.wait_exit(15s);
  ASSERT_TRUE(status) << "hubflow kept running without its listen port";
  EXPECT_EQ(*status, 3) << broker.output();
  EXPECT_TRUE(contains(broker.output(), std::to_string(taken.port())))
    << broker.output();
}

TEST(hubflow_cli, sigterm_stops_it_with_exit_0) {
  hubflow_server broker(
    "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(free_port()) + "]\n");
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  EXPECT_EQ(broker.proc().stop(SIGTERM, 10s), 0) << broker.proc().output();
  EXPECT_TRUE(contains(broker.proc().output(), "shutting down"))
    << broker.proc().output();
}

// With every kind of part running, nothing holds the exit: each stops on
// the signal (an actor left running made every stop wait 3 s and end with
// "some actors did not stop").
TEST(hubflow_cli, sigterm_stops_every_part_without_waiting) {
  temp_dir code;
  code.write("echo.py", "def handle(msg, ctx):\n    return msg\n");
  auto http_port = free_port();
  hubflow_server broker(
    "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(free_port())
    + "]\nhttp:\n  listen: 127.0.0.1:" + std::to_string(http_port)
    + "\nendpoints:\n  - name: cache\n    type: redis\n    port: "
    + std::to_string(free_port()) // nothing listens: it keeps reconnecting
    + "\nfunctions:\n  - name: echo\n    runtime: python\n"
      "    handler: echo.handle\n    codedir: '" + code.path()
    + "'\n    instance: {min: 1, max: 2}\n"
      "  - name: filter\n    runtime: sql\n    handler: 'select * where id < 10'\n"
      "rules:\n  - name: through-echo\n    from: {topic: in}\n"
      "    function: {name: echo}\n    to: {topic: out}\n"
      "  - name: to-cache\n    from: {topic: cached}\n"
      "    to: {endpoint: cache, topic: cached}\n");
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  ASSERT_TRUE(wait_for_port(http_port, 10s)) << broker.proc().output();
  // The Python worker is running once it answered.
  auto echoed = run_command("curl -s -S --max-time 20 -d '{\"id\":1}' "
                            "http://127.0.0.1:" + std::to_string(http_port)
                            + "/v1.0/invoke/echo/method/call");
  ASSERT_TRUE(contains(echoed.output, "\"id\":1")) << echoed.output;
  auto asked = std::chrono::steady_clock::now();
  EXPECT_EQ(broker.proc().stop(SIGTERM, 10s), 0) << broker.proc().output();
  auto took = std::chrono::steady_clock::now() - asked;
  EXPECT_LT(took, 2s) << broker.proc().output();
  EXPECT_TRUE(contains(broker.proc().output(), "info  stopped"))
    << broker.proc().output();
  EXPECT_FALSE(contains(broker.proc().output(), "did not stop"))
    << broker.proc().output();
}

TEST(hubflowctl_cli, stats_against_a_port_with_nothing_exits_1) {
  auto port = std::to_string(free_port());
  auto res = run(hubflowctl_binary() + " stats --stats-port " + port);
  EXPECT_EQ(res.exit_code, 1);
  EXPECT_TRUE(contains(res.err, "no hubflow answers on 127.0.0.1:" + port))
    << res.err;
  EXPECT_TRUE(res.out.empty()) << res.out;
}

TEST(hubflowctl_cli, help_documents_the_token_file) {
  auto res = run(hubflowctl_binary() + " --help");
  EXPECT_EQ(res.exit_code, 0);
  for (auto option : {"--stats-port", "--token-file", "--json"})
    EXPECT_TRUE(contains(res.out, option)) << option;
}

TEST(hubflowctl_cli, unknown_command_exits_2) {
  auto res = run(hubflowctl_binary() + " frobnicate");
  EXPECT_EQ(res.exit_code, 2);
  EXPECT_TRUE(contains(res.err, "unknown command 'frobnicate'")) << res.err;
}

TEST(hubflowctl_cli, stats_json_and_table_from_a_running_broker) {
  // The embedded hub on a free port, so this needs no mosquitto.
  auto listen = "127.0.0.1:" + std::to_string(free_port());
  hubflow_server broker("hub:\n  listen: [tcp://" + listen + "]\n");
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  std::string json;
  ASSERT_TRUE(wait_until([&] {
    json = broker.stats_json();
    return contains(json, "\"components\"");
  })) << broker.proc().output();
  EXPECT_TRUE(contains(json, "\"version\"")) << json;
  EXPECT_TRUE(contains(json, "\"uptime_ms\"")) << json;
  auto table = run(hubflowctl_binary() + " stats --stats-port "
                   + std::to_string(broker.stats_port()));
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(table.out.rfind("hubflow ", 0), 0u) << table.out;
}
