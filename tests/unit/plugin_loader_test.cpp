// The native plugin loader against real .so files built from plugins/:
// every way a plugin can be refused names the file (and the versions or the
// symbol), and a good plugin's instance gets Baetyl's whole context.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"
#include "functions/native/native_runtime.hpp"
#include "functions/runtime.hpp"

using namespace hubflow;
using namespace std::chrono_literals;
using json = nlohmann::json;
using outcome = function_result::outcome;
using hubflow::test::plugin_dir;

namespace {

function_config native_function(const std::string& plugin,
                                const std::string& name = "fn") {
  function_config cfg;
  cfg.name = name;
  cfg.runtime = "native";
  cfg.plugin = plugin;
  return cfg;
}

runtime_options with_dirs(std::vector<std::string> dirs) {
  runtime_options opts;
  opts.plugin_dirs = std::move(dirs);
  return opts;
}

/// Loads `plugin` from the build's plugin dir; expects a refusal and
/// returns its text.
std::string load_error(const std::string& plugin,
                       std::vector<std::string> dirs = {plugin_dir()}) {
  std::string error;
  auto runtime = make_runtime(native_function(plugin), with_dirs(dirs), error);
  EXPECT_EQ(runtime, nullptr) << plugin << " should have been refused";
  EXPECT_FALSE(error.empty());
  return error;
}

std::unique_ptr<function_instance> instance_of(const std::string& plugin,
                                               function_config cfg = {}) {
  if (cfg.plugin.empty())
    cfg = native_function(plugin);
  std::string error;
  auto runtime = make_runtime(cfg, with_dirs({plugin_dir()}), error);
  EXPECT_NE(runtime, nullptr) << error;
  if (!runtime)
    return nullptr;
  auto instance = runtime->create_instance(error);
  EXPECT_NE(instance, nullptr) << error;
  return instance;
}

message make_message(const std::string& topic, const std::string& body,
                     std::uint8_t qos) {
  message msg;
  msg.topic = topic;
  msg.body = payload{body};
  msg.qos = qos;
  return msg;
}

function_result invoke(function_instance& instance, const message& msg,
                       std::string_view name = "sayhi",
                       std::string_view id = "invoke-1") {
  return instance.invoke(invocation{msg, name, id, 5s});
}

std::string plugin_file(const std::string& name) {
  return plugin_dir() + "/" + name + ".so";
}

} // namespace

// -- refusals -------------------------------------------------------------------

TEST(plugin_loader, unknown_plugin_lists_the_searched_dirs) {
  hubflow::test::temp_dir empty;
  auto error = load_error("nosuch", {empty.path(), plugin_dir()});
  EXPECT_EQ(error, "unknown plugin 'nosuch': no nosuch.so in " + empty.path()
                     + ", " + plugin_dir());
}

TEST(plugin_loader, unknown_plugin_without_dirs_says_so) {
  auto error = load_error("nosuch", {});
  EXPECT_EQ(error, "unknown plugin 'nosuch': no nosuch.so in (no plugin dirs)");
}

TEST(plugin_loader, wrong_abi_version_names_the_file_and_both_versions) {
  auto error = load_error("wrong_abi");
  EXPECT_EQ(error, plugin_file("wrong_abi")
                     + ": unsupported plugin ABI version 99 (this hubflow "
                       "supports version 1)");
}

TEST(plugin_loader, so_without_entry_symbol_names_file_and_symbol) {
  auto error = load_error("no_entry");
  EXPECT_EQ(error, plugin_file("no_entry")
                     + ": not a hubflow plugin: it does not export "
                       "hubflow_plugin_entry");
}

TEST(plugin_loader, an_entry_that_returns_null_is_refused_with_the_version) {
  auto error = load_error("refuses_abi");
  EXPECT_EQ(error, plugin_file("refuses_abi")
                     + ": the plugin refused ABI version 1");
}

TEST(plugin_loader, a_descriptor_without_invoke_is_refused_at_load) {
  auto error = load_error("incomplete");
  EXPECT_EQ(error, plugin_file("incomplete")
                     + ": incomplete plugin descriptor (create, invoke and "
                       "destroy are required)");
}

TEST(plugin_loader, nonexistent_path) {
  auto error = load_error("/nonexistent/dir/sayhi.so");
  EXPECT_EQ(error, "plugin file '/nonexistent/dir/sayhi.so' does not exist");
}

TEST(plugin_loader, file_that_is_not_a_shared_object) {
  hubflow::test::temp_dir dir;
  auto path = dir.write("garbage.so", "this is not an ELF file\n");
  auto error = load_error(path);
  EXPECT_EQ(error.rfind(path + ": cannot load: ", 0), 0u) << error;
}

TEST(plugin_loader, unknown_runtime) {
  auto cfg = native_function("sayhi");
  cfg.runtime = "cobol";
  std::string error;
  EXPECT_EQ(make_runtime(cfg, with_dirs({plugin_dir()}), error), nullptr);
  EXPECT_EQ(error, "unknown runtime 'cobol'");
}

