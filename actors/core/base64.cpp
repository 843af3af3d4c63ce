#include "core/base64.hpp"

#include <cstdint>

namespace hubflow {

namespace {

constexpr std::string_view alphabet =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

} // namespace

std::string base64_encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  auto byte = [&](std::size_t i) {
    return std::uint32_t{static_cast<unsigned char>(data[i])};
  };
  for (std::size_t i = 0; i < data.size(); i += 3) {
    std::uint32_t chunk = byte(i) << 16;
    if (i + 1 < data.size())
      chunk |= byte(i + 1) << 8;
    if (i + 2 < data.size())
      chunk |= byte(i + 2);
    out += alphabet[(chunk >> 18) & 63];
    out += alphabet[(chunk >> 12) & 63];
    out += i + 1 < data.size() ? alphabet[(chunk >> 6) & 63] : '=';
    out += i + 2 < data.size() ? alphabet[chunk & 63] : '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 == 0) {
    // Padding only at the end, at most two.
    for (int i = 0; i < 2 && !text.empty() && text.back() == '='; ++i)
      text.remove_suffix(1);
  }
  if (text.size() % 4 == 1)
    return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t bits = 0;
  int bit_count = 0;
  for (char c : text) {
    auto index = alphabet.find(c);
    if (index == std::string_view::npos)
      return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(index);
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      out.push_back(static_cast<char>((bits >> bit_count) & 0xff));
    }
  }
  return out;
}

} // namespace hubflow
