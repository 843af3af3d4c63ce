// Baetyl's function-manager tutorial (../shared/seeds/baetyl-function-manager.txt)
// laid out file by file as the deployment directory it describes, then run
// as it is with `hubflow --baetyl DIR`: the hub's remapping and the four
// functions (python27, python36, node85, sql) answer a real MQTT client
// logged in as the tutorial's principal. `hubflowctl import-baetyl` prints
// the same deployment as a hubflow config that loads. Without the seed the
// tests report themselves skipped.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"

using namespace hubflow::test;
using json = nlohmann::json;

namespace {

const std::string& seed_path = baetyl_seed_path;

/// Where the tutorial installs Baetyl: its files are named from here.
constexpr std::string_view tutorial_root = "/usr/local/";

bool is_prose(const std::string& line) {
  for (unsigned char c : line)
    if (c >= 0x80)
      return true;
  return false;
}

/// The files the tutorial shows, by path under Baetyl's working directory.
/// A YAML file starts at its `# /usr/local/<path>` comment line, a code
/// file after the prose line that names /usr/local/<path>; each runs to
/// the next prose line or file.
std::map<std::string, std::string> tutorial_files() {
  std::map<std::string, std::string> files;
  std::ifstream in{seed_path};
  std::string line, current;
  auto named = [](const std::string& text) {
    auto at = text.find(tutorial_root);
    if (at == std::string::npos)
      return std::string{};
    auto path = text.substr(at + tutorial_root.size());
    auto end = path.find_first_of(" \t");
    path = path.substr(0, end);
    // A prose line ends the path at its first non-ASCII byte.
    auto prose = std::find_if(path.begin(), path.end(),
                              [](unsigned char c) { return c >= 0x80; });
    return std::string(path.begin(), prose);
  };
  while (std::getline(in, line)) {
    if (line.rfind("# /usr/local/", 0) == 0) {
      current = named(line);
      files[current] = line + "\n";
      continue;
    }
    if (is_prose(line)) {
      auto path = named(line);
      // Prose naming a file shown already (to discuss it) starts nothing.
      bool code = (path.ends_with(".py") || path.ends_with(".js"))
                  && !files.count(path);
      current = code ? path : "";
      continue;
    }
    if (!current.empty())
      files[current] += line + "\n"; // creates a code file's entry
  }
  // Without the blank lines around a block (a shebang must be line 1).
  for (auto& [path, text] : files) {
    text.erase(0, text.find_first_not_of('\n'));
    while (text.size() >= 2 && text.substr(text.size() - 2) == "\n\n")
      text.pop_back();
  }
  return files;
}

/// The tutorial's deployment under a temp dir (its Baetyl working
/// directory), with the empty volumes it names.
class baetyl_deployment : public ::testing::Test {
protected:
  void SetUp() override {
    HUBFLOW_SKIP_WITHOUT_FILE(seed_path);
    files = tutorial_files();
    for (auto& [path, text] : files) {
      std::filesystem::create_directories(
        std::filesystem::path{workdir.path() + "/" + path}.parent_path());
      workdir.write(path, text);
    }
    for (auto volume : {"localhub-data", "localhub-log",
                        "function-manager-log"})
      std::filesystem::create_directories(workdir.path() + "/var/db/baetyl/"
                                          + volume);
  }

