// The python and node runtimes against real interpreters and hubflow's worker
// scripts: outputs, events, context, errors, timeouts, crashes, startup
// failures and config validation. Handlers are written into a temp codedir.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "functions/process/process_runtime.hpp"
#include "functions/runtime.hpp"

using namespace hubflow;
using namespace std::chrono_literals;
using json = nlohmann::json;
using outcome = function_result::outcome;

namespace {

namespace fs = std::filesystem;

class code_dir {
public:
  code_dir() {
    char tmpl[] = "/tmp/hubflow-process-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~code_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream{fs::path{path_} / name} << text;
  }
  const std::string& path() const {
    return path_;
  }

private:
  std::string path_;
};

bool process_gone(int pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

/// Handlers in both languages with the same behaviour per name, so every
/// test runs once for python and once for node.
const char* python_handlers = R"PY(
import asyncio, os, sys, time

def echo(event, context):
    return {"event": event if isinstance(event, dict) else event.decode(),
            "kind": type(event).__name__, "context": context}

def same(event, context):
    return event

def nothing(event, context):
    return None

def text(event, context):
    return "héllo"

def boom(event, context):
    raise ValueError("boom: " + str(event.get("err")))

def slow(event, context):
    time.sleep(30)

def crash(event, context):
    sys.stderr.write("about to crash\n")
    sys.stderr.flush()
    os._exit(7)

def noisy(event, context):
    print("printed to stdout")
    return {"ok": 1}

def pid(event, context):
    return {"pid": os.getpid()}

def number(event, context):
    return 42

async def later(event, context):
    await asyncio.sleep(0.01)
    return {"later": True}
)PY";

const char* node_handlers = R"JS(
exports.echo = (event, context, callback) => {
  callback(null, { event: Buffer.isBuffer(event) ? event.toString() : event,
                   kind: Buffer.isBuffer(event) ? 'bytes' : 'dict', context });
};
exports.same = async (event) => event;
exports.nothing = (event, context) => undefined;
exports.text = (event, context, callback) => callback(null, 'héllo');
exports.boom = async (event) => { throw new RangeError('boom: ' + event.err); };
exports.slow = (event, context, callback) => { setTimeout(() => callback(null, {}), 30000); };
exports.crash = () => { process.stderr.write('about to crash\n'); process.exit(7); };
exports.noisy = (event) => { console.log('printed to stdout'); return { ok: 1 }; };
exports.pid = () => ({ pid: process.pid });
exports.number = () => 42;
exports.later = async () => {
  await new Promise((resolve) => setTimeout(resolve, 10));
  return { later: true };
};
)JS";

class process_runtime_test : public testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    if (GetParam() == "python")
      dir_.write("handlers.py", python_handlers);
    else
      dir_.write("handlers.js", node_handlers);
  }

  function_config config(const std::string& function) const {
    function_config cfg;
    cfg.name = "fn-" + function;
    cfg.runtime = GetParam();
    cfg.handler = "handlers." + function;
    cfg.codedir = dir_.path();
    return cfg;
  }

  std::unique_ptr<function_runtime> runtime(const std::string& function) {
    std::string error;
    auto rt = make_runtime(config(function), runtime_options{}, error);
    EXPECT_TRUE(rt) << error;
    return rt;
  }

  std::unique_ptr<function_instance> instance(const std::string& function) {
    runtimes_.push_back(runtime(function));
    std::string error;
    auto inst = runtimes_.back()->create_instance(error);
    EXPECT_TRUE(inst) << error;
    return inst;
  }

  static function_result call(function_instance& inst, std::string body,
                              std::chrono::milliseconds timeout = 10s) {
    message msg;
    msg.topic = "sensors/1";
    msg.qos = 1;
    msg.body = payload{std::move(body)};
    invocation inv{msg, "fn", "invoke-1", timeout};
    return inst.invoke(inv);
  }

  code_dir dir_;
  std::vector<std::unique_ptr<function_runtime>> runtimes_;
};

} // namespace

TEST_P(process_runtime_test, json_object_event_and_context) {
  auto inst = instance("echo");
  ASSERT_TRUE(inst);
  EXPECT_GT(inst->pid(), 0);
  auto result = call(*inst, R"({"id":1,"nested":{"a":[1,2]}})");
  ASSERT_EQ(result.status, outcome::output) << result.error_message;
  auto out = json::parse(result.output.str());
  EXPECT_EQ(out["kind"], "dict");
  EXPECT_EQ(out["event"], json::parse(R"({"id":1,"nested":{"a":[1,2]}})"));
  EXPECT_EQ(out["context"]["messageQOS"], 1);
  EXPECT_EQ(out["context"]["messageTopic"], "sensors/1");
  EXPECT_EQ(out["context"]["functionName"], "fn");
  EXPECT_EQ(out["context"]["functionInvokeID"], "invoke-1");
  EXPECT_TRUE(out["context"]["messageTimestamp"].is_number_integer());
}

