// TLS between the socket and the layer above (MQTT, WebSocket for wss://,
// or the HTTP API's requests), with OpenSSL on memory BIOs: the bytes CAF
// read go into OpenSSL, what OpenSSL writes goes out through the transport
// below, so the middleman's I/O thread never blocks on a handshake. A
// client that stalls its handshake is dropped by its connection's deadline
// (the hub's CONNECT timeout, the HTTP API's deadlines).
#pragma once

#include <string>
#include <string_view>

#include "core/transport.hpp"

struct ssl_st;
struct ssl_ctx_st;
struct bio_st;

namespace hubflow {

class tls_layer final : public layer {
public:
  /// A server-side TLS session on `ctx` (core/tls_context.hpp).
  tls_layer(transport& below, ssl_ctx_st* ctx);
  ~tls_layer() override;
  tls_layer(const tls_layer&) = delete;
  tls_layer& operator=(const tls_layer&) = delete;

  bool read(std::string_view in) override;
  bool established() const noexcept override {
    return established_;
  }
  const char* name() const noexcept override {
    return "TLS";
  }

  /// Encrypts and sends; dropped before the handshake is done or after
  /// close (MQTT only answers once it has read a CONNECT).
  void send(const char* data, std::size_t size) override;

  /// The common name of the client's verified certificate; empty without
  /// one.
  std::string peer_common_name() const;
  /// The handshake resumed an earlier session (ticket or session id).
  bool resumed() const;

private:
  /// close_notify once established.
  void say_goodbye() override;
  /// Hands what OpenSSL wrote (handshake, records, alerts) to the socket.
  void flush_down();
  /// Ends the connection: what OpenSSL owes the peer (an alert) goes out,
  /// then the transport below closes.
  bool fail(std::string why);
  /// Why the handshake or a record failed, in words.
  std::string describe(int ssl_error);

  ssl_st* ssl_ = nullptr;
  bio_st* in_ = nullptr;  // the peer's bytes, read by OpenSSL
  bio_st* out_ = nullptr; // OpenSSL's bytes for the peer
  bool first_read_ = true;
  bool established_ = false;
  bool closed_ = false; // close_notify sent or the connection failed
};

} // namespace hubflow
