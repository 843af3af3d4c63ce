// The embedded hub's shared state: MQTT sessions (which may outlive their
// connections), the subscription trie, retained messages, rule subscribers
// and the counters. All of it lives in the middleman's I/O thread: every
// session broker and the hub's control broker run there, so the hot path
// (read -> parse -> route -> write) takes no lock and no actor hop.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/atom.hpp>

#include "core/fwd.hpp"
#include "core/config.hpp"
#include "core/message.hpp"
#include "hub/auth.hpp"
#include "hub/listener.hpp"
#include "hub/mqtt_codec.hpp"
#include "hub/topic_tree.hpp"
#include "store/hub_store.hpp"

namespace caf::io {
class broker;
}

namespace hubflow::hub {

class connection;

using steady_clock = std::chrono::steady_clock;

/// Sent to a publisher that waits for room in a session's queue (see
/// hub_core::wait_for_room), with the key it registered.
using room_atom = caf::atom_constant<caf::atom("hubroom")>;

/// Sent by the store's writer thread to the hub's control actor after each
/// commit: (stored_atom, durable, failed_through) (hub_core::store_reported).
using stored_atom = caf::atom_constant<caf::atom("hubstored")>;

/// What the hub counts; reported to the stats actor.
struct hub_counters {
  std::int64_t connections = 0; // open now
  std::int64_t connections_total = 0;
  std::int64_t sessions = 0; // open now (online and offline persistent)
  std::int64_t messages_in = 0;
  std::int64_t messages_out = 0;
  std::int64_t bytes_in = 0;
  std::int64_t bytes_out = 0;
  std::int64_t dropped_qos0_slow = 0;   // slow consumer, QoS 0 only
  std::int64_t dropped_queue_full = 0;  // QoS 1/2 session queue full
  std::int64_t held_for_room = 0;       // acks held while a queue was full
  std::int64_t refused_unstored = 0;    // QoS 1/2 the store could not take
  std::int64_t dropped_expired = 0;     // message expiry passed
  std::int64_t dropped_too_large = 0;   // above the client's maximum
  std::int64_t denied_connect = 0;
  std::int64_t denied_publish = 0;
  std::int64_t denied_subscribe = 0;
  std::int64_t denied_receive = 0;      // read permission checked on delivery
  std::int64_t denied_session = 0;      // client id of another principal
  std::int64_t refused_limits = 0;      // a hub.max_* limit was reached
  std::int64_t refused_connections = 0; // hub.max_connections reached
  std::int64_t accept_errors = 0;       // accept() failed (EMFILE, ...)
  std::int64_t protocol_errors = 0;     // malformed / protocol violations
  std::int64_t rule_deliveries = 0;
  std::int64_t rule_errors = 0;
  std::int64_t remapped = 0;

  bool operator==(const hub_counters&) const = default;
};

/// A message waiting for a subscriber: queued or in flight.
struct outgoing_message {
  message msg;
  std::uint8_t qos = 0;
  bool retain = false;
  std::vector<std::uint32_t> subscription_ids;
  /// Its record in the store (persistence): the session's sequence
  /// number; 0 when it is not stored.
  std::uint64_t stored = 0;
};

struct inflight_entry {
  std::uint16_t packet_id = 0;
  outgoing_message out;
  bool released = false; // PUBREC received, PUBREL sent, waiting PUBCOMP
};

/// An MQTT session: subscriptions and QoS 1/2 state. Persistent sessions
/// survive their connection until their expiry interval passes.
struct session_state {
  std::string client_id;
  /// The principal that created the session (nullptr: anonymous). Only it
  /// may resume the session or take it over.
  const principal_config* owner = nullptr;
  mqtt::subscriber_id id = 0;
  std::uint32_t expiry_interval = 0; // seconds; 0xFFFFFFFF: never
  connection* conn = nullptr;        // nullptr while offline
  steady_clock::time_point offline_since;
  std::unordered_map<std::string, std::pair<mqtt::subscription_options,
                                            std::uint32_t>>
    subscriptions;
  std::vector<inflight_entry> inflight; // in send order
  std::deque<outgoing_message> queue;   // waiting for the window / client
  std::size_t queued_bytes = 0;         // topics and payloads in `queue`
  std::unordered_set<std::uint16_t> incoming_qos2; // PUBREC sent, no PUBREL
  std::uint16_t next_packet_id = 1;
  /// Persistence: whether the store holds this session (it does while
  /// expiry_interval > 0), and the next sequence number for its messages.
  bool stored = false;
  std::uint64_t next_store_seq = 1;
  /// Publishers whose acknowledgement waits for room in `queue`
  /// (queue_full_policy::backpressure): told with (room_atom, key).
  struct room_waiter {
    caf::actor_addr who;
    std::uint64_t key;
  };
  std::vector<room_waiter> room_waiters;