TEST_P(process_runtime_test, non_object_payloads_arrive_as_bytes) {
  auto inst = instance("echo");
  ASSERT_TRUE(inst);
  for (std::string body : {"plain text", "[1,2]", "42", ""}) {
    auto result = call(*inst, body);
    ASSERT_EQ(result.status, outcome::output) << result.error_message;
    auto out = json::parse(result.output.str());
    EXPECT_EQ(out["kind"], "bytes") << body;
    EXPECT_EQ(out["event"], body);
  }
}

TEST_P(process_runtime_test, bytes_pass_through_unchanged) {
  auto inst = instance("same");
  ASSERT_TRUE(inst);
  std::string binary{"\x00\x01\xff\xfe binary", 12};
  auto result = call(*inst, binary);
  ASSERT_EQ(result.status, outcome::output) << result.error_message;
  EXPECT_EQ(result.output.str(), binary);
  // Large payloads cross the pipe in pieces.
  std::string big(3 * 1024 * 1024 + 7, 'x');
  result = call(*inst, big);
  ASSERT_EQ(result.status, outcome::output) << result.error_message;
  EXPECT_EQ(result.output.size(), big.size());
}

TEST_P(process_runtime_test, return_values) {
  auto none = instance("nothing");
  ASSERT_TRUE(none);
  EXPECT_EQ(call(*none, "{}").status, outcome::nothing);
  auto text = instance("text");
  ASSERT_TRUE(text);
  EXPECT_EQ(call(*text, "{}").output.str(), "héllo");
  auto number = instance("number");
  ASSERT_TRUE(number);
  EXPECT_EQ(call(*number, "{}").output.str(), "42");
}

TEST_P(process_runtime_test, async_handlers) {
  auto inst = instance("later");
  ASSERT_TRUE(inst);
  for (int i = 0; i < 2; ++i) {
    auto result = call(*inst, "{}");
    ASSERT_EQ(result.status, outcome::output) << result.error_message;
    EXPECT_EQ(json::parse(result.output.str()), json::parse(R"({"later":true})"));
  }
}

TEST_P(process_runtime_test, exceptions_become_handler_errors) {
  auto inst = instance("boom");
  ASSERT_TRUE(inst);
  auto result = call(*inst, R"({"err":"x"})");
  ASSERT_EQ(result.status, outcome::handler_error);
  EXPECT_EQ(result.error_type, GetParam() == "python" ? "ValueError" : "RangeError");
  EXPECT_EQ(result.error_message.substr(0, 7), "boom: x");
  // The traceback follows the message.
  EXPECT_NE(result.error_message.find(GetParam() == "python" ? "Traceback"
                                                              : "at "),
            std::string::npos)
    << result.error_message;
  // The instance keeps serving after a handler error.
  auto again = call(*inst, R"({"err":"y"})");
  EXPECT_EQ(again.error_message.substr(0, 7), "boom: y");
}

TEST_P(process_runtime_test, timeout_kills_the_worker) {
  auto inst = instance("slow");
  ASSERT_TRUE(inst);
  auto pid = inst->pid();
  auto start = std::chrono::steady_clock::now();
  auto result = call(*inst, "{}", 300ms);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(result.status, outcome::failure);
  EXPECT_EQ(result.error_type, "TimeoutError");
  EXPECT_NE(result.error_message.find("timed out after 300 ms"), std::string::npos)
    << result.error_message;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 5s);
  EXPECT_TRUE(process_gone(pid));
  // A dead instance says so instead of hanging.
  EXPECT_EQ(call(*inst, "{}").status, outcome::failure);
}

TEST_P(process_runtime_test, crash_is_reported_with_exit_status_and_stderr) {
  auto inst = instance("crash");
  ASSERT_TRUE(inst);
  auto pid = inst->pid();
  auto result = call(*inst, "{}");
  EXPECT_EQ(result.status, outcome::failure);
  EXPECT_EQ(result.error_type, "WorkerError");
  EXPECT_NE(result.error_message.find("exited with status 7"), std::string::npos)
    << result.error_message;
  EXPECT_NE(result.error_message.find("about to crash"), std::string::npos)
    << result.error_message;
  EXPECT_TRUE(process_gone(pid));
}

