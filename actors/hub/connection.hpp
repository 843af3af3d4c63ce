// One MQTT client connection: the protocol state machine of a session
// broker. It parses every complete packet of a read, routes publishes
// through hub_core (which writes straight into the subscribers' output
// buffers), and hands each connection's output to its transport once per
// batch.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/io/broker.hpp>

#include "core/reply.hpp"
#include "core/tls_layer.hpp"
#include "core/transport.hpp"
#include "hub/hub_core.hpp"
#include "hub/listener.hpp"
#include "hub/mqtt_codec.hpp"
#include "hub/ws_layer.hpp"

namespace hubflow::hub {

/// Tells a session broker to close its connection (sent on takeover).
using kick_atom = caf::atom_constant<caf::atom("hubkick")>;
/// A session broker's own reminder to flush (see connection::flush_soon).
using flush_atom = caf::atom_constant<caf::atom("hubflush")>;

/// Output above this many unsent bytes makes a connection a slow consumer:
/// QoS 0 messages to it are dropped (and counted) until it catches up. The
/// bound grows with the configured session queue (`message.queued`,
/// counted as 1 KiB per message), so one knob bounds both QoS 0 backlog and
/// QoS 1/2 queues.
inline constexpr std::size_t min_backlog_bytes = 1 << 20;
inline std::size_t backlog_limit(const hub_config& cfg) {
  return std::max<std::size_t>(min_backlog_bytes,
                               cfg.max_queued_messages * 1024);
}

/// How long a new connection may take to send CONNECT.
inline constexpr std::chrono::seconds connect_timeout{10};

/// How long a connection we closed is drained (see connection::close).
inline constexpr std::chrono::seconds drain_timeout{2};

class connection {
public:
  /// A connection accepted on `where` (one of core->listeners), which
  /// decides the layers between the socket and MQTT (TLS, WebSocket).
  connection(caf::io::broker* self, caf::io::connection_handle hdl,
             std::shared_ptr<hub_core> core, listener& where);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Socket options, read policy, CONNECT timeout.
  void start();

  // -- events from the session broker -----------------------------------------

  void on_data(std::string_view bytes);
  void on_transferred(std::uint64_t remaining);
  void on_peer_closed();
  /// The hub's housekeeping saw deadline() pass: CONNECT or keep-alive
  /// timeout.
  void on_tick();
  /// The session was taken over (or the hub shuts down): close now.
  void on_kick();
  /// A reload took the client's principal away (or no longer admits
  /// anonymous clients): MQTT 5 clients get DISCONNECT 0x87, the session
  /// goes offline (its will is published) and the connection's broker is
  /// told to close, as on a takeover. Called by the hub's control actor
  /// before the old principals are freed.
  void on_revoked();
  /// A rule subscriber answered the delivery sent with `ticket`: ok when
  /// `err` is none. A permanent error (core/sink_error.hpp: the rule
  /// reported the message as an error) still acknowledges it, with the
  /// error's reason code for MQTT 5; any other error withholds the ack.
  void on_rule_answer(std::uint64_t ticket, const caf::error& err);
  /// A session this connection published into has room again: the ack
  /// numbered `seq` waits for one session less (hub_core::wait_for_room).
  void on_room(std::uint64_t seq);
  /// The store committed more (hub_core::store_reported): acks that
  /// waited for it may go.
  void on_stored();
  /// Flushes after the messages already in the broker's mailbox: rule
  /// answers arrive one message each, and flushing after every one cost a
  /// send() per PUBACK (perf: 16% of the broker's CPU at 100k acks/s).
  void flush_soon();
  void on_flush();
  /// Gives up on rule answers older than rule_ack_timeout (a rule that
  /// died): their publishes stay unacknowledged, so clients resend them.
  /// Called by the hub's housekeeping.
  void expire_rule_acks(steady_clock::time_point now);

  // -- used by hub_core -------------------------------------------------------

