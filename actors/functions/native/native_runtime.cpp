#include "functions/native/native_runtime.hpp"

#include <dlfcn.h>

#include <filesystem>

#include <hubflow/plugin.h>
#include <nlohmann/json.hpp>

namespace hubflow {

namespace {

/// dlopen'ed library shared by all instances of one function.
struct plugin_library {
  void* handle = nullptr;
  const hubflow_plugin* descriptor = nullptr;
  std::string file;

  ~plugin_library() {
    if (handle)
      ::dlclose(handle);
  }
};

/// Collects what the plugin hands back through hubflow_output.
struct output_collector {
  std::string bytes;
  bool wrote = false;
  std::string error_message;
  std::string error_type;

  static void write(void* self, const char* data, size_t size) {
    auto* out = static_cast<output_collector*>(self);
    out->bytes.append(data, size);
    out->wrote = true;
  }
  static void error(void* self, const char* message, const char* type) {
    auto* out = static_cast<output_collector*>(self);
    out->error_message = message ? message : "";
    out->error_type = type ? type : "";
  }
};

hubflow_string view(std::string_view s) {
  return {s.data(), s.size()};
}

bool is_json_object(std::string_view bytes) {
  auto first = bytes.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || bytes[first] != '{')
    return false;
  return nlohmann::json::accept(bytes);
}

class native_instance : public function_instance {
public:
  native_instance(std::shared_ptr<plugin_library> lib, void* state)
    : lib_(std::move(lib)), state_(state) {
  }

  ~native_instance() override {
    lib_->descriptor->destroy(state_);
  }

  function_result invoke(const invocation& call) override {
    auto body = call.msg.body.view();
    hubflow_context ctx{};
    ctx.struct_size = sizeof(ctx);
    ctx.message_qos = call.msg.qos;
    ctx.message_topic = view(call.msg.topic);
    ctx.message_timestamp = call.msg.received_ms();
    ctx.function_name = view(call.function_name);
    ctx.function_invoke_id = view(call.invoke_id);
    output_collector collected;
    hubflow_output out{sizeof(hubflow_output), &collected,
                       output_collector::write, output_collector::error};
    auto kind = is_json_object(body) ? HUBFLOW_EVENT_JSON : HUBFLOW_EVENT_BYTES;
    auto status = lib_->descriptor->invoke(state_, body.data(), body.size(),
                                           kind, &ctx, &out);
    if (status != HUBFLOW_OK)
      return function_result::make_handler_error(
        collected.error_message.empty() ? "the plugin reported an error"
                                        : collected.error_message,
        collected.error_type.empty() ? "PluginError" : collected.error_type);
    if (!collected.wrote)
      return function_result::make_nothing();
    return function_result::make_output(std::move(collected.bytes));
  }

private:
  std::shared_ptr<plugin_library> lib_;
  void* state_;
};

class native_runtime : public function_runtime {
public:
  native_runtime(std::shared_ptr<plugin_library> lib, const function_config& cfg)
    : lib_(std::move(lib)), name_(cfg.name), env_(cfg.env) {
  }

  std::unique_ptr<function_instance>
  create_instance(std::string& error) override {
    std::vector<hubflow_setting> settings;
    for (auto& [k, v] : env_)
      settings.push_back({k.c_str(), v.c_str()});
    hubflow_plugin_config cfg{sizeof(hubflow_plugin_config), name_.c_str(),
                              settings.data(), settings.size()};
    char reason[512] = {0};
    void* state = lib_->descriptor->create(&cfg, reason, sizeof(reason));
    if (state == nullptr) {
      reason[sizeof(reason) - 1] = '\0';
      error = lib_->file + ": create failed: "
              + (reason[0] ? std::string{reason} : "no reason given");
      return nullptr;
    }
    return std::make_unique<native_instance>(lib_, state);
  }

private:
  std::shared_ptr<plugin_library> lib_;
  std::string name_;
  std::vector<std::pair<std::string, std::string>> env_;
};

} // namespace

std::string find_plugin_file(const std::string& plugin,
                             const std::vector<std::string>& dirs,
                             std::string& error) {
  namespace fs = std::filesystem;
  bool is_path = plugin.find('/') != std::string::npos
                 || (plugin.size() > 3
                     && plugin.compare(plugin.size() - 3, 3, ".so") == 0);
  if (is_path) {
    if (fs::exists(plugin))
      return plugin;
    error = "plugin file '" + plugin + "' does not exist";
    return {};
  }
  std::string searched;
  for (auto& dir : dirs) {
    auto candidate = fs::path(dir) / (plugin + ".so");
    if (fs::exists(candidate))
      return candidate.string();
    searched += (searched.empty() ? "" : ", ") + dir;
  }
  error = "unknown plugin '" + plugin + "': no " + plugin + ".so in "
          + (searched.empty() ? std::string{"(no plugin dirs)"} : searched);
  return {};
}

std::unique_ptr<function_runtime>
make_native_runtime(const function_config& cfg, const runtime_options& opts,
                    std::string& error) {
  auto file = find_plugin_file(cfg.plugin, opts.plugin_dirs, error);
  if (file.empty())
    return nullptr;
  auto lib = std::make_shared<plugin_library>();
  lib->file = file;
  // RTLD_LOCAL keeps each plugin's symbols to itself.
  lib->handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib->handle) {
    error = file + ": cannot load: " + ::dlerror();
    return nullptr;
  }
  auto entry = reinterpret_cast<hubflow_plugin_entry_fn>(
    ::dlsym(lib->handle, HUBFLOW_PLUGIN_ENTRY_SYMBOL));
  if (!entry) {
    error = file + ": not a hubflow plugin: it does not export "
            + HUBFLOW_PLUGIN_ENTRY_SYMBOL;
    return nullptr;
  }
  lib->descriptor = entry(HUBFLOW_PLUGIN_ABI_VERSION);
  if (!lib->descriptor) {
    error = file + ": the plugin refused ABI version "
            + std::to_string(HUBFLOW_PLUGIN_ABI_VERSION);
    return nullptr;
  }
  if (lib->descriptor->abi_version != HUBFLOW_PLUGIN_ABI_VERSION) {
    error = file + ": unsupported plugin ABI version "
            + std::to_string(lib->descriptor->abi_version)
            + " (this hubflow supports version "
            + std::to_string(HUBFLOW_PLUGIN_ABI_VERSION) + ")";
    return nullptr;
  }
  auto* d = lib->descriptor;
  if (d->struct_size < offsetof(hubflow_plugin, reserved) || !d->create
      || !d->invoke || !d->destroy) {
    error = file + ": incomplete plugin descriptor (create, invoke and "
                   "destroy are required)";
    return nullptr;
  }
  return std::make_unique<native_runtime>(std::move(lib), cfg);
}

} // namespace hubflow
