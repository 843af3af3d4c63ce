// sayhi: Baetyl's sample function as a native hubflow plugin. It echoes a
// JSON event with the invocation context added and "Say": "Hello hubflow";
// bytes become {"bytes": "..."}; an event with an "err" key fails with it.
#include <hubflow/plugin.h>

#include <string>

#include <nlohmann/json.hpp>

namespace {

std::string to_string(hubflow_string s) {
  return std::string{s.data, s.size};
}

void* create(const hubflow_plugin_config*, char*, size_t) {
  static int instance_tag;
  return &instance_tag; // sayhi keeps no state
}

hubflow_status invoke(void*, const char* payload, size_t size,
                      hubflow_event_kind kind, const hubflow_context* ctx,
                      const hubflow_output* out) {
  nlohmann::json res = nlohmann::json::object();
  if (kind == HUBFLOW_EVENT_JSON) {
    res = nlohmann::json::parse(payload, payload + size, nullptr, false);
    if (res.contains("err")) {
      auto err = res["err"];
      auto text = err.is_string() ? err.get<std::string>() : err.dump();
      out->error(out->broker_data, text.c_str(), "TypeError");
      return HUBFLOW_ERROR;
    }
  } else {
    res["bytes"] = std::string{payload, size};
  }
  res["messageQOS"] = ctx->message_qos;
  res["messageTopic"] = to_string(ctx->message_topic);
  res["messageTimestamp"] = ctx->message_timestamp;
  res["functionName"] = to_string(ctx->function_name);
  res["functionInvokeID"] = to_string(ctx->function_invoke_id);
  res["Say"] = "Hello hubflow";
  // Bytes that are not UTF-8 are replaced rather than failing the dump.
  auto text = res.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  out->write(out->broker_data, text.data(), text.size());
  return HUBFLOW_OK;
}

void destroy(void*) {
}

const hubflow_plugin descriptor = {
  HUBFLOW_PLUGIN_ABI_VERSION,
  sizeof(hubflow_plugin),
  "sayhi",
  "Baetyl's sayhi: echoes the event with the invocation context",
  create,
  invoke,
  destroy,
  {},
};

} // namespace

extern "C" const hubflow_plugin* hubflow_plugin_entry(uint32_t host_abi) {
  return host_abi >= 1 ? &descriptor : nullptr;
}