  mqtt::byte_buffer& out() noexcept {
    return out_;
  }
  /// Who the client is (nullptr: anonymous, or not connected yet).
  const principal_config* principal() const noexcept {
    return principal_;
  }
  /// The same principal under a reloaded authenticator (hub_core::
  /// replace_auth).
  void rebind(const principal_config* p) noexcept {
    principal_ = p;
  }
  /// CONNECT was accepted (so the client passed authentication).
  bool has_session() const noexcept {
    return session_ != nullptr;
  }
  bool from_loopback() const noexcept {
    return loopback_;
  }
  std::uint8_t version() const noexcept {
    return version_;
  }
  std::size_t client_max_packet() const noexcept {
    return client_max_packet_;
  }
  /// Whether the client announced a Maximum Packet Size (so publishes to
  /// it need their size checked).
  bool limits_packet_size() const noexcept {
    return client_max_packet_ < 268435460;
  }
  std::uint16_t client_receive_maximum() const noexcept {
    return client_receive_max_;
  }
  /// MQTT 5 topic aliases towards the client (it announced a Topic Alias
  /// Maximum): sets `h.topic_alias` for `topic`, and `h.omit_topic` when the
  /// client already knows it. A new alias counts as known from now on, so
  /// call it only for a PUBLISH that is then written.
  void alias_topic(const std::string& topic, mqtt::publish_header& h);
  /// More unsent output than backlog_limit().
  bool backlogged() const noexcept {
    return out_.size() + transport_->backlog() > backlog_limit_;
  }
  /// Writes out_ to the socket (the rest into CAF's buffer).
  void flush_out();
  /// Called on the old connection when a new one takes its session over
  /// (from the new connection's broker, `requester`): detaches it from the
  /// session, sends DISCONNECT 0x8E (v5), publishes its will unless it is
  /// delayed and the session lives on, and asks its own broker to close.
  void take_over(bool session_ends, caf::io::broker* requester);

  caf::io::broker* broker() const noexcept {
    return self_;
  }
  /// When on_tick() has something to check (time_point::max(): never).
  steady_clock::time_point deadline() const noexcept {
    return deadline_;
  }

  bool dirty = false;

private:
  enum class phase { awaiting_connect, connected, closing };

  struct pending_ack {
    std::uint16_t packet_id;
    mqtt::packet_type type; // puback or pubrec
    std::size_t waiting;    // rule subscribers that have not answered
    std::size_t full;       // sessions it filled that have no room yet
    // The store's writes its route made (hub_core::store_written() before
    // and after): the ack waits until they are durable.
    std::uint64_t stored_from;
    std::uint64_t stored_through;
    bool failed;
    std::uint8_t reason;
    steady_clock::time_point since;
  };

  /// A PUBREL or PUBCOMP that leaves only once the store holds what it
  /// stands for (the released QoS 2 message, the client's packet id
  /// forgotten). Sent earlier, a crash brings back a state the client
  /// has moved past: a QoS 2 message delivered twice, or a packet id that
  /// takes the client's next message under it for a resend.
  struct stored_reply {
    mqtt::packet_type type;
    std::uint16_t packet_id;
    std::uint8_t reason;
    std::uint64_t stored_from;
    std::uint64_t stored_through;
  };

  bool handle(mqtt::packet& p);
  void handle_connect(mqtt::connect_packet& c);
  bool handle_publish(mqtt::publish_packet& p);
  void handle_ack(const mqtt::ack_packet& a);
  void handle_subscribe(const mqtt::subscribe_packet& s);
  void handle_unsubscribe(const mqtt::unsubscribe_packet& u);
  void handle_disconnect(const mqtt::disconnect_packet& d);

  void send_connack(bool session_present, std::uint8_t reason,
                    mqtt::properties props = {});
  void send_ack(mqtt::packet_type type, std::uint16_t packet_id,
                std::uint8_t reason);
  void queue_ack(std::uint16_t packet_id, mqtt::packet_type type,
                 std::size_t waiting, std::uint8_t reason,
                 std::size_t full = 0, std::uint64_t stored_from = 0,
                 std::uint64_t stored_through = 0);
  /// The ack's message could not be stored: refused (MQTT 5: 0x97).
  void refuse_unstored(pending_ack& a);
  void pump_acks();
  /// Sends `type` once the store writes since `stored_from` are durable.
  void reply_when_stored(mqtt::packet_type type, std::uint16_t packet_id,
                         std::uint8_t reason, std::uint64_t stored_from);
  void pump_stored_replies();
  /// The ack numbered `seq`, if it is still waiting.
  pending_ack* ack_numbered(std::uint64_t seq);
  void write(const mqtt::packet& p);
  /// Adds the publish's deliveries to the rule bursts; `ack_seq` numbers
  /// its ack (unused for QoS 0).
  void deliver_to_rules(std::vector<rule_delivery>& rules, bool wants_ack,
                        std::uint64_t ack_seq);
  /// Stops reading while a client has more unanswered QoS 1/2 publishes
  /// than server_receive_max (MQTT 3.1.1 has no Receive Maximum to
  /// enforce), and reads again once half of them are answered.
  void bound_unanswered();
  /// Sends what deliver_to_rules collected: one message per rule.
  void send_rule_bursts();

