/* gated_start: an instance can only be created while the file named by the
 * `gate` env setting exists; until then `create` fails, naming the file. Its
 * instances echo the payload. Used to make every start of a function fail
 * (restart backoff) and then let the pool recover when a test creates the
 * file. */
#include <hubflow/plugin.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void* gated_create(const hubflow_plugin_config* cfg, char* error,
                          size_t error_size) {
  const char* gate = NULL;
  for (size_t i = 0; i < cfg->settings_count; ++i)
    if (strcmp(cfg->settings[i].key, "gate") == 0)
      gate = cfg->settings[i].value;
  if (gate == NULL) {
    snprintf(error, error_size, "no gate setting");
    return NULL;
  }
  if (access(gate, F_OK) != 0) {
    snprintf(error, error_size, "gate %s is closed", gate);
    return NULL;
  }
  static char instance; /* no state: any non-NULL pointer will do */
  return &instance;
}

static hubflow_status gated_invoke(void* instance, const char* payload,
                                   size_t size, hubflow_event_kind kind,
                                   const hubflow_context* ctx,
                                   const hubflow_output* out) {
  (void)instance;
  (void)kind;
  (void)ctx;
  out->write(out->broker_data, payload, size);
  return HUBFLOW_OK;
}

static void gated_destroy(void* instance) {
  (void)instance;
}

static const hubflow_plugin descriptor = {
  HUBFLOW_PLUGIN_ABI_VERSION, sizeof(hubflow_plugin), "gated_start",
  "creates instances only while its gate file exists; echoes the payload",
  gated_create, gated_invoke, gated_destroy, {0}};

const hubflow_plugin* hubflow_plugin_entry(uint32_t host_abi) {
  return host_abi >= 1 ? &descriptor : NULL;
}
