/* slow: echoes the payload after sleeping `delay_ms` (env setting, default
 * 200). Used to make the supervisor scale and to trip timeouts. */
#include <hubflow/plugin.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slow_instance {
  long delay_ms;
} slow_instance;

static void* slow_create(const hubflow_plugin_config* cfg, char* error,
                         size_t error_size) {
  slow_instance* self = malloc(sizeof(slow_instance));
  if (self == NULL) {
    strncpy(error, "out of memory", error_size);
    return NULL;
  }
  self->delay_ms = 200;
  for (size_t i = 0; i < cfg->settings_count; ++i)
    if (strcmp(cfg->settings[i].key, "delay_ms") == 0)
      self->delay_ms = atol(cfg->settings[i].value);
  return self;
}

static hubflow_status slow_invoke(void* instance, const char* payload,
                                  size_t size, hubflow_event_kind kind,
                                  const hubflow_context* ctx,
                                  const hubflow_output* out) {
  slow_instance* self = instance;
  struct timespec delay = {self->delay_ms / 1000,
                           (self->delay_ms % 1000) * 1000000L};
  nanosleep(&delay, NULL);
  out->write(out->broker_data, payload, size);
  return HUBFLOW_OK;
}

static void slow_destroy(void* instance) {
  free(instance);
}

static const hubflow_plugin descriptor = {
  HUBFLOW_PLUGIN_ABI_VERSION, sizeof(hubflow_plugin), "slow",
  "echoes the payload after a delay", slow_create, slow_invoke, slow_destroy,
  {0}};

const hubflow_plugin* hubflow_plugin_entry(uint32_t host_abi) {
  return host_abi >= 1 ? &descriptor : NULL;
}
