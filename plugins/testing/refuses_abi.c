/* refuses_abi: its entry point returns NULL for every ABI version the host
 * offers, as a plugin built for another hubflow would; the loader must
 * refuse it and say which version it offered. */
#include <hubflow/plugin.h>

const hubflow_plugin* hubflow_plugin_entry(uint32_t host_abi) {
  (void)host_abi;
  return 0;
}