  std::uint16_t allocate_packet_id();
};

/// A will waiting for its delay (MQTT 5 will delay interval).
struct delayed_will {
  message msg;
  std::string client_id;
  const principal_config* principal = nullptr;
  steady_clock::time_point due;
};

/// A rule subscriber matched by a publish, with the qos it gets.
struct rule_delivery {
  subscriber_actor subscriber;
  message msg;
};

class hub_core {
public:
  explicit hub_core(const hub_config& cfg);
  ~hub_core();

  const hub_config& config() const noexcept {
    return cfg_;
  }
  const authenticator& auth() const noexcept {
    return *auth_;
  }
  /// A reload (SIGHUP): the principals, password and acl files and the
  /// anonymous settings of `next` apply from now on (the rest of `next` is
  /// not looked at). Connections, sessions and delayed wills are bound to
  /// the new principals by username, so clients stay connected and their
  /// permissions are the new ones (checked on every publish and delivery).
  /// A client whose principal is gone, or an anonymous one when anonymous
  /// clients are no longer admitted, is disconnected (MQTT 5: 0x87 not
  /// authorized); sessions whose principal is gone end. Returns how many
  /// connections were closed.
  std::size_t replace_auth(const hub_config& next);
  const hub_limits& limits() const noexcept {
    return cfg_.limits;
  }
  /// hub.max_topic_levels and hub.max_topic_length, for the validators.
  const topic_limits& topic_bounds() const noexcept {
    return topic_bounds_;
  }

  hub_counters counters;

  // -- persistence (docs/persistence.md) ---------------------------------------

  /// Puts what `store` holds into the hub (sessions offline, their
  /// subscriptions and messages, retained messages) and keeps it up to
  /// date from now on. Called once, before the listeners accept.
  void restore(std::shared_ptr<store::hub_store> store);
  /// The store's write count, to compare before and after a route: a
  /// publish that caused writes is acknowledged once they are durable.
  std::uint64_t store_written() const noexcept {
    return store_ ? store_->written() : 0;
  }
  /// Whether an acknowledgement of the writes after `from` up to
  /// `through` (store_written() before and after its route) must still
  /// wait; `refused` when the store failed to take them: the publish must
  /// not be acknowledged as a success.
  bool store_pending(std::uint64_t from, std::uint64_t through,
                     bool& refused) const;
  /// Whether the store refuses new records (disk full, read-only,
  /// persistence.max_size).
  bool store_refusing() const noexcept {
    return store_ && store_->refusing();
  }
  /// The store committed (or failed to commit) more: `waiting` connections
  /// whose acks waited for it send them. Runs in the hub's thread, in the
  /// order the store reported.
  void store_reported(std::uint64_t durable, std::uint64_t failed_through);
  /// Where the store's reports go: the current control actor (a
  /// replacement registers itself).
  void report_store_to(const caf::actor& control);
  /// `c` has an ack waiting for the store (see store_pending).
  void wait_for_store(connection* c) {
    store_waiters_.insert(c);
  }
  /// The session's stored record is out of date (expiry, subscriptions,
  /// QoS 2 ids, online/offline): writes it, or removes it when the
  /// session stopped being persistent.
  void session_changed(session_state& s);
  /// The client acknowledged (or refused) the in-flight message at `i`:
  /// it leaves the session and the store.
  void complete(session_state& s, std::vector<inflight_entry>::iterator i);
  /// PUBREC came for the in-flight QoS 2 message: only PUBREL remains.
  void released(session_state& s, inflight_entry& e);