  std::map<std::string, std::string> files;
  temp_dir workdir;
};

TEST_F(baetyl_deployment, the_tutorial_lays_out_every_file_it_names) {
  std::set<std::string> names;
  for (auto& [path, text] : files)
    names.insert(path);
  EXPECT_EQ(names, (std::set<std::string>{
                     "var/db/baetyl/application.yml",
                     "var/db/baetyl/localhub-conf/service.yml",
                     "var/db/baetyl/function-manager-conf/service.yml",
                     "var/db/baetyl/function-filter-conf/service.yml",
                     "var/db/baetyl/function-sayhi-conf/service.yml",
                     "var/db/baetyl/function-sayjs-conf/service.yml",
                     "var/db/baetyl/function-sayhi-code/index.py",
                     "var/db/baetyl/function-sayjs-code/index.js"}));
}

TEST_F(baetyl_deployment, check_prints_what_each_service_becomes) {
  auto r = run_command(hubflow_binary() + " --baetyl " + workdir.path()
                       + " --check");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (auto line :
       {"service localhub (hub.baidubce.com/baetyl/baetyl-hub) -> the "
        "embedded hub",
        "its storage.dir var/db/baetyl/data -> persistence.path",
        "service function-manager "
        "(hub.baidubce.com/baetyl/baetyl-function-manager) -> 4 rules and 4 "
        "functions",
        "hub.address tcp://localhub:1883 names service localhub: rules use "
        "the embedded hub in-process",
        "function python27-sayhi: service function-python27-sayhi "
        "(hub.baidubce.com/baetyl/baetyl-function-python27) -> runtime python "
        "(Python 3: hubflow runs no Python 2)",
        "function node85-sayhi: service function-node85-sayhi "
        "(hub.baidubce.com/baetyl/baetyl-function-node85) -> runtime node",
        "function sql-filter: service function-sql-filter "
        "(hub.baidubce.com/baetyl/baetyl-function-sql) -> runtime sql",
        // What has no meaning here is a warning, not an error.
        "services[0].ports: no meaning here",
        "log volume: hubflow logs to standard error"})
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n"
                                                      << r.output;
}

TEST_F(baetyl_deployment, runs_as_it_is_with_every_function_answering) {
  auto port = free_port();
  hubflow_server broker{"", {"--baetyl", workdir.path(), "--listen",
                             "tcp://127.0.0.1:" + std::to_string(port)}};
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  mqtt_client client;
  // The hub's service.yml: principal test, anonymous clients refused.
  mqtt_client anonymous;
  EXPECT_NE(anonymous.connect(port), 0);
  client.set_credentials("test", "hahaha");
  ASSERT_EQ(client.connect(port), 0);
  ASSERT_EQ(client.subscribe("#", 1), 1);
  const std::set<std::string> outputs{"t/py2hi", "t/py3hi", "t/node8hi",
                                      "t/sqlfilter", "t/topic"};
  // The rules subscribe as they start: publish until every output came.
  ASSERT_TRUE(wait_until(
    [&] {
      client.publish("t", R"({"id":1})", 1);
      for (auto& topic : outputs)
        if (client.messages_on(topic).empty())
          return false;
      return true;
    },
    30s))
    << broker.proc().output();
  for (auto topic : {"t/py2hi", "t/py3hi", "t/node8hi"}) {
    auto payload = client.messages_on(topic).front().payload;
    auto doc = json::parse(payload);
    SCOPED_TRACE(payload);
    EXPECT_EQ(doc["Say"], "Hello Baetyl") << topic;
    EXPECT_EQ(doc["id"], 1) << topic;
    EXPECT_EQ(doc["messageTopic"], "t") << topic;
  }
  auto filtered = json::parse(client.messages_on("t/sqlfilter").front().payload);
  EXPECT_EQ(filtered["id"], 1);
  EXPECT_EQ(filtered["topic"], "t");
  EXPECT_EQ(client.messages_on("t/topic").front().payload, R"({"id":1})");
  // The SQL filter drops what its WHERE refuses; the others still answer.
  client.clear();
  ASSERT_TRUE(client.publish("t", R"({"id":20})", 1));
  ASSERT_TRUE(wait_until([&] { return !client.messages_on("t/py3hi").empty(); }));
  EXPECT_TRUE(client.messages_on("t/sqlfilter").empty());
}

TEST_F(baetyl_deployment, import_baetyl_prints_a_config_that_loads) {
  // The config on standard output, the mapping and warnings on standard
  // error.
  auto path = workdir.path() + "/hubflow.yaml";
  auto r = run_command("{ " + hubflowctl_binary() + " import-baetyl "
                       + workdir.path() + " 2>&1 > " + path + "; }");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("# function node85-sayhi: service "
                          "function-node85-sayhi"),
            std::string::npos)
    << r.output;
  std::ifstream in{path};
  std::string yaml{std::istreambuf_iterator<char>{in}, {}};
  EXPECT_NE(yaml.find("# from " + workdir.path()
                      + "/var/db/baetyl/localhub-conf/service.yml"),
            std::string::npos)
    << yaml;
  auto check = run_command(hubflow_binary() + " --config " + path + " --check");
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << yaml;
  EXPECT_NE(check.output.find("valid (4 rules, 4 functions, 0 endpoints)"),
            std::string::npos)
    << check.output;
}

