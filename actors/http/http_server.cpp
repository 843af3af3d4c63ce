#include "http/http_exchange.hpp"

#include <algorithm>
#include <memory>

#include <sys/socket.h>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "core/broker_exit.hpp"
#include "core/registered_name.hpp"
#include "core/tls_layer.hpp"
#include "core/type_ids.hpp"

// The server side of the HTTP API: connections, pipelining, flow control and
// deadlines; routes are handed complete requests (http_exchange.hpp).
namespace hubflow::http {

/// An HTTPS connection's TLS: OpenSSL on memory BIOs, as the hub's TLS
/// listeners use it (core/tls_layer.hpp). Its records are written like
/// plain answers and counted in the connection's `unsent`, so flow control
/// and deadlines see them; closing stays with the server, which sends
/// close_notify first (session.close()).
struct http_tls final : transport {
  http_tls(http_broker* self, caf::io::connection_handle hdl,
           std::uint64_t& unsent, ssl_ctx_st* ctx)
    : self(self), hdl(hdl), unsent(unsent), session(*this, ctx) {
  }

  void send(const char* data, std::size_t size) override {
    self->write(hdl, size, data);
    self->flush(hdl);
    unsent += size;
  }
  std::size_t backlog() const override {
    return static_cast<std::size_t>(unsent);
  }
  // The server closes, pauses and resumes the socket itself.
  void close() override {
  }
  void shutdown_write() override {
  }
  void peer_closed() override {
  }
  void pause_reading() override {
  }
  void resume_reading() override {
  }
  const std::string& peer() const override {
    static const std::string unknown;
    return unknown;
  }

