#include "functions/wasm/wasm_runtime.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "functions/process/process_runtime.hpp"
#include "functions/wasm/wasm_module.hpp"

namespace hubflow {

namespace {

namespace fs = std::filesystem;

constexpr const char* worker_script = "hubflow_wasm_worker.js";

bool read_file(const fs::path& path, std::string& bytes) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return false;
  bytes.assign(std::istreambuf_iterator<char>{in}, {});
  return !in.bad();
}

std::string join(const std::vector<std::string>& lines) {
  std::string result;
  for (auto& line : lines)
    result += (result.empty() ? "" : "; ") + line;
  return result;
}

} // namespace

std::unique_ptr<function_runtime>
make_wasm_runtime(const function_config& cfg, const runtime_options& opts,
                  std::string& error) {
  if (cfg.module.empty()) {
    error = "runtime 'wasm' needs `module: <file>.wasm`";
    return nullptr;
  }
  // A bare file name is looked for in the plugin directories first (where
  // the build puts its modules), like a native plugin's name.
  std::error_code ec;
  fs::path module;
  if (cfg.module.find('/') == std::string::npos)
    for (auto& dir : opts.plugin_dirs)
      if (fs::is_regular_file(fs::path{dir} / cfg.module, ec)) {
        module = fs::path{dir} / cfg.module;
        break;
      }
  if (module.empty())
    module = config_relative(cfg, cfg.module);
  module = fs::absolute(module).lexically_normal();
  std::string bytes;
  if (!fs::is_regular_file(module, ec) || !read_file(module, bytes)) {
    error = "module " + module.string() + " is not a readable file";
    return nullptr;
  }
  std::string parse_error;
  auto info = wasm::parse_module(bytes, parse_error);
  if (!info) {
    error = "module " + module.string() + ": " + parse_error;
    return nullptr;
  }
  if (auto problems = wasm::unmet_requirements(*info); !problems.empty()) {
    error = "module " + module.string() + " " + join(problems);
    return nullptr;
  }
  auto limit_pages = cfg.instance.memory / wasm::page_size;
  if (info->memory && info->memory->initial > limit_pages) {
    error = "module " + module.string() + " needs "
            + std::to_string(info->memory->initial * wasm::page_size)
            + " bytes of memory to start, over instance.memory ("
            + std::to_string(cfg.instance.memory) + ")";
    return nullptr;
  }
  auto preopens = nlohmann::json::object();
  for (auto& [guest, host] : cfg.preopens) {
    auto dir = fs::absolute(config_relative(cfg, host)).lexically_normal();
    if (!fs::is_directory(dir, ec)) {
      error = "preopens." + guest + ": " + dir.string() + " is not a directory";
      return nullptr;
    }
    preopens[guest] = dir.string();
  }
  auto node = resolve_executable(opts.node);
  if (node.empty()) {
    error = "runtime 'wasm' runs modules with node, and '" + opts.node
            + "' is not an executable file (--node)";
    return nullptr;
  }
  auto script = fs::path{workers_dir(opts)} / worker_script;
  if (!fs::is_regular_file(script, ec)) {
    error = "hubflow's worker script " + script.string() + " is missing";
    return nullptr;
  }
  auto env = nlohmann::json::object();
  for (auto& [name, value] : cfg.env)
    env[name] = value;
  nlohmann::json settings = {
    {"args", cfg.args},
    {"env", env},
    {"preopens", preopens},
    {"memoryPages", limit_pages},
    {"maxOutput", cfg.instance.message_size},
  };
  worker_spec spec;
  spec.function_name = cfg.name;
  spec.loads = "module " + module.string();
  spec.spawn.argv = {node, fs::absolute(script).string(), module.string(),
                     cfg.name, settings.dump()};
  spec.spawn.cwd = module.parent_path().string();
  spec.spawn.log_name = cfg.name;
  spec.max_reply = cfg.instance.message_size + worker_reply_overhead;
  return make_worker_runtime(std::move(spec));
}

} // namespace hubflow
