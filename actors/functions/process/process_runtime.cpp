#include "functions/process/process_runtime.hpp"

#include <algorithm>
#include <filesystem>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "functions/process/worker_frames.hpp"
#include "functions/process/worker_process.hpp"

namespace hubflow {

namespace {

namespace fs = std::filesystem;
using clock_type = worker_process::clock;

/// How long a worker may take to start and load its handler. Generous: a
/// cold node on a busy 2-core machine takes a second.
constexpr auto startup_timeout = std::chrono::seconds(10);

/// What differs between the languages.
struct language {
  const char* runtime; // the `runtime:` name
  const char* script;  // in the workers directory
  std::string runtime_options::*default_interpreter;
  std::vector<std::pair<std::string, std::string>> env;
  bool dots_are_packages; // python: module a.b is a/b.py
  std::vector<const char*> module_files; // what a module may be, by suffix
};

const language python{"python",
                      "hubflow_worker.py",
                      &runtime_options::python,
                      {{"PYTHONUNBUFFERED", "1"},
                       // codedir may be read-only; never litter it.
                       {"PYTHONDONTWRITEBYTECODE", "1"}},
                      true,
                      {".py", "/__init__.py", ".pyc", ".abi3.so"}};
const language node{"node",
                    "hubflow_worker.js",
                    &runtime_options::node,
                    {},
                    false,
                    {".js", ".cjs", ".json", ".node", "/index.js", "/package.json"}};

/// Whether `module` exists in `codedir` the way the worker will load it.
/// Checked at config load so that a typo is not first noticed when a
/// message arrives; the worker's own import reports anything subtler.
bool module_exists(const language& lang, const fs::path& codedir,
                   std::string module) {
  if (lang.dots_are_packages)
    std::replace(module.begin(), module.end(), '.', '/');
  std::error_code ec;
  for (auto suffix : lang.module_files)
    if (fs::exists(codedir / (module + suffix), ec))
      return true;
  return fs::is_regular_file(codedir / module, ec); // node: an exact file
}

} // namespace

std::string resolve_executable(const std::string& program) {
  auto executable = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
  };
  if (program.find('/') != std::string::npos)
    return executable(program) ? fs::absolute(program).string() : "";
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!dirs.empty()) {
    auto colon = dirs.find(':');
    auto dir = dirs.substr(0, colon);
    auto candidate = fs::path{dir.empty() ? "." : std::string{dir}} / program;
    if (executable(candidate))
      return fs::absolute(candidate).string();
    if (colon == std::string_view::npos)
      break;
    dirs.remove_prefix(colon + 1);
  }
  return "";
}

std::string workers_dir(const runtime_options& opts) {
  if (!opts.workers_dir.empty())
    return opts.workers_dir;
#ifdef HUBFLOW_SOURCE_DIR
  return std::string{HUBFLOW_SOURCE_DIR} + "/tools/workers";
#else
  return "tools/workers";
#endif
}

std::string config_relative(const function_config& cfg,
                            const std::string& path) {
  fs::path p{path};
  if (p.is_relative() && !cfg.where.file.empty()
      && cfg.where.file.front() != '<')
    p = fs::path{cfg.where.file}.parent_path() / p;
  return p.string();
}

namespace {

bool is_json_object(std::string_view bytes) {
  auto first = bytes.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && bytes[first] == '{'
         && nlohmann::json::accept(bytes);
}

class process_instance : public function_instance {
public:
  process_instance(std::shared_ptr<const worker_spec> spec,
                   std::unique_ptr<worker_process> worker)
    : spec_(std::move(spec)), worker_(std::move(worker)), pid_(worker_->pid()) {
  }

  int pid() const override {
    return pid_;
  }

  function_result invoke(const invocation& call) override {
    if (!worker_)
      return function_result::make_failure(describe() + " is not running",
                                           "WorkerError");
    auto deadline = call.timeout.count() > 0
                      ? clock_type::now() + call.timeout
                      : clock_type::time_point::max();
    worker_frames::request req;
    req.id = ++last_id_;
    req.event = call.msg.body.view();
    req.json = is_json_object(req.event);
    req.qos = call.msg.qos;
    req.topic = call.msg.topic;
    req.timestamp_ms = call.msg.received_ms();
    req.function_name = call.function_name;
    req.invoke_id = call.invoke_id;
    auto status = worker_->write_frame(worker_frames::encode_request(req),
                                       deadline);
    std::string frame;
    if (status == worker_process::io_status::ok)
      status = worker_->read_frame(frame, deadline, spec_->max_reply);
    if (status != worker_process::io_status::ok)
      return broken(status, call);
    worker_frames::reply reply;
    std::string error;
    if (!worker_frames::decode_reply(frame, reply, error) || reply.id != req.id) {
      if (error.empty())
        error = "answered request " + std::to_string(reply.id) + " instead of "
                + std::to_string(req.id);
      return retire("sent a malformed reply (" + error + ")", "WorkerError");
    }
    if (!reply.ok) {
      auto text = reply.error;
      if (!reply.traceback.empty())
        text += "\n" + reply.traceback;
      return function_result::make_handler_error(
        std::move(text), reply.error_type.empty() ? "Error" : reply.error_type);
    }
    if (!reply.output)
      return function_result::make_nothing();
    return function_result::make_output(std::move(*reply.output));
  }

private:
  std::string describe() const {
    return "worker pid " + std::to_string(pid_) + " of function '"
           + spec_->function_name + "'";
  }

  /// Kills the worker and reports why; the supervisor replaces the instance.
  function_result retire(std::string why, std::string type) {
    worker_->kill();
    worker_.reset();
    return function_result::make_failure(describe() + " " + why,
                                         std::move(type));
  }

