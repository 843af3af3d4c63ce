#include "hub/acceptor.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

namespace hubflow::hub {

namespace {

constexpr int first_pause_ms = 100;
constexpr int longest_pause_ms = 1000;

} // namespace

acceptor::acceptor(std::vector<int> listeners, caf::actor_addr hub)
  : listeners_(std::move(listeners)),
    hub_(std::move(hub)),
    wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread([this] { run(); });
}

acceptor::~acceptor() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof(one));
  thread_.join();
  for (auto fd : listeners_)
    ::close(fd);
  ::close(wake_fd_);
}

void acceptor::run() {
  std::vector<pollfd> fds;
  fds.push_back(pollfd{wake_fd_, POLLIN, 0});
  for (auto fd : listeners_)
    fds.push_back(pollfd{fd, POLLIN, 0});
  int pause_ms = 0;            // > 0 while accept() keeps failing
  std::int64_t episode = 0;    // failures in the current episode
  for (;;) {
    // While paused only the wake descriptor is watched.
    auto watched = pause_ms > 0 ? nfds_t{1} : static_cast<nfds_t>(fds.size());
    auto ready = ::poll(fds.data(), watched, pause_ms > 0 ? pause_ms : -1);
    if (ready < 0 && errno != EINTR)
      return;
    if (fds[0].revents & POLLIN)
      return;
    bool failed = false;
    for (std::size_t i = 1; i < fds.size() && !failed; ++i) {
      if (pause_ms == 0 && !(fds[i].revents & POLLIN))
        continue;
      for (;;) {
        int fd = ::accept4(fds[i].fd, nullptr, nullptr,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
          if (auto hub = caf::actor_cast<caf::actor>(hub_))
            caf::anon_send(hub, accepted_atom::value, fd);
          else
            ::close(fd);
          continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          break;
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
          continue; // that client is gone; the next may not be
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection waits in the
        // backlog until descriptors are free again.
        errors_.fetch_add(1, std::memory_order_relaxed);
        if (episode++ == 0)
          spdlog::error("hub: cannot accept connections: {}; pausing "
                        "accepts, connected clients are still served",
                        std::strerror(errno));
        failed = true;
        break;
      }
    }
    if (failed) {
      pause_ms = pause_ms == 0 ? first_pause_ms
                               : std::min(pause_ms * 2, longest_pause_ms);
    } else if (pause_ms > 0) {
      spdlog::info("hub: accepting connections again ({} failed accepts)",
                   episode);
      pause_ms = 0;
      episode = 0;
    }
  }
}

} // namespace hubflow::hub
