#include "functions/supervisor.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <optional>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "core/probe.hpp"
#include "core/reply.hpp"
#include "core/type_ids.hpp"
#include "functions/instance.hpp"
#include "functions/scaling.hpp"

namespace hubflow {

namespace {

using clock_type = std::chrono::steady_clock;
using check_atom = caf::atom_constant<caf::atom("check")>;
/// The restart backoff passed (schedule_restart).
using backoff_over_atom = caf::atom_constant<caf::atom("backoff_ok")>;

/// Invocations one instance takes at once at most. Batches amortize the hop
/// to the instance's thread (two context switches per hop on a loaded
/// 2-core machine); 64 keeps one batch's added latency small.
constexpr std::size_t batch_cap = 64;

/// How long the last invocation of a batch may wait behind the others
/// (scaling::batch_limit): a handler slower than this gets one invocation
/// at a time, so its callers never queue behind each other while the pool
/// has instances for them. 8 ms, not less: the gap between two batches
/// (the supervisor's turn) idles the instance, and with 2 ms a Python
/// worker's batches of ~17 lost it a measurable share of its msg/s.
constexpr std::chrono::microseconds batch_budget{8000};

// -- supervisor -----------------------------------------------------------------

struct pending_invocation {
  message msg;
  reply answer;
  clock_type::time_point enqueued;
};

struct instance_slot {
  caf::actor handle;
  std::shared_ptr<batch_progress> progress;
  bool ready = false; // created its runtime instance
  std::vector<pending_invocation> batch; // running now; empty when idle
  std::uint64_t batch_id = 0;
  clock_type::time_point last_used = clock_type::now();
  std::int32_t pid = 0;

  bool busy() const {
    return !batch.empty();
  }
};

struct supervisor_state {
  static inline const char* name = "hubflow.function_supervisor";

  function_config cfg;
  std::shared_ptr<function_runtime> runtime;
  std::map<caf::actor_addr, instance_slot> instances;
  std::deque<pending_invocation> queue;
  std::uint64_t next_batch = 1;
  unsigned consecutive_failures = 0;
  bool restart_scheduled = false;
  /// Why the last instance could not start or died, while restarts back
  /// off: invocations arriving with no instance at all are answered with
  /// it at once instead of waiting for the next attempt.
  std::string last_failure;
  /// Mean time of one invocation, from the batches so far (nullopt before
  /// the first): how many invocations a batch may hold.
  std::optional<std::chrono::microseconds> mean_invocation;
  /// A timeout check is pending (see check_timeouts): at most one at a
  /// time, whatever the number of batches running.
  bool timeout_check_pending = false;
  std::unique_ptr<probe> stats;

