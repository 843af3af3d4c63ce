// `runtime: wasm`: a WASI preview 1 command module run by Node's built-in
// WASI (node:wasi) in a worker process per instance
// (tools/workers/hubflow_wasm_worker.js), so that nothing the engine does can
// take the broker down. The worker compiles the module once and instantiates
// it per invocation: `_start` reads the payload on stdin, its stdout is the
// output. The frames are those of the python and node workers
// (schemas/worker-frames.md).
#pragma once

#include <memory>
#include <string>

#include "functions/runtime.hpp"

namespace hubflow {

/// Reads and checks the module (a wasm binary that exports `_start` and
/// `memory`, imports only WASI preview 1 functions, and fits
/// `instance.memory`), the preopened directories, node and the worker
/// script; or returns nullptr with `error` naming the file and the problem.
std::unique_ptr<function_runtime>
make_wasm_runtime(const function_config& cfg, const runtime_options& opts,
                  std::string& error);

} // namespace hubflow
