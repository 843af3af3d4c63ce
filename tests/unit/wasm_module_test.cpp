// functions/wasm/wasm_module: reading imports, exports and memory limits
// out of WebAssembly binaries written byte by byte here, and what the host
// refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "functions/wasm/wasm_module.hpp"

using namespace hubflow::wasm;

namespace {

std::string leb(std::uint64_t v) {
  std::string out;
  do {
    auto b = static_cast<char>(v & 0x7f);
    v >>= 7;
    if (v)
      b = static_cast<char>(b | 0x80);
    out.push_back(b);
  } while (v);
  return out;
}

std::string name(const std::string& s) {
  return leb(s.size()) + s;
}

std::string section(int id, const std::string& body) {
  return std::string(1, static_cast<char>(id)) + leb(body.size()) + body;
}

const std::string header{"\0asm\1\0\0\0", 8};

/// A command module: imports the given wasi functions (type 0), defines a
/// memory of `pages` (and `max`), exports `_start` and `memory`.
std::string command_module(std::vector<std::pair<std::string, std::string>> imports,
                           std::uint64_t pages = 2, int max = -1,
                           bool with_start = true) {
  std::string types = section(1, leb(1) + "\x60" + leb(0) + leb(0));
  std::string imp = leb(imports.size());
  for (auto& [mod, fn] : imports)
    imp += name(mod) + name(fn) + '\0' + leb(0);
  std::string funcs = section(3, leb(1) + leb(0));
  std::string mem = leb(1) + (max < 0 ? std::string(1, '\0') + leb(pages)
                                      : std::string(1, '\1') + leb(pages) + leb(max));
  std::string exports = leb(with_start ? 2 : 1) + name("memory") + '\2' + leb(0);
  if (with_start)
    exports += name("_start") + '\0' + leb(imports.size());
  std::string code = section(10, leb(1) + leb(2) + leb(0) + "\x0b");
  return header + types + section(2, imp) + funcs + section(5, mem)
         + section(7, exports) + code;
}

} // namespace

TEST(wasm_module, reads_imports_exports_and_memory) {
  std::string error;
  auto info = parse_module(
    command_module({{"wasi_snapshot_preview1", "fd_read"},
                    {"wasi_snapshot_preview1", "proc_exit"}},
                   3, 100),
    error);
  ASSERT_TRUE(info) << error;
  ASSERT_EQ(info->imports.size(), 2u);
  EXPECT_EQ(info->imports[0].module, "wasi_snapshot_preview1");
  EXPECT_EQ(info->imports[1].name, "proc_exit");
  EXPECT_EQ(info->imports[1].kind, extern_kind::function);
  EXPECT_TRUE(info->exports_function("_start"));
  EXPECT_FALSE(info->exports_function("memory")); // a memory, not a function
  ASSERT_TRUE(info->memory);
  EXPECT_EQ(info->memory->initial, 3u);
  EXPECT_EQ(info->memory->maximum, 100u);
  EXPECT_TRUE(unmet_requirements(*info).empty());
}

TEST(wasm_module, memory_without_maximum_and_large_sizes) {
  std::string error;
  auto info = parse_module(command_module({}, 300), error);
  ASSERT_TRUE(info) << error;
  EXPECT_EQ(info->memory->initial, 300u); // a two-byte LEB128
  EXPECT_FALSE(info->memory->maximum);
}

TEST(wasm_module, refuses_what_is_not_a_module) {
  std::string error;
  EXPECT_FALSE(parse_module("(module)", error));
  EXPECT_NE(error.find("not a WebAssembly binary"), std::string::npos) << error;
  EXPECT_FALSE(parse_module(std::string{"\0asm\2\0\0\0", 8}, error));
  EXPECT_NE(error.find("version 1"), std::string::npos) << error;
  // Every prefix of a valid module that cuts a section short is malformed.
  auto whole = command_module({{"wasi_snapshot_preview1", "fd_write"}});
  for (std::size_t n = 9; n < whole.size(); ++n) {
    auto info = parse_module(whole.substr(0, n), error);
    if (info)
      continue; // cut exactly between sections
    EXPECT_FALSE(error.empty()) << n;
  }
  // An import section whose count promises more than it holds.
  auto lying = header + section(2, leb(5) + name("wasi_snapshot_preview1"));
  EXPECT_FALSE(parse_module(lying, error));
  EXPECT_NE(error.find("malformed import section"), std::string::npos) << error;
}

TEST(wasm_module, names_what_the_host_does_not_provide) {
  std::string error;
  auto info = parse_module(command_module({{"env", "host_clock"},
                                           {"wasi_snapshot_preview1", "fd_write"},
                                           {"wasi_snapshot_preview1", "no_such_call"}}),
                           error);
  ASSERT_TRUE(info) << error;
  auto problems = unmet_requirements(*info);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("imports env.host_clock (function), which the host "
                             "does not provide"),
            std::string::npos)
    << problems[0];
  EXPECT_NE(problems[1].find("wasi_snapshot_preview1.no_such_call"), std::string::npos)
    << problems[1];

  info = parse_module(command_module({}, 2, -1, false), error);
  ASSERT_TRUE(info) << error;
  problems = unmet_requirements(*info);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("exports no function _start"), std::string::npos);
}

TEST(wasm_module, every_wasi_preview1_function_is_provided) {
  // The list the worker's node:wasi implements (46 functions of preview 1).
  EXPECT_EQ(wasi_preview1_functions().size(), 46u);
  for (auto fn : {"fd_read", "fd_write", "proc_exit", "path_open", "poll_oneoff",
                  "random_get", "clock_time_get", "environ_get", "args_get"})
    EXPECT_NE(std::find(wasi_preview1_functions().begin(),
                        wasi_preview1_functions().end(), fn),
              wasi_preview1_functions().end())
      << fn;
}