  scaling::pool_view view() const {
    scaling::pool_view v;
    for (auto& [addr, slot] : instances) {
      if (!slot.ready)
        ++v.starting;
      else {
        ++v.ready;
        if (!slot.busy())
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

/// Sets the pool's gauges (instances, busy, queue depth, worker pids).
void update_gauges(supervisor_actor* self) {
  auto& st = self->state;
  auto v = st.view();
  st.stats->set("instances", static_cast<std::int64_t>(v.ready));
  st.stats->set("instances_starting", static_cast<std::int64_t>(v.starting));
  st.stats->set("busy", static_cast<std::int64_t>(v.ready - v.idle));
  st.stats->set("queue_depth", static_cast<std::int64_t>(v.queued));
  st.stats->set("invocation_mean_us",
                st.mean_invocation ? st.mean_invocation->count() : -1);
  st.stats->set("batch_limit", static_cast<std::int64_t>(scaling::batch_limit(
                                 st.mean_invocation, batch_budget, batch_cap)));
  if (st.cfg.runtime == "native" || st.cfg.runtime == "sql")
    return; // only worker processes (python, node, wasm) have pids
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
  if (n > 0 && st.consecutive_failures > 0) {
    // Attempts after failures, shown as they happen (not at the next tick)
    // so that the backoff between them can be followed from outside.
    st.stats->add("restarts", static_cast<std::int64_t>(n));
    st.stats->report_now(self);
  }
  for (std::size_t i = 0; i < n; ++i) {
    auto progress = std::make_shared<batch_progress>();
    auto handle = spawn_instance(self, st.runtime, progress, st.cfg.name,
                                 st.cfg.instance.timeout);
    instance_slot slot;
    slot.handle = handle;
    slot.progress = std::move(progress);
    st.instances.emplace(handle.address(), std::move(slot));
    st.stats->add("instances_started");
  }
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
  job.answer.deliver(std::move(result));
}

/// Ends the slot's batch: answers what finished, fails the invocation that
/// was running with `failure` when the batch broke off (timeout, crash), and
/// puts the ones that never started back at the front of the queue.
void settle_batch(supervisor_actor* self, instance_slot& slot,
                  std::optional<function_result> failure) {
  std::vector<function_result> results;
  auto now = clock_type::now();
  std::chrono::microseconds run_time;
  {
    std::lock_guard<std::mutex> guard{slot.progress->mtx};
    results.swap(slot.progress->results);
    run_time = slot.progress->run_time;
    if (failure && results.size() < slot.batch.size())
      // The one that broke off (timeout, crash) counts as long as it ran.
      run_time += std::chrono::duration_cast<std::chrono::microseconds>(
        now - slot.progress->started);
    slot.progress->msgs.clear();
    slot.progress->next = slot.progress->end = 0;
  }
  auto ran = results.size()
             + (failure && results.size() < slot.batch.size() ? 1 : 0);
  auto& mean = self->state.mean_invocation;
  if (ran > 0)
    mean = scaling::updated_mean(mean, run_time, ran);
  auto batch = std::move(slot.batch);
  slot.batch.clear();
  slot.last_used = now;
  std::size_t i = 0;
  for (; i < results.size() && i < batch.size(); ++i)
    finish(self, batch[i], std::move(results[i]));
  if (failure && i < batch.size())
    finish(self, batch[i++], std::move(*failure));
  auto& queue = self->state.queue;
  queue.insert(queue.begin(), std::make_move_iterator(batch.begin() + i),
               std::make_move_iterator(batch.end()));
}

/// Forgets an instance after settling its batch with `failure`.
void drop_instance(supervisor_actor* self, const caf::actor_addr& addr,
                   caf::exit_reason reason,
                   std::optional<function_result> failure = std::nullopt) {
  auto i = self->state.instances.find(addr);
  if (i == self->state.instances.end())
    return;
  settle_batch(self, i->second, std::move(failure));
  self->send_exit(i->second.handle, reason);
  self->state.instances.erase(i);
}

void run_batch(supervisor_actor* self, instance_slot& slot,
               std::size_t count) {
  auto& st = self->state;
  std::vector<message> msgs;
  msgs.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    msgs.push_back(st.queue.front().msg);
    slot.batch.push_back(std::move(st.queue.front()));
    st.queue.pop_front();
  }
  slot.batch_id = st.next_batch++;
  {
    std::lock_guard<std::mutex> guard{slot.progress->mtx};
    slot.progress->msgs = std::move(msgs);
    slot.progress->next = 0;
    slot.progress->end = count;
    slot.progress->results.clear();
    slot.progress->run_time = std::chrono::microseconds{0};
    slot.progress->started = clock_type::now();
  }
  self->send(slot.handle, invoke_atom::value, slot.batch_id);
  if (!st.timeout_check_pending) {
    st.timeout_check_pending = true;
    self->delayed_send(self, st.cfg.instance.timeout, check_atom::value);
  }
}

/// Takes back invocations not started yet from the busy batch that holds
/// the most of them (half of them, scaling::steal_share) and puts them at
/// the front of the queue; false when no batch holds any.
bool take_back(supervisor_actor* self) {
  auto& st = self->state;
  instance_slot* victim = nullptr;
  std::size_t most = 0;
  for (auto& [addr, slot] : st.instances) {
    if (slot.batch.size() < 2)
      continue; // the one invocation of a batch of one has started
    std::lock_guard<std::mutex> guard{slot.progress->mtx};
    auto unstarted = slot.progress->end - slot.progress->next;
    if (unstarted > most) {
      most = unstarted;
      victim = &slot;
    }
  }
  if (victim == nullptr)
    return false;
  std::size_t count;
  {
    std::lock_guard<std::mutex> guard{victim->progress->mtx};
    // The instance may have started more since the look above.
    auto unstarted = victim->progress->end - victim->progress->next;
    count = std::min(scaling::steal_share(most), unstarted);
    victim->progress->end -= count;
  }
  if (count == 0)
    return false;
  auto& batch = victim->batch;
  auto first = batch.end() - static_cast<std::ptrdiff_t>(count);
  st.queue.insert(st.queue.begin(), std::make_move_iterator(first),
                  std::make_move_iterator(batch.end()));
  batch.erase(first, batch.end());
  st.stats->add("taken_back", static_cast<std::int64_t>(count));
  return true;
}

/// Hands queued invocations to the idle instances. New instances are
/// started first, so that the shares leave work for them as well; when the
/// queue runs dry while instances are idle, they take over invocations
/// waiting in busy instances' batches.
void dispatch(supervisor_actor* self) {
  auto& st = self->state;
  start_instances(self);
  auto view = st.view();
  auto limit = scaling::batch_limit(st.mean_invocation, batch_budget,
                                    batch_cap);
  auto idle_left = view.idle;
  for (auto& [addr, slot] : st.instances) {
    if (idle_left == 0)
      break;
    if (!slot.ready || slot.busy())
      continue;
    if (st.queue.empty() && !take_back(self))
      break;
    view.queued = st.queue.size();
    run_batch(self, slot, scaling::batch_share(view, idle_left--, limit));
  }
}

/// The timeout check fired: times out every invocation that has run for
/// the whole timeout, and looks again when the next running one would.
///
/// One pending check per supervisor, not one timer per batch: at low load
/// every batch is one invocation, and a timer each (CAF 0.17 wakes its
/// clock thread for every one, and again when it expires) kept the clock
/// thread at ~10% of a core and stalled the rule path by milliseconds,
/// long after the invocations were done (function timeout 30 s later).
void check_timeouts(supervisor_actor* self) {
  auto& st = self->state;
  st.timeout_check_pending = false;
  auto timeout = st.cfg.instance.timeout;
  auto now = clock_type::now();
  std::vector<caf::actor_addr> overrun;
  std::optional<clock_type::time_point> next_deadline;
  for (auto& [addr, slot] : st.instances) {
    if (!slot.busy())
      continue;
    std::lock_guard<std::mutex> guard{slot.progress->mtx};
    auto& results = slot.progress->results;
    if (results.size() >= slot.batch.size()
        || (!results.empty()
            && results.back().status == function_result::outcome::failure))
      continue; // the batch is over (done or broken); batch_done is on its way
    auto deadline = slot.progress->started + timeout;
    if (now >= deadline)
      overrun.push_back(addr);
    else if (!next_deadline || deadline < *next_deadline)
      next_deadline = deadline;
  }
  // Armed before dispatching below: a batch started there must not arm
  // its (later) deadline in place of this earlier one.
  if (next_deadline) {
    st.timeout_check_pending = true;
    self->delayed_send(self,
                       std::chrono::duration_cast<std::chrono::milliseconds>(
                         *next_deadline - now)
                         + std::chrono::milliseconds{1},
                       check_atom::value);
  }
  if (overrun.empty())
    return;
  auto text = "invocation timed out after " + std::to_string(timeout.count())
              + " ms";
  for (auto& addr : overrun) {
    spdlog::warn("function {}: {}", st.cfg.name, text);
    st.stats->add("timeouts");
    // The instance may still be running the handler: kill it and let a
    // fresh one take its place.
    drop_instance(self, addr, caf::exit_reason::kill,
                  function_result::make_failure(text, "TimeoutError"));
  }
  dispatch(self); // may start batches, and with them a check if none is set
}

/// Waits before the next instance start after failures (100 ms, 200 ms,
/// 400 ms ... 10 s); `backoff_ms` in stats shows the current wait.
void schedule_restart(supervisor_actor* self) {
  auto& st = self->state;
  if (st.restart_scheduled)
    return;
  auto delay = scaling::restart_backoff(st.consecutive_failures);
  st.restart_scheduled = true;
  st.stats->set("backoff_ms", delay.count());
  st.stats->report_now(self);
  self->delayed_send(self, delay, backoff_over_atom::value);
}

void retire_idle(supervisor_actor* self) {
  auto& st = self->state;
  auto now = clock_type::now();
  std::vector<caf::actor_addr> retire;
  auto ready = st.view().ready;
  for (auto& [addr, slot] : st.instances) {
    auto idle_for = std::chrono::duration_cast<std::chrono::milliseconds>(
      now - slot.last_used);
    if (slot.ready && !slot.busy()
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
}

/// Queues one invocation, or answers at once when it is too large or the
/// queue is full (back-pressure: the caller decides whether to retry).
void enqueue(supervisor_actor* self, message msg, reply answer) {
  auto& st = self->state;
  st.stats->add("invocations");
  if (msg.body.size() > st.cfg.instance.message_size) {
    st.stats->add("too_large");
    answer.deliver(function_result::make_handler_error(
      "message of " + std::to_string(msg.body.size())
        + " bytes exceeds the function's limit of "
        + std::to_string(st.cfg.instance.message_size),
      "MessageTooLarge"));
    return;
  }
  if (st.restart_scheduled && st.instances.empty()) {
    // Backing off after failures with no instance to serve: answer now
    // (the rule retries, then reports the error) rather than hold the
    // message for up to 10 s until the next attempt.
    st.stats->add("failures");
    answer.deliver(function_result::make_failure(
      st.last_failure + " (next attempt within "
        + std::to_string(
          scaling::restart_backoff(st.consecutive_failures).count())
        + " ms)",
      "InstanceStartError"));
    return;
  }
  if (st.queue.size() >= st.cfg.instance.queue) {
    st.stats->add("overflows");
    answer.deliver(function_result::make_failure(
      "function " + st.cfg.name + " is overloaded: all "
        + std::to_string(st.cfg.instance.max) + " instances busy and "
        + std::to_string(st.queue.size()) + " invocations queued",
      "Overloaded"));
    return;
  }
  st.queue.push_back({std::move(msg), std::move(answer), clock_type::now()});
  dispatch(self);
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
    settle_batch(self, i->second,
                 function_result::make_failure(
                   "instance failed: " + self->system().render(down.reason),
                   "InstanceError"));
    st.instances.erase(i);
    if (down.reason != caf::exit_reason::user_shutdown
        && down.reason != caf::exit_reason::normal) {
      st.stats->add("instances_crashed");
      st.last_failure = "instance of " + st.cfg.name
                        + " failed: " + self->system().render(down.reason);
      if (!st.restart_scheduled) // instances failing together count once
        ++st.consecutive_failures;
      schedule_restart(self);
    }
    dispatch(self);
  });
  dispatch(self); // starts `min` instances
  self->send(self, tick_atom::value);
  return {
    [=](invoke_atom, message& msg) {
      enqueue(self, std::move(msg),
              reply{self->make_response_promise<function_result>()});
    },
    [=](invoke_atom, message& msg, std::uint64_t ticket) {
      enqueue(self, std::move(msg), reply{self->current_sender(), ticket});
    },
    [=](batch_done_atom, std::uint64_t batch_id) {
      auto& st = self->state;
      auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      auto i = st.instances.find(sender);
      if (i == st.instances.end() || i->second.batch_id != batch_id
          || !i->second.busy())
        return; // a timed-out batch: already settled
      std::optional<std::string> broken;
      {
        std::lock_guard<std::mutex> guard{i->second.progress->mtx};
        auto& results = i->second.progress->results;
        if (!results.empty()
            && results.back().status == function_result::outcome::failure)
          broken = results.back().error_message;
      }
      if (broken) {
        // The runtime broke (worker crashed, pipe closed): replace it.
        spdlog::warn("function {}: instance failed: {}", st.cfg.name,
                     *broken);
        drop_instance(self, sender, caf::exit_reason::user_shutdown);
        st.stats->add("instances_failed");
      } else {
        settle_batch(self, i->second, std::nullopt);
      }
      dispatch(self);
    },
    [=](check_atom) { check_timeouts(self); },
    // An instance created its runtime instance and is ready.
    [=](instance_ready_atom, std::int32_t pid) {
      auto& st = self->state;
      auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      auto i = st.instances.find(sender);
      if (i == st.instances.end())
        return;
      i->second.ready = true;
      i->second.pid = pid;
      i->second.last_used = clock_type::now();
      if (st.consecutive_failures > 0) {
        st.consecutive_failures = 0;
        st.last_failure.clear();
        st.stats->set("backoff_ms", 0);
      }
      dispatch(self);
    },
    // An instance could not create its runtime instance.
    [=](instance_failed_atom, const std::string& error) {
      auto& st = self->state;
      spdlog::error("function {}: cannot start an instance: {}", st.cfg.name,
                    error);
      st.stats->add("instance_start_failures");
      auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      st.instances.erase(sender);
      if (!st.restart_scheduled) // instances failing together count once
        ++st.consecutive_failures;
      st.last_failure = "cannot start an instance of " + st.cfg.name + ": "
                        + error;
      // Fail what waits rather than letting it sit until a restart works.
      if (st.instances.empty())
        while (!st.queue.empty()) {
          auto job = std::move(st.queue.front());
          st.queue.pop_front();
          finish(self, job, function_result::make_failure(
                              st.last_failure, "InstanceStartError"));
        }
      schedule_restart(self);
    },
    // The restart backoff passed.
    [=](backoff_over_atom) {
      self->state.restart_scheduled = false;
      dispatch(self);
    },
    [=](tick_atom) {
      retire_idle(self);
      // Gauges are only read when reported: computing them here, not after
      // every dispatch, keeps a pass over the pool (and, for worker
      // runtimes, a string of pids) off the per-invocation path.
      update_gauges(self);
      self->state.stats->report(self);
      auto interval = std::min(
        scaling::idle_check_interval(self->state.cfg.instance.idletime),
        stats_interval(self->home_system()));
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
