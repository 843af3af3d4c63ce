// `runtime: wasm` under a running hubflow, with real MQTT and HTTP clients
// (issue 12, part 2): outputs byte for byte through MQTT and through the
// HTTP API's invoke, the grayscale example, Baetyl's context in the
// module's environment, traps and exit codes as error reports carrying the
// module's stderr, a module that never ends stopped by its timeout while
// another function keeps serving, the sandbox (no files but the preopened
// ones, a memory limit),
// scaling between min and max, and the modules `--check` refuses.
//
// The modules are built from tests/wasm/*.c and plugins/wasm/grayscale by
// the build (wasm32-wasi clang) into build/plugins/.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"

using namespace hubflow::test;
using json = nlohmann::json;

namespace {

/// Why the modules are missing on purpose, or empty: with the toolchain
/// found at configure time, building a test builds them (a module that is
/// missing then is a failure, not a skip).
std::string why_no_modules() {
  if (HUBFLOW_WASM_MODULES)
    return {};
  return "configure found no wasm32-wasi toolchain (clang, lld, wasi-libc, "
         "libclang-rt-14-dev-wasm32; tools/setup.sh installs them), so no "
         "wasm module was built";
}

std::string wasm_module(const std::string& name) {
  auto path = std::filesystem::path{HUBFLOW_PLUGIN_DIR} / (name + ".wasm");
  return path.lexically_normal().string();
}

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, {}};
}

/// A 24-bit BMP of `width` x `height` whose pixel (x, y) has the colour
/// (x * 37, y * 53, (x + y) * 11) mod 256 — an image stb_image reads.
std::string test_bmp(int width, int height) {
  int row = (width * 3 + 3) / 4 * 4;
  auto le = [](std::string& s, std::uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i)
      s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  std::string bmp = "BM";
  le(bmp, 54 + row * height, 4);
  le(bmp, 0, 4);
  le(bmp, 54, 4);
  le(bmp, 40, 4);
  le(bmp, width, 4);
  le(bmp, height, 4);
  le(bmp, 1, 2);
  le(bmp, 24, 2);
  le(bmp, 0, 4);
  le(bmp, row * height, 4);
  le(bmp, 2835, 4);
  le(bmp, 2835, 4);
  le(bmp, 0, 4);
  le(bmp, 0, 4);
  for (int y = height - 1; y >= 0; --y) { // bottom-up rows, BGR
    std::string line;
    for (int x = 0; x < width; ++x) {
      line.push_back(static_cast<char>((x + y) * 11 % 256));
      line.push_back(static_cast<char>(y * 53 % 256));
      line.push_back(static_cast<char>(x * 37 % 256));
    }
    line.resize(row, '\0');
    bmp += line;
  }
  return bmp;
}

/// Decodes a grayscale PNG with Python's zlib and checks every pixel is
/// stb_image's luminance of test_bmp's colour; "ok" or what differs.
std::string check_gray_png(const std::string& path, int width, int height) {
  std::ostringstream script;
  script << "python3 -c '\n"
            "import struct, sys, zlib\n"
            "data = open(sys.argv[1], \"rb\").read()\n"
            "assert data[:8] == b\"\\x89PNG\\r\\n\\x1a\\n\", \"not a PNG\"\n"
            "pos, idat, head = 8, b\"\", None\n"
            "while pos < len(data):\n"
            "    n, kind = struct.unpack(\">I4s\", data[pos:pos + 8])\n"
            "    body = data[pos + 8:pos + 8 + n]\n"
            "    if kind == b\"IHDR\": head = struct.unpack(\">IIBB\", body[:10])\n"
            "    if kind == b\"IDAT\": idat += body\n"
            "    pos += 12 + n\n"
            "w, h, depth, colour = head\n"
            "assert (w, h, depth, colour) == (int(sys.argv[2]), int(sys.argv[3]), 8, 0), head\n"
            "raw, prev, rows = zlib.decompress(idat), bytearray(w), []\n"
            "for y in range(h):\n"
            "    f, line = raw[y * (w + 1)], bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])\n"
            "    for x in range(w):\n"
            "        a = line[x - 1] if x else 0\n"
            "        b, c = prev[x], (prev[x - 1] if x else 0)\n"
            "        p = a + b - c\n"
            "        pr = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (b if abs(p - b) <= abs(p - c) else c)\n"
            "        line[x] = (line[x] + [0, a, b, (a + b) // 2, pr][f]) % 256\n"
            "    rows.append(line); prev = line\n"
            "for y in range(h):\n"
            "    for x in range(w):\n"
            "        r, g, b = x * 37 % 256, y * 53 % 256, (x + y) * 11 % 256\n"
            "        want = (r * 77 + g * 150 + b * 29) >> 8\n"
            "        assert rows[y][x] == want, (x, y, rows[y][x], want)\n"
            "print(\"ok\")\n"
            "' "
         << path << " " << width << " " << height << " 2>&1";
  auto result = run_command(script.str());
  auto out = result.output;
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  return out;
}

