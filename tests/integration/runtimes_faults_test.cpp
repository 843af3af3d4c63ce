// Python and Node functions under a running hubflow, with real MQTT clients:
// a handler that overruns `timeout` or crashes its worker is reported and its
// instance replaced while the broker keeps serving; concurrent load scales
// the instances (worker processes, shown with their pids in the stats) up to
// `max`, and they retire back to `min` after `idletime`.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"

using namespace hubflow::test;
using json = nlohmann::json;

namespace {

const char* python_faults = R"PY(
import os, time

def handle(event, context):
    if event.get("crash"):
        os._exit(9)
    time.sleep(event.get("sleep", 0) / 1000.0)
    return {"pid": os.getpid(), "n": event.get("n")}
)PY";

const char* node_faults = R"JS(
exports.handler = async (event) => {
  if (event.crash) process.exit(9);
  await new Promise((resolve) => setTimeout(resolve, event.sleep || 0));
  return { pid: process.pid, n: event.n };
};
)JS";

/// One function, used by `main` (t/in -> t/out) and by three `load` rules
/// that all take t/load, so one publish there makes three concurrent calls.
std::string faults_config(std::uint16_t port, const std::string& runtime,
                          const std::string& codedir) {
  std::ostringstream yaml;
  yaml << "hub:\n  listen: [tcp://127.0.0.1:" << port << "]\n"
       << "rules:\n"
          "  - name: main\n"
          "    from: {topic: t/in}\n"
          "    function: {name: faults}\n"
          "    to: {topic: t/out}\n";
  for (int i = 1; i <= 3; ++i)
    yaml << "  - name: load-" << i << "\n"
         << "    from: {topic: t/load}\n"
            "    function: {name: faults}\n"
            "    to: {topic: t/loadout}\n";
  yaml << "functions:\n"
          "  - name: faults\n"
          "    runtime: "
       << runtime << "\n"
       << "    handler: '" << (runtime == "python" ? "faults.handle" : "faults.handler")
       << "'\n"
       << "    codedir: '" << codedir << "'\n"
       << "    instance: {min: 1, max: 3, idletime: 1s, timeout: 1s}\n";
  return yaml.str();
}

class runtime_faults : public testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    code_.write(GetParam() == "python" ? "faults.py" : "faults.js",
                GetParam() == "python" ? python_faults : node_faults);
    port_ = free_port();
    server_ = std::make_unique<hubflow_server>(
      faults_config(port_, GetParam(), code_.path()));
    ASSERT_TRUE(wait_for_port(port_, 15s)) << server_->proc().output();
    ASSERT_TRUE(server_->wait_ready()) << server_->proc().output();
    ASSERT_EQ(sub_.connect(port_), 0);
    ASSERT_LT(sub_.subscribe("t/#"), 0x80);
    ASSERT_EQ(pub_.connect(port_), 0);
  }

  /// The function's stats component, or null.
  json function_stats() {
    auto doc = json::parse(server_->stats_json(), nullptr, false);
    if (!doc.is_object())
      return nullptr;
    for (auto& c : doc["components"])
      if (c["kind"] == "function" && c["name"] == "faults")
        return c;
    return nullptr;
  }

  std::int64_t counter(const std::string& name) {
    auto c = function_stats();
    if (c.is_null() || !c["counters"].contains(name))
      return -1;
    return c["counters"][name].get<std::int64_t>();
  }

  std::vector<int> pids() {
    auto c = function_stats();
    std::vector<int> out;
    if (c.is_null() || !c["labels"].contains("pids"))
      return out;
    std::stringstream list{c["labels"]["pids"].get<std::string>()};
    std::string pid;
    while (std::getline(list, pid, ','))
      if (!pid.empty())
        out.push_back(std::stoi(pid));
    return out;
  }

  /// Publishes on t/in and waits for the next message on t/out.
  json call(const std::string& body, std::chrono::milliseconds timeout = 15s) {
    auto before = sub_.messages_on("t/out").size();
    // The PUBACK waits for the function (end-to-end acknowledgement), which
    // may need a fresh worker first: as long as the answer may take.
    EXPECT_TRUE(pub_.publish("t/in", body, 1, false, timeout));
    if (!wait_until([&] { return sub_.messages_on("t/out").size() > before; },
                    timeout))
      return nullptr;
    return json::parse(sub_.messages_on("t/out")[before].payload, nullptr, false);
  }

  temp_dir code_;
  std::uint16_t port_ = 0;
  std::unique_ptr<hubflow_server> server_;
  mqtt_client sub_{"watcher"};
  mqtt_client pub_{"device"};
};

