// Listening sockets for every port hubflow serves (MQTT, HTTP, stats):
// open_listener binds them, and an acceptor accepts on them in a thread of
// its own and hands each accepted socket to the broker that serves it.
//
// Why not CAF's doorman: when accept() fails with EMFILE (the descriptor
// limit), CAF 0.17's acceptor leaves the connection in the backlog and the
// level-triggered epoll reports the socket readable again at once, so the
// middleman's I/O thread spins at 100% CPU and serves nobody. Here a failing
// accept pauses (100 ms doubling to 1 s), is logged once per episode and
// counted, and existing clients are served meanwhile.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/atom.hpp>

namespace hubflow {

/// (accepted_atom, int fd): a new client connection for the broker that
/// owns the acceptor; it adds the socket with `add_scribe(fd)`.
using accepted_atom = caf::atom_constant<caf::atom("accepted")>;

/// Binds a non-blocking listening socket on host:port (empty host: every
/// interface; port 0: any free port). Returns the descriptor and sets
/// `bound` to the port, or returns -1 with `error` naming the address and
/// the errno ("cannot listen on 127.0.0.1:1883: address already in use").
int open_listener(const std::string& host, std::uint16_t port,
                  std::uint16_t& bound, std::string& error);

class acceptor {
public:
  /// Starts accepting on `listeners` (non-blocking listening sockets; the
  /// acceptor closes them). Every accepted socket goes to `owner` as
  /// (accepted_atom, int fd); the owner is responsible for it from then on.
  /// `owner` is held weakly: the acceptor lives inside the owner's state.
  /// `what` names the service in logs ("hub", "http", "stats port").
  acceptor(std::string what, std::vector<int> listeners,
           caf::actor_addr owner);
  /// Stops the thread and closes the listening sockets.
  ~acceptor();
  acceptor(const acceptor&) = delete;
  acceptor& operator=(const acceptor&) = delete;

  /// accept() failures so far (EMFILE, ENFILE, ENOBUFS, ...).
  std::int64_t errors() const noexcept {
    return errors_.load(std::memory_order_relaxed);
  }

private:
  void run();

  std::string what_;
  std::vector<int> listeners_;
  caf::actor_addr owner_;
  int wake_fd_ = -1; // eventfd: tells the thread to stop
  std::atomic<std::int64_t> errors_{0};
  std::thread thread_;
};

} // namespace hubflow
