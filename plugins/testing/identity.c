/* identity: publishes the payload unchanged (benchmarks measure the rule and
 * function path, not the handler). */
#include <hubflow/plugin.h>

static void* identity_create(const hubflow_plugin_config* cfg, char* error,
                             size_t error_size) {
  static int instance_tag;
  return &instance_tag;
}

static hubflow_status identity_invoke(void* instance, const char* payload,
                                      size_t size, hubflow_event_kind kind,
                                      const hubflow_context* ctx,
                                      const hubflow_output* out) {
  out->write(out->broker_data, payload, size);
  return HUBFLOW_OK;
}

static void identity_destroy(void* instance) {
}

static const hubflow_plugin descriptor = {
  HUBFLOW_PLUGIN_ABI_VERSION, sizeof(hubflow_plugin), "identity",
  "publishes the payload unchanged", identity_create, identity_invoke,
  identity_destroy, {0}};

const hubflow_plugin* hubflow_plugin_entry(uint32_t host_abi) {
  return host_abi >= 1 ? &descriptor : NULL;
}
