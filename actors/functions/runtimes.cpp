// The function runtimes hubflow knows, by the `runtime:` name of a function.
#include "functions/runtime.hpp"

#include "functions/native/native_runtime.hpp"
#include "functions/process/process_runtime.hpp"
#include "functions/sql/sql_runtime.hpp"
#include "functions/wasm/wasm_runtime.hpp"

namespace hubflow {

std::map<std::string, runtime_factory>& runtime_registry() {
  // One line per runtime.
  static std::map<std::string, runtime_factory> registry = {
    {"native", make_native_runtime},
    {"sql", make_sql_runtime},
    {"python", make_python_runtime},
    {"node", make_node_runtime},
    {"wasm", make_wasm_runtime},
  };
  return registry;
}

std::unique_ptr<function_runtime> make_runtime(const function_config& cfg,
                                               const runtime_options& opts,
                                               std::string& error) {
  auto& registry = runtime_registry();
  auto i = registry.find(cfg.runtime);
  if (i == registry.end()) {
    error = "unknown runtime '" + cfg.runtime + "'";
    return nullptr;
  }
  return i->second(cfg, opts, error);
}

} // namespace hubflow