std::string wasm_config(std::uint16_t port, std::uint16_t http_port,
                        const std::string& data_dir) {
  std::ostringstream yaml;
  yaml << "hub:\n  listen: [tcp://127.0.0.1:" << port << "]\n"
       << "  message: {length: {max: 8m}}\n"
       << "http:\n  listen: 127.0.0.1:" << http_port << "\n"
       << "  maxBody: 8m\n"
       << R"(rules:
  - name: probe
    from: {topic: p/in}
    function: {name: probe}
    to: {topic: p/out}
    error_topic: p/err
    retry: {max: 0}
  - name: files
    from: {topic: f/in}
    function: {name: files}
    to: {topic: f/out}
  - name: identity
    from: {topic: id/in}
    function: {name: identity}
    to: {topic: id/out}
  - name: grayscale
    from: {topic: img/in}
    function: {name: grayscale}
    to: {topic: img/out}
)";
  for (int i = 1; i <= 3; ++i)
    yaml << "  - name: load-" << i << "\n"
         << "    from: {topic: s/load}\n"
            "    function: {name: scaled}\n"
            "    to: {topic: s/out}\n";
  yaml << "functions:\n"
       << "  - name: probe\n    runtime: wasm\n    module: " << wasm_module("probe")
       << "\n    args: [first-arg]\n    env: {GREETING: hello}\n"
          "    instance: {max: 1, timeout: 1500ms, memory: 16m}\n"
       << "  - name: files\n    runtime: wasm\n    module: " << wasm_module("probe")
       << "\n    preopens: {/data: '" << data_dir << "'}\n"
       << "  - name: identity\n    runtime: wasm\n    module: "
       << wasm_module("identity")
       << "\n    instance: {max: 1, message: {length: {max: 8m}}}\n"
       << "  - name: grayscale\n    runtime: wasm\n    module: "
       << wasm_module("grayscale") << "\n"
       << "  - name: scaled\n    runtime: wasm\n    module: " << wasm_module("probe")
       << "\n    instance: {min: 1, max: 3, idletime: 1s, timeout: 10s}\n";
  return yaml.str();
}

class runtimes_wasm : public testing::Test {
protected:
  void SetUp() override {
    if (auto why = why_no_modules(); !why.empty())
      GTEST_SKIP() << why;
    for (auto name : {"probe", "identity", "grayscale"})
      ASSERT_TRUE(std::ifstream{wasm_module(name)}.good())
        << wasm_module(name) << " is not built";
    port_ = free_port();
    http_port_ = free_port();
    data_.write("hello.txt", "hello from the host\n");
    server_ = std::make_unique<hubflow_server>(
      wasm_config(port_, http_port_, data_.path()));
    ASSERT_TRUE(wait_for_port(port_, 15s)) << server_->proc().output();
    ASSERT_TRUE(wait_for_port(http_port_, 15s)) << server_->proc().output();
    ASSERT_TRUE(server_->wait_ready()) << server_->proc().output();
    ASSERT_EQ(sub_.connect(port_), 0);
    for (auto filter : {"p/#", "f/out", "id/out", "img/out", "s/out"})
      ASSERT_LT(sub_.subscribe(filter, 1), 0x80);
    ASSERT_EQ(pub_.connect(port_), 0);
  }

  /// Publishes `body` on `in` (qos 0: the publisher never waits for the
  /// function) and returns the next message on `out`, or nullopt.
  std::optional<std::string> call(const std::string& in, const std::string& out,
                                  const std::string& body,
                                  std::chrono::milliseconds timeout = 15s) {
    auto before = sub_.messages_on(out).size();
    EXPECT_TRUE(pub_.publish(in, body, 0));
    if (!wait_until([&] { return sub_.messages_on(out).size() > before; },
                    timeout))
      return std::nullopt;
    return sub_.messages_on(out)[before].payload;
  }

  /// The next error report of the probe rule after `body`.
  json error_report(const std::string& body,
                    std::chrono::milliseconds timeout = 15s) {
    auto report = call("p/in", "p/err", body, timeout);
    return report ? json::parse(*report, nullptr, false) : json{};
  }

