// How a connection's bytes reach the network. Sessions only see this
// interface, so socket I/O can move from CAF's middleman to one epoll/asio
// loop per core without touching the protocol code. Today's implementation
// writes with ::send() on the socket CAF accepted and leaves to CAF's write
// buffer only what the socket does not take.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <caf/io/broker.hpp>

namespace hubflow::hub {

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

} // namespace hubflow::hub
