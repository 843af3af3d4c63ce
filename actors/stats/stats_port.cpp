#include "stats/stats_port.hpp"

#include <map>
#include <string_view>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include "core/acceptor.hpp"
#include "core/broker_exit.hpp"
#include "core/type_ids.hpp"
#include "stats/stats_render.hpp"

namespace hubflow {

namespace {

using sweep_atom = caf::atom_constant<caf::atom("st_sweep")>;
using steady = std::chrono::steady_clock;

constexpr std::string_view request_prefix = "HUBFLOW-STATS ";
constexpr std::string_view protocol_version = "1";

struct stats_port_connection {
  std::string line;
  steady::time_point deadline;
  /// The line is read: further bytes are ignored while the answer is built.
  bool answered = false;
};

struct stats_port_state {
  static inline const char* name = "hubflow.stats_port";
  std::shared_ptr<stats_port_context> ctx;
  std::map<caf::io::connection_handle, stats_port_connection> connections;
  bool sweep_scheduled = false;
  bool report_scheduled = false;
  /// Accepts on the listening socket (pauses at the descriptor limit
  /// instead of spinning, as CAF's doorman does).
  std::unique_ptr<acceptor> accepting;
};

using stats_port_broker = caf::io::stateful_broker<stats_port_state>;

void touch_stats(stats_port_broker* self) {
  auto& st = self->state;
  st.ctx->counters.set("connections",
                       static_cast<std::int64_t>(st.connections.size()));
  if (!st.report_scheduled) {
    st.report_scheduled = true;
    self->delayed_send(self, stats_interval(self->home_system()),
                       tick_atom::value);
  }
}

/// Writes the last words to a connection, closes it and counts `counter`.
void finish(stats_port_broker* self, caf::io::connection_handle hdl,
            std::string_view text, std::string_view counter) {
  self->write(hdl, text.size(), text.data());
  self->flush(hdl);
  self->close(hdl); // what is written is still sent
  self->state.connections.erase(hdl);
  self->state.ctx->counters.add(counter);
  touch_stats(self);
}

void schedule_sweep(stats_port_broker* self) {
  auto& st = self->state;
  if (st.sweep_scheduled || st.connections.empty())
    return;
  st.sweep_scheduled = true;
  self->delayed_send(self, std::chrono::milliseconds(250), sweep_atom::value);
}

bool token_matches(const std::string& expected, std::string_view given) {
  // The length of a token is no secret; its bytes are compared in constant
  // time so timing tells nothing about how much of a guess was right.
  return given.size() == expected.size()
         && CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0;
}

void refuse(stats_port_broker* self, caf::io::connection_handle hdl) {
  auto& ctx = *self->state.ctx;
  auto peer = self->remote_addr(hdl);
  if (ctx.logged_peers.size() < stats_port_context::max_logged_peers
      && ctx.logged_peers.insert(peer).second)
    spdlog::warn("stats port: refused a peer at {} with a wrong token "
                 "(further refusals from {} are only counted: stats port "
                 "'denied')",
                 peer, peer);
  finish(self, hdl, "ERR unauthorized\n", "denied");
}

void handle_line(stats_port_broker* self, caf::io::connection_handle hdl,
                 std::string_view line) {
  if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  if (line.substr(0, request_prefix.size()) != request_prefix) {
    finish(self, hdl, "ERR bad request\n", "errors");
    return;
  }
  line.remove_prefix(request_prefix.size());
  auto space = line.find(' ');
  if (space == std::string_view::npos) {
    finish(self, hdl, "ERR bad request\n", "errors");
    return;
  }
  if (line.substr(0, space) != protocol_version) {
    finish(self, hdl, "ERR unsupported version\n", "errors");
    return;
  }
  if (!token_matches(self->state.ctx->token, line.substr(space + 1))) {
    refuse(self, hdl);
    return;
  }
  // Looked up per request: the keeper may have restarted the stats actor.
  auto stats = self->home_system().registry().get<caf::actor>(
    stats_registry_name);
  if (!stats) {
    finish(self, hdl, "ERR unavailable\n", "errors");
    return;
  }
  self->request(stats, self->state.ctx->limits.stats_timeout, get_atom::value)
    .then(
      [=](const stats_snapshot& snapshot) {
        if (self->state.connections.count(hdl) == 0)
          return; // the client left
        auto text = stats_to_json(snapshot);
        self->write(hdl, text.size(), text.data());
        finish(self, hdl, "\n", "requests");
      },
      [=](caf::error& err) {
        if (self->state.connections.count(hdl) == 0)
          return;
        spdlog::warn("stats port: the stats actor did not answer: {}",
                     self->system().render(err));
        finish(self, hdl, "ERR unavailable\n", "errors");
      });
}

caf::behavior stats_port(stats_port_broker* self, int listener,
                         std::shared_ptr<stats_port_context> ctx) {
  close_mailbox_on_exit(self);
  self->state.accepting = std::make_unique<acceptor>(
    "stats port", std::vector<int>{listener}, self->address());
  self->state.ctx = std::move(ctx);
  touch_stats(self);
  return {
    [=](accepted_atom, int fd) {
      auto hdl = self->add_scribe(fd);
      auto& st = self->state;
      if (st.connections.size() >= st.ctx->limits.max_connections) {
        st.connections.emplace(hdl, stats_port_connection{});
        finish(self, hdl, "ERR busy\n", "busy");
        return;
      }
      self->configure_read(hdl, caf::io::receive_policy::at_most(
                                         st.ctx->limits.max_line + 1));
      stats_port_connection conn;
      conn.deadline = steady::now() + st.ctx->limits.deadline;
      st.connections.emplace(hdl, std::move(conn));
      touch_stats(self);
      schedule_sweep(self);
    },
    [=](const caf::io::new_data_msg& msg) {
      auto i = self->state.connections.find(msg.handle);
      if (i == self->state.connections.end() || i->second.answered)
        return;
      auto& conn = i->second;
      std::string_view data{msg.buf.data(), msg.buf.size()};
      auto newline = data.find('\n');
      conn.line.append(data.substr(0, newline));
      if (conn.line.size() > self->state.ctx->limits.max_line) {
        finish(self, msg.handle, "ERR line too long\n", "errors");
        return;
      }
      if (newline == std::string_view::npos)
        return;
      conn.answered = true;
      auto line = std::move(conn.line);
      handle_line(self, msg.handle, line);
    },
    [=](const caf::io::connection_closed_msg& msg) {
      self->state.connections.erase(msg.handle);
      touch_stats(self);
    },
    [=](sweep_atom) {
      auto& st = self->state;
      st.sweep_scheduled = false;
      auto now = steady::now();
      std::vector<caf::io::connection_handle> late;
      for (auto& [hdl, conn] : st.connections)
        if (!conn.answered && conn.deadline <= now)
          late.push_back(hdl);
      for (auto hdl : late) {
        self->close(hdl);
        st.connections.erase(hdl);
        st.ctx->counters.add("timeouts");
      }
      touch_stats(self);
      schedule_sweep(self);
    },
    [=](tick_atom) {
      self->state.report_scheduled = false;
      self->state.ctx->counters.report(self);
    },
  };
}

} // namespace

caf::actor spawn_stats_port(caf::actor_system& sys, const std::string& host,
                            std::uint16_t port,
                            std::shared_ptr<stats_port_context> ctx,
                            std::string& error, std::uint16_t* bound_port) {
  // Bound on the caller's thread, so a busy port is reported at once.
  std::uint16_t bound = 0;
  auto listener = open_listener(host, port, bound, error);
  if (listener < 0) {
    error = "cannot serve stats: " + error;
    return {};
  }
  if (bound_port)
    *bound_port = bound;
  return sys.middleman().spawn_broker(stats_port, listener, std::move(ctx));
}

} // namespace hubflow