TEST_F(baetyl_deployment, what_cannot_be_mapped_names_the_baetyl_file) {
  // A function whose service is not in application.yml.
  auto manager = workdir.path()
                 + "/var/db/baetyl/function-manager-conf/service.yml";
  auto text = files.at("var/db/baetyl/function-manager-conf/service.yml");
  auto at = text.find("service: function-sql-filter");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, std::string{"service: function-sql-filter"}.size(),
               "service: function-nowhere");
  workdir.write("var/db/baetyl/function-manager-conf/service.yml", text);
  auto r = run_command(hubflow_binary() + " --baetyl " + workdir.path()
                       + " --check");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(manager + ":"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("functions[1].service: no service "
                          "'function-nowhere' in "),
            std::string::npos)
    << r.output;
  // Not a deployment at all.
  temp_dir empty;
  r = run_command(hubflow_binary() + " --baetyl " + empty.path() + " --check");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("not a Baetyl deployment: no "
                          "var/db/baetyl/application.yml in it"),
            std::string::npos)
    << r.output;
}

TEST_F(baetyl_deployment, python_2_code_is_named_as_such) {
  workdir.write("var/db/baetyl/function-sayhi-code/index.py",
                "def handler(event, context):\n    print 'hi'\n");
  auto r = run_command(hubflow_binary() + " --baetyl " + workdir.path()
                       + " --check");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("function-sayhi-code/index.py: does not parse as "
                          "Python 3"),
            std::string::npos)
    << r.output;
  EXPECT_NE(r.output.find("hubflow runs Python 3 only"), std::string::npos);
}

TEST(baetyl_import_errors, files_of_an_unexpected_shape_are_refused_clearly) {
  temp_dir dir;
  std::filesystem::create_directories(dir.path() + "/var/db/baetyl");
  auto check = [&](const std::string& application) {
    dir.write("var/db/baetyl/application.yml", application);
    return run_command(hubflow_binary() + " --baetyl " + dir.path()
                       + " --check");
  };
  // A service without mounts has no service.yml to read.
  auto r = check("services:\n  - name: hub\n    image: baetyl-hub\n");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("application.yml:2:5: services[0].mounts: service "
                          "'hub' mounts no volume at etc/baetyl"),
            std::string::npos)
    << r.output;
  // A key that is a list.
  r = check("services:\n  - name: hub\n    image: baetyl-hub\n    [a]: 1\n");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("a value of an unexpected type in one of its files "
                          "(yaml-cpp: error at line 4, column 5"),
            std::string::npos)
    << r.output;
}

TEST(baetyl_service_key, a_lone_function_manager_file_says_what_to_run) {
  temp_dir dir;
  auto path = dir.write("service.yml",
                        "rules:\n"
                        "  - clientid: r\n"
                        "    subscribe: {topic: t}\n"
                        "    function: {name: f}\n"
                        "    publish: {topic: t/out}\n"
                        "functions:\n"
                        "  - name: f\n"
                        "    service: function-python36-sayhi\n");
  auto r = run_command(hubflow_binary() + " --config " + path + " --check");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("functions[0].service: 'function-python36-sayhi' "
                          "names a Baetyl service: run the whole deployment "
                          "with `hubflow --baetyl DIR`"),
            std::string::npos)
    << r.output;
}

} // namespace
