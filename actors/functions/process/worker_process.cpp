#include "functions/process/worker_process.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

extern char** environ;

namespace hubflow {

namespace {

constexpr std::size_t stderr_tail_lines = 20;
constexpr std::size_t stderr_line_limit = 8192;
// How long a worker gets to exit by itself once its stdin is closed.
constexpr auto exit_grace = std::chrono::milliseconds(500);

void close_fd(int& fd) {
  if (fd >= 0)
    ::close(fd);
  fd = -1;
}

void set_nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

std::string errno_text(const char* what, int err) {
  return std::string{what} + ": " + std::strerror(err);
}

/// hubflow's environment with `extra` added or overriding.
std::vector<std::string>
make_environment(const std::vector<std::pair<std::string, std::string>>& extra) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry{*e};
    auto eq = entry.find('=');
    if (eq != std::string_view::npos)
      vars[std::string{entry.substr(0, eq)}] = std::string{entry.substr(eq + 1)};
  }
  for (auto& [key, value] : extra)
    vars[key] = value;
  std::vector<std::string> out;
  for (auto& [key, value] : vars)
    out.push_back(key + "=" + value);
  return out;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings)
    out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

} // namespace

std::unique_ptr<worker_process> worker_process::spawn(const options& opts,
                                                      std::string& error) {
  std::unique_ptr<worker_process> w{new worker_process};
  w->log_name_ = opts.log_name;
  // stdin is a socket rather than a pipe so that writes can use MSG_NOSIGNAL:
  // a worker that died must give us EPIPE, not kill hubflow with SIGPIPE.
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0
      || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0
      || ::pipe2(w->wake_fd_, O_CLOEXEC) != 0) {
    error = errno_text("cannot create the worker's pipes", errno);
    for (int* fd : {&in[0], &in[1], &out[0], &out[1], &err[0], &err[1]})
      close_fd(*fd);
    w->reaped_ = true; // nothing to reap; the destructor closes wake_fd_
    return nullptr;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[1], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  // hubflow's sockets and files are not the worker's business.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  if (!opts.cwd.empty())
    posix_spawn_file_actions_addchdir_np(&actions, opts.cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group, so kill() also ends what a handler started; a
  // clean signal mask and default SIGPIPE whatever the spawning thread had.
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
                                    | POSIX_SPAWN_SETPGROUP);
  auto argv_strings = opts.argv;
  auto argv = c_strings(argv_strings);
  auto env_strings = make_environment(opts.env);
  auto envp = c_strings(env_strings);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(),
                         envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(in[1]);
  ::close(out[1]);
  ::close(err[1]);
  w->stdin_fd_ = in[0];
  w->stdout_fd_ = out[0];
  w->stderr_fd_ = err[0];
  if (rc != 0) {
    error = "cannot start " + opts.argv[0] + ": " + std::strerror(rc);
    w->reaped_ = true; // nothing to reap
    return nullptr;
  }
  w->pid_ = pid;
  set_nonblocking(w->stdin_fd_);
  set_nonblocking(w->stdout_fd_);
  w->stderr_thread_ = std::thread{[p = w.get()] { p->read_stderr(); }};
  return w;
}

worker_process::~worker_process() {
  if (pid_ > 0 && !reaped_) {
    // Closing stdin is the worker's cue to exit; its stdout closing with it
    // tells us it did.
    close_fd(stdin_fd_);
    char buf[4096];
    auto deadline = clock::now() + exit_grace;
    while (wait_fd(stdout_fd_, POLLIN, deadline) == io_status::ok
           && ::read(stdout_fd_, buf, sizeof buf) > 0) {
    }
    if (!wait_for_exit(deadline))
      kill();
  }
  if (wake_fd_[1] >= 0)
    (void) !::write(wake_fd_[1], "x", 1);
  if (stderr_thread_.joinable())
    stderr_thread_.join();
  for (int* fd : {&stdin_fd_, &stdout_fd_, &stderr_fd_, &wake_fd_[0],
                  &wake_fd_[1]})
    close_fd(*fd);
}

worker_process::io_status
worker_process::wait_fd(int fd, short events, clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - clock::now());
    if (left.count() < 0)
      return io_status::timeout;
    pollfd p{fd, events, 0};
    // Round up so that a sub-millisecond rest does not spin; wait at most a
    // minute per call so "no deadline" (time_point::max) fits in an int.
    auto wait_ms = std::min<std::int64_t>(left.count() + 1, 60'000);
    int rc = ::poll(&p, 1, static_cast<int>(wait_ms));
    if (rc > 0)
      return io_status::ok; // readable, writable, HUP or error: the call says
    if (rc < 0 && errno != EINTR)
      return io_status::closed;
  }
}

