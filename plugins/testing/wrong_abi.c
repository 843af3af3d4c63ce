/* wrong_abi: claims an ABI version the broker does not know; the loader must
 * refuse it and name this file. */
#include <hubflow/plugin.h>

static const hubflow_plugin descriptor = {99, sizeof(hubflow_plugin),
                                          "wrong_abi", "ABI version 99",
                                          0, 0, 0, {0}};

const hubflow_plugin* hubflow_plugin_entry(uint32_t host_abi) {
  return &descriptor;
}
