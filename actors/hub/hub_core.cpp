#include "hub/hub_core.hpp"

#include <algorithm>

#include <caf/actor_cast.hpp>
#include <caf/io/broker.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

#include "core/type_ids.hpp"
#include "hub/connection.hpp"

namespace hubflow::hub {

namespace {

/// Rule subscribers are numbered from here on, sessions below.
constexpr mqtt::subscriber_id rule_id_base = mqtt::subscriber_id{1} << 62;

constexpr std::uint32_t never_expires = 0xFFFFFFFF;

store::session_record to_record(const session_state& s) {
  store::session_record r;
  r.client_id = s.client_id;
  r.anonymous = s.owner == nullptr;
  if (s.owner)
    r.owner = s.owner->username;
  r.expiry_interval = s.expiry_interval;
  if (!s.conn)
    r.offline_since_ms = store::wall_clock_ms()
                         - std::chrono::duration_cast<std::chrono::milliseconds>(
                             steady_clock::now() - s.offline_since)
                             .count();
  for (auto& [filter, sub] : s.subscriptions) {
    auto& [opts, id] = sub;
    r.subscriptions.push_back(store::subscription_record{
      filter, opts.qos, opts.no_local, opts.retain_as_published,
      opts.retain_handling, id});
  }
  r.incoming_qos2.assign(s.incoming_qos2.begin(), s.incoming_qos2.end());
  r.next_packet_id = s.next_packet_id;
  return r;
}

} // namespace

std::uint16_t session_state::allocate_packet_id() {
  for (;;) {
    auto id = next_packet_id++;
    if (next_packet_id == 0)
      next_packet_id = 1;
    if (id == 0)
      continue;
    auto in_use = std::any_of(inflight.begin(), inflight.end(),
                              [&](auto& e) { return e.packet_id == id; });
    if (!in_use)
      return id;
  }
}

hub_core::hub_core(const hub_config& cfg)
  : cfg_(cfg),
    topic_bounds_{cfg.limits.max_topic_levels, cfg.limits.max_topic_length},
    auth_(std::make_unique<authenticator>(cfg_)) {
  for (auto& r : cfg_.subscriptions)
    remaps_.push_back(
      remap{r.source_topic, r.source_qos, r.target_topic, r.target_qos});
}

hub_core::~hub_core() = default;

// -- persistence --------------------------------------------------------------

void hub_core::report_store_to(const caf::actor& control) {
  std::lock_guard<std::mutex> guard{store_listener_->mutex};
  store_listener_->control = control;
}

void hub_core::restore(std::shared_ptr<store::hub_store> store) {
  store_ = std::move(store);
  store_->on_durable([listener = store_listener_](std::uint64_t durable,
                                                  std::uint64_t failed) {
    caf::actor control;
    {
      std::lock_guard<std::mutex> guard{listener->mutex};
      control = listener->control;
    }
    if (control)
      caf::anon_send(control, stored_atom::value, durable, failed);
  });
  auto started = steady_clock::now();
  auto contents = store_->load();
  auto now = steady_clock::now();
  auto now_wall = store::wall_clock_ms();
  std::size_t messages = 0;
  for (auto& r : contents.sessions) {
    const principal_config* owner = nullptr;
    if (!r.anonymous && !(owner = auth_->principal_named(r.owner))) {
      // Only its owner may resume a session, and that principal is gone.
      spdlog::warn("store: session '{}' of principal '{}' dropped: no such "
                   "principal any more",
                   r.client_id, r.owner);
      store_->remove_session(r.client_id);
      continue;
    }
    auto& s = create_session(r.client_id, owner);
    s.stored = true;
    s.expiry_interval = r.expiry_interval;
    // Offline since it was stored so; a session that was online when the
    // broker stopped counts from now.
    auto offline_ms = r.offline_since_ms ? std::max<std::int64_t>(
                                             0, now_wall - r.offline_since_ms)
                                         : 0;
    s.offline_since = now - std::chrono::milliseconds(offline_ms);
    for (auto& sub : r.subscriptions) {
      mqtt::subscription_options opts{sub.qos, sub.no_local,
                                      sub.retain_as_published,
                                      sub.retain_handling};
      s.subscriptions[sub.filter] = {opts, sub.identifier};
      tree_.subscribe(sub.filter, s.id, opts, sub.identifier);
    }
    s.incoming_qos2.insert(r.incoming_qos2.begin(), r.incoming_qos2.end());
    s.next_packet_id = r.next_packet_id;
    auto q = contents.queues.find(r.client_id);
    if (q == contents.queues.end())
      continue;
    for (auto& m : q->second) {
      outgoing_message out{std::move(m.msg), m.qos, m.retain,
                           std::move(m.subscription_ids), m.seq};
      s.next_store_seq = std::max(s.next_store_seq, m.seq + 1);
      ++messages;
      if (m.packet_id != 0) {
        s.inflight.push_back(inflight_entry{m.packet_id, std::move(out),
                                            m.released});
      } else {
        push_queued(s, std::move(out));
      }
    }
    contents.queues.erase(q);
  }
  for (auto& [client_id, orphans] : contents.queues)
    store_->remove_session(client_id); // messages of no stored session
  for (auto& m : contents.retained)
    retained_.set(m);
  // Sessions whose expiry passed while the broker was down end now,
  // before anyone can resume them.
  std::vector<session_state*> expired;
  for (auto& [id, s] : sessions_)
    if (session_expired(*s, now))
      expired.push_back(s.get());
  for (auto s : expired)
    end_session(*s);
  spdlog::info("store: restored {} sessions ({} expired while stopped), {} "
               "queued or in-flight messages and {} retained messages in {} ms",
               sessions_.size(), expired.size(), messages,
               contents.retained.size(),
               std::chrono::duration_cast<std::chrono::milliseconds>(
                 steady_clock::now() - started)
                 .count());
}

bool hub_core::store_pending(std::uint64_t from, std::uint64_t through,
                             bool& refused) const {
  refused = through > from && from < store_failed_through_;
  // sync: off acknowledges at once (written behind).
  return !refused && store_ && store_->acks_wait()
         && through > store_durable_;
}

void hub_core::store_reported(std::uint64_t durable,
                              std::uint64_t failed_through) {
  store_failed_through_ = std::max(store_failed_through_, failed_through);
  store_durable_ = std::max(store_durable_, durable);
  auto waiting = std::move(store_waiters_);
  store_waiters_.clear();
  for (auto c : waiting)
    if (live.count(c))
      c->on_stored(); // may wait again (wait_for_store)
}

void hub_core::session_changed(session_state& s) {
  if (!store_)
    return;
  if (s.expiry_interval == 0) {
    if (s.stored) {
      store_->remove_session(s.client_id);
      s.stored = false;
      for (auto& e : s.inflight)
        e.out.stored = 0;
      for (auto& out : s.queue)
        out.stored = 0;
    }
    return;
  }
  s.stored = true;
  store_->put_session(to_record(s));
}

void hub_core::complete(session_state& s,
                        std::vector<inflight_entry>::iterator i) {
  unstore_message(s, i->out);
  s.inflight.erase(i);
}

void hub_core::released(session_state& s, inflight_entry& e) {
  e.released = true;
  e.out.msg.body = payload{}; // only the packet id matters now
  store_message(s, e.out, e.packet_id, true);
}

void hub_core::store_message(session_state& s, outgoing_message& out,
                             std::uint16_t packet_id, bool released) {
  if (!store_ || !s.stored || out.qos == 0)
    return;
  if (out.stored == 0)
    out.stored = s.next_store_seq++;
  store_->put_message(s.client_id,
                      store::queued_record{out.stored, packet_id, released,
                                           out.qos, out.retain,
                                           out.subscription_ids, out.msg});
}

void hub_core::unstore_message(session_state& s, const outgoing_message& out) {
  if (store_ && s.stored && out.stored != 0)
    store_->remove_message(s.client_id, out.stored);
}

void hub_core::set_retained(const message& msg) {
  retained_.set(msg);
  // $SYS topics describe the running broker: never carried over.
  if (!store_ || msg.topic.starts_with("$SYS/"))
    return;
  if (msg.body.empty())
    store_->remove_retained(msg.topic);
  else
    store_->put_retained(msg);
}

// -- sessions -----------------------------------------------------------------

session_state* hub_core::find_session(const std::string& client_id) {
  auto i = sessions_.find(client_id);
  return i == sessions_.end() ? nullptr : i->second.get();
}

session_state& hub_core::create_session(const std::string& client_id,
                                        const principal_config* owner) {
  auto s = std::make_unique<session_state>();
  s->client_id = client_id;
  s->owner = owner;
  s->id = next_session_id_++;
  auto& ref = *s;
  by_id_.emplace(ref.id, &ref);
  sessions_[client_id] = std::move(s);
  counters.sessions = static_cast<std::int64_t>(sessions_.size());
  return ref;
}

void hub_core::end_session(session_state& s) {
  release_waiters(s);
  if (store_ && s.stored)
    store_->remove_session(s.client_id); // and its messages
  for (auto& [filter, opts] : s.subscriptions)
    tree_.unsubscribe(filter, s.id);
  by_id_.erase(s.id);
  all_queued_bytes_ -= s.queued_bytes;
  sessions_.erase(s.client_id); // destroys s
  counters.sessions = static_cast<std::int64_t>(sessions_.size());
}

std::string hub_core::assign_client_id() {
  for (;;) {
    auto id = "hubflow-" + std::to_string(next_client_number_++);
    if (!find_session(id))
      return id;
  }
}

std::size_t hub_core::window(const session_state& s) const {
  auto server = std::max<std::size_t>(cfg_.max_inflight, 1);
  return std::min<std::size_t>(server, s.conn->client_receive_maximum());
}

void hub_core::drain(session_state& s, bool resend) {
  if (!s.conn)
    return;
  if (resend) {
    for (auto i = s.inflight.begin(); i != s.inflight.end();) {
      if (i->released) {
        mqtt::encode_simple_ack(mqtt::packet_type::pubrel, i->packet_id,
                                s.conn->out());
        mark_dirty(s.conn);
        ++i;
      } else if (send_publish(s, i->out, i->packet_id, true)) {
        ++i;
      } else {
        unstore_message(s, i->out);
        i = s.inflight.erase(i); // expired or too large: dropped
      }
    }
  }
  while (!s.queue.empty() && s.inflight.size() < window(s)) {
    auto out = pop_queued(s);
    auto id = s.allocate_packet_id();
    if (send_publish(s, out, id, false)) {
      auto& e = s.inflight.emplace_back(inflight_entry{id, std::move(out), false});
      store_message(s, e.out, id, false); // a resend must use this id
    } else {
      unstore_message(s, out);
    }
  }
  // Half, not below the bound: a publisher let go gets room for a run of
  // messages instead of one ack at a time.
  if (!s.room_waiters.empty() && s.queue.size() <= cfg_.max_queued_messages / 2
      && s.queued_bytes <= cfg_.limits.max_queued_bytes / 2)
    release_waiters(s);
}

void hub_core::went_offline(session_state& s) {
  s.conn = nullptr;
  s.offline_since = steady_clock::now();
  release_waiters(s);
  if (s.stored)
    session_changed(s); // when it went offline counts for its expiry
}

void hub_core::wait_for_room(session_state& s, const caf::actor_addr& who,
                             std::uint64_t key) {
  ++counters.held_for_room;
  s.room_waiters.push_back({who, key});
}

void hub_core::release_waiters(session_state& s) {
  for (auto& w : s.room_waiters)
    caf::anon_send(caf::actor_cast<caf::actor>(w.who), room_atom::value, w.key);
  s.room_waiters.clear();
}

// -- subscriptions ------------------------------------------------------------

bool hub_core::subscribe(session_state& s, const std::string& filter,
                         const mqtt::subscription_options& opts,
                         std::uint32_t subscription_id) {
  s.subscriptions[filter] = {opts, subscription_id};
  if (s.stored)
    session_changed(s);
  return tree_.subscribe(filter, s.id, opts, subscription_id);
}

bool hub_core::unsubscribe(session_state& s, const std::string& filter) {
  s.subscriptions.erase(filter);
  if (s.stored)
    session_changed(s);
  return tree_.unsubscribe(filter, s.id);
}

void hub_core::send_retained(session_state& s, std::string_view filter,
                             const mqtt::subscription_options& opts,
                             std::uint32_t subscription_id) {
  std::vector<message> found;
  retained_.match(filter, found);
  std::uint32_t ids[1] = {subscription_id};
  std::span<const std::uint32_t> id_span;
  if (subscription_id)
    id_span = ids;
  for (auto& m : found) {
    // As on every delivery: a filter may reach topics its owner may not
    // read (an acl file grants `#` and denies a part).
    if (!auth_->may_receive({s.owner, s.client_id}, m.topic)) {
      ++counters.denied_receive;
      continue;
    }
    deliver(s, m, std::min(m.qos, opts.qos), true, id_span);
  }
}

// -- rule subscribers ---------------------------------------------------------

hub_core::rule_subscribed
hub_core::subscribe_rule(const subscriber_actor& who, const std::string& filter,
                         std::uint8_t qos) {
  rule_subscribed result;
  if (!valid_topic_filter(filter, topic_bounds_))
    return result;
  auto [i, added] = rule_ids_.emplace(who.address(), next_rule_id_);
  if (added)
    rules_[next_rule_id_++].handle = who;
  result.new_subscriber = added;
  auto id = i->second;
  result.new_filter = rules_[id].filters.insert(filter).second;
  if (result.new_filter) {
    mqtt::subscription_options opts;
    opts.qos = std::min<std::uint8_t>(qos, 2);
    tree_.subscribe(filter, id, opts);
  }
  return result;
}

std::vector<subscriber_actor> hub_core::rule_subscribers() const {
  std::vector<subscriber_actor> out;
  out.reserve(rules_.size());
  for (auto& [id, entry] : rules_)
    out.push_back(entry.handle);
  return out;
}

void hub_core::unsubscribe_rule(const caf::actor& who,
                                const std::string& filter) {
  auto i = rule_ids_.find(who.address());
  if (i == rule_ids_.end())
    return;
  auto id = i->second;
  tree_.unsubscribe(filter, id);
  auto& entry = rules_[id];
  entry.filters.erase(filter);
  if (entry.filters.empty()) {
    rules_.erase(id);
    rule_ids_.erase(i);
  }
}

void hub_core::remove_rule(const caf::actor_addr& who) {
  auto i = rule_ids_.find(who);
  if (i == rule_ids_.end())
    return;
  auto id = i->second;
  for (auto& f : rules_[id].filters)
    tree_.unsubscribe(f, id);
  rules_.erase(id);
  rule_ids_.erase(i);
}

void hub_core::retained_for_rule(const subscriber_actor& who,
                                 const std::string& filter, std::uint8_t qos,
                                 std::vector<rule_delivery>& out) {
  std::vector<message> found;
  retained_.match(filter, found);
  for (auto& m : found) {
    m.qos = std::min(m.qos, qos);
    out.push_back(rule_delivery{who, std::move(m)});
  }
}

// -- routing ------------------------------------------------------------------

bool hub_core::available(void* self, mqtt::subscriber_id who) {
  if (who >= rule_id_base)
    return true;
  auto& core = *static_cast<hub_core*>(self);
  auto i = core.by_id_.find(who);
  return i != core.by_id_.end() && i->second->conn != nullptr;
}

void hub_core::route(const message& msg, mqtt::subscriber_id from,
                     std::vector<rule_delivery>& rules) {
  rules.clear();
  over_bound_.clear();
  ++counters.messages_in;
  counters.bytes_in += static_cast<std::int64_t>(msg.body.size());
  route_one(msg, from, rules);
  // Baetyl's hub `subscriptions`: what arrives on a source topic is also
  // published on the target topic (once: copies are not remapped again).
  for (auto& r : remaps_) {
    if (!topic_matches(r.source, msg.topic))
      continue;
    message copy = msg; // shares the payload bytes
    copy.topic = r.target;
    copy.qos = r.target_qos;
    copy.retain = false;
    ++counters.remapped;
    route_one(copy, 0, rules);
  }
}

void hub_core::route_one(const message& msg, mqtt::subscriber_id from,
                         std::vector<rule_delivery>& rules) {
  if (msg.retain)
    set_retained(msg);
  tree_.match(msg.topic, matches_, &hub_core::available, this);
  for (auto& m : matches_) {
    auto qos = std::min(msg.qos, m.opts.qos);
    if (m.who >= rule_id_base) {
      auto r = rules_.find(m.who);
      if (r == rules_.end())
        continue;
      auto& d = rules.emplace_back(rule_delivery{r->second.handle, msg});
      d.msg.qos = qos;
      continue;
    }
    if (m.opts.no_local && m.who == from)
      continue;
    auto s = by_id_.find(m.who);
    if (s == by_id_.end())
      continue;
    // Read permission holds for every delivery, not only when the
    // subscription was made (a filter may reach topics it may not read).
    if (!auth_->may_receive({s->second->owner, s->second->client_id},
                           msg.topic)) {
      ++counters.denied_receive;
      continue;
    }
    bool retain = m.opts.retain_as_published && msg.retain;
    deliver(*s->second, msg, qos, retain, m.subscription_ids);
  }
}

void hub_core::deliver(session_state& s, const message& msg, std::uint8_t qos,
                       bool retain,
                       std::span<const std::uint32_t> subscription_ids) {
  if (!s.conn) {
    // Offline persistent session: keep QoS 1/2, QoS 0 is not queued.
    if (qos > 0)
      enqueue(s, outgoing_message{msg, qos, retain,
                                  {subscription_ids.begin(),
                                   subscription_ids.end()}});
    return;
  }
  if (qos == 0) {
    if (s.conn->backlogged()) {
      ++counters.dropped_qos0_slow;
      return;
    }
    mqtt::publish_header h;
    h.retain = retain;
    h.subscription_ids = subscription_ids;
    write_publish(*s.conn, msg, h);
    return;
  }
  outgoing_message out{msg, qos, retain,
                       {subscription_ids.begin(), subscription_ids.end()}};
  if (s.queue.empty() && s.inflight.size() < window(s)) {
    auto id = s.allocate_packet_id();
    if (send_publish(s, out, id, false)) {
      auto& e = s.inflight.emplace_back(inflight_entry{id, std::move(out), false});
      store_message(s, e.out, id, false);
    }
    return;
  }
  enqueue(s, std::move(out));
}

bool hub_core::send_publish(session_state& s, const outgoing_message& out,
                            std::uint16_t packet_id, bool dup) {
  mqtt::publish_header h;
  h.qos = out.qos;
  h.retain = out.retain;
  h.dup = dup;
  h.packet_id = packet_id;
  h.subscription_ids = out.subscription_ids;
  return write_publish(*s.conn, out.msg, h);
}

bool hub_core::write_publish(connection& c, const message& msg,
                             mqtt::publish_header h) {
  if (msg.properties.has_message_expiry) {
    // The expiry counts down while the message waits in the hub.
    auto age = std::chrono::duration_cast<std::chrono::seconds>(
                 message::clock::now() - msg.received)
                 .count();
    if (age >= msg.properties.message_expiry) {
      ++counters.dropped_expired;
      return false;
    }
    h.message_expiry =
      msg.properties.message_expiry - static_cast<std::uint32_t>(age);
  }
  if (c.limits_packet_size()) {
    // Checked as the largest form (full topic and an alias property), so
    // an alias is only handed out for a PUBLISH that is written.
    auto largest = h;
    largest.topic_alias = 1;
    if (c.client_max_packet() < mqtt::publish_size(msg, largest, c.version())) {
      // MQTT 5 3.1.2.11.4: discard as if delivered.
      ++counters.dropped_too_large;
      return false;
    }
  }
  c.alias_topic(msg.topic, h);
  auto n = mqtt::encode_publish(msg, h, c.version(), c.out());
  ++counters.messages_out;
  counters.bytes_out += static_cast<std::int64_t>(n);
  mark_dirty(&c);
  return true;
}

namespace {

/// What a queued message counts against hub.max_queued_bytes.
std::size_t queued_size(const outgoing_message& out) {
  return out.msg.topic.size() + out.msg.body.size();
}

} // namespace

void hub_core::enqueue(session_state& s, outgoing_message out) {
  auto bytes = queued_size(out);
  auto max_messages = cfg_.max_queued_messages;
  auto max_bytes = cfg_.limits.max_queued_bytes;
  auto full = [&] {
    return s.queue.size() >= max_messages
           || s.queued_bytes + bytes > max_bytes
           || all_queued_bytes_ + bytes > cfg_.limits.max_queued_bytes_total;
  };
  if (full()) {
    switch (cfg_.queue_full) {
      case queue_full_policy::backpressure:
        // Publishers stop once their acks wait, so the queue goes beyond
        // its bound only by what they had in flight (a Receive Maximum
        // each); twice the byte bound is the hard limit on memory.
        if (s.conn && s.queued_bytes + bytes <= 2 * max_bytes) {
          if (std::find(over_bound_.begin(), over_bound_.end(), &s)
              == over_bound_.end())
            over_bound_.push_back(&s);
          break;
        }
        ++counters.dropped_queue_full;
        return;
      case queue_full_policy::drop_oldest:
        while (!s.queue.empty() && full()) {
          unstore_message(s, pop_queued(s));
          ++counters.dropped_queue_full;
        }
        if (full()) { // larger than the whole byte bound on its own
          ++counters.dropped_queue_full;
          return;
        }
        break;
      case queue_full_policy::drop_new:
        ++counters.dropped_queue_full;
        return;
    }
  }
  push_queued(s, std::move(out));
  store_message(s, s.queue.back(), 0, false);
}

void hub_core::push_queued(session_state& s, outgoing_message out) {
  s.queued_bytes += queued_size(out);
  all_queued_bytes_ += queued_size(out);
  s.queue.push_back(std::move(out));
}

outgoing_message hub_core::pop_queued(session_state& s) {
  auto out = std::move(s.queue.front());
  s.queue.pop_front();
  s.queued_bytes -= queued_size(out);
  all_queued_bytes_ -= queued_size(out);
  return out;
}

void hub_core::send_to_rules(caf::io::broker* requester,
                             std::vector<rule_delivery>& rules) {
  for (auto& r : rules) {
    ++counters.rule_deliveries;
    requester->send(r.subscriber, deliver_atom::value, std::move(r.msg),
                    std::uint64_t{0});
  }
  rules.clear();
}

void hub_core::publish_internal(const message& msg, client_identity who,
                                caf::io::broker* requester) {
  if (!auth_->may_publish(who, msg.topic)) {
    ++counters.denied_publish;
    spdlog::warn("hub: will of '{}' on '{}' not published: not permitted",
                 msg.origin, msg.topic);
    return;
  }
  std::vector<rule_delivery> rules;
  route(msg, 0, rules);
  send_to_rules(requester, rules);
  flush_dirty();
}

// -- wills and expiry ---------------------------------------------------------

std::size_t hub_core::replace_auth(const hub_config& next) {
  auto fresh = std::make_unique<authenticator>(next);
  // The principal `p` is under the new authenticator; `gone` when it has
  // none of that name (anonymous stays anonymous).
  auto rebind = [&](const principal_config* p, bool& gone) {
    gone = false;
    if (!p)
      return p;
    auto q = fresh->principal_named(p->username);
    gone = q == nullptr;
    return q;
  };
  bool gone = false;
  std::vector<connection*> revoked;
  std::vector<std::pair<connection*, const principal_config*>> kept;
  for (auto* c : live) {
    auto p = rebind(c->principal(), gone);
    bool anonymous_refused = !c->principal() && c->has_session()
                             && !fresh->anonymous_allowed(c->from_loopback());
    if (gone || anonymous_refused)
      revoked.push_back(c);
    else
      kept.emplace_back(c, p);
  }
  // Under the permissions they had (a will goes out as its client could
  // send it); their sessions go offline.
  for (auto* c : revoked)
    c->on_revoked();
  for (auto [c, p] : kept)
    c->rebind(p);
  std::vector<std::string> orphaned;
  for (auto& [id, s] : sessions_) {
    s->owner = rebind(s->owner, gone);
    if (gone)
      orphaned.push_back(id);
  }
  std::erase_if(wills_, [&](delayed_will& w) {
    w.principal = rebind(w.principal, gone);
    return gone;
  });
  auth_ = std::move(fresh);
  for (auto& id : orphaned)
    if (auto s = find_session(id))
      end_session(*s);
  flush_dirty();
  return revoked.size();
}

void hub_core::schedule_will(delayed_will w) {
  cancel_will(w.client_id);
  wills_.push_back(std::move(w));
}

void hub_core::cancel_will(const std::string& client_id) {
  std::erase_if(wills_, [&](auto& w) { return w.client_id == client_id; });
}

void hub_core::housekeeping(caf::io::broker* requester) {
  auto now = steady_clock::now();
  for (auto c : live) {
    c->expire_rule_acks(now);
    // The connection's own broker closes it (it may not quit from here).
    if (c->deadline() <= now)
      caf::anon_send(caf::actor_cast<caf::actor>(c->broker()),
                     tick_atom::value);
  }
  std::vector<delayed_will> due;
  for (auto i = wills_.begin(); i != wills_.end();) {
    if (i->due <= now) {
      due.push_back(std::move(*i));
      i = wills_.erase(i);
    } else {
      ++i;
    }
  }
  for (auto& w : due)
    publish_internal(w.msg, {w.principal, w.client_id}, requester);
  std::vector<session_state*> expired;
  for (auto& [id, s] : sessions_)
    if (session_expired(*s, now))
      expired.push_back(s.get());
  for (auto s : expired) {
    // A will still waiting for its delay goes out when its session ends.
    auto w = std::find_if(wills_.begin(), wills_.end(), [&](auto& x) {
      return x.client_id == s->client_id;
    });
    if (w != wills_.end()) {
      auto will = std::move(*w);
      wills_.erase(w);
      publish_internal(will.msg, {will.principal, will.client_id},
                       requester);
    }
    spdlog::debug("hub: session '{}' expired", s->client_id);
    end_session(*s);
  }
}

bool hub_core::session_expired(const session_state& s,
                               steady_clock::time_point now) const {
  if (s.conn)
    return false;
  auto offline = now - s.offline_since;
  // Sessions that asked never to expire (MQTT 3.1.1 persistent sessions)
  // end after hub.persistent_client_expiration, as in Mosquitto.
  auto forever = cfg_.limits.persistent_client_expiration;
  return s.expiry_interval == never_expires
           ? forever.count() > 0 && offline >= forever
           : offline >= std::chrono::seconds(s.expiry_interval);
}

// -- output -------------------------------------------------------------------

void hub_core::mark_dirty(connection* c) {
  if (!c->dirty) {
    c->dirty = true;
    dirty_.push_back(c);
  }
}

void hub_core::flush_dirty() {
  // flush_out never routes, so dirty_ does not grow while we iterate.
  for (auto c : dirty_) {
    c->dirty = false;
    c->flush_out();
  }
  dirty_.clear();
}

void hub_core::forget(connection* c) {
  store_waiters_.erase(c);
  if (c->dirty) {
    std::erase(dirty_, c);
    c->dirty = false;
  }
}

} // namespace hubflow::hub
