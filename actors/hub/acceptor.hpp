// Accepts MQTT connections on the hub's listening sockets in a thread of its
// own and hands each accepted socket to the hub's control broker.
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
#include <thread>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/atom.hpp>

namespace hubflow::hub {

/// (accepted_atom, int fd): a new client connection for the hub broker.
using accepted_atom = caf::atom_constant<caf::atom("hubaccept")>;

class acceptor {
public:
  /// Starts accepting on `listeners` (non-blocking listening sockets; the
  /// acceptor closes them). Every accepted socket goes to `hub` as
  /// (accepted_atom, int fd); the hub owns it from then on. `hub` is held
  /// weakly: the acceptor lives inside the hub's own state.
  acceptor(std::vector<int> listeners, caf::actor_addr hub);
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

  std::vector<int> listeners_;
  caf::actor_addr hub_;
  int wake_fd_ = -1; // eventfd: tells the thread to stop
  std::atomic<std::int64_t> errors_{0};
  std::thread thread_;
};

} // namespace hubflow::hub