  function_result broken(worker_process::io_status status,
                         const invocation& call) {
    switch (status) {
      case worker_process::io_status::timeout:
        return retire("timed out after " + std::to_string(call.timeout.count())
                        + " ms and was killed",
                      "TimeoutError");
      case worker_process::io_status::too_large:
        return retire("sent a reply over " + std::to_string(spec_->max_reply)
                        + " bytes",
                      "WorkerError");
      default: {
        auto how = worker_->exit_description();
        auto tail = worker_->stderr_tail();
        return retire(how + (tail.empty() ? "" : "; its last output: " + tail),
                      "WorkerError");
      }
    }
  }

  std::shared_ptr<const worker_spec> spec_;
  std::unique_ptr<worker_process> worker_;
  int pid_;
  std::uint64_t last_id_ = 0;
};

class process_runtime : public function_runtime {
public:
  explicit process_runtime(worker_spec spec)
    : spec_(std::make_shared<const worker_spec>(std::move(spec))) {
  }

  std::unique_ptr<function_instance> create_instance(std::string& error) override {
    auto worker = worker_process::spawn(spec_->spawn, error);
    if (!worker)
      return nullptr;
    // The worker's first frame says whether it could load the handler.
    std::string frame;
    auto status = worker->read_frame(frame, clock_type::now() + startup_timeout,
                                     spec_->max_reply);
    auto prefix = "function '" + spec_->function_name + "': worker pid "
                  + std::to_string(worker->pid()) + " ";
    if (status != worker_process::io_status::ok) {
      if (status == worker_process::io_status::timeout) {
        worker->kill();
        error = prefix + "did not start within "
                + std::to_string(startup_timeout.count()) + " s";
      } else {
        auto how = worker->exit_description();
        auto tail = worker->stderr_tail();
        error = prefix + how + " before it was ready"
                + (tail.empty() ? "" : ": " + tail);
      }
      return nullptr;
    }
    worker_frames::reply hello;
    std::string decode_error;
    if (!worker_frames::decode_reply(frame, hello, decode_error)) {
      worker->kill();
      error = prefix + "sent a malformed hello frame (" + decode_error + ")";
      return nullptr;
    }
    if (!hello.ok) {
      error = "function '" + spec_->function_name + "': cannot load "
              + spec_->loads + ": "
              + (hello.error_type.empty() ? "" : hello.error_type + ": ")
              + hello.error;
      return nullptr; // the worker exits by itself once it said so
    }
    return std::make_unique<process_instance>(spec_, std::move(worker));
  }

private:
  std::shared_ptr<const worker_spec> spec_;
};

std::unique_ptr<function_runtime> make_process_runtime(const language& lang,
                                                       const function_config& cfg,
                                                       const runtime_options& opts,
                                                       std::string& error) {
  auto dot = cfg.handler.rfind('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == cfg.handler.size()) {
    error = "handler '" + cfg.handler
            + "' must name <module>.<function> (e.g. index.handler)";
    return nullptr;
  }
  if (cfg.codedir.empty()) {
    error = std::string{"runtime '"} + lang.runtime + "' needs a codedir";
    return nullptr;
  }
  fs::path codedir = config_relative(cfg, cfg.codedir);
  std::error_code ec;
  if (!fs::is_directory(codedir, ec)) {
    error = "codedir '" + codedir.string() + "' is not a directory";
    return nullptr;
  }
  auto module = cfg.handler.substr(0, dot);
  if (!module_exists(lang, codedir, module)) {
    error = "module '" + module + "' of handler '" + cfg.handler
            + "' is not in codedir '" + codedir.string() + "' (looked for "
            + module + lang.module_files.front() + " and the like)";
    return nullptr;
  }
  auto interpreter_name = cfg.interpreter.empty()
                            ? opts.*(lang.default_interpreter)
                            : cfg.interpreter;
  auto interpreter = resolve_executable(interpreter_name);
  if (interpreter.empty()) {
    error = std::string{lang.runtime} + " interpreter '" + interpreter_name
            + "' is not an executable file (set `interpreter:` or the "
              "command line option)";
    return nullptr;
  }
  auto script = fs::path{workers_dir(opts)} / lang.script;
  if (!fs::is_regular_file(script, ec)) {
    error = "hubflow's worker script " + script.string() + " is missing";
    return nullptr;
  }
  auto dir = fs::absolute(codedir).lexically_normal().string();
  worker_spec spec;
  spec.function_name = cfg.name;
  spec.loads = "handler '" + cfg.handler + "' from " + dir;
  spec.spawn.argv = {interpreter, fs::absolute(script).string(), dir,
                     cfg.handler, cfg.name};
  spec.spawn.env = lang.env;
  spec.spawn.env.insert(spec.spawn.env.end(), cfg.env.begin(), cfg.env.end());
  spec.spawn.cwd = dir;
  spec.spawn.log_name = cfg.name;
  spec.max_reply = cfg.instance.message_size + worker_reply_overhead;
  return make_worker_runtime(std::move(spec));
}

} // namespace

std::unique_ptr<function_runtime> make_worker_runtime(worker_spec spec) {
  return std::make_unique<process_runtime>(std::move(spec));
}

std::unique_ptr<function_runtime>
make_python_runtime(const function_config& cfg, const runtime_options& opts,
                    std::string& error) {
  return make_process_runtime(python, cfg, opts, error);
}

std::unique_ptr<function_runtime>
make_node_runtime(const function_config& cfg, const runtime_options& opts,
                  std::string& error) {
  return make_process_runtime(node, cfg, opts, error);
}

} // namespace hubflow
