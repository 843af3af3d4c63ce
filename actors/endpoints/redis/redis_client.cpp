#include "endpoints/redis/redis_client.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

namespace hubflow {

struct redis_client::command {
  std::vector<std::string> argv;
  reply_handler done;
  clock::time_point deadline;
  bool handshake = false; // AUTH / SELECT sent by the client itself
};

namespace {

redis_reply convert(const redisReply* r) {
  redis_reply out;
  switch (r->type) {
    case REDIS_REPLY_STATUS:
      out.type = redis_reply::kind::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = redis_reply::kind::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = redis_reply::kind::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = redis_reply::kind::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = redis_reply::kind::array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i)
        out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.type = redis_reply::kind::nil;
  }
  return out;
}

long long ms_between(redis_client::clock::time_point from,
                     redis_client::clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from)
    .count();
}

} // namespace

redis_client::redis_client(options opts, state_handler on_state)
  : opts_(std::move(opts)),
    on_state_(std::move(on_state)),
    backoff_(opts_.backoff_min) {
  if (::pipe2(wake_fds_, O_NONBLOCK | O_CLOEXEC) != 0)
    throw std::runtime_error(std::string{"redis client: pipe2 failed: "}
                             + std::strerror(errno));
  thread_ = std::thread([this] { run(); });
}

redis_client::~redis_client() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  char byte = 1;
  [[maybe_unused]] auto n = ::write(wake_fds_[1], &byte, 1);
  thread_.join();
  ::close(wake_fds_[0]);
  ::close(wake_fds_[1]);
}

std::string redis_client::address() const {
  return opts_.host + ":" + std::to_string(opts_.port);
}

const char* redis_client::to_string(link_state s) {
  switch (s) {
    case link_state::connecting:
      return "connecting";
    case link_state::up:
      return "up";
    default:
      return "down";
  }
}

void redis_client::send(std::vector<std::string> argv, reply_handler done) {
  auto cmd = std::make_unique<command>();
  cmd->argv = std::move(argv);
  cmd->done = std::move(done);
  bool was_empty;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_) {
      cmd->done(redis_reply::transport_failure("redis client " + address()
                                               + " is shutting down"));
      return;
    }
    was_empty = submitted_.empty();
    submitted_.push_back(std::move(cmd));
  }
  // One byte per batch is enough: the loop drains the whole queue.
  if (was_empty) {
    char byte = 1;
    [[maybe_unused]] auto n = ::write(wake_fds_[1], &byte, 1);
  }
}

// -- I/O thread -------------------------------------------------------------

void redis_client::run() {
  start_connect();
  for (;;) {
    auto now = clock::now();
    if (!ctx_ && state_ == link_state::down && now >= next_attempt_)
      start_connect();
    pollfd fds[2];
    nfds_t count = 1;
    fds[0] = {wake_fds_[0], POLLIN, 0};
    if (ctx_ && ctx_->c.fd >= 0 && (want_read_ || want_write_)) {
      short events = (want_read_ ? POLLIN : 0) | (want_write_ ? POLLOUT : 0);
      fds[1] = {ctx_->c.fd, events, 0};
      count = 2;
    }
    int rc = ::poll(fds, count, poll_timeout_ms(clock::now()));
    if (rc < 0 && errno != EINTR)
      break; // cannot happen with valid fds; leave rather than spin
    if (fds[0].revents & POLLIN) {
      drain_wakeups();
      std::deque<std::unique_ptr<command>> batch;
      bool stop;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        batch.swap(submitted_);
        stop = stopping_;
      }
      if (stop) {
        for (auto& cmd : batch)
          cmd->done(redis_reply::transport_failure("redis client " + address()
                                                   + " is shutting down"));
        break;
      }
      for (auto& cmd : batch)
        dispatch(std::move(cmd));
    }
    if (count == 2 && ctx_) {
      auto ev = fds[1].revents;
      if (ev & (POLLIN | POLLHUP | POLLERR))
        redisAsyncHandleRead(ctx_);
      // The context may have been freed by the read (connection closed).
      if (ctx_ && (ev & (POLLOUT | POLLERR)))
        redisAsyncHandleWrite(ctx_);
    }
    check_deadlines(clock::now());
  }
  closing_reason_ = "redis client " + address() + " is shutting down";
  if (ctx_) {
    auto* c = ctx_;
    ctx_ = nullptr;
    redisAsyncFree(c);
  }
  fail_waiting(closing_reason_);
}

