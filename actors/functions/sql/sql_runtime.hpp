// `runtime: sql`: the function's `handler` is a rule SQL statement, parsed
// once at config load and evaluated in-process for every message.
#pragma once

#include <memory>
#include <string>

#include "functions/runtime.hpp"

namespace hubflow {

/// Parses `cfg.handler`; a statement that does not parse gives nullptr and
/// `error` ("SQL statement: expected an expression after WHERE at column 17").
std::unique_ptr<function_runtime> make_sql_runtime(const function_config& cfg,
                                                   const runtime_options& opts,
                                                   std::string& error);

} // namespace hubflow
