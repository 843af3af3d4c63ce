// How a connection's bytes reach the network. Sessions only see this
// interface, so socket I/O can move from CAF's middleman to one epoll/asio
// loop per core without touching the protocol code. Today's implementation
// writes with ::send() on the socket CAF accepted and leaves to CAF's write
// buffer only what the socket does not take. TLS and WebSocket are layers
// on top of it (core/tls_layer.hpp, hub/ws_layer.hpp); the HTTP API's
// HTTPS connections use the TLS layer over a transport of their own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <caf/io/broker.hpp>

namespace hubflow {

class transport {
public:
  virtual ~transport() = default;
  /// Queues `size` bytes behind everything sent before; never blocks.
  virtual void send(const char* data, std::size_t size) = 0;
  /// Bytes accepted by send() that the network has not taken yet.
  virtual std::size_t backlog() const = 0;
  /// Closes once what was sent is written; later sends are dropped.
  virtual void close() = 0;
  /// Half-closes: FIN once what was sent is written, reading goes on (so
  /// the peer's unread bytes do not turn the close into a reset that
  /// destroys what we sent last). Later sends are dropped.
  virtual void shutdown_write() = 0;
  /// The peer went away: drop everything from now on.
  virtual void peer_closed() = 0;
  /// Stops delivering what the peer sends after at most one more read (the
  /// rest waits in the socket, so TCP flow control slows the peer down),
  /// until resume_reading().
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  /// The peer's address (numeric), for logs and the loopback check.
  virtual const std::string& peer() const = 0;
};

/// A protocol between the socket and MQTT (TLS, WebSocket): the transport
/// the layer above writes to (send() encodes and passes the result down),
/// and the decoder of what arrives from below (read()). Layers stack:
/// socket <- TLS <- WebSocket <- MQTT for wss://. Nothing in a layer
/// blocks: what it must answer (handshake records, a pong) goes down at
/// once through the layer below.
class layer : public transport {
public:
  explicit layer(transport& below) noexcept : below_(below) {
  }

  /// Decodes `in` from the layer below; what it carries for the layer above
  /// is in output() afterwards (valid until the next read). False: the
  /// connection ends now, the layer has sent what it owes the peer (an
  /// alert, a close frame) and closed the layers below; failure() says why.
  /// When it is empty the peer closed cleanly (close_notify, a close
  /// frame), and output() still holds what came before (a DISCONNECT).
  virtual bool read(std::string_view in) = 0;
  /// The handshake is done (TLS handshake, WebSocket upgrade), so the
  /// layer above may send.
  virtual bool established() const noexcept = 0;
  /// What the layer is, for logs ("TLS", "WebSocket").
  virtual const char* name() const noexcept = 0;

  const std::string& output() const noexcept {
    return up_;
  }
  const std::string& failure() const noexcept {
    return failure_;
  }

  /// Closes: the layer's goodbye (close_notify, a close frame), then the
  /// layer below closes.
  void close() override {
    say_goodbye();
    below_.close();
  }
  /// The layer's goodbye, then the layer below half-closes.
  void shutdown_write() override {
    say_goodbye();
    below_.shutdown_write();
  }

  // What a layer does not change goes straight to the layer below.
  std::size_t backlog() const override {
    return below_.backlog();
  }
  void peer_closed() override {
    below_.peer_closed();
  }
  void pause_reading() override {
    below_.pause_reading();
  }
  void resume_reading() override {
    below_.resume_reading();
  }
  const std::string& peer() const override {
    return below_.peer();
  }

protected:
  /// Sends what the protocol says before a close, once; nothing is sent
  /// after it.
  virtual void say_goodbye() = 0;

  transport& below_;
  std::string up_;      // what the last read() decoded for the layer above
  std::string failure_; // why read() ended the connection
};

/// The CAF io broker transport: one scribe of one session broker.
class caf_transport final : public transport {
public:
  caf_transport(caf::io::broker* self, caf::io::connection_handle hdl);

  void send(const char* data, std::size_t size) override;
  std::size_t backlog() const override {
    return static_cast<std::size_t>(caf_pending_);
  }
  void close() override;
  void shutdown_write() override;
  void peer_closed() override {
    closed_ = true;
  }
  void pause_reading() override {
    // One activity token: CAF stops reading when it is used. halt() would
    // only take effect after the up to 50 reads of the current event.
    self_->trigger(hdl_, 1);
  }
  void resume_reading() override {
    self_->trigger(hdl_);
  }
  const std::string& peer() const override {
    return peer_;
  }

  /// CAF reports bytes written from its buffer (data_transferred_msg).
  void written(std::uint64_t bytes);

private:
  caf::io::broker* self_;
  caf::io::connection_handle hdl_;
  int fd_;
  std::string peer_;
  std::uint64_t caf_pending_ = 0; // bytes handed to CAF, not yet written
  bool closed_ = false; // the descriptor is (being) closed: never send again
  bool half_closed_ = false; // shutdown_write() was called: never send again
  bool fin_pending_ = false; // the FIN waits for CAF's buffer to be written
};

} // namespace hubflow
