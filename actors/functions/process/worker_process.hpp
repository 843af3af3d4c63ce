// One worker process of an out-of-process function runtime (python, node):
// spawned with its stdin and stdout connected to hubflow, which exchanges
// length-prefixed frames with it (schemas/worker-frames.md). Its stderr is
// read by a thread of its own and logged line by line under the function's
// name, so handler prints and interpreter warnings land in hubflow's log.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <condition_variable>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace hubflow {

class worker_process {
public:
  using clock = std::chrono::steady_clock;

  struct options {
    std::vector<std::string> argv; // argv[0] is the executable's path
    std::vector<std::pair<std::string, std::string>> env; // added/overridden
    std::string cwd;      // empty: hubflow's working directory
    std::string log_name; // prefix of the stderr lines in the log
  };

  enum class io_status {
    ok,
    timeout, // the deadline passed
    closed,  // the worker closed its end (exited or crashed)
    too_large,
  };

  /// Starts the worker, or returns nullptr and sets `error`.
  static std::unique_ptr<worker_process> spawn(const options& opts,
                                               std::string& error);

  /// Asks the worker to exit (closes its stdin), kills it if it does not
  /// within a moment, reaps it and stops the stderr thread.
  ~worker_process();
  worker_process(const worker_process&) = delete;
  worker_process& operator=(const worker_process&) = delete;

  int pid() const {
    return pid_;
  }

  /// Writes one frame: 4-byte big-endian length, then `body`.
  io_status write_frame(std::string_view body, clock::time_point deadline);

  /// Reads one frame's body; frames over `max_size` bytes are refused.
  io_status read_frame(std::string& body, clock::time_point deadline,
                       std::size_t max_size);

  /// Kills the worker (its whole process group) and reaps it. Idempotent.
  void kill();

  /// How the worker ended, after kill() or a `closed` status: "exited with
  /// status 1", "was killed by signal 9 (Killed)". Reaps it if needed.
  std::string exit_description();

  /// The last lines the worker wrote to stderr (waits briefly for the
  /// stderr reader to drain them when the worker has exited).
  std::string stderr_tail();

private:
  worker_process() = default;
  void read_stderr();
  bool reap(bool block);
  bool wait_for_exit(clock::time_point deadline);
  io_status wait_fd(int fd, short events, clock::time_point deadline);

  int pid_ = -1;
  int stdin_fd_ = -1;  // our end of the worker's stdin (a socket)
  int stdout_fd_ = -1; // read end of the worker's stdout pipe
  int stderr_fd_ = -1; // read end of the worker's stderr pipe
  int wake_fd_[2] = {-1, -1}; // stops the stderr thread
  bool reaped_ = false;
  int wait_status_ = 0;
  std::string log_name_;
  std::thread stderr_thread_;

  std::mutex tail_mtx_;
  std::condition_variable tail_cv_;
  std::deque<std::string> tail_;
  bool stderr_done_ = false;
};

} // namespace hubflow