  /// POSTs the file `in` to the HTTP API; returns the status, the body in
  /// `out`.
  int http_post(const std::string& target, const std::string& in,
                const std::string& out) {
    auto r = run_command("curl -s -o " + out + " -w '%{http_code}' --data-binary @"
                         + in + " -H 'Content-Type: application/octet-stream'"
                         + " http://127.0.0.1:" + std::to_string(http_port_)
                         + target);
    return r.exit_code == 0 ? std::atoi(r.output.c_str()) : -1;
  }

  /// A counter of the function's stats component, -1 when absent.
  std::int64_t counter(const std::string& function, const std::string& name) {
    auto doc = json::parse(server_->stats_json(), nullptr, false);
    if (!doc.is_object())
      return -1;
    for (auto& c : doc["components"])
      if (c["kind"] == "function" && c["name"] == function
          && c["counters"].contains(name))
        return c["counters"][name].get<std::int64_t>();
    return -1;
  }

  temp_dir files_;
  temp_dir data_; // preopened as /data for the `files` function
  std::uint16_t port_ = 0;
  std::uint16_t http_port_ = 0;
  std::unique_ptr<hubflow_server> server_;
  mqtt_client sub_{"watcher"};
  mqtt_client pub_{"device"};
};

std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 gen{seed};
  std::string bytes(size, '\0');
  for (auto& b : bytes)
    b = static_cast<char>(gen() & 0xff);
  return bytes;
}

} // namespace

TEST_F(runtimes_wasm, outputs_are_the_modules_stdout_byte_for_byte) {
  for (auto size : {std::size_t{1}, std::size_t{1000}, std::size_t{70000}}) {
    auto bytes = random_bytes(size, static_cast<unsigned>(size));
    auto out = call("id/in", "id/out", bytes);
    ASSERT_TRUE(out) << size << " bytes\n" << server_->proc().output();
    EXPECT_EQ(*out, bytes) << size << " bytes";
  }
  // Over 1 MiB on stdin: the module reads it in 64 KiB pieces.
  auto large = random_bytes(1536 * 1024 + 7, 12);
  auto out = call("id/in", "id/out", large);
  ASSERT_TRUE(out) << server_->proc().output();
  EXPECT_EQ(out->size(), large.size());
  EXPECT_TRUE(*out == large);
}

TEST_F(runtimes_wasm, http_invoke_returns_the_output_byte_for_byte) {
  auto bytes = random_bytes(300000, 7);
  auto in = files_.write("in.bin", bytes);
  auto out = files_.path() + "/out.bin";
  EXPECT_EQ(http_post("/v1.0/invoke/identity/method/identity", in, out), 200);
  EXPECT_TRUE(read_file(out) == bytes);
  // Empty stdout: the function returned nothing.
  auto nothing = files_.write("nothing.txt", "nothing");
  EXPECT_EQ(http_post("/v1.0/invoke/probe/method/x", nothing, out), 204);
}

TEST_F(runtimes_wasm, grayscale_through_mqtt_and_http_invoke) {
  auto bmp = test_bmp(37, 23);
  auto in = files_.write("in.bmp", bmp);
  auto http_out = files_.path() + "/http.png";
  ASSERT_EQ(http_post("/v1.0/invoke/grayscale/method/grayscale", in, http_out),
            200)
    << server_->proc().output();
  EXPECT_EQ(check_gray_png(http_out, 37, 23), "ok");
  auto mqtt_out = call("img/in", "img/out", bmp);
  ASSERT_TRUE(mqtt_out) << server_->proc().output();
  EXPECT_TRUE(*mqtt_out == read_file(http_out))
    << "MQTT and HTTP gave different PNGs";
  // Not an image: the module exits 1 with its reason on stderr.
  auto text = files_.write("text.txt", "not an image");
  auto error_out = files_.path() + "/error.json";
  EXPECT_EQ(http_post("/v1.0/invoke/grayscale/method/grayscale", text, error_out),
            500);
  auto error = json::parse(read_file(error_out), nullptr, false);
  EXPECT_NE(error.dump().find("not an image I can read"), std::string::npos)
    << error.dump();
}

