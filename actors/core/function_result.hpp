// What one function invocation produced.
#pragma once

#include <cstdint>
#include <string>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>

#include "core/message.hpp"

namespace hubflow {

struct function_result {
  enum class outcome : std::uint8_t {
    output,        // `output` holds the bytes to publish
    nothing,       // the handler returned nothing (or a SQL WHERE was false)
    handler_error, // the handler itself failed: report it, do not retry
    failure,       // the runtime failed (crash, timeout, overload): retryable
  };

  outcome status = outcome::nothing;
  payload output;
  std::string error_message;
  std::string error_type;

  static function_result make_output(std::string bytes) {
    return {outcome::output, payload{std::move(bytes)}, {}, {}};
  }
  static function_result make_nothing() {
    return {outcome::nothing, {}, {}, {}};
  }
  static function_result make_handler_error(std::string msg, std::string type) {
    return {outcome::handler_error, {}, std::move(msg), std::move(type)};
  }
  static function_result make_failure(std::string msg, std::string type) {
    return {outcome::failure, {}, std::move(msg), std::move(type)};
  }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f,
                                                 function_result& x) {
    auto status = static_cast<std::uint8_t>(x.status);
    auto load = caf::meta::load_callback([&]() -> caf::error {
      x.status = static_cast<outcome>(status);
      return caf::none;
    });
    return f(caf::meta::type_name("function_result"), status, x.output,
             x.error_message, x.error_type, load);
  }
};

} // namespace hubflow
