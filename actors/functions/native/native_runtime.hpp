// Native functions: shared-object plugins speaking the C ABI of
// plugins/include/hubflow/plugin.h.
#pragma once

#include <memory>
#include <string>

#include "functions/runtime.hpp"

namespace hubflow {

/// Resolves a plugin name (`sayhi` → `<dir>/sayhi.so` in the first plugin dir
/// that has it) or path (contains `/` or ends in `.so`) to a file.
/// Returns an empty string and sets `error` when no file matches.
std::string find_plugin_file(const std::string& plugin,
                             const std::vector<std::string>& dirs,
                             std::string& error);

/// The `native` runtime factory: loads (dlopen) the plugin once per
/// function, checks the entry symbol and the ABI version.
std::unique_ptr<function_runtime>
make_native_runtime(const function_config& cfg, const runtime_options& opts,
                    std::string& error);

} // namespace hubflow