TEST_F(runtimes_wasm, context_args_and_env_reach_the_module) {
  auto out = call("p/in", "p/out", "context");
  ASSERT_TRUE(out) << server_->proc().output();
  EXPECT_NE(out->find("argv[0]=probe.wasm\nargv[1]=first-arg\n"), std::string::npos)
    << *out;
  EXPECT_NE(out->find("MESSAGE_TOPIC=p/in\n"), std::string::npos) << *out;
  EXPECT_NE(out->find("MESSAGE_QOS=0\n"), std::string::npos) << *out;
  EXPECT_NE(out->find("FUNCTION_NAME=probe\n"), std::string::npos) << *out;
  EXPECT_NE(out->find("GREETING=hello\n"), std::string::npos) << *out;
  EXPECT_EQ(out->find("FUNCTION_INVOKE_ID=(unset)"), std::string::npos) << *out;
  EXPECT_EQ(out->find("MESSAGE_TIMESTAMP=0\n"), std::string::npos) << *out;
}

TEST_F(runtimes_wasm, every_invocation_starts_from_a_fresh_instance) {
  // The module's static counter is incremented once per run: a reused
  // instance whose memory was not reset would count 2, 3, ...
  for (int i = 0; i < 5; ++i) {
    auto out = call("p/in", "p/out", "count");
    ASSERT_TRUE(out) << server_->proc().output();
    EXPECT_EQ(*out, "1\n") << "invocation " << i;
  }
  // Also after a trap and an exit in between.
  error_report("trap");
  error_report("exit 4");
  EXPECT_EQ(call("p/in", "p/out", "count").value_or(""), "1\n");
}

TEST_F(runtimes_wasm, heap_and_globals_one_call_changed_are_back_in_the_next) {
  // Each `state` call marks a heap block and exits with the stack pointer
  // (a wasm global) moved; the next one must find the block where malloc
  // put it the first time, unmarked, and the stack where it was.
  auto first = call("p/in", "p/out", "state");
  ASSERT_TRUE(first) << server_->proc().output();
  EXPECT_NE(first->find(" fresh, stack at "), std::string::npos) << *first;
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(call("p/in", "p/out", "state").value_or(""), *first)
      << "invocation " << i + 2;
}

TEST_F(runtimes_wasm, empty_stdout_publishes_nothing) {
  EXPECT_TRUE(pub_.publish("p/in", "nothing", 0));
  // The rule answers in order: the echo's output is the next message.
  EXPECT_EQ(call("p/in", "p/out", "echo after").value_or(""), "after");
  EXPECT_EQ(sub_.messages_on("p/out").size(), 1u);
  EXPECT_TRUE(sub_.messages_on("p/err").empty());
}

TEST_F(runtimes_wasm, exit_status_and_trap_are_error_reports_with_stderr) {
  auto exit_report = error_report("exit 3");
  ASSERT_TRUE(exit_report.is_object()) << server_->proc().output();
  EXPECT_EQ(exit_report["errorType"], "WasmExit") << exit_report;
  auto message = exit_report["errorMessage"].get<std::string>();
  EXPECT_NE(message.find("probe: first line\nprobe: second line\nprobe: giving up"),
            std::string::npos)
    << message;
  EXPECT_NE(message.find("status 3"), std::string::npos) << message;
  EXPECT_EQ(exit_report["functionMessage"], "exit 3") << exit_report;

  auto trap_report = error_report("trap");
  ASSERT_TRUE(trap_report.is_object()) << server_->proc().output();
  EXPECT_EQ(trap_report["errorType"], "WasmTrap") << trap_report;
  message = trap_report["errorMessage"].get<std::string>();
  EXPECT_NE(message.find("probe: about to trap"), std::string::npos) << message;
  EXPECT_NE(message.find("unreachable"), std::string::npos) << message;
  // The instance still serves.
  EXPECT_EQ(call("p/in", "p/out", "echo alive").value_or(""), "alive");
}

TEST_F(runtimes_wasm, a_spinning_module_is_stopped_while_others_keep_serving) {
  // The first call starts the probe's instance (min 0).
  ASSERT_EQ(call("p/in", "p/out", "echo ready").value_or(""), "ready");
  ASSERT_TRUE(wait_until([&] { return counter("probe", "instances_started") == 1; }))
    << server_->stats_json();
  const std::int64_t started_before = 1;
  auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(pub_.publish("p/in", "spin", 0));
  // While the probe spins (its timeout is 1.5 s), another function answers.
  auto out = call("id/in", "id/out", "still here", 1s);
  EXPECT_EQ(out.value_or(""), "still here");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1500ms);
  auto report = error_report("echo queued");
  ASSERT_TRUE(report.is_object()) << server_->proc().output();
  EXPECT_EQ(report["functionMessage"], "spin") << report;
  EXPECT_EQ(report["errorType"], "TimeoutError") << report;
  // The worker was killed and replaced; the queued call was served by it.
  EXPECT_TRUE(wait_until([&] { return sub_.messages_on("p/out").size() == 2; }))
    << server_->proc().output();
  EXPECT_EQ(sub_.messages_on("p/out").back().payload, "queued");
  // The stats reach hubflowctl at their report interval.
  EXPECT_TRUE(wait_until([&] {
    return counter("probe", "instances_started") == started_before + 1
           && counter("probe", "instances") == 1;
  })) << server_->stats_json();
}

