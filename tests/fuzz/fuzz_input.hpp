// Helpers shared by the fuzz targets: a reader that takes the input apart
// into the numbers and strings a target needs, and a check that stops the
// run (libFuzzer saves the input) when an invariant does not hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace hubflow::fuzz {

/// Aborts with `what` when `ok` is false. abort() is what libFuzzer and the
/// replay driver both report as a crash, with the input that caused it.
inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
    std::abort();
  }
}

/// Consumes an input front to back. Past the end every read yields zeros
/// and empty strings, so a target never has to check lengths.
class input {
public:
  input(const std::uint8_t* data, std::size_t size)
    : rest_(reinterpret_cast<const char*>(data), size) {
  }

  bool empty() const noexcept {
    return rest_.empty();
  }

  std::uint8_t byte() {
    if (rest_.empty())
      return 0;
    auto b = static_cast<std::uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }

  std::string_view bytes(std::size_t n) {
    auto out = rest_.substr(0, n);
    rest_.remove_prefix(out.size());
    return out;
  }

  /// A string prefixed by its length: one byte, or 0xFF and two more bytes
  /// (big endian) for long ones, so deep topics stay reachable.
  std::string_view string() {
    std::size_t n = byte();
    if (n == 0xFF)
      n = std::size_t{byte()} << 8 | byte();
    return bytes(n);
  }

  /// Everything not consumed yet.
  std::string_view rest() {
    auto out = rest_;
    rest_ = {};
    return out;
  }

private:
  std::string_view rest_;
};

} // namespace hubflow::fuzz