bool is_worker_process(int pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/cmdline"};
  std::string cmdline{std::istreambuf_iterator<char>{in}, {}};
  return cmdline.find("hubflow_worker") != std::string::npos;
}

} // namespace

TEST_P(runtime_faults, timeout_is_reported_and_the_instance_replaced) {
  auto first = call(R"({"n":1})");
  ASSERT_EQ(first["n"], 1) << first;
  auto slow_pid = first["pid"].get<int>();

  auto report = call(R"({"n":2,"sleep":5000})");
  EXPECT_EQ(report["errorType"], "TimeoutError") << report;
  EXPECT_NE(report["errorMessage"].get<std::string>().find("timed out"),
            std::string::npos)
    << report;
  EXPECT_EQ(report["functionMessage"]["n"], 2) << report;

  // The broker keeps serving, from a fresh worker.
  auto next = call(R"({"n":3})");
  ASSERT_EQ(next["n"], 3) << next << server_->proc().output();
  EXPECT_TRUE(wait_until([&] { return !is_worker_process(slow_pid); }, 5s));
  EXPECT_TRUE(wait_until([&] { return counter("timeouts") >= 1; }, 5s));
}

TEST_P(runtime_faults, crash_is_reported_and_the_instance_replaced) {
  auto first = call(R"({"n":1})");
  ASSERT_EQ(first["n"], 1) << first;
  auto crashed_pid = first["pid"].get<int>();

  auto report = call(R"({"n":2,"crash":true})");
  EXPECT_FALSE(report["errorType"].is_null()) << report;
  EXPECT_NE(report["errorMessage"].get<std::string>().find("exited with status 9"),
            std::string::npos)
    << report;

  auto next = call(R"({"n":3})");
  ASSERT_EQ(next["n"], 3) << next << server_->proc().output();
  EXPECT_NE(next["pid"], crashed_pid);
  EXPECT_TRUE(wait_until(
    [&] {
      auto now = pids();
      return !now.empty()
             && std::find(now.begin(), now.end(), crashed_pid) == now.end();
    },
    5s));
  EXPECT_TRUE(server_->proc().running());
}

TEST_P(runtime_faults, scales_to_max_under_load_and_back_to_min) {
  ASSERT_TRUE(wait_until([&] { return counter("instances") == 1; }, 10s))
    << server_->stats_json();
  // Five publishes on t/load: fifteen 400 ms calls from three rules at once.
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(pub_.publish("t/load", R"({"sleep":400,"n":)" + std::to_string(i) + "}", 1));
  std::set<int> seen_pids;
  ASSERT_TRUE(wait_until(
    [&] {
      for (auto pid : pids())
        seen_pids.insert(pid);
      return counter("instances") == 3;
    },
    15s))
    << server_->stats_json();
  auto busy_pids = pids();
  EXPECT_EQ(busy_pids.size(), 3u) << server_->stats_json();
  for (auto pid : busy_pids)
    EXPECT_TRUE(is_worker_process(pid)) << pid;
  ASSERT_TRUE(sub_.wait_messages(15, 20s));
  std::set<int> served_by;
  for (auto& m : sub_.messages_on("t/loadout"))
    served_by.insert(json::parse(m.payload)["pid"].get<int>());
  EXPECT_GE(served_by.size(), 2u);
  // Idle for `idletime` (1 s): back to `min`, the others' processes gone.
  ASSERT_TRUE(wait_until([&] { return counter("instances") == 1; }, 15s))
    << server_->stats_json();
  auto left = pids();
  ASSERT_EQ(left.size(), 1u);
  for (auto pid : busy_pids) {
    if (pid != left[0]) {
      EXPECT_TRUE(wait_until([&] { return !is_worker_process(pid); }, 5s)) << pid;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(languages, runtime_faults,
                         testing::Values("python", "node"),
                         [](const auto& info) { return info.param; });
