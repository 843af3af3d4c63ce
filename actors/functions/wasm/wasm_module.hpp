// What hubflow reads from a WebAssembly binary before running it: its
// imports, exports and memory limits. Enough to refuse at config load a file
// that is not wasm, a module without `_start` or one that imports what the
// host does not provide; compiling is the engine's job (the wasm worker).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hubflow::wasm {

/// The kinds of imports and exports (the binary format's external kinds).
enum class extern_kind : std::uint8_t { function = 0, table, memory, global };

struct import_entry {
  std::string module;
  std::string name;
  extern_kind kind = extern_kind::function;
};

struct export_entry {
  std::string name;
  extern_kind kind = extern_kind::function;
};

/// Limits of a memory in 64 KiB pages.
struct memory_limits {
  std::uint64_t initial = 0;
  std::optional<std::uint64_t> maximum;
};

struct module_info {
  std::vector<import_entry> imports;
  std::vector<export_entry> exports;
  /// The module's own memory (not an imported one), if it defines one.
  std::optional<memory_limits> memory;

  bool exports_function(std::string_view name) const;
};

inline constexpr std::uint64_t page_size = 64 * 1024;

/// Reads the sections of a wasm binary. Returns nullopt and sets `error`
/// ("not a WebAssembly binary", "truncated import section", ...) when the
/// bytes are not a well-formed module as far as those sections go.
std::optional<module_info> parse_module(std::string_view bytes,
                                        std::string& error);

/// The functions of `wasi_snapshot_preview1` the wasm worker provides.
const std::vector<std::string_view>& wasi_preview1_functions();

/// What of `info` hubflow's host cannot satisfy, one line each
/// ("imports env.get_time (function), which the host does not provide",
/// "exports no function _start"); empty when it can run.
std::vector<std::string> unmet_requirements(const module_info& info);

} // namespace hubflow::wasm
