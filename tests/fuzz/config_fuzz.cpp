// The config loader: YAML text through yaml-cpp, the JSON schema and
// hubflow's own checks. The input is the YAML text. It either loads or
// throws config_error listing every problem; nothing else may escape.
// Inputs naming /dev, /proc or /sys are skipped: a `{file: ...}` secret
// would read them, and reading /dev/zero never ends; that is the
// operator's choice, not a parser bug. Text that is not valid UTF-8 must be
// refused with a config_error before the schema (valijson's u8_strlen read
// past its table on runs of continuation bytes: 3 MB of them crashed
// `hubflow --check`).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/config.hpp"
#include "endpoints/endpoint.hpp"
#include "fuzz_input.hpp"

using namespace hubflow;
using hubflow::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  std::string text{reinterpret_cast<const char*>(data), size};
  for (auto dir : {"/dev", "/proc", "/sys"})
    if (text.find(dir) != std::string::npos)
      return 0;
  try {
    auto cfg = load_config_text(text, "fuzz.yaml", endpoint_registry());
    check(cfg.file == "fuzz.yaml", "a loaded config that forgot its file");
  } catch (const config_error& e) {
    check(!e.messages().empty(), "a config_error without messages");
  }
  return 0;
}