TEST_P(process_runtime_test, stdout_prints_do_not_corrupt_frames) {
  auto inst = instance("noisy");
  ASSERT_TRUE(inst);
  for (int i = 0; i < 3; ++i) {
    auto result = call(*inst, "{}");
    ASSERT_EQ(result.status, outcome::output) << result.error_message;
    EXPECT_EQ(json::parse(result.output.str()), json::parse(R"({"ok":1})"));
  }
}

TEST_P(process_runtime_test, one_process_per_instance_ended_with_it) {
  auto a = instance("pid");
  auto b = instance("pid");
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->pid(), b->pid());
  auto reported = json::parse(call(*a, "{}").output.str())["pid"].get<int>();
  EXPECT_EQ(reported, a->pid());
  auto pid = a->pid();
  a.reset();
  EXPECT_TRUE(process_gone(pid));
}

TEST_P(process_runtime_test, load_errors_fail_create_instance) {
  auto rt = runtime("missing_function");
  ASSERT_TRUE(rt);
  std::string error;
  EXPECT_FALSE(rt->create_instance(error));
  EXPECT_NE(error.find("cannot load handler 'handlers.missing_function'"),
            std::string::npos)
    << error;
  EXPECT_NE(error.find("missing_function"), std::string::npos) << error;

  // A module that exists but does not load: the interpreter's error.
  dir_.write("broken.py", "import nosuchmodule\n");
  dir_.write("broken.js", "require('nosuchmodule');\n");
  auto cfg = config("x");
  cfg.handler = "broken.handler";
  rt = make_runtime(cfg, runtime_options{}, error);
  ASSERT_TRUE(rt) << error;
  EXPECT_FALSE(rt->create_instance(error));
  EXPECT_NE(error.find(GetParam() == "python" ? "ModuleNotFoundError"
                                               : "Cannot find module"),
            std::string::npos)
    << error;
}

TEST_P(process_runtime_test, missing_module_is_refused_at_config_load) {
  auto cfg = config("x");
  cfg.handler = "nosuchmodule.handler";
  std::string error;
  EXPECT_FALSE(make_runtime(cfg, runtime_options{}, error));
  EXPECT_EQ(error, "module 'nosuchmodule' of handler 'nosuchmodule.handler' is "
                   "not in codedir '" + dir_.path() + "' (looked for nosuchmodule"
                   + (GetParam() == "python" ? ".py" : ".js") + " and the like)");
  // Packages count as modules (python: a/b.py for a.b; node: a directory).
  fs::create_directories(fs::path{dir_.path()} / "pkg");
  dir_.write("pkg/__init__.py", "");
  dir_.write("pkg/mod.py", "def handler(e, c):\n    return {'from': 'pkg.mod'}\n");
  dir_.write("pkg/index.js", "exports.handler = () => ({ from: 'pkg' });\n");
  cfg.handler = GetParam() == "python" ? "pkg.mod.handler" : "pkg.handler";
  auto rt = make_runtime(cfg, runtime_options{}, error);
  ASSERT_TRUE(rt) << error;
  auto inst = rt->create_instance(error);
  ASSERT_TRUE(inst) << error;
  EXPECT_EQ(call(*inst, "{}").status, outcome::output);
}

TEST_P(process_runtime_test, config_is_validated_at_load) {
  std::string error;
  auto cfg = config("echo");
  cfg.handler = "nodot";
  EXPECT_FALSE(make_runtime(cfg, runtime_options{}, error));
  EXPECT_EQ(error, "handler 'nodot' must name <module>.<function> (e.g. "
                   "index.handler)");
  cfg = config("echo");
  cfg.codedir = "/nonexistent/dir";
  EXPECT_FALSE(make_runtime(cfg, runtime_options{}, error));
  EXPECT_EQ(error, "codedir '/nonexistent/dir' is not a directory");
  cfg = config("echo");
  cfg.interpreter = "/nonexistent/interpreter";
  EXPECT_FALSE(make_runtime(cfg, runtime_options{}, error));
  EXPECT_NE(error.find("interpreter '/nonexistent/interpreter' is not an "
                       "executable file"),
            std::string::npos)
    << error;
  runtime_options opts;
  opts.workers_dir = "/nonexistent/workers";
  EXPECT_FALSE(make_runtime(config("echo"), opts, error));
  EXPECT_NE(error.find("worker script /nonexistent/workers/hubflow_worker"),
            std::string::npos)
    << error;
}

INSTANTIATE_TEST_SUITE_P(languages, process_runtime_test,
                         testing::Values("python", "node"),
                         [](const auto& info) { return info.param; });