TEST_F(runtimes_wasm, sandbox_no_files_and_a_memory_limit) {
  EXPECT_EQ(call("p/in", "p/out", "open /etc/passwd").value_or(""), "denied\n");
  EXPECT_EQ(call("p/in", "p/out", "open ./probe.wasm").value_or(""), "denied\n");
  // instance.memory: 16m, of which the module's 4 MiB input buffer and its
  // stack are taken before main.
  auto got = call("p/in", "p/out", "grow");
  ASSERT_TRUE(got) << server_->proc().output();
  auto mib = std::atoi(got->c_str());
  EXPECT_GE(mib, 8) << *got;
  EXPECT_LT(mib, 12) << *got;
}

TEST_F(runtimes_wasm, preopens_open_only_the_mapped_directory) {
  EXPECT_EQ(call("f/in", "f/out", "open /data/hello.txt").value_or(""), "opened\n");
  EXPECT_EQ(call("f/in", "f/out", "open /data/missing.txt").value_or(""), "denied\n");
  EXPECT_EQ(call("f/in", "f/out", "open " + data_.path() + "/hello.txt").value_or(""),
            "denied\n");
  EXPECT_EQ(call("f/in", "f/out", "open /etc/passwd").value_or(""), "denied\n");
  // The next call (after one that opened a file) still starts afresh.
  EXPECT_EQ(call("f/in", "f/out", "count").value_or(""), "1\n");
  EXPECT_EQ(call("f/in", "f/out", "open /data/hello.txt").value_or(""), "opened\n");
}

TEST_F(runtimes_wasm, instances_scale_between_min_and_max) {
  ASSERT_TRUE(wait_until([&] { return counter("scaled", "instances") == 1; }))
    << server_->stats_json();
  // One publish, three rules: three concurrent calls of 800 ms each.
  EXPECT_TRUE(pub_.publish("s/load", "sleep 800", 0));
  EXPECT_TRUE(wait_until([&] { return counter("scaled", "instances") == 3; }, 5s))
    << server_->stats_json();
  EXPECT_TRUE(wait_until([&] { return sub_.messages_on("s/out").size() == 3; }, 10s));
  for (auto& m : sub_.messages_on("s/out"))
    EXPECT_EQ(m.payload, "slept\n");
  // idletime 1s: back to min.
  EXPECT_TRUE(wait_until([&] { return counter("scaled", "instances") == 1; }, 10s))
    << server_->stats_json();
}

TEST(runtimes_wasm_check, bad_modules_are_refused_at_config_load) {
  if (auto why = why_no_modules(); !why.empty())
    GTEST_SKIP() << why;
  temp_dir dir;
  auto check = [&](const std::string& module) {
    auto config = dir.write("c.yaml", "functions:\n  - name: f\n    runtime: wasm\n"
                                      "    module: '" + module + "'\n");
    return run_command(hubflow_binary() + " --config " + config + " --check");
  };
  auto not_wasm = dir.write("text.wasm", "(module)");
  auto r = check(not_wasm);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(not_wasm + ": not a WebAssembly binary"), std::string::npos)
    << r.output;

  r = check(wasm_module("reactor"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(wasm_module("reactor")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("exports no function _start"), std::string::npos)
    << r.output;

  r = check(wasm_module("host_import"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(wasm_module("host_import")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("imports env.host_clock (function), which the host "
                          "does not provide"),
            std::string::npos)
    << r.output;

  r = check(dir.path() + "/missing.wasm");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("missing.wasm is not a readable file"), std::string::npos)
    << r.output;

  // A module larger than instance.memory allows to start.
  auto config = dir.write("m.yaml", "functions:\n  - name: f\n    runtime: wasm\n"
                                    "    module: '" + wasm_module("probe") + "'\n"
                                    "    instance: {memory: 1m}\n");
  r = run_command(hubflow_binary() + " --config " + config + " --check");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("over instance.memory"), std::string::npos) << r.output;

  r = check(wasm_module("probe"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}
