#include "core/acceptor.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

namespace hubflow {

namespace {

constexpr int first_pause_ms = 100;
constexpr int longest_pause_ms = 1000;

} // namespace

// Opened ourselves, so a failure names the errno ("address in use") and
// port 0 tells us which port was picked.
int open_listener(const std::string& host, std::uint16_t port,
                  std::uint16_t& bound, std::string& error) {
  auto where = (host.empty() ? std::string{"*"} : host) + ":"
               + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  auto service = std::to_string(port);
  if (auto rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                              service.c_str(), &hints, &res);
      rc != 0) {
    error = "cannot listen on " + where + ": " + ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  int last_errno = 0;
  for (auto ai = res; ai; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                  ai->ai_protocol);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0
        && ::listen(fd, SOMAXCONN) == 0)
      break;
    last_errno = errno;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0) {
    std::string reason = std::strerror(last_errno);
    for (auto& c : reason)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    error = "cannot listen on " + where + ": " + reason;
    return -1;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  sockaddr_storage sa{};
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  bound = sa.ss_family == AF_INET6
            ? ntohs(reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port)
            : ntohs(reinterpret_cast<sockaddr_in*>(&sa)->sin_port);
  return fd;
}

acceptor::acceptor(std::string what, std::vector<int> listeners,
                   caf::actor_addr owner)
  : what_(std::move(what)),
    listeners_(std::move(listeners)),
    owner_(std::move(owner)),
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
          if (auto owner = caf::actor_cast<caf::actor>(owner_))
            caf::anon_send(owner, accepted_atom::value, fd);
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
          spdlog::error("{}: cannot accept connections: {}; pausing "
                        "accepts, connected clients are still served",
                        what_, std::strerror(errno));
        failed = true;
        break;
      }
    }
    if (failed) {
      pause_ms = pause_ms == 0 ? first_pause_ms
                               : std::min(pause_ms * 2, longest_pause_ms);
    } else if (pause_ms > 0) {
      spdlog::info("{}: accepting connections again ({} failed accepts)",
                   what_, episode);
      pause_ms = 0;
      episode = 0;
    }
  }
}

} // namespace hubflow