int redis_client::poll_timeout_ms(clock::time_point now) const {
  auto next = now + std::chrono::seconds(1);
  if (!ctx_ && state_ == link_state::down)
    next = std::min(next, next_attempt_);
  if (ctx_ && state_ == link_state::connecting)
    next = std::min(next, connect_deadline_);
  if (!in_flight_.empty())
    next = std::min(next, in_flight_.front()->deadline);
  return static_cast<int>(std::max<long long>(0, ms_between(now, next) + 1));
}

void redis_client::drain_wakeups() {
  char buf[64];
  while (::read(wake_fds_[0], buf, sizeof(buf)) > 0) {
    // Only the wake-up matters, not the bytes.
  }
}

void redis_client::start_connect() {
  closing_reason_.clear();
  handshake_pending_ = 0;
  auto* c = redisAsyncConnect(opts_.host.c_str(), opts_.port);
  if (c == nullptr || c->err) {
    std::string why = c ? c->errstr : "out of memory";
    if (c)
      redisAsyncFree(c); // no hooks installed yet: nothing calls back
    state_ = link_state::connecting; // so that the transition is reported
    set_state(link_state::down, "cannot connect to redis " + address() + ": "
                                  + why);
    return;
  }
  ctx_ = c;
  c->data = this;
  c->ev.data = this;
  c->ev.addRead = ev_add_read;
  c->ev.delRead = ev_del_read;
  c->ev.addWrite = ev_add_write;
  c->ev.delWrite = ev_del_write;
  c->ev.cleanup = ev_cleanup;
  // Hooks first: setting the connect callback asks for the first write event.
  redisAsyncSetConnectCallback(c, hiredis_on_connect);
  connect_deadline_ = clock::now() + opts_.connect_timeout;
  set_state(link_state::connecting, "");
  auto handshake = [this](std::vector<std::string> argv) {
    auto cmd = std::make_unique<command>();
    cmd->argv = std::move(argv);
    cmd->handshake = true;
    ++handshake_pending_;
    submit_to_hiredis(std::move(cmd));
  };
  if (!opts_.password.empty() && !opts_.username.empty())
    handshake({"AUTH", opts_.username, opts_.password});
  else if (!opts_.password.empty())
    handshake({"AUTH", opts_.password});
  if (opts_.db != 0)
    handshake({"SELECT", std::to_string(opts_.db)});
}

void redis_client::on_connected() {
  backoff_ = opts_.backoff_min;
  set_state(link_state::up, "");
  auto queued = std::move(waiting_);
  waiting_.clear();
  for (auto& cmd : queued)
    submit_to_hiredis(std::move(cmd));
}

void redis_client::on_handshake_reply(bool ok, const std::string& error) {
  if (!ok) {
    // Close; the cleanup hook then marks the link down with this reason.
    // The first failure is the cause (a failed AUTH makes SELECT fail too).
    if (closing_reason_.empty()) {
      closing_reason_ = error;
      if (ctx_)
        redisAsyncDisconnect(ctx_);
    }
    return;
  }
  if (--handshake_pending_ == 0 && ctx_ && (ctx_->c.flags & REDIS_CONNECTED))
    on_connected();
}

void redis_client::dispatch(std::unique_ptr<command> cmd) {
  switch (state_) {
    case link_state::up:
      submit_to_hiredis(std::move(cmd));
      break;
    case link_state::connecting:
      waiting_.push_back(std::move(cmd));
      break;
    case link_state::down: {
      auto wait = std::max<long long>(0, ms_between(clock::now(),
                                                    next_attempt_));
      cmd->done(redis_reply::transport_failure(
        last_error_ + " (next connection attempt in " + std::to_string(wait)
        + " ms)"));
      break;
    }
  }
}

void redis_client::submit_to_hiredis(std::unique_ptr<command> cmd) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(cmd->argv.size());
  lens.reserve(cmd->argv.size());
  for (auto& arg : cmd->argv) {
    argv.push_back(arg.data());
    lens.push_back(arg.size());
  }
  cmd->deadline = clock::now() + opts_.command_timeout;
  auto* raw = cmd.get();
  if (redisAsyncCommandArgv(ctx_, hiredis_on_reply, raw,
                            static_cast<int>(argv.size()), argv.data(),
                            lens.data())
      != REDIS_OK) {
    auto why = "redis " + address() + ": cannot send the command: "
               + (ctx_->errstr[0] ? std::string{ctx_->errstr}
                                  : std::string{"connection is closing"});
    if (cmd->handshake)
      on_handshake_reply(false, why);
    else
      cmd->done(redis_reply::transport_failure(why));
    return;
  }
  in_flight_.push_back(cmd.release());
}

