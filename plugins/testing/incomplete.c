/* incomplete: a descriptor of the right ABI version without an `invoke`;
 * the loader must refuse it at load, not crash at the first call. */
#include <hubflow/plugin.h>

static void* create(const hubflow_plugin_config* config, char* error,
                    size_t error_size) {
  (void)config;
  (void)error;
  (void)error_size;
  return (void*)1;
}

static void destroy(void* instance) {
  (void)instance;
}

static const hubflow_plugin descriptor = {
  HUBFLOW_PLUGIN_ABI_VERSION, sizeof(hubflow_plugin), "incomplete",
  "no invoke", create, 0, destroy, {0}};

const hubflow_plugin* hubflow_plugin_entry(uint32_t host_abi) {
  (void)host_abi;
  return &descriptor;
}
