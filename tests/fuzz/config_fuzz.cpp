// The config loader: YAML text through yaml-cpp, the JSON schema and
// hubflow's own checks. The input is the YAML text. It either loads or
// throws config_error listing every problem; nothing else may escape.
// Inputs naming /dev, /proc or /sys are skipped: a `{file: ...}` secret
// would read them, and reading /dev/zero never ends; that is the
// operator's choice, not a parser bug. Inputs that are not valid UTF-8
// are skipped too (open finding): valijson's minLength/maxLength count
// characters with u8_strlen, which indexes a 6-entry table by the length of
// a run of UTF-8 continuation bytes, so a string of many such bytes reads
// far past the table (3 MB of them crash `hubflow --check`). YAML is
// Unicode text; the loader should refuse anything else before the schema.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/config.hpp"
#include "fuzz_input.hpp"
#include "hub/mqtt_codec.hpp"

using namespace hubflow;
using hubflow::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  std::string text{reinterpret_cast<const char*>(data), size};
  if (!mqtt::valid_utf8(text))
    return 0;
  for (auto dir : {"/dev", "/proc", "/sys"})
    if (text.find(dir) != std::string::npos)
      return 0;
  try {
    auto cfg = load_config_text(text, "fuzz.yaml");
    check(cfg.file == "fuzz.yaml", "a loaded config that forgot its file");
  } catch (const config_error& e) {
    check(!e.messages().empty(), "a config_error without messages");
  }
  return 0;
}
