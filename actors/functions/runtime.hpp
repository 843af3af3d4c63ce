// The interface every function runtime implements (native plugins, SQL,
// Python and Node workers). The supervisor and instance actors only see this.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "core/config.hpp"
#include "core/message.hpp"
#include "core/function_result.hpp"

namespace hubflow {

/// One call of a function: the message plus Baetyl's context fields.
struct invocation {
  const message& msg;
  std::string_view function_name; // context.functionName
  std::string_view invoke_id;     // context.functionInvokeID
  std::chrono::milliseconds timeout;
};

/// One warm instance of a function. Instances are used by one actor at a
/// time (no locking needed); `invoke` may block, because instance actors run
/// detached on their own thread.
class function_instance {
public:
  virtual ~function_instance() = default;
  virtual function_result invoke(const invocation& call) = 0;
  /// The worker process id for out-of-process runtimes, 0 otherwise.
  virtual int pid() const {
    return 0;
  }
};

/// A runtime for one configured function: validated once at config load,
/// then asked for as many instances as the supervisor wants.
class function_runtime {
public:
  virtual ~function_runtime() = default;
  /// Creates an instance, or returns nullptr and sets `error`.
  virtual std::unique_ptr<function_instance>
  create_instance(std::string& error) = 0;
};

/// Builds the runtime for a function config, or returns nullptr and sets
/// `error` (unknown plugin, SQL that does not parse, ...).
using runtime_factory = std::function<std::unique_ptr<function_runtime>(
  const function_config&, const runtime_options&, std::string& error)>;

/// Runtimes by name (`native`, `sql`, `python`, `node`). Each runtime
/// registers itself in functions/runtimes.cpp; tests may add fakes.
std::map<std::string, runtime_factory>& runtime_registry();

/// Looks up `cfg.runtime` in the registry and builds it.
std::unique_ptr<function_runtime> make_runtime(const function_config& cfg,
                                               const runtime_options& opts,
                                               std::string& error);

} // namespace hubflow