  // -- sessions ---------------------------------------------------------------

  session_state* find_session(const std::string& client_id);
  session_state& create_session(const std::string& client_id,
                                const principal_config* owner);
  /// Removes the session and all its subscriptions.
  void end_session(session_state& s);
  std::string assign_client_id();
  std::size_t session_count() const noexcept {
    return sessions_.size();
  }

  /// Sends what the session may send now: in-flight messages first (as
  /// duplicates when `resend`), then queued ones up to the window; tells
  /// the publishers waiting for room once the queue is down to half.
  void drain(session_state& s, bool resend);
  /// The session's connection is gone (it stays as an offline session or
  /// ends): nobody waits for it any more.
  void went_offline(session_state& s);

  // -- subscriptions ----------------------------------------------------------

  /// Returns true when the subscription is new.
  bool subscribe(session_state& s, const std::string& filter,
                 const mqtt::subscription_options& opts,
                 std::uint32_t subscription_id);
  bool unsubscribe(session_state& s, const std::string& filter);

  /// Sends the retained messages matching `filter` to the session.
  void send_retained(session_state& s, std::string_view filter,
                     const mqtt::subscription_options& opts,
                     std::uint32_t subscription_id);

  // -- rule subscribers -------------------------------------------------------

  struct rule_subscribed {
    bool new_subscriber = false; // the rule had no filter before
    bool new_filter = false;     // false: already subscribed, or invalid
  };
  /// Subscribes a rule; subscribing to a filter it has is a no-op (a rule
  /// subscribes again after the hub's control actor was replaced).
  rule_subscribed subscribe_rule(const subscriber_actor& who,
                                 const std::string& filter, std::uint8_t qos);
  void unsubscribe_rule(const caf::actor& who, const std::string& filter);
  void remove_rule(const caf::actor_addr& who);
  /// Every rule with a subscription (a replacement control actor monitors
  /// them again).
  std::vector<subscriber_actor> rule_subscribers() const;
  std::size_t rule_subscriber_count() const noexcept {
    return rules_.size();
  }
  /// Retained messages matching `filter` as rule deliveries.
  void retained_for_rule(const subscriber_actor& who, const std::string& filter,
                         std::uint8_t qos, std::vector<rule_delivery>& out);

  // -- routing ----------------------------------------------------------------

  /// Routes `msg` (stores it as retained when flagged) to every matching
  /// session, writing into their connections, and appends the matching
  /// rule subscribers to `rules`. `from` is the publishing session (for
  /// no-local), 0 for rules. Applies the hub's `subscriptions` remapping.
  void route(const message& msg, mqtt::subscriber_id from,
             std::vector<rule_delivery>& rules);
  /// The online sessions whose queue the last route() took beyond its
  /// bound (queue_full_policy::backpressure): the publisher acknowledges
  /// the message only after wait_for_room() on each has answered. Valid
  /// until the next route().
  std::span<session_state* const> over_bound() const noexcept {
    return over_bound_;
  }
  /// `who` gets (room_atom, key) once `s`'s queue is down to half its
  /// bound, or the session goes offline.
  void wait_for_room(session_state& s, const caf::actor_addr& who,
                     std::uint64_t key);

  /// Sends `rules` deliveries from `requester` without wanting answers
  /// (wills, remapped copies, retained for rules).
  void send_to_rules(caf::io::broker* requester,
                     std::vector<rule_delivery>& rules);

  /// Publishes a will (or any hub-internal message) if `who` may.
  void publish_internal(const message& msg, client_identity who,
                        caf::io::broker* requester);

  // -- wills and expiry -------------------------------------------------------

  void schedule_will(delayed_will w);
  void cancel_will(const std::string& client_id);
  /// Publishes due wills and ends expired offline sessions.
  void housekeeping(caf::io::broker* requester);

  // -- output -----------------------------------------------------------------

  /// Connections with output written in this batch; flushed once each.
  void mark_dirty(connection* c);
  void flush_dirty();
  void forget(connection* c);

