// Base64 (RFC 4648, standard alphabet, '=' padding): Dapr's bulk publish
// carries application/octet-stream events as base64, mosquitto_passwd
// hashes their salt and digest. (OpenSSL's BIO framing adds newlines and
// EVP_DecodeBlock miscounts padding, hence code of our own.)
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace hubflow {

/// `data` as base64 with padding.
std::string base64_encode(std::string_view data);

/// The bytes `text` encodes; padding is optional, nothing else is skipped
/// (no whitespace, no URL-safe alphabet). nullopt when `text` is not
/// base64.
std::optional<std::string> base64_decode(std::string_view text);

} // namespace hubflow
