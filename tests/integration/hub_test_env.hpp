// Shared setup of the embedded hub integration tests: an actor system with
// the middleman, the hub spawned in-process on a free port, raw TCP
// sockets for byte-level tests, and the mosquitto command line clients.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>


#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <gtest/gtest.h>

#include "core/config.hpp"
#include "core/type_ids.hpp"
#include "fixtures/fixtures.hpp"
#include "fixtures/loopback_socket.hpp"
#include "hub/embedded_hub.hpp"
#include "hub/mqtt_codec.hpp"

namespace hubflow::test {

/// A hub config listening on a free loopback port, anonymous allowed.
inline hub_config test_hub_config() {
  hub_config cfg;
  cfg.listen = {"tcp://127.0.0.1:0"};
  cfg.allow_anonymous = true;
  cfg.anonymous_loopback_only = true;
  return cfg;
}

/// The embedded hub running in its own actor system.
class hub_env {
public:
  explicit hub_env(const hub_config& cfg = test_hub_config()) {
    sys_cfg_.load<caf::io::middleman>();
    sys_cfg_.add_message_types<caf::id_block::hubflow>();
    sys_ = std::make_unique<caf::actor_system>(sys_cfg_);
    hub = spawn_embedded_hub(*sys_, cfg, error);
    if (hub) {
      caf::scoped_actor self{*sys_};
      self->request(hub, std::chrono::seconds(5), get_atom::value,
                    std::string{"listen_port"})
        .receive([&](std::uint16_t p) { port = p; },
                 [&](caf::error& e) { error = sys_->render(e); });
    }
  }

  ~hub_env() {
    if (hub)
      caf::anon_send_exit(hub, caf::exit_reason::user_shutdown);
    hub = nullptr;
  }

  caf::actor_system& sys() {
    return *sys_;
  }

  /// The hub's counter `name` (from its stats snapshot).
  std::int64_t counter(const std::string& name) {
    return counter_of("stats", name);
  }
  /// Counter `name` of the listener whose URL is `url`.
  std::int64_t listener_counter(const std::string& url,
                                const std::string& name) {
    return counter_of("listener " + url, name);
  }

  /// The ports bound, in `listen` order.
  std::vector<std::uint16_t> ports() {
    std::vector<std::uint16_t> out;
    caf::scoped_actor self{*sys_};
    self->request(hub, std::chrono::seconds(5), get_atom::value,
                  std::string{"listen_ports"})
      .receive(
        [&](const std::string& list) {
          for (std::size_t at = 0; at < list.size();) {
            auto comma = list.find(',', at);
            out.push_back(static_cast<std::uint16_t>(
              std::stoi(list.substr(at, comma - at))));
            at = comma == std::string::npos ? list.size() : comma + 1;
          }
        },
        [](caf::error&) {});
    return out;
  }

  caf::actor hub;
  std::uint16_t port = 0;
  std::string error;

private:
  /// Counter `name` of the component_stats the hub answers to `query`.
  std::int64_t counter_of(const std::string& query, const std::string& name) {
    std::int64_t value = -1;
    caf::scoped_actor self{*sys_};
    self->request(hub, std::chrono::seconds(5), get_atom::value, query)
      .receive(
        [&](const component_stats& s) {
          value = hubflow::counter_of(s, name).value_or(-1);
        },
        [&](caf::error&) {});
    return value;
  }

  caf::actor_system_config sys_cfg_;
  std::unique_ptr<caf::actor_system> sys_;
};

/// A raw TCP client for byte-level tests (garbage, truncation, codec
/// checks of what the hub sends).
class raw_client : public loopback_socket {
public:
  /// `receive_buffer` > 0: a slow consumer (see loopback_socket).
  explicit raw_client(std::uint16_t port, int receive_buffer = 0)
    : loopback_socket(port, receive_buffer) {
  }

  bool send(const std::string& bytes) {
    return send_all(bytes);
  }
  bool send(const mqtt::packet& p, std::uint8_t version) {
    mqtt::byte_buffer buf;
    mqtt::encode(p, version, buf);
    return send_all(std::string_view{buf.data(), buf.size()});
  }

  /// Reads the next packet the hub sends (client-side decoding); nullopt on
  /// timeout or when the hub closed the connection.
  std::optional<mqtt::packet> read(std::uint8_t version,
                                   std::chrono::milliseconds timeout = 5s) {
    auto deadline = deadline_in(timeout);
    mqtt::decode_options opts;
    opts.version = version;
    opts.server = false;
    for (;;) {
      auto& buf = received();
      if (!buf.empty()) {
        mqtt::packet p;
        auto res = mqtt::decode(buf, opts, p);
        if (res.status == mqtt::decode_status::ok) {
          buf.erase(0, res.consumed);
          return p;
        }
        if (res.status == mqtt::decode_status::error)
          return std::nullopt;
      }
      if (!read_some(deadline))
        return std::nullopt;
    }
  }

  /// True once the hub closed the connection (within `timeout`).
  bool wait_closed(std::chrono::milliseconds timeout = 5s) {
    return loopback_socket::wait_closed(deadline_in(timeout));
  }

  /// Connects at the MQTT level; returns the CONNACK.
  std::optional<mqtt::connack_packet>
  mqtt_connect(const std::string& client_id, std::uint8_t version,
               mqtt::properties props = {}, bool clean = true) {
    mqtt::connect_packet c;
    c.version = version;
    c.client_id = client_id;
    c.clean_start = clean;
    c.props = std::move(props);
    if (!send(c, version))
      return std::nullopt;
    auto p = read(version);
    if (!p || !std::holds_alternative<mqtt::connack_packet>(*p))
      return std::nullopt;
    return std::get<mqtt::connack_packet>(*p);
  }

  /// Reads packets until a PUBLISH arrives (skipping others).
  std::optional<mqtt::publish_packet>
  read_publish(std::uint8_t version, std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return std::nullopt;
      auto p = read(version, left);
      if (!p)
        return std::nullopt;
      if (auto pub = std::get_if<mqtt::publish_packet>(&*p))
        return *pub;
    }
  }

};

/// `mosquitto_pub` against the hub; returns the exit code.
inline int mosquitto_pub(std::uint16_t port, const std::string& args) {
  auto r = run_command("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(port)
                       + " " + args + " 2>&1");
  if (r.exit_code != 0)
    ADD_FAILURE() << "mosquitto_pub " << args << ": " << r.output;
  return r.exit_code;
}

/// A `mosquitto_sub` running in the background, printing "topic payload"
/// lines; output() returns what it printed so far.
class mosquitto_sub {
public:
  mosquitto_sub(std::uint16_t port, const std::string& args)
    : proc_(std::make_unique<process>(std::vector<std::string>{
      "sh", "-c",
      "exec mosquitto_sub -h 127.0.0.1 -p " + std::to_string(port)
        + " -v " + args})) {
  }
  std::string output() const {
    return proc_->output();
  }
  /// Waits until the output contains `text`.
  bool wait_for(const std::string& text,
                std::chrono::milliseconds timeout = 10s) {
    return wait_until(
      [&] { return output().find(text) != std::string::npos; }, timeout);
  }
  process& proc() {
    return *proc_;
  }

private:
  std::unique_ptr<process> proc_;
};

} // namespace hubflow::test
