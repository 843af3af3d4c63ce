#include "rules/rule.hpp"

#include <deque>
#include <optional>
#include <vector>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/json_text.hpp"
#include "core/probe.hpp"
#include "core/reply.hpp"
#include "core/sink_error.hpp"
#include "core/type_ids.hpp"

namespace hubflow {

namespace {

/// One message on its way through the rule. It holds one message: the
/// input until the function has answered, then the output (the input is
/// not needed after that; both carry the time the input was received).
struct job {
  message msg;
  reply upstream;          // answered when the message is handled
  int attempts = 0;        // function or destination attempts so far
  bool is_output = false;  // msg is the output, bound for the destination
  bool is_report = false;  // msg is an error report (see report_error)
  /// Set when the destination refused the output for good (ERROR, see
  /// core/sink_error.hpp): the MQTT 5 reason code that the upstream answer
  /// carries once the error report is delivered.
  std::uint8_t refused = 0;
};

struct rule_state {
  static inline const char* name = "hubflow.rule";

  rule_config cfg;
  rule_wiring wiring;
  /// Every job in flight, by the ticket it was last sent with: at the
  /// function, at the destination, or waiting for a retry.
  awaiting<job> jobs;
  /// Jobs waiting for room at the function (see function_window).
  std::deque<job> backlog;
  std::size_t at_function = 0;
  std::unique_ptr<probe> stats;
  /// Sends to the destination collected while a burst is handled (see
  /// destination_burst); `collecting` is false otherwise.
  bool collecting = false;
  std::vector<message> burst_msgs;
  std::vector<std::uint64_t> burst_tickets;
  /// Jobs waiting while their next stop is gone: the function or the
  /// destination stopped and its replacement (rewire_atom) has not arrived.
  bool function_gone = false;
  bool destination_gone = false;
  std::deque<job> parked;
  /// Draining (rule_drain_atom): stops once nothing is left, or then.
  std::optional<message::clock::time_point> drain_deadline;
};

using rule_actor = caf::stateful_actor<rule_state>;

constexpr std::chrono::milliseconds retry_base_delay{100};

/// A draining rule's own check whether it is done (rule_drain_atom).
using drained_atom = caf::atom_constant<caf::atom("rule_done")>;

/// Invocations one rule keeps at its function at most; the rest wait in
/// the rule's backlog. Without this window a burst overflowed the function's
/// queue and every overflow came back as an Overloaded failure to retry
/// later (measured: 0.8 retries per message in an unpaced run).
constexpr std::size_t function_window = 256;

/// Beyond this many jobs in the backlog a message fails as Overloaded (and
/// is retried, then reported like any function failure): memory stays
/// bounded under a QoS 0 flood, which nothing upstream can slow down.
constexpr std::size_t backlog_limit = 100000;

void function_answered(rule_actor* self, job j, function_result& result);
void destination_failed(rule_actor* self, job j, const caf::error& err);

/// The target the destination is sent: the rule's Kafka topic or Redis key
/// for an endpoint; empty (the message's own topic) for a hub.
const std::string& destination_target(const rule_state& st) {
  static const std::string none;
  return st.wiring.destination_is_endpoint ? st.cfg.to.topic : none;
}

/// The target for one job: an error report bound for an endpoint goes to
/// the rule's `error_topic` on that endpoint (a dead-letter topic or key),
/// everything else to destination_target. A report for a hub carries its
/// topic itself (see report_error).
const std::string& target_of(const rule_state& st, const job& j) {
  if (j.is_report && st.wiring.destination_is_endpoint
      && !st.cfg.error_topic.empty())
    return st.cfg.error_topic;
  return destination_target(st);
}

/// The hub destination topic for `msg`: `to.topic` rendered (it is
/// compiled at load; a rule built in code without the loader has it
/// literal). False with `error` set when a placeholder has no value.
bool hub_topic(const rule_state& st, const message& msg, std::string& topic,
               std::string& error) {
  auto& compiled = st.cfg.to.topic_template;
  if (!compiled) {
    topic = st.cfg.to.topic;
    return true;
  }
  if (compiled->is_literal()) {
    topic = compiled->literal_text(); // `$${` written, `${` meant
    return true;
  }
  return compiled->render(msg, topic, error);
}

/// While it lives, what the rule sends to its destination is collected and
/// then sent as one (publish_atom, messages, target, tickets): one CAF
/// message per burst of deliveries instead of one per message.
class destination_burst {
public:
  /// `expected`: how many sends the burst may bring (room is reserved).
  destination_burst(rule_actor* self, std::size_t expected) : self_(self) {
    auto& st = self_->state;
    st.collecting = true;
    st.burst_msgs.reserve(expected);
    st.burst_tickets.reserve(expected);
  }
  destination_burst(const destination_burst&) = delete;
  destination_burst& operator=(const destination_burst&) = delete;

