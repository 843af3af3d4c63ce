#include "rules/rule.hpp"

#include <map>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/probe.hpp"
#include "core/type_ids.hpp"

namespace hubflow {

namespace {

using clock_type = std::chrono::steady_clock;
using retry_atom = caf::atom_constant<caf::atom("retry")>;

/// One message on its way through the rule.
struct job {
  message input;
  caf::response_promise upstream; // answered when the message is handled
  int attempts = 0;               // function or destination attempts so far
  std::optional<message> output;  // set once the function produced it
};

struct rule_state {
  static inline const char* name = "hubflow.rule";

  rule_config cfg;
  rule_wiring wiring;
  std::map<std::uint64_t, job> jobs; // waiting for a retry
  std::uint64_t next_job = 0;
  std::unique_ptr<probe> stats;
};

using rule_actor = caf::stateful_actor<rule_state>;

constexpr std::chrono::milliseconds retry_base_delay{100};

void run_function(rule_actor* self, job j);
void deliver(rule_actor* self, job j);

/// Retries later (backoff grows with attempts) or gives up with `on_give_up`.
bool retry_later(rule_actor* self, job& j) {
  auto& st = self->state;
  if (j.attempts > st.cfg.retry_max)
    return false;
  st.stats->add("retries");
  auto id = st.next_job++;
  auto delay = retry_base_delay * j.attempts;
  st.jobs.emplace(id, std::move(j));
  self->delayed_send(self, delay, retry_atom::value, id);
  return true;
}

void done(rule_actor* self, job& j) {
  self->state.stats->record_latency(
    std::chrono::duration_cast<std::chrono::microseconds>(
      message::clock::now() - j.input.received));
  j.upstream.deliver(ok_atom::value);
}

/// Publishes an error report and then answers upstream: the input is in
/// the report, so nothing is lost even though the function failed.
void report_error(rule_actor* self, job j, const std::string& error,
                  const std::string& type) {
  auto& st = self->state;
  st.stats->add("errors");
  spdlog::warn("rule {}: {} ({}) for a message on '{}'", st.cfg.name, error,
               type, j.input.topic);
  message report;
  report.topic = st.cfg.error_topic.empty() ? st.cfg.to.topic
                                            : st.cfg.error_topic;
  report.body = payload{make_error_report(j.input, error, type)};
  report.qos = st.cfg.to.qos;
  report.origin = st.cfg.name;
  j.output = std::move(report);
  j.attempts = 0;
  deliver(self, std::move(j));
}

void deliver(rule_actor* self, job j) {
  auto& st = self->state;
  ++j.attempts;
  auto shared = std::make_shared<job>(std::move(j));
  auto on_ok = [=](ok_atom) {
    self->state.stats->add("out");
    done(self, *shared);
  };
  auto on_error = [=](caf::error& err) {
    auto& st = self->state;
    auto text = self->system().render(err);
    if (retry_later(self, *shared))
      return;
    st.stats->add("delivery_failures");
    spdlog::error("rule {}: cannot deliver to '{}' after {} attempts: {}",
                  st.cfg.name, st.cfg.to.topic, shared->attempts, text);
    // Not acknowledged upstream: the source keeps the message (an MQTT
    // publisher gets no PUBACK, a Kafka offset is not committed).
    shared->upstream.deliver(caf::make_error(
      caf::sec::runtime_error, "rule " + st.cfg.name + ": " + text));
  };
  if (st.wiring.destination_is_endpoint)
    self->request(st.wiring.destination, caf::infinite, publish_atom::value,
                  *shared->output, st.cfg.to.topic)
      .then(on_ok, on_error);
  else
    self->request(st.wiring.destination, caf::infinite, publish_atom::value,
                  *shared->output)
      .then(on_ok, on_error);
}

/// The message the rule publishes: the output bytes (or the input for a
/// plain forward) on the destination topic, with the input's properties.
message make_output(const rule_state& st, const message& input,
                    payload body) {
  message out = input;
  if (!st.wiring.destination_is_endpoint)
    out.topic = st.cfg.to.topic;
  out.body = std::move(body);
  out.qos = st.cfg.to.qos;
  out.retain = st.cfg.to.retain;
  out.origin = st.cfg.name;
  return out;
}

void run_function(rule_actor* self, job j) {
  auto& st = self->state;
  ++j.attempts;
  auto shared = std::make_shared<job>(std::move(j));
  self->request(st.wiring.function, caf::infinite, invoke_atom::value,
                shared->input)
    .then(
      [=](function_result& result) {
        auto& st = self->state;
        auto& jb = *shared;
        switch (result.status) {
          case function_result::outcome::output:
            jb.output = make_output(st, jb.input, std::move(result.output));
            jb.attempts = 0;
            deliver(self, std::move(jb));
            break;
          case function_result::outcome::nothing:
            st.stats->add("filtered");
            done(self, jb);
            break;
          case function_result::outcome::handler_error:
            report_error(self, std::move(jb), result.error_message,
                         result.error_type);
            break;
          case function_result::outcome::failure:
            if (!retry_later(self, jb))
              report_error(self, std::move(jb), result.error_message,
                           result.error_type);
            break;
        }
      },
      [=](caf::error& err) {
        if (!retry_later(self, *shared))
          report_error(self, std::move(*shared), self->system().render(err),
                       "InvokeError");
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
  self->request(st.wiring.source, caf::infinite, subscribe_atom::value,
                st.cfg.from.topic, st.cfg.from.qos, caf::actor{self})
    .then([](ok_atom) {},
          [=](caf::error& err) {
            spdlog::error("rule {}: cannot subscribe to '{}': {}",
                          self->state.cfg.name, self->state.cfg.from.topic,
                          self->system().render(err));
            self->state.stats->label("state", "subscribe failed");
          });
  self->send(self, tick_atom::value);
  return {
    [=](deliver_atom, message& msg) -> caf::result<ok_atom> {
      auto& st = self->state;
      st.stats->add("in");
      auto promise = self->make_response_promise<ok_atom>();
      job j{std::move(msg), promise, 0, std::nullopt};
      if (st.wiring.function) {
        run_function(self, std::move(j));
      } else {
        j.output = make_output(st, j.input, j.input.body);
        deliver(self, std::move(j));
      }
      return promise;
    },
    [=](retry_atom, std::uint64_t id) {
      auto i = self->state.jobs.find(id);
      if (i == self->state.jobs.end())
        return;
      auto j = std::move(i->second);
      self->state.jobs.erase(i);
      if (j.output)
        deliver(self, std::move(j));
      else
        run_function(self, std::move(j));
    },
    [=](tick_atom) {
      self->state.stats->set("retrying",
                             static_cast<std::int64_t>(self->state.jobs.size()));
      self->state.stats->report(self);
      self->delayed_send(self, std::chrono::milliseconds(500),
                         tick_atom::value);
    },
  };
}

} // namespace

std::string make_error_report(const message& input, const std::string& error,
                              const std::string& type) {
  auto body = input.body.view();
  auto parsed = nlohmann::json::parse(body, nullptr, false);
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
