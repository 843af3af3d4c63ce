// A Redis connection for actors that must never block: hiredis' async API
// driven by one dedicated I/O thread with a small poll loop. Commands are
// handed over through a locked queue and a wake-up pipe; replies come back
// through callbacks that run on the I/O thread (they should only post a
// message to an actor). The connection authenticates, selects its database,
// reconnects with exponential backoff, and fails commands promptly with a
// clear error while Redis is down.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>

struct redisAsyncContext;

namespace hubflow {

/// A Redis reply, copied out of hiredis so it can travel in a CAF message.
struct redis_reply {
  enum class kind : std::uint8_t {
    nil,
    status,  // +OK
    error,   // -ERR ... from Redis (the command ran and failed)
    integer,
    string,
    array,
    transport_error, // no reply: not connected, connection lost, timed out
  };

  kind type = kind::nil;
  std::string str; // status, error, string, transport_error text
  std::int64_t integer = 0;
  std::vector<redis_reply> elements;

  bool failed() const {
    return type == kind::error || type == kind::transport_error;
  }
  /// Worth retrying: Redis never saw or never answered the command.
  bool transient() const {
    return type == kind::transport_error;
  }

  static redis_reply transport_failure(std::string why) {
    redis_reply r;
    r.type = kind::transport_error;
    r.str = std::move(why);
    return r;
  }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f,
                                                 redis_reply& x) {
    auto type = static_cast<std::uint8_t>(x.type);
    auto load = caf::meta::load_callback([&]() -> caf::error {
      x.type = static_cast<kind>(type);
      return caf::none;
    });
    return f(caf::meta::type_name("redis_reply"), type, x.str, x.integer,
             x.elements, load);
  }
};

class redis_client {
public:
  using clock = std::chrono::steady_clock;
  using milliseconds = std::chrono::milliseconds;

  /// Filled from the endpoint's option table (redis_settings.cpp), which
  /// holds the defaults; nothing here repeats them.
  struct options {
    std::string host;
    std::uint16_t port = 0;
    int db = 0;
    std::string username; // Redis 6 ACL user; empty: the default user
    std::string password; // empty: no AUTH
    milliseconds connect_timeout{};
    /// A command without a reply for this long means the server hangs: the
    /// connection is dropped (failing what is in flight) and rebuilt.
    milliseconds command_timeout{};
    milliseconds backoff_min{};
    milliseconds backoff_max{};
  };

  enum class link_state : std::uint8_t { connecting, up, down };

  using reply_handler = std::function<void(redis_reply)>;
  /// Called on the I/O thread on every state change, with the reason for
  /// `down` (empty otherwise).
  using state_handler = std::function<void(link_state, const std::string&)>;

  redis_client(options opts, state_handler on_state);
  ~redis_client();
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;

  /// Queues one command (thread-safe). `done` runs exactly once on the I/O
  /// thread: with Redis' reply, or with a transport_error reply.
  void send(std::vector<std::string> argv, reply_handler done);

  /// `host:port`, for messages and stats.
  std::string address() const;

  static const char* to_string(link_state s);

  struct command; // opaque, defined in the .cpp

private:
  // I/O thread only.
  void run();
  void start_connect();
  void on_connected();
  void on_handshake_reply(bool ok, const std::string& error);
  void dispatch(std::unique_ptr<command> cmd);
  void submit_to_hiredis(std::unique_ptr<command> cmd);
  void connection_lost(const std::string& why);
  void fail_waiting(const std::string& why);
  void set_state(link_state s, const std::string& why);
  void drain_wakeups();
  void check_deadlines(clock::time_point now);
  int poll_timeout_ms(clock::time_point now) const;

  static void hiredis_on_connect(const redisAsyncContext* ac, int status);
  static void hiredis_on_reply(redisAsyncContext* ac, void* reply, void* priv);
  static void ev_add_read(void* priv);
  static void ev_del_read(void* priv);
  static void ev_add_write(void* priv);
  static void ev_del_write(void* priv);
  static void ev_cleanup(void* priv);

  const options opts_;
  const state_handler on_state_;

  // Shared between callers and the I/O thread.
  std::mutex mtx_;
  std::deque<std::unique_ptr<command>> submitted_;
  bool stopping_ = false;
  int wake_fds_[2] = {-1, -1};

  // I/O thread only.
  redisAsyncContext* ctx_ = nullptr;
  link_state state_ = link_state::down;
  bool want_read_ = false;
  bool want_write_ = false;
  clock::time_point connect_deadline_;
  clock::time_point next_attempt_;
  milliseconds backoff_;
  std::size_t handshake_pending_ = 0;
  std::string closing_reason_; // why in-flight commands got no reply
  std::string last_error_;
  std::deque<std::unique_ptr<command>> waiting_; // until the handshake is done
  std::deque<command*> in_flight_;               // owned by hiredis callbacks

  std::thread thread_;
};

} // namespace hubflow
