// The OpenSSL server context of a TLS listener (ssl://, wss://), built from
// its tls_settings. The config loader builds one to check the files (so
// `hubflow --check` reports what the hub would hit at start), the hub builds
// the one its connections use: one function, one set of checks.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/config.hpp"

struct ssl_ctx_st;

namespace hubflow {

/// Shared by a listener and its connections (each SSL object holds its own
/// reference as well, so replacing a listener's context never pulls it from
/// under a connection).
using tls_context_ptr = std::shared_ptr<ssl_ctx_st>;

/// What is wrong with a certificate block: `key` is the setting (`cert`,
/// `key`, `ca`, `ciphers`, ...), `message` names the file and the problem.
struct tls_problem {
  std::string key;
  std::string message;
};

/// The config key a problem is about: `hub.certificate.cert` for a block
/// written at `hub.certificate`, or the block's own path when it concerns
/// the whole block.
std::string key_path_of(const std::string& block, const tls_problem& problem);

/// Builds a server context from `tls`: the certificate chain (readable, PEM,
/// within its validity period), the private key (must match it), the CA
/// for client certificates (requested and verified with
/// `require_certificate`), the minimum version, the TLS 1.2 cipher list and
/// TLS 1.3 suites, and the session cache and tickets for resumption. Renegotiation is off
/// (a client could otherwise make the server redo handshakes at will).
/// nullptr with `problem` set on failure.
tls_context_ptr make_server_tls_context(const tls_settings& tls,
                                        tls_problem& problem);

/// Whether an MQTT address (`hub.address`, a `type: mqtt` endpoint's
/// `address`) is reached over TLS: ssl:// or mqtts://.
inline bool is_tls_address(std::string_view address) {
  return address.starts_with("ssl://") || address.starts_with("mqtts://");
}

/// The inline TLS keys of such an address, as Baetyl's function manager
/// writes them; refused beside a plain address.
inline constexpr const char* tls_address_keys[] = {"ca", "cert", "key",
                                                   "insecureSkipVerify"};

/// Checks what the external hub's link hands libmosquitto (which reads
/// the files itself when it connects): `ca` readable, PEM and within its
/// validity; `cert` and `key` given together, the key matching the
/// certificate. False with `problem` set on failure.
bool check_client_tls(const tls_client_settings& tls, tls_problem& problem);

/// The first queued OpenSSL error as text ("wrong version number"), and the
/// queue cleared; `fallback` when the queue is empty.
std::string take_openssl_error(const char* fallback = "unknown TLS error");

} // namespace hubflow