TEST(python_runtime, interpreter_without_msgpack_is_explained) {
  // An interpreter that exits like a python lacking msgpack would: the
  // worker's stderr explanation must reach the error.
  code_dir dir;
  dir.write("index.py", "def handler(e, c):\n    return e\n");
  auto fake = dir.path() + "/python-without-msgpack";
  {
    std::ofstream script{fake};
    script << "#!/bin/sh\necho \"no module named msgpack here\" >&2\nexit 3\n";
  }
  fs::permissions(fake, fs::perms::owner_all);
  function_config cfg;
  cfg.name = "f";
  cfg.runtime = "python";
  cfg.handler = "index.handler";
  cfg.codedir = dir.path();
  cfg.interpreter = fake;
  std::string error;
  auto rt = make_runtime(cfg, runtime_options{}, error);
  ASSERT_TRUE(rt) << error;
  EXPECT_FALSE(rt->create_instance(error));
  EXPECT_NE(error.find("exited with status 3 before it was ready: no module "
                       "named msgpack here"),
            std::string::npos)
    << error;
}

namespace {

/// A stand-in worker (set as the function's interpreter) that says hello
/// properly and then answers every request with `reply_code`, so the
/// runtime's handling of broken workers can be checked.
function_result call_fake_worker(const code_dir& dir, const std::string& reply_code) {
  auto fake = dir.path() + "/fake-worker";
  {
    std::ofstream script{fake};
    script << R"PY(#!/usr/bin/python3
import struct, sys, msgpack
out = sys.stdout.buffer
def send(body):
    out.write(struct.pack(">I", len(body)) + body)
    out.flush()
send(msgpack.packb({"id": 0, "ok": True, "runtime": "fake"}))
size = struct.unpack(">I", sys.stdin.buffer.read(4))[0]
request = msgpack.unpackb(sys.stdin.buffer.read(size))
)PY" << reply_code
           << "\nsys.stdin.buffer.read()\n";
  }
  fs::permissions(fake, fs::perms::owner_all);
  dir.write("index.py", "");
  function_config cfg;
  cfg.name = "f";
  cfg.runtime = "python";
  cfg.handler = "index.handler";
  cfg.codedir = dir.path();
  cfg.interpreter = fake;
  cfg.instance.message_size = 1024;
  std::string error;
  auto rt = make_runtime(cfg, runtime_options{}, error);
  EXPECT_TRUE(rt) << error;
  if (!rt)
    return {};
  auto inst = rt->create_instance(error);
  EXPECT_TRUE(inst) << error;
  if (!inst)
    return {};
  message msg;
  msg.topic = "t";
  auto pid = inst->pid();
  auto result = inst->invoke({msg, "f", "1", 5s});
  EXPECT_TRUE(process_gone(pid)) << "a broken worker must be killed";
  return result;
}

} // namespace

TEST(process_runtime, broken_workers_are_killed_and_reported) {
  code_dir dir;
  auto wrong_id = call_fake_worker(
    dir, R"(send(msgpack.packb({"id": request["id"] + 5, "ok": True})))");
  EXPECT_EQ(wrong_id.status, outcome::failure);
  EXPECT_NE(wrong_id.error_message.find("sent a malformed reply (answered "
                                        "request 6 instead of 1)"),
            std::string::npos)
    << wrong_id.error_message;

  auto garbage = call_fake_worker(dir, R"(send(b"\xc1 not msgpack"))");
  EXPECT_EQ(garbage.status, outcome::failure);
  EXPECT_NE(garbage.error_message.find("sent a malformed reply (not msgpack"),
            std::string::npos)
    << garbage.error_message;

  auto no_ok = call_fake_worker(dir, R"(send(msgpack.packb({"id": 1})))");
  EXPECT_NE(no_ok.error_message.find("malformed reply (missing 'ok')"),
            std::string::npos)
    << no_ok.error_message;

  auto wrong_type = call_fake_worker(
    dir, R"(send(msgpack.packb({"id": 1, "ok": True, "output": 5})))");
  EXPECT_NE(wrong_type.error_message.find("field 'output' has the wrong type"),
            std::string::npos)
    << wrong_type.error_message;

  // message_size is 1024: a reply may carry that plus 1 MiB of error text.
  auto huge = call_fake_worker(dir, R"(out.write(struct.pack(">I", 50 << 20)); out.flush())");
  EXPECT_EQ(huge.status, outcome::failure);
  EXPECT_NE(huge.error_message.find("sent a reply over 1049600 bytes"),
            std::string::npos)
    << huge.error_message;

  auto half = call_fake_worker(dir, R"(out.write(b"\x00\x00\x00\x10abc"); out.flush(); sys.exit(4))");
  EXPECT_EQ(half.status, outcome::failure);
  EXPECT_NE(half.error_message.find("exited with status 4"), std::string::npos)
    << half.error_message;
}