  /// The retained message count (for stats).
  std::size_t retained_count() const noexcept {
    return retained_.size();
  }
  std::size_t subscription_count() const noexcept {
    return tree_.size();
  }

  /// Every open connection (to close them when the hub stops).
  std::unordered_set<connection*> live;

  /// Ports actually bound, in `listen` order.
  std::vector<std::uint16_t> ports;

  /// The listeners, in `listen` order (filled before the hub accepts, never
  /// resized after: connections hold references into it).
  std::vector<listener> listeners;

private:
  struct remap {
    std::string source;
    std::uint8_t source_qos;
    std::string target;
    std::uint8_t target_qos;
  };

  void route_one(const message& msg, mqtt::subscriber_id from,
                 std::vector<rule_delivery>& rules);
  void deliver(session_state& s, const message& msg, std::uint8_t qos,
               bool retain, std::span<const std::uint32_t> subscription_ids);
  /// Writes a PUBLISH to the online session's connection; false when the
  /// message expired or exceeds the client's maximum packet size (dropped).
  bool send_publish(session_state& s, const outgoing_message& out,
                    std::uint16_t packet_id, bool dup);
  /// Encodes a PUBLISH into the connection's output unless the message
  /// expired or exceeds the client's maximum packet size (then counted).
  bool write_publish(connection& c, const message& msg,
                     mqtt::publish_header h);
  void enqueue(session_state& s, outgoing_message out);
  std::size_t window(const session_state& s) const;
  static bool available(void* self, mqtt::subscriber_id who);

  /// Appends to the session's queue, and takes its front, keeping
  /// queued_bytes right (neither stores nor checks bounds).
  void push_queued(session_state& s, outgoing_message out);
  outgoing_message pop_queued(session_state& s);
  /// Tells every publisher waiting for room in `s` that it may go on.
  void release_waiters(session_state& s);
  /// Persistence: stores `out` for `s` (when the session is stored) with
  /// the packet id it was sent with (0: queued).
  void store_message(session_state& s, outgoing_message& out,
                     std::uint16_t packet_id, bool released);
  void unstore_message(session_state& s, const outgoing_message& out);
  /// Retained messages go to the store as they change.
  void set_retained(const message& msg);
  /// An offline session whose expiry interval has passed.
  bool session_expired(const session_state& s,
                       steady_clock::time_point now) const;

  hub_config cfg_;
  std::shared_ptr<store::hub_store> store_; // nullptr: in memory only
  /// What the store reported, in order (see store_reported): acks compare
  /// against these, never against the store's live counters, so a
  /// failure is seen before a later commit's success.
  std::uint64_t store_durable_ = 0;
  std::uint64_t store_failed_through_ = 0;
  std::unordered_set<connection*> store_waiters_;
  /// The store's writer thread reads it: guarded.
  struct store_listener {
    std::mutex mutex;
    caf::actor control;
  };
  std::shared_ptr<store_listener> store_listener_ =
    std::make_shared<store_listener>();
  topic_limits topic_bounds_;
  std::unique_ptr<authenticator> auth_; // replaced by replace_auth()
  std::vector<remap> remaps_;
  mqtt::topic_tree tree_;
  mqtt::retained_store retained_;
  std::unordered_map<std::string, std::unique_ptr<session_state>> sessions_;
  std::unordered_map<mqtt::subscriber_id, session_state*> by_id_;
  struct rule_entry {
    subscriber_actor handle;
    std::unordered_set<std::string> filters;
  };
  std::unordered_map<mqtt::subscriber_id, rule_entry> rules_;
  std::unordered_map<caf::actor_addr, mqtt::subscriber_id> rule_ids_;
  std::vector<delayed_will> wills_;
  std::vector<connection*> dirty_;
  std::vector<mqtt::match_result> matches_; // scratch
  std::vector<session_state*> over_bound_;   // see over_bound()
  std::size_t all_queued_bytes_ = 0; // every session's queued_bytes
  mqtt::subscriber_id next_session_id_ = 1;
  mqtt::subscriber_id next_rule_id_ = (mqtt::subscriber_id{1} << 62);
  std::uint64_t next_client_number_ = 1;
};

} // namespace hubflow::hub