// -- lookup ---------------------------------------------------------------------

TEST(plugin_loader, name_resolves_in_the_first_dir_that_has_it) {
  hubflow::test::temp_dir first;
  hubflow::test::temp_dir second;
  // A copy of sayhi in the second dir; the first dir has none.
  std::filesystem::copy_file(plugin_file("sayhi"), second.path() + "/sayhi.so");
  std::string error;
  EXPECT_EQ(find_plugin_file("sayhi", {first.path(), second.path(),
                                       plugin_dir()},
                             error),
            second.path() + "/sayhi.so");
  EXPECT_EQ(find_plugin_file("sayhi", {plugin_dir(), second.path()}, error),
            plugin_dir() + "/sayhi.so");
}

TEST(plugin_loader, a_path_is_loaded_as_is) {
  auto instance = instance_of(plugin_file("sayhi"),
                              native_function(plugin_file("sayhi")));
  ASSERT_NE(instance, nullptr);
  auto result = invoke(*instance, make_message("t", R"({"id":1})", 1));
  EXPECT_EQ(result.status, outcome::output) << result.error_message;
}

// -- a good plugin ----------------------------------------------------------------

TEST(plugin_sayhi, json_event_gets_all_five_context_fields) {
  auto instance = instance_of("sayhi");
  ASSERT_NE(instance, nullptr);
  auto msg = make_message("t", R"({"id":1})", 1);
  auto result = invoke(*instance, msg, "sayhi", "0f8e-invoke");
  ASSERT_EQ(result.status, outcome::output) << result.error_message;
  auto out = json::parse(result.output.str());
  EXPECT_EQ(out["id"], 1);
  EXPECT_EQ(out["messageQOS"], 1);
  EXPECT_EQ(out["messageTopic"], "t");
  EXPECT_EQ(out["messageTimestamp"], msg.received_ms());
  EXPECT_EQ(out["functionName"], "sayhi");
  EXPECT_EQ(out["functionInvokeID"], "0f8e-invoke");
  EXPECT_EQ(out["Say"], "Hello hubflow");
  EXPECT_EQ(out.size(), 7u) << out.dump();
}

TEST(plugin_sayhi, bytes_become_a_bytes_field) {
  auto instance = instance_of("sayhi");
  ASSERT_NE(instance, nullptr);
  // Not a JSON object (a JSON array is not one either): bytes.
  for (std::string body : {"hello world", "[1,2,3]", ""}) {
    auto result = invoke(*instance, make_message("a/b", body, 0));
    ASSERT_EQ(result.status, outcome::output) << result.error_message;
    auto out = json::parse(result.output.str());
    EXPECT_EQ(out["bytes"], body);
    EXPECT_EQ(out["messageTopic"], "a/b");
    EXPECT_EQ(out["messageQOS"], 0);
    EXPECT_EQ(out["Say"], "Hello hubflow");
  }
}

TEST(plugin_sayhi, err_key_is_a_handler_error) {
  auto instance = instance_of("sayhi");
  ASSERT_NE(instance, nullptr);
  auto result = invoke(*instance, make_message("t", R"({"err":"boom"})", 0));
  EXPECT_EQ(result.status, outcome::handler_error);
  EXPECT_EQ(result.error_message, "boom");
  EXPECT_EQ(result.error_type, "TypeError");
  // The instance keeps working after an error.
  auto next = invoke(*instance, make_message("t", R"({"id":2})", 0));
  EXPECT_EQ(next.status, outcome::output);
}

TEST(plugin_sayhi, instances_of_one_runtime_are_independent) {
  std::string error;
  auto runtime = make_runtime(native_function("sayhi"),
                              with_dirs({plugin_dir()}), error);
  ASSERT_NE(runtime, nullptr) << error;
  auto a = runtime->create_instance(error);
  auto b = runtime->create_instance(error);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  a.reset(); // destroying one leaves the library loaded for the other
  auto result = invoke(*b, make_message("t", R"({"id":3})", 2));
  ASSERT_EQ(result.status, outcome::output);
  EXPECT_EQ(json::parse(result.output.str())["messageQOS"], 2);
}

TEST(plugin_slow, env_settings_reach_the_plugin) {
  auto cfg = native_function("slow");
  cfg.env = {{"delay_ms", "150"}};
  auto instance = instance_of("slow", cfg);
  ASSERT_NE(instance, nullptr);
  auto started = std::chrono::steady_clock::now();
  auto result = invoke(*instance, make_message("t", "payload", 0));
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_EQ(result.status, outcome::output);
  EXPECT_EQ(result.output.str(), "payload");
  EXPECT_GE(took, 150ms);
}

TEST(plugin_identity, returns_the_payload_unchanged) {
  auto instance = instance_of("identity");
  ASSERT_NE(instance, nullptr);
  std::string body("\0binary\xff", 8);
  auto result = invoke(*instance, make_message("t", body, 0));
  ASSERT_EQ(result.status, outcome::output);
  EXPECT_EQ(result.output.str(), body);
}