worker_process::io_status
worker_process::write_frame(std::string_view body, clock::time_point deadline) {
  if (stdin_fd_ < 0)
    return io_status::closed;
  auto n = static_cast<std::uint32_t>(body.size());
  unsigned char header[4] = {static_cast<unsigned char>(n >> 24),
                             static_cast<unsigned char>(n >> 16),
                             static_cast<unsigned char>(n >> 8),
                             static_cast<unsigned char>(n)};
  std::string_view parts[2] = {
    {reinterpret_cast<const char*>(header), sizeof header}, body};
  for (auto part : parts) {
    while (!part.empty()) {
      auto sent = ::send(stdin_fd_, part.data(), part.size(), MSG_NOSIGNAL);
      if (sent > 0) {
        part.remove_prefix(static_cast<std::size_t>(sent));
      } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (auto st = wait_fd(stdin_fd_, POLLOUT, deadline); st != io_status::ok)
          return st;
      } else if (sent < 0 && errno == EINTR) {
        continue;
      } else {
        return io_status::closed;
      }
    }
  }
  return io_status::ok;
}

worker_process::io_status worker_process::read_frame(std::string& body,
                                                     clock::time_point deadline,
                                                     std::size_t max_size) {
  auto read_exact = [&](char* into, std::size_t size) {
    std::size_t got = 0;
    while (got < size) {
      auto n = ::read(stdout_fd_, into + got, size - got);
      if (n > 0) {
        got += static_cast<std::size_t>(n);
      } else if (n == 0) {
        return io_status::closed;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (auto st = wait_fd(stdout_fd_, POLLIN, deadline); st != io_status::ok)
          return st;
      } else if (errno != EINTR) {
        return io_status::closed;
      }
    }
    return io_status::ok;
  };
  unsigned char header[4];
  if (auto st = read_exact(reinterpret_cast<char*>(header), 4);
      st != io_status::ok)
    return st;
  std::size_t size = (std::size_t{header[0]} << 24) | (header[1] << 16)
                     | (header[2] << 8) | header[3];
  if (size > max_size)
    return io_status::too_large;
  body.resize(size);
  return read_exact(body.data(), size);
}

bool worker_process::reap(bool block) {
  if (reaped_ || pid_ <= 0)
    return true;
  int status = 0;
  pid_t rc;
  do {
    rc = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc == pid_ || (rc < 0 && errno == ECHILD)) {
    reaped_ = true;
    wait_status_ = rc == pid_ ? status : 0;
  }
  return reaped_;
}

bool worker_process::wait_for_exit(clock::time_point deadline) {
  // No waitpid with a timeout exists; an exiting worker takes milliseconds.
  while (!reap(false)) {
    if (clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

void worker_process::kill() {
  if (pid_ <= 0 || reaped_)
    return;
  ::kill(-pid_, SIGKILL); // the group: the worker and whatever it started
  ::kill(pid_, SIGKILL);
  reap(true);
  close_fd(stdin_fd_);
}

std::string worker_process::exit_description() {
  // It may have closed its stdout without having exited yet: give it the
  // same grace as a shutdown, then make sure.
  if (!wait_for_exit(clock::now() + exit_grace))
    kill();
  if (WIFEXITED(wait_status_))
    return "exited with status " + std::to_string(WEXITSTATUS(wait_status_));
  if (WIFSIGNALED(wait_status_)) {
    int sig = WTERMSIG(wait_status_);
    return "was killed by signal " + std::to_string(sig) + " ("
           + strsignal(sig) + ")";
  }
  return "ended";
}

std::string worker_process::stderr_tail() {
  std::unique_lock lock{tail_mtx_};
  if (reaped_)
    tail_cv_.wait_for(lock, std::chrono::milliseconds(200),
                      [this] { return stderr_done_; });
  std::string out;
  for (auto& line : tail_) {
    if (!out.empty())
      out += '\n';
    out += line;
  }
  return out;
}

void worker_process::read_stderr() {
  std::string line;
  auto emit = [&] {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    spdlog::info("function {} [pid {}]: {}", log_name_, pid_, line);
    std::lock_guard guard{tail_mtx_};
    tail_.push_back(std::move(line));
    if (tail_.size() > stderr_tail_lines)
      tail_.pop_front();
    line.clear();
  };
  char buf[4096];
  for (;;) {
    pollfd fds[2] = {{stderr_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (fds[1].revents != 0)
      break;
    auto n = ::read(stderr_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n')
        emit();
      else if (line.size() < stderr_line_limit)
        line += buf[i];
    }
  }
  if (!line.empty())
    emit();
  std::lock_guard guard{tail_mtx_};
  stderr_done_ = true;
  tail_cv_.notify_all();
}

} // namespace hubflow