  /// Ends the connection from our side: DISCONNECT with `reason` for
  /// connected v5 clients, will per the rules; then, when `drain`, a
  /// half-close: what the client still sends is read and dropped until it
  /// closes or drain_timeout passes. Closing at once resets a connection
  /// whose client bytes are unread, and the client may then never read the
  /// DISCONNECT that says why.
  void close(std::uint8_t reason, bool drain = true);
  /// Session bookkeeping when the connection ends.
  void finish(bool publish_will);
  void schedule_tick(std::chrono::milliseconds after);

  /// Parses and handles every complete MQTT packet of `bytes`.
  void read_mqtt(std::string_view bytes);
  /// A layer's read() failed (`was_established`: its handshake had been
  /// done before): logged, counted, the session ends without an MQTT
  /// goodbye.
  void layer_ended(const layer& l, bool was_established);
  /// The first layer whose handshake is not done yet, or nullptr.
  const layer* unestablished_layer() const;

  caf::io::broker* self_;
  std::shared_ptr<hub_core> core_;
  listener& listener_;
  caf_transport socket_;
  /// Between the socket and MQTT, bottom first: TLS, WebSocket.
  std::vector<std::unique_ptr<layer>> layers_;
  tls_layer* tls_ = nullptr;      // the TLS layer in layers_, if any
  transport* transport_;          // where MQTT writes: the top layer
  std::string peer_;
  bool loopback_ = false;

  phase phase_ = phase::awaiting_connect;
  std::uint8_t version_ = 0;
  mqtt::packet_reader reader_;
  mqtt::decode_options decode_opts_;
  mqtt::byte_buffer out_;
  std::size_t backlog_limit_;

  session_state* session_ = nullptr;
  std::string client_id_;
  const principal_config* principal_ = nullptr;
  bool has_will_ = false;
  message will_;
  std::uint32_t will_delay_ = 0;
  std::uint16_t keep_alive_ = 0;
  steady_clock::time_point last_rx_;
  steady_clock::time_point deadline_ = steady_clock::time_point::max();
  std::size_t client_max_packet_ = 268435460;
  std::uint16_t client_receive_max_ = 65535;
  std::uint16_t topic_alias_max_ = 0; // what we accept from the client
  std::vector<std::string> topic_aliases_;
  std::uint16_t client_topic_alias_max_ = 0; // what the client accepts
  std::unordered_map<std::string, std::uint16_t> out_aliases_;
  std::deque<pending_ack> acks_;
  /// Acks are numbered in arrival order; this is the number of acks_'s
  /// front, so a rule's answer finds its ack by index, not by a search.
  std::uint64_t acks_front_seq_ = 0;
  std::deque<stored_reply> stored_replies_; // in the order they were due
  awaiting<std::uint64_t> rule_tickets_; // delivery ticket -> ack number
  bool flush_scheduled_ = false;
  bool reading_paused_ = false; // see bound_unanswered()
  bool draining_ = false;       // half-closed, see close()
  std::vector<rule_delivery> rule_scratch_;
  /// Deliveries to one rule from the packets of one read, sent together as
  /// (deliver_atom, messages, tickets) when the read is handled: one CAF
  /// message per rule per read instead of one per publish.
  struct rule_burst {
    subscriber_actor rule;
    std::vector<message> msgs;
    std::vector<std::uint64_t> tickets;
  };
  std::vector<rule_burst> rule_bursts_;
};

/// The session broker: one per accepted connection (forked by the hub).
caf::behavior session_broker(caf::io::broker* self,
                             caf::io::connection_handle hdl,
                             std::shared_ptr<hub_core> core, listener* where);

} // namespace hubflow::hub
