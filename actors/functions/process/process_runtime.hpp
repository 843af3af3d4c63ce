// `runtime: python` and `runtime: node`: each function instance is one worker
// process (tools/workers/hubflow_worker.py or .js) that loads the handler
// named `<module>.<function>` from `codedir` and answers one framed request
// at a time (schemas/worker-frames.md).
#pragma once

#include <memory>
#include <string>

#include "functions/process/worker_process.hpp"
#include "functions/runtime.hpp"

namespace hubflow {

/// Room in a reply frame beyond the output itself (error text, traceback).
inline constexpr std::size_t worker_reply_overhead = 1024 * 1024;

/// Everything a worker is started with, resolved once at config load.
struct worker_spec {
  std::string function_name;
  /// What the worker loads, for errors: "handler 'index.handler' from /dir".
  std::string loads;
  worker_process::options spawn;
  std::size_t max_reply = 0;
};

/// A runtime whose instances are workers started from `spec` that speak
/// schemas/worker-frames.md (the python and node workers, and the wasm
/// worker of functions/wasm).
std::unique_ptr<function_runtime> make_worker_runtime(worker_spec spec);

/// `program` as an absolute path: as given when it has a slash, else found
/// in PATH. Empty when it is not an executable file.
std::string resolve_executable(const std::string& program);

/// Where hubflow's worker scripts are: `opts.workers_dir`, or the source
/// tree's tools/workers.
std::string workers_dir(const runtime_options& opts);

/// A path of the config relative to the config file's directory, as
/// Baetyl's are to the service's own directory.
std::string config_relative(const function_config& cfg, const std::string& path);

/// Validates the config (handler form, codedir, interpreter, worker script)
/// or returns nullptr with `error`.
std::unique_ptr<function_runtime>
make_python_runtime(const function_config& cfg, const runtime_options& opts,
                    std::string& error);

std::unique_ptr<function_runtime>
make_node_runtime(const function_config& cfg, const runtime_options& opts,
                  std::string& error);

} // namespace hubflow
