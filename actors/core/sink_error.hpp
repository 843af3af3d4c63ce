// What a sink's failure means: Fluent Bit's three answers, OK, RETRY and
// ERROR, carried by the caf::error a sink answers (OK is ok_atom).
//
// Why: a destination error that can never succeed (a Kafka topic made
// invalid by its template, a record too large, a Redis WRONGTYPE, not
// authorised) used to be retried like a broker that is down, so a QoS 1
// publisher never got a PUBACK and resent the message after every
// reconnect. The sink knows which it is; the rule decides what it means:
// it retries RETRY and turns ERROR into an error report at once.
//
// - RETRY (sink_errc::retry, and every error that is not of this category:
//   a request timeout, a sink that is gone): transient, worth another try.
// - ERROR (the other codes): permanent. The code is the MQTT 5 reason code
//   a QoS 1/2 publisher's PUBACK/PUBREC carries once the rule has reported
//   the failure (an MQTT 3.1.1 publisher gets a plain PUBACK: the message
//   was handled by reporting it, not dropped).
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>

namespace hubflow {

/// The codes of the "sink" error category. Permanent codes are MQTT 5
/// reason codes that a PUBACK and a PUBREC may carry.
enum class sink_errc : std::uint8_t {
  retry = 1,                     // transient: broker down, timeout, queue full
  unspecified = 0x80,            // permanent, no better code fits
  not_authorized = 0x87,         // the destination refuses this client
  topic_name_invalid = 0x90,     // the destination's topic or key is invalid
  quota_exceeded = 0x97,         // e.g. a message larger than Kafka takes
  payload_format_invalid = 0x99, // the destination cannot take these bytes
};

inline constexpr caf::atom_value sink_error_category = caf::atom("sink");

/// A sink error with `text` as its context (what the logs and error
/// reports show).
inline caf::error make_sink_error(sink_errc code, std::string text) {
  return caf::error{static_cast<std::uint8_t>(code), sink_error_category,
                    caf::make_message(std::move(text))};
}

/// True when retrying `err` cannot succeed (ERROR). Errors of other
/// categories are transient (RETRY).
inline bool is_permanent(const caf::error& err) {
  return err && err.category() == sink_error_category
         && err.code() >= static_cast<std::uint8_t>(sink_errc::unspecified);
}

/// The MQTT 5 reason code of a permanent error (0x80 for any other).
inline std::uint8_t mqtt_reason_code(const caf::error& err) {
  return is_permanent(err)
           ? err.code()
           : static_cast<std::uint8_t>(sink_errc::unspecified);
}

/// `err` as ERROR with `code`, keeping its text (a sink passing on what
/// it learned from the layer below it).
inline caf::error as_permanent(const caf::error& err, sink_errc code) {
  return caf::error{static_cast<std::uint8_t>(code), sink_error_category,
                    err.context()};
}

/// The text of a sink error (its one-string context), else CAF's rendering.
inline std::string sink_error_text(const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return caf::to_string(err);
}

} // namespace hubflow