  http_broker* self;
  caf::io::connection_handle hdl;
  std::uint64_t& unsent; // the connection's
  tls_layer session;
};

http_connection::http_connection(http_limits limits) : parser(limits) {
}
http_connection::http_connection(http_connection&&) noexcept = default;
http_connection::~http_connection() = default;

namespace {

using sweep_atom = caf::atom_constant<caf::atom("http_sweep")>;

void process_input(http_broker* self, caf::io::connection_handle hdl);

/// Checks connection deadlines while there are connections.
void schedule_sweep(http_broker* self) {
  auto& st = self->state;
  if (st.sweep_scheduled || st.connections.empty())
    return;
  st.sweep_scheduled = true;
  auto shortest = std::min(st.limits.request_timeout, st.limits.idle_timeout);
  auto every = std::clamp(shortest / 4, std::chrono::milliseconds(50),
                          std::chrono::milliseconds(1000));
  self->delayed_send(self, every, sweep_atom::value);
}

void touch_stats(http_broker* self) {
  auto& st = self->state;
  st.stats.set("connections", static_cast<std::int64_t>(st.connections.size()));
  if (!st.report_scheduled) {
    st.report_scheduled = true;
    self->delayed_send(self, stats_interval(self->home_system()),
                       tick_atom::value);
  }
}

void forget(http_broker* self, caf::io::connection_handle hdl) {
  self->state.connections.erase(hdl);
  touch_stats(self);
}

/// Closes once the client took its answers. CAF's own close() would also
/// wait for that, but for ever and outside max_connections, so the
/// connection stays here (counted, under the idle deadline) until then.
void close_connection(http_broker* self, caf::io::connection_handle hdl) {
  auto i = self->state.connections.find(hdl);
  if (i == self->state.connections.end())
    return;
  if (i->second.tls && !i->second.closing)
    i->second.tls->session.close(); // close_notify, written like an answer
  if (i->second.unsent > 0) {
    i->second.closing = true;
    self->halt(hdl);
    i->second.reading = false;
    return;
  }
  self->close(hdl);
  forget(self, hdl);
}

/// Closes at once, dropping what is unsent: for a client that stopped
/// reading. shutdown() makes CAF see the socket fail and release it, where
/// close() alone would keep the unsent bytes until the client reads.
void abort_connection(http_broker* self, caf::io::connection_handle hdl) {
  ::shutdown(static_cast<int>(hdl.id()), SHUT_RDWR);
  self->close(hdl);
  forget(self, hdl);
}

// -- flow control ----------------------------------------------------------------

/// The client has not taken enough of its answers to be given more.
bool output_blocked(http_broker* self, const http_connection& conn) {
  return conn.unsent > self->state.limits.max_unsent;
}

/// Reads from a connection only while what it sends can be used: not while
/// its answers pile up unsent (a client that does not read), nor beyond a
/// bounded read-ahead while one of its requests is being answered. TCP then
/// pushes back on the client instead of hubflow buffering for it.
void update_reading(http_broker* self, caf::io::connection_handle hdl) {
  auto i = self->state.connections.find(hdl);
  if (i == self->state.connections.end())
    return;
  auto& conn = i->second;
  bool want = !conn.closing && !output_blocked(self, conn)
              && !(conn.busy
                   && conn.parser.buffered()
                        >= self->state.limits.max_read_ahead);
  if (want == conn.reading)
    return;
  conn.reading = want;
  if (want) {
    self->trigger(hdl);
  } else {
    self->halt(hdl);
    self->state.stats.add("reads_paused");
  }
}

/// Writes and counts bytes CAF holds until the socket takes them.
void send_bytes(http_broker* self, caf::io::connection_handle hdl,
                http_connection& conn, std::string_view bytes) {
  if (conn.tls) {
    conn.tls->session.send(bytes.data(), bytes.size());
  } else {
    self->write(hdl, bytes.size(), bytes.data());
    self->flush(hdl);
    conn.unsent += bytes.size();
  }
  conn.last_activity = clock_type::now();
}

/// What arrived on `conn`, as the parser is to see it: decrypted for
/// HTTPS. nullopt when the TLS session ended (a failed handshake, a bad
/// record, the client's close_notify): the connection is closed then.
std::optional<std::string_view> take_input(http_broker* self,
                                           caf::io::connection_handle hdl,
                                           http_connection& conn,
                                           std::string_view bytes) {
  if (!conn.tls)
    return bytes;
  auto& session = conn.tls->session;
  bool was_established = session.established();
  if (session.read(bytes))
    return std::string_view{session.output()};
  auto& st = self->state;
  if (!session.failure().empty()) {
    st.stats.add(was_established ? "tls_errors" : "tls_handshake_failures");
    spdlog::info("HTTP API: closing an HTTPS connection: {}",
                 session.failure());
  }
  self->close(hdl); // once the alert the session queued is written
  forget(self, hdl);
  return std::nullopt;
}

} // namespace

// -- answers ---------------------------------------------------------------------

void respond(http_broker* self, const reply_to& to, int status,
             std::string_view content_type, std::string_view body,
             const header_list& headers) {
  auto& st = self->state;
  auto i = st.connections.find(to.hdl);
  if (i == st.connections.end() || i->second.closing)
    return; // the client left before its answer was ready
  auto bytes = make_http_response(status, content_type, body, to.keep_alive,
                                  headers);
  send_bytes(self, to.hdl, i->second, bytes);
  st.stats.add(status < 300 ? "responses_2xx"
                            : status < 500 ? "responses_4xx" : "responses_5xx");
  touch_stats(self);
  if (!to.keep_alive) {
    close_connection(self, to.hdl);
    return;
  }
  i->second.busy = false;
  // Answered asynchronously: go on with pipelined requests in the buffer.
  // (Answered synchronously, the loop in process_input goes on by itself.)
  if (!i->second.processing) {
    process_input(self, to.hdl);
    update_reading(self, to.hdl);
  }
}

void respond_error(http_broker* self, const reply_to& to, int status,
                   const std::string& code, const std::string& message,
                   const header_list& headers) {
  json doc{{"errorCode", code}, {"message", message}};
  respond(self, to, status, "application/json", dump_json(doc), headers);
}

/// A handler threw: count and log it, answer what is unanswered and go on.
void handler_failed(http_broker* self, failure_scope scope,
                    caf::io::connection_handle hdl, const char* what) noexcept {
  try {
    auto& st = self->state;
    st.stats.add("handler_errors");
    touch_stats(self);
    spdlog::error("HTTP API: a handler failed: {}", what);
    if (scope == failure_scope::none)
      return;
    auto i = st.connections.find(hdl);
    if (i == st.connections.end())
      return;
    if (i->second.busy)
      respond_error(self, reply_to{hdl, false}, 500, "ERR_INTERNAL",
                    std::string{"internal error: "} + what);
    else if (scope == failure_scope::connection)
      close_connection(self, hdl);
  } catch (...) {
    // Nothing left to do but keep the broker alive.
  }
}

namespace {

/// Answers the complete requests buffered for `hdl`, in order, one at a
/// time, while the client takes its answers.
void process_input(http_broker* self, caf::io::connection_handle hdl) {
  auto& st = self->state;
  auto i = st.connections.find(hdl);
  if (i == st.connections.end() || i->second.busy || i->second.processing
      || i->second.closing)
    return;
  i->second.processing = true;
  // A loop, not recursion: a client may pipeline many small requests.
  for (;;) {
    auto& conn = i->second;
    if (output_blocked(self, conn))
      break; // resumed when the socket took enough (data_transferred_msg)
    auto& parser = conn.parser;
    auto status = parser.parse();
    if (status == http_request_parser::status::incomplete) {
      if (parser.wants_continue()) {
        static constexpr std::string_view go_on
          = "HTTP/1.1 100 Continue\r\n\r\n";
        send_bytes(self, hdl, conn, go_on);
        parser.continue_sent();
      }
      break;
    }
    conn.busy = true;
    if (status == http_request_parser::status::error) {
      // After a framing error the rest of the stream cannot be trusted:
      // answer and close.
      reply_to to{hdl, false};
      auto code = parser.error_status() == 413   ? "ERR_BODY_TOO_LARGE"
                  : parser.error_status() == 431 ? "ERR_HEADERS_TOO_LARGE"
                                                 : "ERR_MALFORMED_REQUEST";
      respond_error(self, to, parser.error_status(), code,
                    parser.error_message());
      return; // the connection is gone
    }
    auto req = parser.take();
    conn.request_started.reset();
    reply_to to{hdl, req.keep_alive};
    answering(self, to, [&] { route(self, to, req); });
    i = st.connections.find(hdl);
    if (i == st.connections.end() || i->second.closing)
      return; // answered with Connection: close
    if (i->second.busy)
      break; // waiting for an actor's answer
  }
  auto& conn = i->second;
  conn.processing = false;
  // The request deadline runs from the first byte of a request.
  if (!conn.parser.mid_request())
    conn.request_started.reset();
  else if (!conn.request_started)
    conn.request_started = clock_type::now();
}

/// Above max_connections: 503, then close, so the client knows why (an
/// HTTPS client only sees the connection close: answering would take a
/// handshake first).
void refuse(http_broker* self, caf::io::connection_handle hdl) {
  auto& st = self->state;
  st.stats.add("connections_refused");
  if (!st.refusing) {
    st.refusing = true;
    spdlog::warn("HTTP API: {} connections open (http.max_connections); "
                 "refusing new ones with 503 until some close",
                 st.connections.size());
  }
  json doc{{"errorCode", "ERR_TOO_MANY_CONNECTIONS"},
           {"message", "the HTTP API has " + std::to_string(st.connections.size())
                         + " connections open, its limit"}};
  auto bytes = make_http_response(503, "application/json", dump_json(doc),
                                  false, {{"Retry-After", "1"}});
  if (!st.tls) {
    self->write(hdl, bytes.size(), bytes.data());
    self->flush(hdl);
  }
  self->close(hdl);
  touch_stats(self);
}

/// Closes connections past their deadline: a request that takes longer than
/// request_timeout to arrive (408), a connection quiet for idle_timeout.
void sweep(http_broker* self) {
  auto& st = self->state;
  auto now = clock_type::now();
  std::vector<caf::io::connection_handle> late, quiet;
  for (auto& [hdl, conn] : st.connections) {
    if (conn.busy)
      continue; // its actor request has a timeout of its own
    // While a client does not take its answers, hubflow stops reading its
    // requests, so only the idle deadline applies to it.
    bool blocked = output_blocked(self, conn) || conn.closing;
    if (!blocked && conn.request_started
        && now - *conn.request_started > st.limits.request_timeout)
      late.push_back(hdl);
    else if ((blocked || !conn.request_started)
             && now - conn.last_activity > st.limits.idle_timeout)
      quiet.push_back(hdl);
  }
  for (auto hdl : late) {
    st.stats.add("requests_timed_out");
    respond_error(self, reply_to{hdl, false}, 408, "ERR_REQUEST_TIMEOUT",
                  "the request did not arrive within "
                    + std::to_string(st.limits.request_timeout.count())
                    + " ms (http.request_timeout)");
  }
  for (auto hdl : quiet) {
    auto i = st.connections.find(hdl);
    if (i->second.unsent > 0) {
      // Its answers would never be taken: drop them.
      st.stats.add("connections_stalled_closed");
      abort_connection(self, hdl);
    } else {
      st.stats.add("connections_idle_closed");
      close_connection(self, hdl);
    }
  }
}

/// Rebuilds the HTTPS context from http.certificate's files (SIGHUP).
void reload_certificate(http_broker* self) {
  auto& st = self->state;
  if (!st.certificate)
    return;
  tls_problem problem;
  if (auto fresh = make_server_tls_context(*st.certificate, problem)) {
    st.tls = std::move(fresh);
    spdlog::info("HTTP API: uses the certificate files re-read now");
  } else {
    spdlog::error("HTTP API: keeps its certificate: {}: {}",
                  key_path_of(st.certificate->key_path, problem),
                  problem.message);
  }
}

caf::behavior http_api(http_broker* self, int listener,
                       std::shared_ptr<const http_context> ctx,
                       http_api_limits limits,
                       std::optional<tls_settings> certificate,
                       tls_context_ptr tls) {
  close_mailbox_on_exit(self);
  self->state.accepting = std::make_unique<acceptor>(
    "http", std::vector<int>{listener}, self->address());
  self->state.ctx = std::move(ctx);
  self->state.limits = limits;
  self->state.certificate = std::move(certificate);
  self->state.tls = std::move(tls);
  // SIGHUP finds the current API here, a replacement included.
  register_as(self->home_system(), http_registry_name, self);
  touch_stats(self);
  return {
    [=](reload_atom) {
      contain(self, failure_scope::none, {},
              [&] { reload_certificate(self); });
    },
    // A reload added, changed or removed functions and state stores.
    [=](reload_atom, const http_context_ptr& next) {
      self->state.ctx = next;
    },
    // The keeper replaced the hub or an endpoint (core/keeper.hpp).
    [=](rewire_atom, const caf::actor& old, const caf::actor& replacement) {
      auto next = std::make_shared<http_context>(*self->state.ctx);
      next->replace(old, replacement);
      self->state.ctx = std::move(next);
    },
    [=](accepted_atom, int fd) {
      auto hdl = self->add_scribe(fd);
      contain(self, failure_scope::connection, hdl, [&] {
        auto& st = self->state;
        if (st.connections.size() >= st.limits.max_connections)
          return refuse(self, hdl);
        st.refusing = false;
        self->configure_read(hdl,
                             caf::io::receive_policy::at_most(8192));
        // Reports what the socket took, so unsent output can be bounded.
        self->ack_writes(hdl, true);
        auto& conn = st.connections.emplace(hdl, http_connection{st.limits.parser})
                       .first->second;
        if (st.tls)
          conn.tls = std::make_unique<http_tls>(self, hdl, conn.unsent,
                                                st.tls.get());
        st.stats.add("connections_accepted");
        touch_stats(self);
        schedule_sweep(self);
      });
    },
    [=](const caf::io::new_data_msg& msg) {
      contain(self, failure_scope::connection, msg.handle, [&] {
        auto i = self->state.connections.find(msg.handle);
        if (i == self->state.connections.end() || i->second.closing)
          return;
        auto& conn = i->second;
        auto now = clock_type::now();
        conn.last_activity = now;
        if (!conn.request_started && !conn.parser.mid_request())
          conn.request_started = now; // the first byte of a request (or of
                                      // the TLS handshake before it)
        auto input = take_input(self, msg.handle, conn,
                                {msg.buf.data(), msg.buf.size()});
        if (!input)
          return;
        conn.parser.feed(*input);
        process_input(self, msg.handle);
        update_reading(self, msg.handle);
      });
    },
    [=](const caf::io::data_transferred_msg& msg) {
      contain(self, failure_scope::connection, msg.handle, [&] {
        auto i = self->state.connections.find(msg.handle);
        if (i == self->state.connections.end())
          return;
        auto& conn = i->second;
        bool was_blocked = output_blocked(self, conn);
        conn.unsent = conn.unsent > msg.written ? conn.unsent - msg.written : 0;
        auto now = clock_type::now();
        conn.last_activity = now;
        if (conn.closing) {
          if (conn.unsent == 0)
            close_connection(self, msg.handle);
          return;
        }
        if (was_blocked && !output_blocked(self, conn)) {
          // The client reads again: its next request's deadline starts now.
          if (conn.request_started)
            conn.request_started = now;
          process_input(self, msg.handle);
        }
        update_reading(self, msg.handle);
      });
    },
    [=](const caf::io::connection_closed_msg& msg) {
      contain(self, failure_scope::none, msg.handle, [&] {
        self->state.connections.erase(msg.handle);
        touch_stats(self);
      });
    },
    [=](tick_atom) {
      self->state.report_scheduled = false;
      contain(self, failure_scope::none, {},
              [&] { self->state.stats.report(self); });
    },
    [=](sweep_atom) {
      self->state.sweep_scheduled = false;
      contain(self, failure_scope::none, {}, [&] {
        sweep(self);
        touch_stats(self);
      });
      contain(self, failure_scope::none, {}, [&] { schedule_sweep(self); });
    },
  };
}

} // namespace

} // namespace hubflow::http

