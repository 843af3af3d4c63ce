#include "functions/supervisor.hpp"

#include <deque>
#include <map>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "core/probe.hpp"
#include "core/type_ids.hpp"
#include "functions/scaling.hpp"

namespace hubflow {

namespace {

using clock_type = std::chrono::steady_clock;

// -- instance actor -------------------------------------------------------------

/// One function instance on its own thread (spawned detached), so a handler
/// that blocks, sleeps or waits on a worker process never stalls the
/// scheduler. Messages: (invoke_atom, message, invoke_id) -> function_result.
struct instance_state {
  static inline const char* name = "hubflow.function_instance";
  std::unique_ptr<function_instance> instance;
};

caf::behavior instance_actor(caf::stateful_actor<instance_state>* self,
                             std::shared_ptr<function_runtime> runtime,
                             std::string function_name,
                             std::chrono::milliseconds timeout,
                             caf::actor supervisor) {
  std::string error;
  self->state.instance = runtime->create_instance(error);
  if (!self->state.instance) {
    self->send(supervisor, retire_atom::value, error);
    self->quit();
    return {};
  }
  self->send(supervisor, ok_atom::value,
             static_cast<std::int32_t>(self->state.instance->pid()));
  return {
    [=](invoke_atom, const message& msg,
        const std::string& invoke_id) -> function_result {
      invocation call{msg, function_name, invoke_id, timeout};
      try {
        return self->state.instance->invoke(call);
      } catch (const std::exception& e) {
        return function_result::make_failure(e.what(), "RuntimeError");
      }
    },
  };
}

// -- supervisor -----------------------------------------------------------------

struct pending_invocation {
  message msg;
  caf::response_promise promise;
  clock_type::time_point enqueued;
};

struct instance_slot {
  caf::actor handle;
  bool ready = false; // created its runtime instance
  bool busy = false;
  clock_type::time_point last_used = clock_type::now();
  std::int32_t pid = 0;
};

struct supervisor_state {
  static inline const char* name = "hubflow.function_supervisor";

  function_config cfg;
  std::shared_ptr<function_runtime> runtime;
  std::map<caf::actor_addr, instance_slot> instances;
  std::deque<pending_invocation> queue;
  unsigned consecutive_failures = 0;
  bool restart_scheduled = false;
  std::unique_ptr<probe> stats;

