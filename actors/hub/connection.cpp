#include "hub/connection.hpp"

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

#include "core/broker_exit.hpp"
#include "core/sink_error.hpp"
#include "core/type_ids.hpp"

namespace hubflow::hub {

namespace {

/// How many topic aliases a client may set up (MQTT 5 Topic Alias Maximum).
constexpr std::uint16_t server_topic_alias_max = 256;

/// Outbound topic aliases per connection at most, and the longest topic
/// given one: what a connection holds for them stays under 64 KiB.
constexpr std::size_t out_alias_max = 256;
constexpr std::size_t out_alias_topic_max = 256;

/// QoS 1/2 publishes a v5 client may have unacknowledged (MQTT 5 Receive
/// Maximum): bounds what one client can make the hub hold while rules
/// answer.
constexpr std::uint16_t server_receive_max = 1024;

/// How long a rule may take to answer before the client's ack is given up.
constexpr auto rule_ack_timeout = std::chrono::seconds(30);

/// Largest packet MQTT can express (fixed header included).
constexpr std::size_t mqtt_max_packet = 268435455 + 5;

std::string principal_name(const principal_config* p) {
  return p ? "'" + p->username + "'" : std::string{"anonymous clients"};
}

/// Why bytes that are not MQTT may have come to a plain MQTT port.
const char* wrong_protocol_hint(std::string_view bytes) {
  if (bytes.empty())
    return "";
  if (static_cast<unsigned char>(bytes[0]) == 0x16)
    return " (a TLS handshake on a plain MQTT port?)";
  if (bytes.substr(0, 4) == "GET ")
    return " (an HTTP request, WebSocket?, on a plain MQTT port?)";
  return "";
}

bool is_loopback(const std::string& addr) {
  return addr.rfind("127.", 0) == 0 || addr == "::1"
         || addr.rfind("::ffff:127.", 0) == 0;
}

} // namespace

connection::connection(caf::io::broker* self, caf::io::connection_handle hdl,
                       std::shared_ptr<hub_core> core, listener& where)
  : self_(self),
    core_(std::move(core)),
    listener_(where),
    socket_(self, hdl),
    transport_(&socket_),
    backlog_limit_(backlog_limit(core_->config())) {
  if (where.tls) {
    auto tls = std::make_unique<tls_layer>(*transport_, where.tls.get());
    tls_ = tls.get();
    transport_ = tls_;
    layers_.push_back(std::move(tls));
  }
  if (where.address.websocket()) {
    layers_.push_back(std::make_unique<ws_layer>(
      *transport_, where.address.path, core_->config().max_message_size));
    transport_ = layers_.back().get();
  }
}

connection::~connection() {
  --listener_.counters.connections;
  if (session_ && session_->conn == this)
    session_->conn = nullptr;
  core_->forget(this);
  core_->live.erase(this);
}

void connection::start() {
  peer_ = transport_->peer();
  loopback_ = is_loopback(peer_);
  decode_opts_.version = 0;
  decode_opts_.max_packet_size = core_->config().max_message_size;
  decode_opts_.max_user_properties = core_->limits().max_user_properties;
  last_rx_ = steady_clock::now();
  ++core_->counters.connections;
  ++core_->counters.connections_total;
  ++listener_.counters.connections;
  ++listener_.counters.connections_total;
  core_->live.insert(this);
  schedule_tick(connect_timeout);
}

// -- events -------------------------------------------------------------------

void connection::on_data(std::string_view bytes) {
  if (phase_ == phase::closing)
    return;
  last_rx_ = steady_clock::now();
  bool peer_done = false; // a layer's peer closed cleanly
  for (auto& l : layers_) {
    bool was_established = l->established();
    if (!l->read(bytes)) {
      if (!l->failure().empty()) {
        layer_ended(*l, was_established);
        return;
      }
      peer_done = true;
    }
    if (!was_established && l->established() && l.get() == tls_
        && tls_->resumed())
      ++listener_.counters.tls_resumed;
    bytes = l->output();
  }
  if (!bytes.empty())
    read_mqtt(bytes);
  if (peer_done && phase_ != phase::closing) {
    // The layer closed what is below it; the session ends as if the
    // socket closed (the will is published).
    transport_->peer_closed();
    finish(true);
    self_->quit();
  }
}

void connection::read_mqtt(std::string_view bytes) {
  auto res = reader_.feed(bytes, decode_opts_,
                          [this](mqtt::packet& p) { return handle(p); });
  send_rule_bursts();
  bound_unanswered();
  if (res.status != mqtt::decode_status::error || phase_ == phase::closing)
    return;
  ++core_->counters.protocol_errors;
  spdlog::info("hub: closing connection from {} ({}): {} (reason 0x{:02x}){}",
               peer_, client_id_.empty() ? "before CONNECT" : client_id_,
               res.what, res.reason,
               phase_ == phase::awaiting_connect && layers_.empty()
                 ? wrong_protocol_hint(bytes)
                 : "");
  if (phase_ == phase::awaiting_connect
      && res.reason == mqtt::rc::unsupported_protocol_version) {
    // We cannot know how the client frames a CONNACK of a protocol level we
    // do not speak; the 3.1.1 form is what Mosquitto sends too.
    mqtt::connack_packet ack{false, mqtt::rc311::unacceptable_protocol_version,
                             {}};
    mqtt::encode(ack, mqtt::v311, out_);
  }
  close(res.reason);
}

void connection::on_transferred(std::uint64_t written) {
  socket_.written(written);
}

void connection::on_peer_closed() {
  transport_->peer_closed();
  if (phase_ != phase::closing)
    finish(true);
  self_->quit();
}

void connection::on_tick() {
  auto now = steady_clock::now();
  if (draining_) {
    if (now >= deadline_) { // the client did not close in time
      transport_->close();
      self_->quit();
    }
    return;
  }
  // Only the latest deadline counts: re-scheduling supersedes.
  if (phase_ == phase::closing || now < deadline_)
    return;
  deadline_ = steady_clock::time_point::max();
  if (auto stalled = unestablished_layer();
      stalled && phase_ == phase::awaiting_connect) {
    ++listener_.counters.handshake_failures;
    spdlog::info("hub: {} handshake from {} on {} not done within {}s, "
                 "closing",
                 stalled->name(), peer_, listener_.url,
                 connect_timeout.count());
    close(mqtt::rc::protocol_error, false);
    return;
  }
  if (phase_ == phase::awaiting_connect) {
    spdlog::info("hub: no CONNECT from {} within {}s, closing", peer_,
                 connect_timeout.count());
    close(mqtt::rc::protocol_error);
    core_->flush_dirty();
    return;
  }
  if (keep_alive_ == 0)
    return;
  // MQTT: one and a half keep-alive periods without a packet end it.
  auto limit = std::chrono::milliseconds(keep_alive_ * 1500);
  if (reading_paused_) {
    // Its packets wait unread in the socket: silence is ours, not its.
    schedule_tick(limit);
    return;
  }
  auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(
    now - last_rx_);
  if (idle >= limit) {
    spdlog::info("hub: client '{}' silent for {}s, closing (keep-alive)",
                 client_id_, idle.count() / 1000);
    close(mqtt::rc::keep_alive_timeout);
    core_->flush_dirty();
    return;
  }
  schedule_tick(limit - idle + std::chrono::milliseconds(10));
}

void connection::on_kick() {
  if (phase_ != phase::closing) {
    // No drain: the hub is stopping (or the session was taken over).
    close(mqtt::rc::server_shutting_down, false);
    core_->flush_dirty();
    return;
  }
  flush_out();
  transport_->close();
  self_->quit();
}

void connection::on_revoked() {
  if (phase_ == phase::closing)
    return;
  spdlog::info("hub: closing the connection of '{}' from {}: a reload took "
               "its permission to connect away",
               client_id_, peer_);
  if (phase_ == phase::connected && version_ == mqtt::v5)
    write(mqtt::disconnect_packet{mqtt::packet_type::disconnect,
                                  mqtt::rc::not_authorized, {}});
  finish(true);
  flush_out();
  // Its principal is about to go; nothing is checked against it any more.
  principal_ = nullptr;
  // This runs in the hub's control actor: ask our broker to close (as a
  // takeover does).
  caf::anon_send(caf::actor_cast<caf::actor>(self_), kick_atom::value);
}

void connection::layer_ended(const layer& l, bool was_established) {
  if (!was_established)
    ++listener_.counters.handshake_failures;
  else if (&l != tls_)
    ++listener_.counters.websocket_errors;
  else
    ++core_->counters.protocol_errors;
  spdlog::info("hub: closing {} connection from {} on {}: {}", l.name(),
               peer_, listener_.url, l.failure());
  // The layer closed what is below it; the session ends as if the socket
  // closed (the will is published).
  transport_->peer_closed();
  finish(true);
  self_->quit();
}

const layer* connection::unestablished_layer() const {
  for (auto& l : layers_)
    if (!l->established())
      return l.get();
  return nullptr;
}

// -- output -------------------------------------------------------------------

void connection::flush_out() {
  if (out_.empty())
    return;
  transport_->send(out_.data(), out_.size());
  out_.clear();
  if (out_.capacity() > (1u << 20))
    mqtt::byte_buffer{}.swap(out_); // give a burst's memory back
}

void connection::write(const mqtt::packet& p) {
  mqtt::encode(p, version_ == 0 ? mqtt::v311 : version_, out_);
  core_->mark_dirty(this);
}

void connection::send_ack(mqtt::packet_type type, std::uint16_t packet_id,
                          std::uint8_t reason) {
  if (version_ == mqtt::v5 && reason != mqtt::rc::success) {
    write(mqtt::ack_packet{type, packet_id, reason, {}});
    return;
  }
  mqtt::encode_simple_ack(type, packet_id, out_);
  core_->mark_dirty(this);
}

void connection::send_connack(bool session_present, std::uint8_t reason,
                              mqtt::properties props) {
  write(mqtt::connack_packet{session_present, reason, std::move(props)});
}

// -- packets ------------------------------------------------------------------

bool connection::handle(mqtt::packet& p) {
  using mqtt::packet_type;
  switch (mqtt::type_of(p)) {
    case packet_type::connect:
      handle_connect(std::get<mqtt::connect_packet>(p));
      break;
    case packet_type::publish:
      handle_publish(std::get<mqtt::publish_packet>(p));
      break;
    case packet_type::puback:
    case packet_type::pubrec:
    case packet_type::pubrel:
    case packet_type::pubcomp:
      handle_ack(std::get<mqtt::ack_packet>(p));
      break;
    case packet_type::subscribe:
      handle_subscribe(std::get<mqtt::subscribe_packet>(p));
      break;
    case packet_type::unsubscribe:
      handle_unsubscribe(std::get<mqtt::unsubscribe_packet>(p));
      break;
    case packet_type::pingreq:
      write(mqtt::ping_packet{packet_type::pingresp});
      break;
    case packet_type::disconnect:
      handle_disconnect(std::get<mqtt::disconnect_packet>(p));
      break;
    case packet_type::auth:
      // Enhanced authentication was not negotiated in CONNECT.
      ++core_->counters.protocol_errors;
      close(mqtt::rc::protocol_error);
      break;
    default:
      close(mqtt::rc::protocol_error);
      break;
  }
  return phase_ != phase::closing;
}

void connection::handle_connect(mqtt::connect_packet& c) {
  auto& core = *core_;
  version_ = c.version;
  decode_opts_.version = c.version;
  bool v5 = version_ == mqtt::v5;
  auto refuse = [&](std::uint8_t v5_reason, std::uint8_t v311_code) {
    ++core.counters.denied_connect;
    send_connack(false, v5 ? v5_reason : v311_code);
    close(v5_reason);
  };
  if (c.props.auth_method) {
    refuse(mqtt::rc::bad_authentication_method, mqtt::rc311::not_authorized);
    return;
  }
  // Who is it?
  const principal_config* principal = nullptr;
  if (listener_.identity_as_username) {
    // Mosquitto's use_identity_as_username: the verified certificate says
    // who it is; a username or password in CONNECT is ignored.
    auto cn = tls_ ? tls_->peer_common_name() : std::string{};
    principal = core.auth().principal_named(cn);
    if (!principal) {
      spdlog::warn("hub: client certificate of {} names '{}', which is no "
                   "principal; refused",
                   peer_, cn);
      refuse(mqtt::rc::not_authorized, mqtt::rc311::not_authorized);
      return;
    }
  } else if (c.password) {
    principal = core.auth().authenticate(c.username.value_or(""), *c.password,
                                         true, loopback_);
    if (!principal) {
      spdlog::warn("hub: bad username or password from {} (user '{}')", peer_,
                   c.username.value_or(""));
      refuse(mqtt::rc::bad_username_or_password,
             mqtt::rc311::bad_username_or_password);
      return;
    }
  } else if (!core.auth().anonymous_allowed(loopback_)) {
    spdlog::warn("hub: anonymous client from {} refused", peer_);
    refuse(mqtt::rc::not_authorized, mqtt::rc311::not_authorized);
    return;
  }
  principal_ = principal;
  bool assigned = false;
  if (c.client_id.empty()) {
    if (!v5 && !c.clean_start) {
      // MQTT 3.1.1 3.1.3-8: a persistent session needs a client id.
      refuse(mqtt::rc::client_id_not_valid, mqtt::rc311::identifier_rejected);
      return;
    }
    c.client_id = core.assign_client_id();
    assigned = true;
  }
  client_id_ = c.client_id;
  keep_alive_ = c.keep_alive;
  // hub.max_keepalive, as Mosquitto applies it: MQTT 5 clients are told
  // the keep-alive to use, 3.1.1 clients cannot be and are refused.
  std::optional<std::uint16_t> server_keep_alive;
  if (auto max = core.limits().max_keepalive; max > 0) {
    if (keep_alive_ == 0 || keep_alive_ > max) {
      if (!v5) {
        spdlog::info("hub: client '{}' from {} refused: keep-alive {} s, "
                     "hub.max_keepalive is {} s",
                     client_id_, peer_, keep_alive_, max);
        refuse(mqtt::rc::client_id_not_valid, mqtt::rc311::identifier_rejected);
        return;
      }
      keep_alive_ = static_cast<std::uint16_t>(max);
    }
    server_keep_alive = keep_alive_;
  }
  if (v5) {
    client_receive_max_ = c.props.receive_maximum.value_or(65535);
    client_max_packet_ = c.props.maximum_packet_size.value_or(mqtt_max_packet);
    topic_alias_max_ = server_topic_alias_max;
    client_topic_alias_max_ = static_cast<std::uint16_t>(std::min<std::size_t>(
      c.props.topic_alias_maximum.value_or(0), out_alias_max));
  }
  std::uint32_t expiry = v5 ? c.props.session_expiry.value_or(0)
                            : (c.clean_start ? 0 : 0xFFFFFFFF);
  // A session belongs to the principal that created it: another one
  // neither resumes it nor takes it over (docs/security.md).
  auto existing = core.find_session(client_id_);
  if (existing && existing->owner != principal) {
    ++core.counters.denied_session;
    spdlog::warn("hub: client id '{}' from {} refused: its session belongs "
                 "to {}, not {}",
                 client_id_, peer_, principal_name(existing->owner),
                 principal_name(principal));
    refuse(mqtt::rc::not_authorized, mqtt::rc311::identifier_rejected);
    return;
  }
  if (c.has_will && !valid_topic_name(c.will.topic, core.topic_bounds())) {
    ++core.counters.refused_limits;
    refuse(mqtt::rc::topic_name_invalid, mqtt::rc311::not_authorized);
    return;
  }
  // Session takeover and resumption.
  if (existing && existing->conn && existing->conn != this) {
    spdlog::info("hub: client '{}' reconnected from {}, taking over", client_id_,
                 peer_);
    existing->conn->take_over(c.clean_start, self_);
  }
  core.cancel_will(client_id_);
  if (existing && c.clean_start) {
    core.end_session(*existing);
    existing = nullptr;
  }
  bool session_present = existing != nullptr;
  session_ = existing ? existing : &core.create_session(client_id_, principal);
  session_->conn = this;
  session_->expiry_interval = expiry;
  core.session_changed(*session_);
  has_will_ = c.has_will;
  if (has_will_) {
    will_ = std::move(c.will);
    will_.origin = client_id_;
    will_delay_ = c.will_delay;
  }
  phase_ = phase::connected;
  mqtt::properties props;
  if (v5) {
    if (assigned)
      props.assigned_client_id = client_id_;
    props.topic_alias_maximum = topic_alias_max_;
    props.receive_maximum = server_receive_max;
    props.server_keep_alive = server_keep_alive;
    if (core.config().max_message_size < mqtt_max_packet)
      props.maximum_packet_size =
        static_cast<std::uint32_t>(core.config().max_message_size);
  }
  send_connack(session_present, mqtt::rc::success, std::move(props));
  spdlog::debug("hub: client '{}' connected from {} (MQTT {}, session {})",
                client_id_, peer_, v5 ? "5" : "3.1.1",
                session_present ? "resumed" : "new");
  // Unacknowledged messages go out again as duplicates, then the queue.
  core.drain(*session_, true);
  if (keep_alive_ > 0)
    schedule_tick(std::chrono::milliseconds(keep_alive_ * 1500));
}

bool connection::handle_publish(mqtt::publish_packet& p) {
  auto& core = *core_;
  auto& msg = p.msg;
  if (phase_ != phase::connected)
    return false;
  if (p.topic_alias) {
    if (p.topic_alias > topic_alias_max_) {
      close(mqtt::rc::topic_alias_invalid);
      return false;
    }
    if (topic_aliases_.size() <= p.topic_alias)
      topic_aliases_.resize(topic_alias_max_ + 1u);
    if (!msg.topic.empty()) {
      topic_aliases_[p.topic_alias] = msg.topic;
    } else if (topic_aliases_[p.topic_alias].empty()) {
      close(mqtt::rc::protocol_error); // alias never set up
      return false;
    } else {
      msg.topic = topic_aliases_[p.topic_alias];
    }
  }
  if (!valid_topic_name(msg.topic, core.topic_bounds())) {
    // Deeper or longer than hub.max_topic_levels / max_topic_length.
    ++core.counters.refused_limits;
    spdlog::info("hub: client '{}' published to a topic beyond the hub's "
                 "limits ({} bytes), closing",
                 client_id_, msg.topic.size());
    close(mqtt::rc::topic_name_invalid);
    return false;
  }
  auto ack_type = msg.qos == 2 ? mqtt::packet_type::pubrec
                               : mqtt::packet_type::puback;
  if (msg.qos > 0 && version_ == mqtt::v5
      && acks_.size() + session_->incoming_qos2.size() >= server_receive_max) {
    spdlog::info("hub: client '{}' sent more than {} unacknowledged QoS 1/2 "
                 "publishes (Receive Maximum), closing",
                 client_id_, server_receive_max);
    close(mqtt::rc::receive_maximum_exceeded);
    return false;
  }
  if (!core.auth().may_publish({principal_, client_id_}, msg.topic)) {
    ++core.counters.denied_publish;
    spdlog::warn("hub: client '{}' may not publish to '{}'", client_id_,
                 msg.topic);
    // MQTT 5 answers with 0x87; MQTT 3.1.1 has no way to say no, so the
    // message is acknowledged and dropped (the client must not resend it).
    if (msg.qos > 0)
      queue_ack(p.packet_id, ack_type, 0,
                version_ == mqtt::v5 ? mqtt::rc::not_authorized : 0);
    return true;
  }
  if (msg.qos == 2) {
    bool pending = std::any_of(acks_.begin(), acks_.end(), [&](auto& a) {
      return a.packet_id == p.packet_id;
    });
    if (pending)
      return true; // its first copy's PUBREC is on its way
    if (session_->incoming_qos2.count(p.packet_id)) {
      // A resent QoS 2 publish we already have: acknowledge, never route
      // it twice.
      send_ack(mqtt::packet_type::pubrec, p.packet_id, 0);
      return true;
    }
    // Known from now on, and stored in the same commit as the message's
    // routes: a resend after a crash is recognised, not routed again.
    session_->incoming_qos2.insert(p.packet_id);
    if (session_->stored)
      core.session_changed(*session_);
  }
  msg.origin = client_id_;
  auto stored_from = core.store_written();
  core.route(msg, session_->id, rule_scratch_);
  auto stored_through = core.store_written();
  auto ack_seq = acks_front_seq_ + acks_.size(); // the number it gets
  if (msg.qos > 0) {
    // End-to-end acknowledgement: the client's PUBACK/PUBREC waits until
    // every rule subscriber has answered, every session queue it went
    // beyond its bound has room again (back-pressure instead of loss) and
    // the store holds what the message left in sessions.
    auto full = core.over_bound();
    for (auto s : full)
      core.wait_for_room(*s, self_->address(), ack_seq);
    queue_ack(p.packet_id, ack_type, rule_scratch_.size(), 0, full.size(),
              stored_from, stored_through);
  }
  if (!rule_scratch_.empty())
    deliver_to_rules(rule_scratch_, msg.qos > 0, ack_seq);
  return true;
}

void connection::deliver_to_rules(std::vector<rule_delivery>& rules,
                                  bool wants_ack, std::uint64_t ack_seq) {
  for (auto& r : rules) {
    ++core_->counters.rule_deliveries;
    // Ticketed, not requested (core/reply.hpp); QoS 0 wants no answer.
    auto ticket = wants_ack ? rule_tickets_.add(ack_seq) : 0;
    auto burst = std::find_if(rule_bursts_.begin(), rule_bursts_.end(),
                              [&](auto& b) { return b.rule == r.subscriber; });
    if (burst == rule_bursts_.end())
      burst = rule_bursts_.insert(burst, rule_burst{r.subscriber, {}, {}});
    burst->msgs.push_back(std::move(r.msg));
    burst->tickets.push_back(ticket);
  }
  rules.clear();
}

void connection::send_rule_bursts() {
  for (auto& b : rule_bursts_)
    self_->send(b.rule, deliver_atom::value, std::move(b.msgs),
                std::move(b.tickets));
  rule_bursts_.clear();
}

void connection::queue_ack(std::uint16_t packet_id, mqtt::packet_type type,
                           std::size_t waiting, std::uint8_t reason,
                           std::size_t full, std::uint64_t stored_from,
                           std::uint64_t stored_through) {
  // `since` only serves the 30 s limit: the time of the read will do.
  acks_.push_back(pending_ack{packet_id, type, waiting, full, stored_from,
                              stored_through, false, reason, last_rx_});
  if (stored_through > stored_from && core_->store_refusing())
    refuse_unstored(acks_.back());
  pump_acks();
}

void connection::refuse_unstored(pending_ack& a) {
  // The store cannot take it (disk full, read-only, persistence.max_size):
  // MQTT 5 says so, MQTT 3.1.1 gets no ack and resends later.
  ++core_->counters.refused_unstored;
  a.stored_from = a.stored_through = 0;
  if (version_ == mqtt::v5)
    a.reason = mqtt::rc::quota_exceeded;
  else
    a.failed = true;
}

void connection::on_stored() {
  pump_acks();
  pump_stored_replies();
}

void connection::reply_when_stored(mqtt::packet_type type,
                                   std::uint16_t packet_id,
                                   std::uint8_t reason,
                                   std::uint64_t stored_from) {
  stored_replies_.push_back(stored_reply{type, packet_id, reason, stored_from,
                                         core_->store_written()});
  pump_stored_replies();
}

void connection::pump_stored_replies() {
  while (!stored_replies_.empty()) {
    auto& front = stored_replies_.front();
    // A store that refuses (disk full) cannot be waited for: the reply
    // goes anyway, as it would without persistence.
    bool refused = false;
    if (core_->store_pending(front.stored_from, front.stored_through,
                             refused)) {
      core_->wait_for_store(this);
      return;
    }
    auto r = front;
    stored_replies_.pop_front();
    if (phase_ != phase::closing && session_)
      send_ack(r.type, r.packet_id, r.reason);
  }
}

connection::pending_ack* connection::ack_numbered(std::uint64_t seq) {
  // Gone when it was sent, expired or the connection closed.
  if (seq < acks_front_seq_ || seq - acks_front_seq_ >= acks_.size())
    return nullptr;
  return &acks_[seq - acks_front_seq_];
}

void connection::on_room(std::uint64_t seq) {
  auto a = ack_numbered(seq);
  if (!a || a->full == 0)
    return;
  --a->full;
  pump_acks();
}

void connection::on_rule_answer(std::uint64_t ticket, const caf::error& err) {
  auto seq = rule_tickets_.take(ticket);
  if (!seq)
    return;
  if (err)
    ++core_->counters.rule_errors;
  auto found = ack_numbered(*seq);
  if (!found || found->waiting == 0)
    return;
  auto& a = *found;
  --a.waiting;
  if (is_permanent(err)) {
    // Handled by reporting it: resending cannot succeed. MQTT 3.1.1 has no
    // way to say so and gets a plain ack; the first reason code wins.
    if (version_ == mqtt::v5 && a.reason == mqtt::rc::success)
      a.reason = mqtt_reason_code(err);
  } else if (err) {
    a.failed = true;
  }
  pump_acks();
}

void connection::alias_topic(const std::string& topic,
                             mqtt::publish_header& h) {
  if (client_topic_alias_max_ == 0)
    return;
  if (auto known = out_aliases_.find(topic); known != out_aliases_.end()) {
    h.topic_alias = known->second;
    h.omit_topic = true;
    return;
  }
  if (out_aliases_.size() >= client_topic_alias_max_
      || topic.size() > out_alias_topic_max)
    return; // all taken: the topic goes in full
  auto alias = static_cast<std::uint16_t>(out_aliases_.size() + 1);
  out_aliases_.emplace(topic, alias);
  h.topic_alias = alias;
}

void connection::flush_soon() {
  if (!flush_scheduled_) {
    flush_scheduled_ = true;
    self_->send(self_, flush_atom::value);
  }
}

void connection::on_flush() {
  flush_scheduled_ = false;
}

void connection::expire_rule_acks(steady_clock::time_point now) {
  // Acks queue in arrival order, so the oldest waiting ones are in front.
  bool expired = false;
  for (std::size_t i = 0; i < acks_.size(); ++i) {
    auto& a = acks_[i];
    if (now - a.since < rule_ack_timeout)
      break;
    if (a.waiting > 0) {
      ++core_->counters.rule_errors;
      a.waiting = 0;
      a.failed = true;
      expired = true;
      auto seq = acks_front_seq_ + i;
      rule_tickets_.erase_if([&](std::uint64_t s) { return s == seq; });
    }
  }
  if (expired)
    pump_acks();
}

void connection::pump_acks() {
  // Acknowledgements leave in the order the publishes arrived (MQTT 4.6).
  while (!acks_.empty() && acks_.front().waiting == 0
         && acks_.front().full == 0) {
    auto& front = acks_.front();
    bool refused = false;
    if (core_->store_pending(front.stored_from, front.stored_through,
                             refused)) {
      core_->wait_for_store(this);
      break;
    }
    if (refused)
      refuse_unstored(front);
    auto a = front;
    acks_.pop_front();
    ++acks_front_seq_;
    if (phase_ == phase::closing || !session_)
      continue;
    bool accepted = !a.failed && a.reason < 0x80;
    if (a.type == mqtt::packet_type::pubrec && !accepted
        && session_->incoming_qos2.erase(a.packet_id) && session_->stored)
      core_->session_changed(*session_); // the client may send it again
    if (a.failed) {
      // No ack: the client resends after reconnecting (documented in
      // docs/hub.md).
      spdlog::warn("hub: not acknowledging packet {} of '{}': a rule "
                   "subscriber failed or the store refused it",
                   a.packet_id, client_id_);
      continue;
    }
    send_ack(a.type, a.packet_id, a.reason);
  }
  bound_unanswered();
}

void connection::bound_unanswered() {
  if (!reading_paused_ && acks_.size() >= server_receive_max
      && phase_ == phase::connected) {
    reading_paused_ = true;
    transport_->pause_reading();
  } else if (reading_paused_ && acks_.size() <= server_receive_max / 2) {
    reading_paused_ = false;
    last_rx_ = steady_clock::now(); // keep-alive counts from here
    transport_->resume_reading();
  }
}

void connection::handle_ack(const mqtt::ack_packet& a) {
  using mqtt::packet_type;
  auto stored_from = core_->store_written();
  if (a.type == packet_type::pubrel) {
    auto known = session_->incoming_qos2.erase(a.packet_id) > 0;
    if (known && session_->stored)
      core_->session_changed(*session_);
    reply_when_stored(packet_type::pubcomp, a.packet_id,
                      known ? mqtt::rc::success
                            : mqtt::rc::packet_id_not_found,
                      stored_from);
    return;
  }
  auto& inflight = session_->inflight;
  auto i = std::find_if(inflight.begin(), inflight.end(), [&](auto& e) {
    return e.packet_id == a.packet_id;
  });
  switch (a.type) {
    case packet_type::puback:
      if (i != inflight.end() && i->out.qos == 1)
        core_->complete(*session_, i);
      break;
    case packet_type::pubrec:
      if (i != inflight.end() && a.reason >= 0x80) {
        core_->complete(*session_, i);
        break;
      }
      if (i != inflight.end())
        core_->released(*session_, *i);
      reply_when_stored(packet_type::pubrel, a.packet_id,
                        i != inflight.end() ? mqtt::rc::success
                                            : mqtt::rc::packet_id_not_found,
                        stored_from);
      return; // the window is still taken until PUBCOMP
    case packet_type::pubcomp:
      if (i != inflight.end() && i->released)
        core_->complete(*session_, i);
      break;
    default:
      break;
  }
  core_->drain(*session_, false);
}

void connection::handle_subscribe(const mqtt::subscribe_packet& s) {
  auto& core = *core_;
  bool v5 = version_ == mqtt::v5;
  mqtt::suback_packet ack{mqtt::packet_type::suback, s.packet_id, {}, {}};
  std::uint32_t sub_id =
    s.props.subscription_ids.empty() ? 0 : s.props.subscription_ids.front();
  std::vector<std::pair<const std::string*, mqtt::subscription_options>>
    retained;
  for (auto& [filter, opts] : s.filters) {
    auto shared = parse_shared_filter(filter);
    if (!valid_topic_filter(filter, core.topic_bounds())) {
      ack.reasons.push_back(v5 ? mqtt::rc::topic_filter_invalid
                               : mqtt::rc::unspecified_error);
      continue;
    }
    if (session_->subscriptions.size() >= core.limits().max_subscriptions
        && !session_->subscriptions.count(filter)) {
      ++core.counters.refused_limits;
      spdlog::info("hub: client '{}' has {} subscriptions "
                   "(hub.max_subscriptions), refusing '{}'",
                   client_id_, session_->subscriptions.size(), filter);
      ack.reasons.push_back(v5 ? mqtt::rc::quota_exceeded
                               : mqtt::rc::unspecified_error);
      continue;
    }
    if (shared && opts.no_local) {
      // MQTT 5 3.8.3.1: No Local on a shared subscription.
      close(mqtt::rc::protocol_error);
      return;
    }
    if (!core.auth().may_subscribe({principal_, client_id_}, filter)) {
      ++core.counters.denied_subscribe;
      spdlog::warn("hub: client '{}' may not subscribe to '{}'", client_id_,
                   filter);
      ack.reasons.push_back(v5 ? mqtt::rc::not_authorized
                               : mqtt::rc::unspecified_error);
      continue;
    }
    bool is_new = core.subscribe(*session_, filter, opts, sub_id);
    ack.reasons.push_back(opts.qos);
    if (!shared
        && (opts.retain_handling == 0
            || (opts.retain_handling == 1 && is_new)))
      retained.emplace_back(&filter, opts);
  }
  write(ack);
  for (auto& [filter, opts] : retained)
    core.send_retained(*session_, *filter, opts, sub_id);
}

void connection::handle_unsubscribe(const mqtt::unsubscribe_packet& u) {
  mqtt::suback_packet ack{mqtt::packet_type::unsuback, u.packet_id, {}, {}};
  for (auto& filter : u.filters) {
    bool removed = core_->unsubscribe(*session_, filter);
    ack.reasons.push_back(removed ? mqtt::rc::success
                                  : mqtt::rc::no_subscription_existed);
  }
  write(ack);
}

void connection::handle_disconnect(const mqtt::disconnect_packet& d) {
  if (version_ == mqtt::v5 && d.props.session_expiry) {
    // MQTT 5 3.14.2.2.2: a session that ends with the connection cannot be
    // made persistent at DISCONNECT.
    if (session_->expiry_interval == 0 && *d.props.session_expiry != 0) {
      close(mqtt::rc::protocol_error);
      return;
    }
    session_->expiry_interval = *d.props.session_expiry;
    core_->session_changed(*session_);
  }
  bool publish_will = version_ == mqtt::v5
                      && d.reason == mqtt::rc::disconnect_with_will;
  finish(publish_will);
  flush_out();
  transport_->close();
  self_->quit();
}

// -- ending -------------------------------------------------------------------

void connection::close(std::uint8_t reason, bool drain) {
  if (phase_ == phase::closing)
    return;
  if (phase_ == phase::connected && version_ == mqtt::v5)
    write(mqtt::disconnect_packet{mqtt::packet_type::disconnect, reason, {}});
  finish(true);
  flush_out();
  if (drain) {
    draining_ = true;
    transport_->shutdown_write();
    if (std::exchange(reading_paused_, false))
      transport_->resume_reading(); // drained, not parsed (on_data)
    schedule_tick(drain_timeout);
    return;
  }
  transport_->close();
  self_->quit();
}

void connection::finish(bool publish_will) {
  if (phase_ == phase::closing)
    return;
  phase_ = phase::closing;
  --core_->counters.connections;
  acks_.clear();
  auto s = session_;
  session_ = nullptr;
  if (!s)
    return;
  core_->went_offline(*s);
  if (publish_will && has_will_) {
    if (will_delay_ > 0 && s->expiry_interval > 0) {
      auto delay = std::min(will_delay_, s->expiry_interval);
      core_->schedule_will(delayed_will{will_, client_id_, principal_,
                                        steady_clock::now()
                                          + std::chrono::seconds(delay)});
    } else {
      core_->publish_internal(will_, {principal_, client_id_}, self_);
    }
  }
  has_will_ = false;
  if (s->expiry_interval == 0)
    core_->end_session(*s);
}

void connection::take_over(bool session_ends, caf::io::broker* requester) {
  if (phase_ == phase::closing)
    return;
  if (phase_ == phase::connected && version_ == mqtt::v5)
    write(mqtt::disconnect_packet{mqtt::packet_type::disconnect,
                                  mqtt::rc::session_taken_over,
                                  {}});
  phase_ = phase::closing;
  --core_->counters.connections;
  acks_.clear();
  if (session_ && session_->conn == this)
    session_->conn = nullptr;
  session_ = nullptr; // the new connection owns the session now
  // MQTT 5 3.1.3.2.2: a delayed will is not sent when a new connection
  // resumes the session; it is when the session ends.
  if (has_will_ && (session_ends || will_delay_ == 0))
    core_->publish_internal(will_, {principal_, client_id_},
                            requester);
  has_will_ = false;
  flush_out();
  // This runs in the new connection's broker: ask ours to close.
  caf::anon_send(caf::actor_cast<caf::actor>(self_), kick_atom::value);
}

void connection::schedule_tick(std::chrono::milliseconds after) {
  // No delayed_send: a pending timer message holds a strong reference to
  // the broker, so every closed connection's memory stayed until its timer
  // fired (1.5 KB per connection for up to 1.5 keep-alive periods). The
  // hub's housekeeping pokes connections whose deadline has passed.
  deadline_ = steady_clock::now() + after;
}

// -- the session broker -------------------------------------------------------

caf::behavior session_broker(caf::io::broker* self,
                             caf::io::connection_handle hdl,
                             std::shared_ptr<hub_core> core, listener* where) {
  close_mailbox_on_exit(self);
  auto conn = std::make_shared<connection>(self, hdl, core, *where);
  conn->start();
  return {
    [conn, core](const caf::io::new_data_msg& m) {
      auto keep = conn; // the handler may end the broker
      keep->on_data(std::string_view{m.buf.data(), m.buf.size()});
      core->flush_dirty();
    },
    // Reading stopped (connection::bound_unanswered).
    [](const caf::io::connection_passivated_msg&) {},
    [conn](const caf::io::data_transferred_msg& m) {
      conn->on_transferred(m.written);
    },
    [conn, core](const caf::io::connection_closed_msg&) {
      auto keep = conn;
      keep->on_peer_closed();
      core->flush_dirty();
    },
    [conn, core](tick_atom) {
      auto keep = conn;
      keep->on_tick();
      core->flush_dirty();
    },
    [conn, core](kick_atom) {
      auto keep = conn;
      keep->on_kick();
      core->flush_dirty();
    },
    // Rule subscribers' answers to QoS 1/2 deliveries.
    [conn](reply_atom, std::uint64_t ticket, ok_atom) {
      conn->on_rule_answer(ticket, caf::none);
      conn->flush_soon();
    },
    [conn](reply_atom, const std::vector<std::uint64_t>& tickets, ok_atom) {
      for (auto ticket : tickets)
        conn->on_rule_answer(ticket, caf::none);
      conn->flush_soon();
    },
    [conn](reply_atom, std::uint64_t ticket, const caf::error& err) {
      conn->on_rule_answer(ticket, err);
      conn->flush_soon();
    },
    [conn](room_atom, std::uint64_t seq) {
      conn->on_room(seq);
      conn->flush_soon();
    },
    [conn, core](flush_atom) {
      conn->on_flush();
      core->flush_dirty();
    },
  };
}

} // namespace hubflow::hub