void redis_client::connection_lost(const std::string& why) {
  if (state_ == link_state::down)
    return;
  next_attempt_ = clock::now() + backoff_;
  backoff_ = std::min(backoff_ * 2, opts_.backoff_max);
  set_state(link_state::down, why);
  fail_waiting(why);
}

void redis_client::fail_waiting(const std::string& why) {
  auto queued = std::move(waiting_);
  waiting_.clear();
  for (auto& cmd : queued)
    cmd->done(redis_reply::transport_failure(why));
}

void redis_client::set_state(link_state s, const std::string& why) {
  if (s == link_state::down)
    last_error_ = why;
  if (s == state_)
    return;
  state_ = s;
  if (s == link_state::down) {
    // Schedule the next attempt when the failure did not come through
    // connection_lost (e.g. an immediate connect error).
    if (next_attempt_ <= clock::now()) {
      next_attempt_ = clock::now() + backoff_;
      backoff_ = std::min(backoff_ * 2, opts_.backoff_max);
    }
  }
  if (on_state_)
    on_state_(s, why);
}

void redis_client::check_deadlines(clock::time_point now) {
  if (!ctx_)
    return;
  std::string why;
  if (state_ == link_state::connecting && now >= connect_deadline_)
    why = "redis " + address() + ": connecting timed out after "
          + std::to_string(opts_.connect_timeout.count()) + " ms";
  else if (!in_flight_.empty() && now >= in_flight_.front()->deadline)
    why = "redis " + address() + ": no reply within "
          + std::to_string(opts_.command_timeout.count())
          + " ms; dropped the connection";
  if (why.empty())
    return;
  // Outside any hiredis callback, so freeing is allowed: in-flight commands
  // get `why` as their error, and the cleanup hook marks the link down.
  closing_reason_ = why;
  redisAsyncFree(ctx_);
}

// -- hiredis callbacks (I/O thread, inside hiredis calls) --------------------

void redis_client::hiredis_on_connect(const redisAsyncContext* ac,
                                      int status) {
  auto* self = static_cast<redis_client*>(ac->data);
  if (status != REDIS_OK) {
    // hiredis frees the context after this returns; the cleanup hook
    // reports the failure.
    self->closing_reason_ = "cannot connect to redis " + self->address() + ": "
                            + ac->errstr;
    return;
  }
  if (self->handshake_pending_ == 0)
    self->on_connected();
}

void redis_client::hiredis_on_reply(redisAsyncContext* ac, void* reply,
                                    void* priv) {
  auto* self = static_cast<redis_client*>(ac->data);
  std::unique_ptr<command> cmd{static_cast<command*>(priv)};
  auto& q = self->in_flight_;
  if (auto i = std::find(q.begin(), q.end(), cmd.get()); i != q.end())
    q.erase(i);
  if (reply == nullptr) {
    // The connection went away before the reply arrived. The command may or
    // may not have run: callers decide whether retrying is safe.
    std::string why = self->closing_reason_;
    if (why.empty())
      why = "redis " + self->address() + ": connection lost before the reply"
            + (ac->err ? std::string{": "} + ac->errstr : std::string{});
    if (!cmd->handshake)
      cmd->done(redis_reply::transport_failure(std::move(why)));
    return;
  }
  auto converted = convert(static_cast<redisReply*>(reply));
  if (cmd->handshake) {
    if (converted.failed())
      self->on_handshake_reply(false, "redis " + self->address() + ": "
                                        + cmd->argv[0] + " failed: "
                                        + converted.str);
    else
      self->on_handshake_reply(true, "");
    return;
  }
  cmd->done(std::move(converted));
}

void redis_client::ev_add_read(void* priv) {
  static_cast<redis_client*>(priv)->want_read_ = true;
}

void redis_client::ev_del_read(void* priv) {
  static_cast<redis_client*>(priv)->want_read_ = false;
}

void redis_client::ev_add_write(void* priv) {
  static_cast<redis_client*>(priv)->want_write_ = true;
}

void redis_client::ev_del_write(void* priv) {
  static_cast<redis_client*>(priv)->want_write_ = false;
}

void redis_client::ev_cleanup(void* priv) {
  // Every way a context ends (error, server closed it, our own free) passes
  // here, after the pending callbacks have run.
  auto* self = static_cast<redis_client*>(priv);
  std::string why = self->closing_reason_;
  if (why.empty() && self->ctx_ && self->ctx_->err)
    why = "redis " + self->address() + ": connection lost: "
          + self->ctx_->errstr;
  if (why.empty())
    why = "redis " + self->address() + ": connection closed";
  self->ctx_ = nullptr;
  self->want_read_ = false;
  self->want_write_ = false;
  self->in_flight_.clear();
  self->connection_lost(why);
}

} // namespace hubflow
