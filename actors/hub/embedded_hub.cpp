#include "hub/embedded_hub.hpp"

#include <deque>
#include <memory>
#include <optional>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "core/acceptor.hpp"
#include "core/broker_exit.hpp"
#include "core/probe.hpp"
#include "core/registered_name.hpp"
#include "core/reply.hpp"
#include "core/sink_error.hpp"
#include "core/tls_context.hpp"
#include "core/type_ids.hpp"
#include "hub/connection.hpp"
#include "hub/hub_core.hpp"

namespace hubflow {

namespace {

// The hub's timer; its probe reports on stats.interval (at most this often).
constexpr auto tick_interval = std::chrono::milliseconds(500);
constexpr int housekeeping_every = 2; // ticks per housekeeping pass

component_stats snapshot(const hub::hub_core& core) {
  auto& c = core.counters;
  component_stats s;
  s.kind = "hub";
  s.name = "embedded";
  s.counters = {
    {"connections", c.connections},
    {"connections_total", c.connections_total},
    {"sessions", c.sessions},
    {"subscriptions", static_cast<std::int64_t>(core.subscription_count())},
    {"retained", static_cast<std::int64_t>(core.retained_count())},
    {"messages_in", c.messages_in},
    {"messages_out", c.messages_out},
    {"bytes_in", c.bytes_in},
    {"bytes_out", c.bytes_out},
    {"dropped_qos0_slow", c.dropped_qos0_slow},
    {"dropped_queue_full", c.dropped_queue_full},
    {"held_for_room", c.held_for_room},
    {"refused_unstored", c.refused_unstored},
    {"dropped_expired", c.dropped_expired},
    {"dropped_too_large", c.dropped_too_large},
    {"denied_connect", c.denied_connect},
    {"denied_publish", c.denied_publish},
    {"denied_subscribe", c.denied_subscribe},
    {"denied_receive", c.denied_receive},
    {"denied_session", c.denied_session},
    {"refused_limits", c.refused_limits},
    {"refused_connections", c.refused_connections},
    {"accept_errors", c.accept_errors},
    {"protocol_errors", c.protocol_errors},
    {"rule_deliveries", c.rule_deliveries},
    {"rule_errors", c.rule_errors},
    {"remapped", c.remapped},
  };
  std::string ports;
  for (auto p : core.ports)
    ports += (ports.empty() ? "" : ",") + std::to_string(p);
  s.labels = {{"listen_ports", ports}};
  return s;
}

/// A publish by another actor (a rule, the HTTP API): answered once every
/// rule it reached has answered and every session queue it went beyond
/// its bound has room again, or with the first rule's transient error (a
/// rule that refused it for good has reported it: that counts as handled,
/// as for an MQTT 3.1.1 client).
struct publish_waiter {
  std::size_t left;
  reply answer;
};

/// One rule's delivery of a waiting publish, or one full session's room
/// (no rule), by its ticket.
struct rule_delivery_wait {
  caf::actor_addr rule; // answers for it die with the rule
  std::shared_ptr<publish_waiter> waiter;
};

/// A waiting publish whose records the store has not committed yet
/// (hub_core::store_pending), in the order they were written.
struct store_wait {
  std::uint64_t from;
  std::uint64_t through;
  std::shared_ptr<publish_waiter> waiter;
};
using store_waits = std::deque<store_wait>;

caf::error unstored_error() {
  return make_sink_error(sink_errc::retry,
                         "the hub's store could not take the message (disk "
                         "full, read-only or persistence.max_size)");
}

/// The store reported: waiting publishes whose records are safe count one
/// wait less; those it failed to take get an error (the rule retries).
void store_reported(hub::hub_core& core, store_waits& waits) {
  while (!waits.empty()) {
    auto& w = waits.front();
    bool refused = false;
    if (core.store_pending(w.from, w.through, refused))
      break; // commits come in order: the later ones wait too
    if (refused)
      w.waiter->answer.deliver(unstored_error());
    else if (--w.waiter->left == 0)
      w.waiter->answer.deliver(ok_atom::value);
    waits.pop_front();
  }
}

void publish_for(caf::io::broker* self, hub::hub_core& core,
                 awaiting<rule_delivery_wait>& waiting, store_waits& stored,
                 message& msg, reply answer) {
  if (!valid_topic_name(msg.topic, core.topic_bounds())) {
    answer.deliver(make_sink_error(sink_errc::topic_name_invalid,
                                   "invalid topic name '" + msg.topic + "'"));
    return;
  }
  std::vector<hub::rule_delivery> rules;
  auto stored_from = core.store_written();
  core.route(msg, 0, rules);
  auto stored_through = core.store_written();
  core.flush_dirty();
  auto full = core.over_bound();
  bool stores = stored_through > stored_from;
  if (stores && core.store_refusing()) {
    ++core.counters.refused_unstored;
    answer.deliver(unstored_error());
    return;
  }
  if (rules.empty() && full.empty() && !stores) {
    answer.deliver(ok_atom::value);
    return;
  }
  auto w = std::make_shared<publish_waiter>(publish_waiter{
    rules.size() + full.size() + (stores ? 1 : 0), std::move(answer)});
  if (stores)
    stored.push_back(store_wait{stored_from, stored_through, w});
  for (auto s : full)
    core.wait_for_room(*s, self->address(),
                       waiting.add(rule_delivery_wait{{}, w}));
  for (auto& r : rules) {
    ++core.counters.rule_deliveries;
    auto ticket = waiting.add(rule_delivery_wait{r.subscriber.address(), w});
    self->send(r.subscriber, deliver_atom::value, std::move(r.msg), ticket);
  }
}

/// A rule has handled its delivery of a waiting publish.
void rule_handled(awaiting<rule_delivery_wait>& waiting,
                  std::uint64_t ticket) {
  if (auto d = waiting.take(ticket); d && --d->waiter->left == 0)
    d->waiter->answer.deliver(ok_atom::value);
}

/// What each of cfg.listen speaks, with the TLS context of ssl:// and
/// wss:// ones (the config loader checked the same, so this fails only
/// when a file changed since). Empty with `error` set on failure.
std::vector<hub::listener> make_listeners(const hub_config& cfg,
                                          std::string& error) {
  std::vector<hub::listener> out;
  for (auto& url : cfg.listen) {
    hub::listener l;
    l.url = url;
    auto address = parse_listener(url, error);
    if (!address)
      return {};
    l.address = std::move(*address);
    if (l.address.secure()) {
      auto tls = cfg.certificate_for(url);
      if (!tls) {
        error = "'" + url + "' is a TLS listener: give hub.certificate";
        return {};
      }
      tls_problem problem;
      l.tls = make_server_tls_context(*tls, problem);
      if (!l.tls) {
        error = key_path_of(tls->key_path, problem) + ": " + problem.message;
        return {};
      }
      l.identity_as_username = tls->use_identity_as_username;
    }
    out.push_back(std::move(l));
  }
  return out;
}

/// The listener that accepted `fd`: the one bound to its local port (two
/// listening sockets never share a port, and the acceptor, shared with the
/// HTTP API and the stats port, passes on only the socket).
hub::listener* listener_of(hub::hub_core& core, int fd) {
  sockaddr_storage sa{};
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  auto port = sa.ss_family == AF_INET6
                ? ntohs(reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port)
                : ntohs(reinterpret_cast<sockaddr_in*>(&sa)->sin_port);
  for (auto& l : core.listeners)
    if (l.port == port)
      return &l;
  return &core.listeners.front();
}

/// Rebuilds the TLS contexts of the listeners from their certificate files
/// (SIGHUP). A connection's SSL holds its own reference to the context it
/// started with, so swapping the listener's drops nobody.
void reload_certificates(hub::hub_core& core) {
  for (auto& l : core.listeners) {
    auto tls = l.tls ? core.config().certificate_for(l.url) : nullptr;
    if (!tls)
      continue;
    tls_problem problem;
    if (auto fresh = make_server_tls_context(*tls, problem)) {
      l.tls = std::move(fresh);
      spdlog::info("hub: {} uses the certificate files re-read now", l.url);
    } else {
      spdlog::error("hub: {} keeps its certificate: {}: {}", l.url,
                    key_path_of(tls->key_path, problem), problem.message);
    }
  }
}

/// Copies a listener's counters into its probe and reports on interval.
void report_listener(const hub::listener& l, probe& stats,
                     caf::local_actor* self) {
  auto now = l.snapshot();
  for (auto& [name, value] : now.counters)
    stats.set(name, value);
  for (auto& [key, value] : now.labels)
    stats.label(key, value);
  stats.report(self);
}

/// The hub's control broker: owns the listeners, forks session brokers,
/// serves rules, runs housekeeping and reports stats.
caf::behavior hub_broker(caf::io::broker* self,
                         std::shared_ptr<hub::hub_core> core,
                         std::vector<int> listeners, bool accept_now) {
  close_mailbox_on_exit(self);
  auto accepting = std::make_shared<std::unique_ptr<acceptor>>();
  auto waiting_listeners = std::make_shared<std::vector<int>>();
  if (accept_now)
    *accepting = std::make_unique<acceptor>("hub", std::move(listeners),
                                            self->address());
  else
    *waiting_listeners = std::move(listeners);
  auto waiting = std::make_shared<awaiting<rule_delivery_wait>>();
  auto stored = std::make_shared<store_waits>();
  core->report_store_to(caf::actor_cast<caf::actor>(self));
  // SIGHUP finds the current control actor here, replacements included.
  register_as(self->home_system(), hub_registry_name, self);
  // A replacement control actor takes over the rules its predecessor
  // watched (for a first one there are none).
  for (auto& rule : core->rule_subscribers())
    self->monitor(rule);
  self->set_down_handler([core, waiting](caf::down_msg& dm) {
    core->remove_rule(dm.source);
    // Deliveries the rule took and will never answer: their publishers
    // get an error now (and retry or report it) instead of waiting forever.
    waiting->erase_if([&](rule_delivery_wait& d) {
      if (d.rule != dm.source)
        return false;
      d.waiter->answer.deliver(make_sink_error(
        sink_errc::retry, "a rule subscribed to the topic stopped before it "
                          "handled the message"));
      return true;
    });
  });
  self->set_exit_handler([self, core, accepting,
                          waiting_listeners](caf::exit_msg& em) {
    accepting->reset(); // no new connections while the hub stops
    for (auto fd : *waiting_listeners)
      ::close(fd);
    for (auto c : core->live)
      caf::anon_send(caf::actor_cast<caf::actor>(c->broker()),
                     hub::kick_atom::value);
    self->close_all();
    auto& registry = self->home_system().registry();
    if (registry.get(hub_registry_name) == caf::actor_cast<caf::strong_actor_ptr>(self))
      registry.erase(hub_registry_name);
    self->quit(em.reason);
  });
  auto stats = std::make_shared<probe>("hub", "embedded");
  auto listener_stats = std::make_shared<std::vector<probe>>();
  for (auto& l : core->listeners)
    listener_stats->emplace_back("listener", l.url);
  auto ticks = std::make_shared<int>(0);
  self->delayed_send(self, tick_interval, tick_atom::value);
  // The sink protocol's forms (for rules and the HTTP API; the target is
  // ignored: a message goes to its own topic), then the hub's own.
  auto publish = [self, core, waiting, stored](message& msg,
                                               const std::string&,
                                               reply answer) {
    publish_for(self, *core, *waiting, *stored, msg, std::move(answer));
  };
  return sink_handlers(self, publish).or_else(
    // SIGHUP (main.cpp): new certificates, principals and permissions;
    // the clients stay connected.
    [core](reload_atom, const std::shared_ptr<const hub_config>& next) {
      reload_certificates(*core);
      if (auto closed = core->replace_auth(*next))
        spdlog::info("hub: the reload disconnected {} client{} whose "
                     "permission to connect it took away",
                     closed, closed == 1 ? "" : "s");
    },
    [self, accepting, waiting_listeners](accept_atom) {
      if (!*accepting && !waiting_listeners->empty())
        *accepting = std::make_unique<acceptor>(
          "hub", std::move(*waiting_listeners), self->address());
    },
    [self, core](accepted_atom, int fd) {
      auto where = listener_of(*core, fd);
      auto& counters = core->counters;
      auto limit = core->limits().max_connections;
      if (static_cast<std::size_t>(counters.connections) >= limit) {
        // Mosquitto's max_connections: the socket is closed at once.
        if (counters.refused_connections++ % 1000 == 0)
          spdlog::warn("hub: {} connections open (hub.max_connections), "
                       "refusing new ones ({} refused so far)",
                       counters.connections, counters.refused_connections);
        ::close(fd);
        return;
      }
      auto hdl = self->add_scribe(fd);
      self->fork(hub::session_broker, hdl, core, where);
    },
    [self, core](subscribe_atom, const std::string& filter, std::uint8_t qos,
                 const caf::actor& subscriber) -> caf::result<ok_atom> {
      auto who = as_role<subscriber_actor>(subscriber);
      if (!who)
        return caf::make_error(caf::sec::invalid_argument,
                               "subscribe needs a subscriber actor");
      if (!valid_topic_filter(filter, core->topic_bounds()))
        return caf::make_error(caf::sec::invalid_argument,
                               "invalid topic filter '" + filter + "'");
      auto subscribed = core->subscribe_rule(who, filter, qos);
      if (subscribed.new_subscriber)
        self->monitor(who);
      // As MQTT 5's retain handling 1: a rule subscribing again (after the
      // control actor was replaced) does not get the retained ones twice.
      if (!subscribed.new_filter)
        return ok_atom::value;
      std::vector<hub::rule_delivery> retained;
      core->retained_for_rule(who, filter, qos, retained);
      core->send_to_rules(self, retained);
      return ok_atom::value;
    },
    [core](unsubscribe_atom, const std::string& filter,
           const caf::actor& who) {
      core->unsubscribe_rule(who, filter);
      return ok_atom::value;
    },
    // Rules' answers to deliveries of such publishes, and room again in
    // a session queue they filled.
    [waiting](reply_atom, std::uint64_t ticket, ok_atom) {
      rule_handled(*waiting, ticket);
    },
    [waiting](hub::room_atom, std::uint64_t ticket) {
      rule_handled(*waiting, ticket);
    },
    // The store committed more (or failed to): acks and answers that
    // waited for it.
    [core, stored](hub::stored_atom, std::uint64_t durable,
                   std::uint64_t failed_through) {
      core->store_reported(durable, failed_through);
      store_reported(*core, *stored);
      core->flush_dirty();
    },
    [waiting](reply_atom, const std::vector<std::uint64_t>& tickets, ok_atom) {
      for (auto ticket : tickets)
        rule_handled(*waiting, ticket);
    },
    [core, waiting](reply_atom, std::uint64_t ticket, caf::error& err) {
      ++core->counters.rule_errors;
      if (is_permanent(err))
        rule_handled(*waiting, ticket);
      else if (auto d = waiting->take(ticket))
        d->waiter->answer.deliver(std::move(err));
    },
    [core](get_atom, const std::string& what) -> caf::message {
      if (what == "listen_port")
        return caf::make_message(core->ports.empty() ? std::uint16_t{0}
                                                     : core->ports.front());
      if (what == "listen_ports") {
        std::string out;
        for (auto p : core->ports)
          out += (out.empty() ? "" : ",") + std::to_string(p);
        return caf::make_message(std::move(out));
      }
      if (what == "stats")
        return caf::make_message(snapshot(*core));
      for (auto& l : core->listeners)
        if (what == "listener " + l.url)
          return caf::make_message(l.snapshot());
      if (what == "rule_subscribers")
        return caf::make_message(
          static_cast<std::uint64_t>(core->rule_subscriber_count()));
      return caf::make_message(caf::make_error(
        caf::sec::invalid_argument, "unknown hub query '" + what + "'"));
    },
    [self, core, stats, listener_stats, ticks, accepting](tick_atom) {
      if (*accepting)
        core->counters.accept_errors = (*accepting)->errors();
      if (++*ticks % housekeeping_every == 0) {
        core->housekeeping(self);
        core->flush_dirty();
      }
      // Counted in hub_counters on the hot path, copied in here.
      auto now = snapshot(*core);
      for (auto& [name, value] : now.counters)
        stats->set(name, value);
      for (auto& [key, value] : now.labels)
        stats->label(key, value);
      stats->report(self);
      for (std::size_t i = 0; i < core->listeners.size(); ++i)
        report_listener(core->listeners[i], (*listener_stats)[i], self);
      self->delayed_send(self, tick_interval, tick_atom::value);
    });
}

/// Opens a socket for each of core.listeners; their `port` gives the port
/// (0 for the URL's) and receives the port bound, as does core.ports.
/// Empty on failure.
std::vector<int> open_listeners(hub::hub_core& core, std::string& error) {
  std::vector<int> fds;
  core.ports.resize(core.listeners.size());
  for (std::size_t i = 0; i < core.listeners.size(); ++i) {
    auto& l = core.listeners[i];
    auto& at = l.address.at;
    int fd = open_listener(at.host, l.port != 0 ? l.port : at.port, l.port,
                           error);
    if (fd < 0) {
      for (auto open : fds)
        ::close(open);
      return {};
    }
    core.ports[i] = l.port;
    fds.push_back(fd);
    spdlog::info("hub: listening for MQTT on {}:{} ({})",
                 at.host.empty() ? "*" : at.host, l.port, l.url);
  }
  return fds;
}

} // namespace

caf::actor spawn_embedded_hub(caf::actor_system& sys, const hub_config& cfg,
                              std::string& error, hub_restarter* restart,
                              bool accept_now,
                              std::shared_ptr<store::hub_store> store) {
  error.clear();
  if (!sys.has_middleman()) {
    error = "the embedded hub needs the actor system's middleman";
    return {};
  }
  if (cfg.listen.empty()) {
    error = "the embedded hub has no listen address";
    return {};
  }
  auto core = std::make_shared<hub::hub_core>(cfg);
  core->listeners = make_listeners(cfg, error);
  if (core->listeners.empty())
    return {};
  if (store)
    core->restore(std::move(store));
  auto listeners = open_listeners(*core, error);
  if (listeners.empty())
    return {};
  if (restart)
    // The core is only touched in the middleman's thread, where the
    // replacement runs too; the ports it bound never change.
    *restart = [&sys, core](std::string& err) -> caf::actor {
      auto fds = open_listeners(*core, err);
      if (fds.empty())
        return {};
      return sys.middleman().spawn_broker(hub_broker, core, fds, true);
    };
  return sys.middleman().spawn_broker(hub_broker, core, listeners, accept_now);
}

} // namespace hubflow