  ~destination_burst() {
    auto& st = self_->state;
    st.collecting = false;
    if (st.burst_msgs.empty())
      return;
    self_->send(st.wiring.destination, publish_atom::value,
                std::move(st.burst_msgs), destination_target(st),
                std::move(st.burst_tickets));
    st.burst_msgs.clear();
    st.burst_tickets.clear();
  }

private:
  rule_actor* self_;
};

/// Keeps a job until its next stop's replacement arrives; beyond
/// backlog_limit the message is refused upstream (not acknowledged).
void park(rule_actor* self, job j) {
  auto& st = self->state;
  if (st.parked.size() >= backlog_limit) {
    st.stats->add("delivery_failures");
    j.upstream.deliver(caf::make_error(
      caf::sec::runtime_error,
      "rule " + st.cfg.name + ": its function or destination is restarting "
        "and " + std::to_string(backlog_limit) + " messages wait for it"));
    return;
  }
  // A stop of the function or destination is not the message's fault: its
  // attempts start again.
  j.attempts = 0;
  st.parked.push_back(std::move(j));
}

/// Sends the job to its next stop: the function while it has no output,
/// then the destination.
void advance(rule_actor* self, job j) {
  auto& st = self->state;
  bool to_function = !j.is_output;
  if (to_function && st.at_function >= function_window) {
    if (st.backlog.size() >= backlog_limit) {
      ++j.attempts;
      auto overloaded = function_result::make_failure(
        "rule " + st.cfg.name + " is overloaded: "
          + std::to_string(backlog_limit) + " messages wait for function "
          + st.cfg.function,
        "Overloaded");
      function_answered(self, std::move(j), overloaded);
      return;
    }
    st.backlog.push_back(std::move(j));
    return;
  }
  if (to_function ? st.function_gone : st.destination_gone) {
    park(self, std::move(j));
    return;
  }
  ++j.attempts;
  // The job keeps its message for retries: the receiver gets a copy (which
  // shares the payload bytes).
  auto ticket = st.jobs.add(std::move(j));
  const auto& queued = *st.jobs.find(ticket);
  const auto& msg = queued.msg;
  if (to_function) {
    ++st.at_function;
    self->send(st.wiring.function, invoke_atom::value, msg, ticket);
  } else if (st.collecting && !queued.is_report) {
    // A burst has one target: reports (rare, maybe bound elsewhere) go
    // on their own.
    st.burst_msgs.push_back(msg);
    st.burst_tickets.push_back(ticket);
  } else
    self->send(st.wiring.destination, publish_atom::value, msg,
               target_of(st, queued), ticket);
}

/// Retries later (backoff grows with attempts), or returns false when the
/// job has used up its attempts.
bool retry_later(rule_actor* self, job& j) {
  auto& st = self->state;
  if (j.attempts > st.cfg.retry_max)
    return false;
  st.stats->add("retries");
  auto delay = retry_base_delay * j.attempts;
  auto ticket = st.jobs.add(std::move(j));
  self->delayed_send(self, delay, retry_atom::value, ticket);
  return true;
}

/// Answers upstream that the message is handled, through `answers`; `now`
/// is read once per burst of answers. A message the destination refused
/// for good is handled once its error report is delivered: the answer is
/// then that permanent error, so an MQTT 5 publisher learns the reason
/// code and nobody redelivers it.
void done(rule_actor* self, job& j, ok_answers& answers,
          message::clock::time_point now) {
  auto& st = self->state;
  st.stats->record_latency(
    std::chrono::duration_cast<std::chrono::microseconds>(now
                                                          - j.msg.received));
  if (j.refused == 0) {
    answers.add(j.upstream);
    return;
  }
  j.upstream.deliver(make_sink_error(
    static_cast<sink_errc>(j.refused),
    "rule " + st.cfg.name + ": the destination refused the message; "
      "it was reported as an error"));
}

/// Publishes an error report and then answers upstream: the input is in
/// the report, so nothing is lost even though the function failed.
void report_error(rule_actor* self, job j, const std::string& error,
                  const std::string& type) {
  auto& st = self->state;
  st.stats->add("errors");
  spdlog::warn("rule {}: {} ({}) for a message on '{}'", st.cfg.name, error,
               type, j.msg.topic);
  message report;
  // For an endpoint the target names the topic or key (target_of); the
  // message keeps the input's topic, which topic templates read.
  std::string no_topic;
  if (st.wiring.destination_is_endpoint)
    report.topic = j.msg.topic;
  else if (!st.cfg.error_topic.empty())
    report.topic = st.cfg.error_topic;
  else if (!hub_topic(st, j.msg, report.topic, no_topic)) {
    // The destination topic is what could not be made: nowhere to report.
    st.stats->add("delivery_failures");
    spdlog::error("rule {}: no error_topic, and to.topic '{}' cannot be "
                  "rendered for the report either: {}",
                  st.cfg.name, st.cfg.to.topic, no_topic);
    j.upstream.deliver(make_sink_error(sink_errc::topic_name_invalid,
                                       "rule " + st.cfg.name + ": " + error));
    return;
  }
  report.body = payload{make_error_report(j.msg, error, type)};
  report.qos = st.cfg.to.qos;
  report.received = j.msg.received;
  report.origin = st.cfg.name;
  j.msg = std::move(report);
  j.is_output = true;
  j.is_report = true;
  j.attempts = 0;
  advance(self, std::move(j));
}

/// Turns a message holding the output bytes (or, for a plain forward, the
/// input) into what the rule publishes: the destination topic (a hub's
/// rendered from `to.topic` and the input), qos and retain flag, the
/// input's properties. In place: nothing is copied. False with `error` set
/// when the hub topic cannot be rendered for this input.
bool make_output(const rule_state& st, message& msg, std::string& error) {
  if (!st.wiring.destination_is_endpoint) {
    std::string topic;
    if (!hub_topic(st, msg, topic, error))
      return false;
    msg.topic = std::move(topic);
  }
  msg.qos = st.cfg.to.qos;
  msg.retain = st.cfg.to.retain;
  msg.origin = st.cfg.name;
  return true;
}

/// An input whose hub destination topic cannot be rendered is refused for
/// good, as an endpoint refuses a topic its template made invalid.
void refuse_topic(rule_actor* self, job j, const std::string& error) {
  auto& st = self->state;
  j.is_output = true;
  destination_failed(self, std::move(j),
                     make_sink_error(sink_errc::topic_name_invalid,
                                     "to.topic '" + st.cfg.to.topic + "': "
                                       + error));
}

void function_answered(rule_actor* self, job j, function_result& result) {
  auto& st = self->state;
  switch (result.status) {
    case function_result::outcome::output: {
      j.msg.body = std::move(result.output);
      std::string error;
      if (!make_output(st, j.msg, error)) {
        refuse_topic(self, std::move(j), error);
        break;
      }
      j.is_output = true;
      j.attempts = 0;
      advance(self, std::move(j));
      break;
    }
    case function_result::outcome::nothing: {
      st.stats->add("filtered");
      ok_answers answers;
      done(self, j, answers, message::clock::now());
      break;
    }
    case function_result::outcome::handler_error:
      report_error(self, std::move(j), result.error_message,
                   result.error_type);
      break;
    case function_result::outcome::failure:
      if (!retry_later(self, j))
        report_error(self, std::move(j), result.error_message,
                     result.error_type);
      break;
  }
}

/// Only RETRY is retried (core/sink_error.hpp): an output refused for good
/// becomes an error report at once; a report refused for good is logged
/// and answered upstream as the permanent failure it is.
void destination_failed(rule_actor* self, job j, const caf::error& err) {
  auto& st = self->state;
  auto text = err.category() == sink_error_category
                ? sink_error_text(err)
                : self->system().render(err);
  if (is_permanent(err)) {
    if (!j.is_report) {
      st.stats->add("refused");
      j.refused = mqtt_reason_code(err);
      report_error(self, std::move(j), text, "DestinationError");
      return;
    }
    st.stats->add("delivery_failures");
    spdlog::error("rule {}: the destination refused the error report for "
                  "a message on '{}' as well: {}",
                  st.cfg.name, j.msg.topic, text);
    auto reason = j.refused != 0 ? j.refused : mqtt_reason_code(err);
    j.upstream.deliver(make_sink_error(static_cast<sink_errc>(reason),
                                       "rule " + st.cfg.name + ": " + text));
    return;
  }
  if (retry_later(self, j))
    return;
  st.stats->add("delivery_failures");
  spdlog::error("rule {}: cannot deliver to '{}' after {} attempts: {}",
                st.cfg.name, target_of(st, j).empty() ? j.msg.topic
                                                       : target_of(st, j),
                j.attempts, text);
  // Not acknowledged upstream: the source keeps the message (an MQTT
  // publisher gets no PUBACK, a Kafka offset is not committed).
  j.upstream.deliver(make_sink_error(sink_errc::retry,
                                     "rule " + st.cfg.name + ": " + text));
}

void destination_ok(rule_actor* self, std::uint64_t ticket,
                    ok_answers& answers, message::clock::time_point now) {
  // Handled in place: a job is a few hundred bytes to move.
  auto& jobs = self->state.jobs;
  if (auto j = jobs.find(ticket)) {
    self->state.stats->add("out");
    done(self, *j, answers, now);
    jobs.erase(ticket);
  }
}

void start(rule_actor* self, message msg, reply upstream) {
  auto& st = self->state;
  st.stats->add("in");
  std::string error;
  bool ready = st.wiring.function || make_output(st, msg, error);
  job j;
  j.msg = std::move(msg);
  j.upstream = std::move(upstream);
  if (!ready) {
    refuse_topic(self, std::move(j), error);
    return;
  }
  j.is_output = !st.wiring.function;
  advance(self, std::move(j));
}

/// Subscribes to the source: at the start, and again to a replacement.
void subscribe(rule_actor* self) {
  auto& st = self->state;
  self->monitor(st.wiring.source);
  self->request(st.wiring.source, caf::infinite, subscribe_atom::value,
                st.cfg.from.topic, st.cfg.from.qos, caf::actor{self})
    .then([=](ok_atom) { self->state.stats->label("state", "subscribed"); },
          [=](caf::error& err) {
            spdlog::error("rule {}: cannot subscribe to '{}': {}",
                          self->state.cfg.name, self->state.cfg.from.topic,
                          self->system().render(err));
            self->state.stats->label("state", "subscribe failed");
          });
}

caf::behavior rule(rule_actor* self, rule_config cfg, rule_wiring wiring) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.wiring = std::move(wiring);
  st.stats = std::make_unique<probe>("rule", st.cfg.name);
  st.stats->label("from", (st.cfg.from.endpoint.empty()
                             ? std::string{}
                             : st.cfg.from.endpoint + ":")
                            + st.cfg.from.topic);
  st.stats->label("to", (st.cfg.to.endpoint.empty()
                           ? std::string{}
                           : st.cfg.to.endpoint + ":")
                          + st.cfg.to.topic);
  if (!st.cfg.function.empty())
    st.stats->label("function", st.cfg.function);
  subscribe(self);
  self->monitor(st.wiring.destination);
  if (st.wiring.function)
    self->monitor(st.wiring.function);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.wiring.source.address())
      spdlog::warn("rule {}: its source stopped; waiting for a replacement",
                   st.cfg.name);
    bool function = st.wiring.function
                    && dm.source == st.wiring.function.address();
    bool destination = dm.source == st.wiring.destination.address();
    if (!function && !destination)
      return;
    // Its answers came before its down message: the jobs still waiting for
    // it will never be answered. They go to the replacement.
    st.function_gone |= function;
    st.destination_gone |= destination;
    st.jobs.erase_if([self, function, destination](job& j) {
      if (j.is_output ? !destination : !function)
        return false;
      park(self, std::move(j));
      return true;
    });
    if (function)
      st.at_function = 0;
    spdlog::warn("rule {}: its {} stopped; messages waiting for its "
                 "replacement: {}",
                 st.cfg.name, function ? "function" : "destination",
                 st.parked.size());
  });
  self->send(self, tick_atom::value);
  return {
    [=](deliver_atom, message& msg) {
      start(self, std::move(msg), reply{self->make_response_promise<ok_atom>()});
    },
    [=](deliver_atom, message& msg, std::uint64_t ticket) {
      start(self, std::move(msg), reply{self->current_sender(), ticket});
    },
    // A burst: the publishes of one read by a hub connection.
    [=](deliver_atom, std::vector<message>& msgs,
        const std::vector<std::uint64_t>& tickets) {
      destination_burst burst{self, msgs.size()};
      for_each_in_burst(self, msgs, tickets, [=](message& msg, reply upstream) {
        start(self, std::move(msg), std::move(upstream));
      });
    },
    // The function's answer.
    [=](reply_atom, std::uint64_t ticket, function_result& result) {
      auto& st = self->state;
      auto j = st.jobs.take(ticket);
      if (!j)
        return;
      --st.at_function;
      if (!st.backlog.empty()) {
        auto next = std::move(st.backlog.front());
        st.backlog.pop_front();
        advance(self, std::move(next));
      }
      function_answered(self, std::move(*j), result);
    },
    // The destination's answers, one or a burst of oks at a time.
    [=](reply_atom, std::uint64_t ticket, ok_atom) {
      ok_answers answers;
      destination_ok(self, ticket, answers, message::clock::now());
    },
    [=](reply_atom, const std::vector<std::uint64_t>& tickets, ok_atom) {
      ok_answers answers;
      auto now = message::clock::now();
      for (auto ticket : tickets)
        destination_ok(self, ticket, answers, now);
    },
    [=](reply_atom, std::uint64_t ticket, caf::error& err) {
      if (auto j = self->state.jobs.take(ticket))
        destination_failed(self, std::move(*j), err);
    },
    [=](retry_atom, std::uint64_t ticket) {
      if (auto j = self->state.jobs.take(ticket))
        advance(self, std::move(*j));
    },
    // The keeper replaced the hub, an endpoint or the function
    // (core/keeper.hpp).
    [=](rewire_atom, const caf::actor& old, const caf::actor& replacement) {
      auto& st = self->state;
      if (rewire(st.wiring.source, old, replacement))
        subscribe(self);
      bool function = rewire(st.wiring.function, old, replacement);
      bool destination = rewire(st.wiring.destination, old, replacement);
      if (!function && !destination)
        return;
      st.function_gone &= !function;
      st.destination_gone &= !destination;
      self->monitor(replacement);
      auto parked = std::move(st.parked);
      st.parked.clear();
      spdlog::info("rule {}: its {} is back; messages that waited: {}",
                   st.cfg.name, function ? "function" : "destination",
                   parked.size());
      // Those whose other stop is still gone are parked again.
      destination_burst burst{self, parked.size()};
      for (auto& j : parked)
        advance(self, std::move(j));
    },
    [=](rule_drain_atom) {
      auto& st = self->state;
      if (st.drain_deadline)
        return;
      st.drain_deadline = message::clock::now() + rule_drain_timeout;
      self->send(st.wiring.source, unsubscribe_atom::value, st.cfg.from.topic,
                 caf::actor{self});
      spdlog::info("rule {}: draining ({} messages in flight)", st.cfg.name,
                   st.jobs.size() + st.backlog.size() + st.parked.size());
      // What the source sent before it took the unsubscribe is in the
      // mailbox before this check.
      self->send(self, drained_atom::value);
    },
    [=](drained_atom) {
      auto& st = self->state;
      auto left = st.jobs.size() + st.backlog.size() + st.parked.size();
      bool late = message::clock::now() >= *st.drain_deadline;
      if (left > 0 && !late) {
        self->delayed_send(self, std::chrono::milliseconds(50),
                           drained_atom::value);
        return;
      }
      if (late)
        spdlog::warn("rule {}: stopped after draining for {} s with {} "
                     "messages unanswered",
                     st.cfg.name, rule_drain_timeout.count(), left);
      self->quit();
    },
    [=](tick_atom) {
      auto& st = self->state;
      if (st.drain_deadline)
        return; // its replacement reports under the same name
      st.stats->set("in_flight", static_cast<std::int64_t>(st.jobs.size()));
      st.stats->set("backlog", static_cast<std::int64_t>(st.backlog.size()));
      st.stats->set("parked", static_cast<std::int64_t>(st.parked.size()));
      st.stats->report(self);
      self->delayed_send(self, stats_interval(self->home_system()),
                         tick_atom::value);
    },
  };
}

} // namespace

std::string make_error_report(const message& input, const std::string& error,
                              const std::string& type) {
  auto body = input.body.view();
  // Bounded: the report is printed again, and dump() recurses.
  auto parsed = parse_json_bounded<nlohmann::json>(body);
  nlohmann::json report;
  report["functionMessage"] = parsed.is_discarded() ? nlohmann::json(body)
                                                    : parsed;
  report["errorMessage"] = error;
  report["errorType"] = type;
  return report.dump(-1, ' ', false,
                     nlohmann::json::error_handler_t::replace);
}

caf::actor spawn_rule(caf::actor_system& sys, const rule_config& cfg,
                      rule_wiring wiring) {
  return sys.spawn(rule, cfg, std::move(wiring));
}

} // namespace hubflow