namespace hubflow {

void http_context::replace(const caf::actor& old,
                           const caf::actor& replacement) {
  rewire(hub, old, replacement);
  for (auto& [name, function] : functions)
    rewire(function, old, replacement);
  for (auto& [name, store] : state_stores)
    rewire(store.actor, old, replacement);
}

caf::actor spawn_http_api(caf::actor_system& sys, const http_config& cfg,
                          const http_context& ctx, std::string& error,
                          std::uint16_t* bound_port) {
  std::string bad;
  auto at = parse_host_port(cfg.listen, http_listen_rules, bad);
  if (!at) {
    error = "http.listen: '" + cfg.listen + "' is not host:port: " + bad;
    return {};
  }
  // Bound here, on the caller's thread, so a busy port is reported at once.
  std::uint16_t bound = 0;
  auto listener = open_listener(at->host, at->port, bound, error);
  if (listener < 0) {
    error = "http.listen: " + error;
    return {};
  }
  tls_context_ptr tls;
  if (cfg.certificate) {
    tls_problem problem;
    tls = make_server_tls_context(*cfg.certificate, problem);
    if (!tls) {
      ::close(listener);
      error = key_path_of(cfg.certificate->key_path, problem) + ": "
              + problem.message;
      return {};
    }
  }
  if (bound_port)
    *bound_port = bound;
  http::http_api_limits limits;
  limits.parser.max_body_bytes = cfg.max_body;
  limits.request_timeout = cfg.request_timeout;
  limits.idle_timeout = cfg.idle_timeout;
  limits.max_connections = cfg.max_connections;
  return sys.middleman().spawn_broker(http::http_api, listener,
                         std::make_shared<const http_context>(ctx), limits,
                         cfg.certificate, std::move(tls));
}

} // namespace hubflow
