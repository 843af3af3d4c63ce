// `runtime: python` and `runtime: node`: each function instance is one worker
// process (tools/workers/hubflow_worker.py or .js) that loads the handler
// named `<module>.<function>` from `codedir` and answers one framed request
// at a time (schemas/worker-frames.md).
#pragma once

#include <memory>
#include <string>

#include "functions/runtime.hpp"

namespace hubflow {

/// Validates the config (handler form, codedir, interpreter, worker script)
/// or returns nullptr with `error`.
std::unique_ptr<function_runtime>
make_python_runtime(const function_config& cfg, const runtime_options& opts,
                    std::string& error);

std::unique_ptr<function_runtime>
make_node_runtime(const function_config& cfg, const runtime_options& opts,
                  std::string& error);

} // namespace hubflow
