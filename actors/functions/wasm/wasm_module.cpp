#include "functions/wasm/wasm_module.hpp"

#include <algorithm>

namespace hubflow::wasm {

namespace {

/// Reads the binary format's LEB128 numbers, names and bytes from a span,
/// remembering the first problem instead of throwing.
class reader {
public:
  explicit reader(std::string_view bytes) : rest_(bytes) {
  }

  bool ok() const {
    return ok_;
  }
  bool empty() const {
    return rest_.empty();
  }

  std::uint8_t byte() {
    if (rest_.empty())
      return fail(), 0;
    auto b = static_cast<std::uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }

  std::uint64_t leb(int max_bits = 32) {
    std::uint64_t value = 0;
    for (int shift = 0; shift < max_bits + 7; shift += 7) {
      auto b = byte();
      if (!ok_)
        return 0;
      value |= std::uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0)
        return value;
    }
    return fail(), 0;
  }

  std::string_view take(std::uint64_t n) {
    if (n > rest_.size())
      return fail(), std::string_view{};
    auto part = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return part;
  }

  std::string name() {
    return std::string{take(leb())};
  }

  memory_limits limits() {
    memory_limits result;
    auto flags = byte();
    // Bit 0: has a maximum; bit 2: memory64 (64-bit page counts).
    int bits = (flags & 0x04) ? 64 : 32;
    result.initial = leb(bits);
    if (flags & 0x01)
      result.maximum = leb(bits);
    return result;
  }

private:
  void fail() {
    ok_ = false;
    rest_ = {};
  }

  std::string_view rest_;
  bool ok_ = true;
};

const char* kind_name(extern_kind kind) {
  switch (kind) {
    case extern_kind::function:
      return "function";
    case extern_kind::table:
      return "table";
    case extern_kind::memory:
      return "memory";
    default:
      return "global";
  }
}

} // namespace

bool module_info::exports_function(std::string_view name) const {
  return std::any_of(exports.begin(), exports.end(), [&](auto& e) {
    return e.kind == extern_kind::function && e.name == name;
  });
}

std::optional<module_info> parse_module(std::string_view bytes,
                                        std::string& error) {
  constexpr std::string_view magic{"\0asm", 4};
  if (bytes.substr(0, 4) != magic) {
    error = "not a WebAssembly binary (it does not start with \\0asm)";
    return std::nullopt;
  }
  if (bytes.size() < 8 || bytes.substr(4, 4) != std::string_view{"\1\0\0\0", 4}) {
    error = "not a WebAssembly binary of version 1";
    return std::nullopt;
  }
  module_info info;
  reader sections{bytes.substr(8)};
  while (!sections.empty()) {
    auto id = sections.byte();
    reader body{sections.take(sections.leb())};
    if (!sections.ok()) {
      error = "truncated section " + std::to_string(id);
      return std::nullopt;
    }
    const char* what = nullptr;
    switch (id) {
      case 2: { // imports
        what = "import";
        for (auto n = body.leb(); body.ok() && n > 0; --n) {
          import_entry entry;
          entry.module = body.name();
          entry.name = body.name();
          entry.kind = static_cast<extern_kind>(body.byte());
          switch (entry.kind) {
            case extern_kind::function:
              body.leb(); // type index
              break;
            case extern_kind::table:
              body.byte(); // element type
              body.limits();
              break;
            case extern_kind::memory:
              body.limits();
              break;
            case extern_kind::global:
              body.byte(); // value type
              body.byte(); // mutability
              break;
            default:
              error = "import " + entry.module + "." + entry.name
                      + " has an unknown kind";
              return std::nullopt;
          }
          info.imports.push_back(std::move(entry));
        }
        break;
      }
      case 5: { // memories
        what = "memory";
        auto n = body.leb();
        if (body.ok() && n > 0)
          info.memory = body.limits();
        break;
      }
      case 7: { // exports
        what = "export";
        for (auto n = body.leb(); body.ok() && n > 0; --n) {
          export_entry entry;
          entry.name = body.name();
          entry.kind = static_cast<extern_kind>(body.byte());
          body.leb(); // index
          info.exports.push_back(std::move(entry));
        }
        break;
      }
      default:
        break; // code, data, custom ...: the engine validates them
    }
    if (!body.ok()) {
      error = std::string{"malformed "} + what + " section";
      return std::nullopt;
    }
  }
  return info;
}

const std::vector<std::string_view>& wasi_preview1_functions() {
  // Node's node:wasi (uvwasi) implements all of WASI preview 1.
  static const std::vector<std::string_view> names = {
    "args_get", "args_sizes_get", "environ_get", "environ_sizes_get",
    "clock_res_get", "clock_time_get", "fd_advise", "fd_allocate",
    "fd_close", "fd_datasync", "fd_fdstat_get", "fd_fdstat_set_flags",
    "fd_fdstat_set_rights", "fd_filestat_get", "fd_filestat_set_size",
    "fd_filestat_set_times", "fd_pread", "fd_prestat_get",
    "fd_prestat_dir_name", "fd_pwrite", "fd_read", "fd_readdir",
    "fd_renumber", "fd_seek", "fd_sync", "fd_tell", "fd_write",
    "path_create_directory", "path_filestat_get", "path_filestat_set_times",
    "path_link", "path_open", "path_readlink", "path_remove_directory",
    "path_rename", "path_symlink", "path_unlink_file", "poll_oneoff",
    "proc_exit", "proc_raise", "sched_yield", "random_get", "sock_accept",
    "sock_recv", "sock_send", "sock_shutdown"};
  return names;
}

std::vector<std::string> unmet_requirements(const module_info& info) {
  std::vector<std::string> problems;
  auto& wasi = wasi_preview1_functions();
  for (auto& imp : info.imports) {
    bool provided = imp.kind == extern_kind::function
                    && imp.module == "wasi_snapshot_preview1"
                    && std::find(wasi.begin(), wasi.end(), imp.name)
                         != wasi.end();
    if (!provided)
      problems.push_back("imports " + imp.module + "." + imp.name + " ("
                         + kind_name(imp.kind)
                         + "), which the host does not provide (it provides "
                           "the functions of wasi_snapshot_preview1)");
  }
  if (!info.exports_function("_start"))
    problems.push_back("exports no function _start (it must be a WASI "
                       "command module, e.g. built with a main())");
  bool exports_memory = std::any_of(
    info.exports.begin(), info.exports.end(),
    [](auto& e) { return e.kind == extern_kind::memory && e.name == "memory"; });
  if (!exports_memory)
    problems.push_back("exports no memory named \"memory\" (WASI needs it)");
  return problems;
}

} // namespace hubflow::wasm
