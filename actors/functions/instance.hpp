// One function instance: an actor on its own thread that runs the batches
// its supervisor (functions/supervisor.hpp) hands it, through one
// function_instance of the function's runtime.
//
// Protocol with the supervisor that spawned it:
// - instance -> supervisor: (instance_ready_atom, pid) once the runtime
//   instance exists (pid 0 for in-process runtimes), or
//   (instance_failed_atom, error text) if it could not be created (the
//   instance then stops);
// - supervisor -> instance: (invoke_atom, batch id) after filling the
//   shared batch_progress; instance -> supervisor: (batch_done_atom,
//   batch id) when it stopped taking invocations from it.
// An instance stops when its supervisor does.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "core/message.hpp"
#include "core/function_result.hpp"
#include "functions/runtime.hpp"

namespace hubflow {

using instance_ready_atom = caf::atom_constant<caf::atom("inst_ready")>;
using instance_failed_atom = caf::atom_constant<caf::atom("inst_fail")>;
using batch_done_atom = caf::atom_constant<caf::atom("batchdone")>;

/// An instance's current batch, shared by the supervisor and the instance
/// thread. The supervisor fills it; the instance thread takes invocation
/// `next` while `next < end` and records what it did, so a hanging
/// invocation is found exactly, the results of those before it are kept,
/// and the supervisor can take back invocations not started yet (lowering
/// `end`) for an idle instance.
struct batch_progress {
  using clock_type = std::chrono::steady_clock;
  std::mutex mtx;
  std::vector<message> msgs;
  std::size_t next = 0;                 // the next one to start
  std::size_t end = 0;                  // where the instance stops
  std::vector<function_result> results; // in batch order
  clock_type::time_point started;       // of invocation number results.size()
  std::chrono::microseconds run_time{0}; // of the finished invocations
};

/// Spawns an instance of `runtime` for the function `function_name`,
/// detached (a handler that blocks, sleeps or waits on a worker process
/// never stalls the scheduler) and monitored by `supervisor`, which it
/// reports to. Each invocation is given `timeout` (the runtime enforces
/// it where it can; the supervisor always does). A batch stops after a
/// runtime failure: the instance is broken and the supervisor replaces it.
caf::actor spawn_instance(caf::local_actor* supervisor,
                          std::shared_ptr<function_runtime> runtime,
                          std::shared_ptr<batch_progress> progress,
                          std::string function_name,
                          std::chrono::milliseconds timeout);

} // namespace hubflow