  scaling::pool_view view() const {
    scaling::pool_view v;
    for (auto& [addr, slot] : instances) {
      if (!slot.ready)
        ++v.starting;
      else {
        ++v.ready;
        if (!slot.busy)
          ++v.idle;
      }
    }
    v.queued = queue.size();
    v.min = cfg.instance.min;
    v.max = cfg.instance.max;
    return v;
  }
};

using supervisor_actor = caf::stateful_actor<supervisor_state>;

void update_gauges(supervisor_actor* self) {
  auto& st = self->state;
  auto v = st.view();
  st.stats->set("instances", static_cast<std::int64_t>(v.ready));
  st.stats->set("instances_starting", static_cast<std::int64_t>(v.starting));
  st.stats->set("busy", static_cast<std::int64_t>(v.ready - v.idle));
  st.stats->set("queue_depth", static_cast<std::int64_t>(v.queued));
  if (st.cfg.runtime != "python" && st.cfg.runtime != "node")
    return; // only worker processes have pids worth showing
  std::string pids;
  for (auto& [addr, slot] : st.instances)
    if (slot.pid > 0)
      pids += (pids.empty() ? "" : ",") + std::to_string(slot.pid);
  st.stats->label("pids", pids);
}

void dispatch(supervisor_actor* self);

void start_instances(supervisor_actor* self) {
  auto& st = self->state;
  if (st.restart_scheduled)
    return; // wait for the backoff to pass
  auto n = scaling::instances_to_start(st.view());
  for (std::size_t i = 0; i < n; ++i) {
    auto handle = self->spawn<caf::detached + caf::monitored>(
      instance_actor, st.runtime, st.cfg.name, st.cfg.instance.timeout,
      caf::actor{self});
    st.instances.emplace(handle.address(), instance_slot{handle});
    st.stats->add("instances_started");
  }
}

/// Forgets an instance; a busy one's invocation has been answered already.
void drop_instance(supervisor_actor* self, const caf::actor_addr& addr,
                   caf::exit_reason reason) {
  auto i = self->state.instances.find(addr);
  if (i == self->state.instances.end())
    return;
  self->send_exit(i->second.handle, reason);
  self->state.instances.erase(i);
}

void finish(supervisor_actor* self, pending_invocation& job,
            function_result result) {
  auto& st = *self->state.stats;
  switch (result.status) {
    case function_result::outcome::output:
      st.add("outputs");
      break;
    case function_result::outcome::nothing:
      st.add("no_output");
      break;
    case function_result::outcome::handler_error:
      st.add("handler_errors");
      break;
    case function_result::outcome::failure:
      st.add("failures");
      break;
  }
  st.record_latency(std::chrono::duration_cast<std::chrono::microseconds>(
    clock_type::now() - job.enqueued));
  job.promise.deliver(std::move(result));
}

void run_on(supervisor_actor* self, instance_slot& slot,
            pending_invocation job) {
  slot.busy = true;
  auto addr = slot.handle.address();
  auto invoke_id = make_uuid();
  auto timeout = self->state.cfg.instance.timeout;
  auto shared_job = std::make_shared<pending_invocation>(std::move(job));
  self->request(slot.handle, timeout, invoke_atom::value, shared_job->msg,
                invoke_id)
    .then(
      [=](function_result& result) {
        auto& st = self->state;
        if (result.status == function_result::outcome::failure) {
          // The runtime broke (worker crashed, pipe closed): replace it.
          spdlog::warn("function {}: instance failed: {}", st.cfg.name,
                       result.error_message);
          drop_instance(self, addr, caf::exit_reason::user_shutdown);
          st.stats->add("instances_failed");
        } else if (auto i = st.instances.find(addr); i != st.instances.end()) {
          i->second.busy = false;
          i->second.last_used = clock_type::now();
        }
        finish(self, *shared_job, std::move(result));
        dispatch(self);
      },
      [=](caf::error& err) {
        auto& st = self->state;
        bool timed_out = err == caf::sec::request_timeout;
        auto text = timed_out
                      ? "invocation timed out after "
                          + std::to_string(timeout.count()) + " ms"
                      : "instance failed: " + self->system().render(err);
        spdlog::warn("function {}: {}", st.cfg.name, text);
        if (timed_out)
          st.stats->add("timeouts");
        // A timed-out instance may still be running the handler: kill it
        // and let a fresh one take its place.
        drop_instance(self, addr, caf::exit_reason::kill);
        finish(self, *shared_job,
               function_result::make_failure(
                 text, timed_out ? "TimeoutError" : "InstanceError"));
        dispatch(self);
      });
}

void dispatch(supervisor_actor* self) {
  auto& st = self->state;
  for (auto& [addr, slot] : st.instances) {
    if (st.queue.empty())
      break;
    if (slot.ready && !slot.busy) {
      auto job = std::move(st.queue.front());
      st.queue.pop_front();
      run_on(self, slot, std::move(job));
    }
  }
  start_instances(self);
  update_gauges(self);
}

void schedule_restart(supervisor_actor* self) {
  auto& st = self->state;
  if (st.restart_scheduled)
    return;
  auto delay = scaling::restart_backoff(st.consecutive_failures);
  st.restart_scheduled = true;
  self->delayed_send(self, delay, connect_atom::value);
}

void retire_idle(supervisor_actor* self) {
  auto& st = self->state;
  auto now = clock_type::now();
  std::vector<caf::actor_addr> retire;
  auto ready = st.view().ready;
  for (auto& [addr, slot] : st.instances) {
    auto idle_for = std::chrono::duration_cast<std::chrono::milliseconds>(
      now - slot.last_used);
    if (slot.ready && !slot.busy
        && scaling::should_retire(ready, st.cfg.instance.min, idle_for,
                                  st.cfg.instance.idletime)) {
      retire.push_back(addr);
      --ready;
    }
  }
  for (auto& addr : retire) {
    drop_instance(self, addr, caf::exit_reason::user_shutdown);
    st.stats->add("instances_retired");
  }
  if (!retire.empty())
    update_gauges(self);
}

caf::behavior supervisor(supervisor_actor* self, function_config cfg,
                         std::shared_ptr<function_runtime> runtime) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.runtime = std::move(runtime);
  st.stats = std::make_unique<probe>("function", st.cfg.name);
  st.stats->set("min", static_cast<std::int64_t>(st.cfg.instance.min));
  st.stats->set("max", static_cast<std::int64_t>(st.cfg.instance.max));
  st.stats->label("runtime", st.cfg.runtime);
  self->set_down_handler([=](caf::down_msg& down) {
    auto& st = self->state;
    auto i = st.instances.find(down.source);
    if (i == st.instances.end())
      return;
    // An instance died on its own: count it and keep the pool at min.
    st.instances.erase(i);
    if (down.reason != caf::exit_reason::user_shutdown
        && down.reason != caf::exit_reason::normal) {
      st.stats->add("instances_crashed");
      ++st.consecutive_failures;
      schedule_restart(self);
    }
    dispatch(self);
  });
  dispatch(self); // starts `min` instances
  self->send(self, tick_atom::value);
  return {
    [=](invoke_atom, message& msg) -> caf::result<function_result> {
      auto& st = self->state;
      st.stats->add("invocations");
      if (msg.body.size() > st.cfg.instance.message_size) {
        st.stats->add("too_large");
        return function_result::make_handler_error(
          "message of " + std::to_string(msg.body.size())
            + " bytes exceeds the function's limit of "
            + std::to_string(st.cfg.instance.message_size),
          "MessageTooLarge");
      }
      if (st.queue.size() >= st.cfg.instance.queue) {
        st.stats->add("overflows");
        return function_result::make_failure(
          "function " + st.cfg.name + " is overloaded: all "
            + std::to_string(st.cfg.instance.max) + " instances busy and "
            + std::to_string(st.queue.size()) + " invocations queued",
          "Overloaded");
      }
      auto promise = self->make_response_promise<function_result>();
      st.queue.push_back({std::move(msg), promise, clock_type::now()});
      dispatch(self);
      return promise;
    },
    // An instance created its runtime instance and is ready.
    [=](ok_atom, std::int32_t pid) {
      auto& st = self->state;
      auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      auto i = st.instances.find(sender);
      if (i == st.instances.end())
        return;
      i->second.ready = true;
      i->second.pid = pid;
      i->second.last_used = clock_type::now();
      st.consecutive_failures = 0;
      dispatch(self);
    },
    // An instance could not create its runtime instance.
    [=](retire_atom, const std::string& error) {
      auto& st = self->state;
      spdlog::error("function {}: cannot start an instance: {}", st.cfg.name,
                    error);
      st.stats->add("instance_start_failures");
      auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      st.instances.erase(sender);
      ++st.consecutive_failures;
      // Fail what waits rather than letting it sit until a restart works.
      if (st.view().ready == 0)
        while (!st.queue.empty()) {
          auto job = std::move(st.queue.front());
          st.queue.pop_front();
          finish(self, job,
                 function_result::make_failure(
                   "cannot start an instance of " + st.cfg.name + ": " + error,
                   "InstanceStartError"));
        }
      schedule_restart(self);
    },
    // The restart backoff passed.
    [=](connect_atom) {
      self->state.restart_scheduled = false;
      dispatch(self);
    },
    [=](tick_atom) {
      retire_idle(self);
      self->state.stats->report(self);
      auto interval = std::min(
        scaling::idle_check_interval(self->state.cfg.instance.idletime),
        std::chrono::milliseconds{500});
      self->delayed_send(self, interval, tick_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_function_supervisor(caf::actor_system& sys,
                                     const function_config& cfg,
                                     std::shared_ptr<function_runtime> runtime) {
  return sys.spawn(supervisor, cfg, std::move(runtime));
}

} // namespace hubflow
