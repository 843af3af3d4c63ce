#include "functions/instance.hpp"

#include "core/type_ids.hpp"
#include "core/uuid.hpp"

namespace hubflow {

namespace {

struct instance_state {
  static inline const char* name = "hubflow.function_instance";
  std::unique_ptr<function_instance> instance;
};

caf::behavior instance_actor(caf::stateful_actor<instance_state>* self,
                             std::shared_ptr<function_runtime> runtime,
                             std::shared_ptr<batch_progress> progress,
                             std::string function_name,
                             std::chrono::milliseconds timeout,
                             caf::actor supervisor) {
  using clock_type = batch_progress::clock_type;
  std::string error;
  self->state.instance = runtime->create_instance(error);
  if (!self->state.instance) {
    self->send(supervisor, instance_failed_atom::value, error);
    self->quit();
    return {};
  }
  self->send(supervisor, instance_ready_atom::value,
             static_cast<std::int32_t>(self->state.instance->pid()));
  // An instance outlives no supervisor: a replacement (core/keeper.hpp)
  // starts instances of its own, and this one's worker must not linger.
  self->monitor(supervisor);
  self->set_down_handler([self](caf::down_msg&) { self->quit(); });
  return {
    [=](invoke_atom, std::uint64_t batch) {
      for (;;) {
        message msg;
        clock_type::time_point started;
        {
          std::lock_guard<std::mutex> guard{progress->mtx};
          if (progress->next >= progress->end)
            break;
          msg = std::move(progress->msgs[progress->next++]);
          started = progress->started = clock_type::now();
        }
        auto invoke_id = make_uuid();
        invocation call{msg, function_name, invoke_id, timeout};
        function_result result;
        try {
          result = self->state.instance->invoke(call);
        } catch (const std::exception& e) {
          result = function_result::make_failure(e.what(), "RuntimeError");
        }
        bool broken = result.status == function_result::outcome::failure;
        auto took = std::chrono::duration_cast<std::chrono::microseconds>(
          clock_type::now() - started);
        {
          std::lock_guard<std::mutex> guard{progress->mtx};
          progress->results.push_back(std::move(result));
          progress->run_time += took;
        }
        if (broken)
          break;
      }
      self->send(supervisor, batch_done_atom::value, batch);
    },
  };
}

} // namespace

caf::actor spawn_instance(caf::local_actor* supervisor,
                          std::shared_ptr<function_runtime> runtime,
                          std::shared_ptr<batch_progress> progress,
                          std::string function_name,
                          std::chrono::milliseconds timeout) {
  return supervisor->spawn<caf::detached + caf::monitored>(
    instance_actor, std::move(runtime), std::move(progress),
    std::move(function_name), timeout,
    caf::actor_cast<caf::actor>(supervisor));
}

} // namespace hubflow
