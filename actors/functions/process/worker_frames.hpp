// The msgpack frames hubflow exchanges with python and node workers; the
// layout is documented in schemas/worker-frames.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hubflow::worker_frames {

/// One invocation: the payload and Baetyl's context fields.
struct request {
  std::uint64_t id = 0;
  std::string_view event; // the raw payload bytes
  bool json = false;      // the payload is a JSON object
  std::uint8_t qos = 0;
  std::string_view topic;
  std::int64_t timestamp_ms = 0;
  std::string_view function_name;
  std::string_view invoke_id;
};

/// The msgpack map of a request (without the length prefix).
std::string encode_request(const request& r);

/// A worker's answer. The first frame a worker sends (id 0) says whether it
/// loaded the handler ("ok"), naming its runtime or the error.
struct reply {
  std::uint64_t id = 0;
  bool ok = false;
  std::optional<std::string> output; // nullopt: publish nothing
  std::string error;
  std::string error_type;
  std::string traceback;
  std::string runtime; // hello frame only: "python 3.11.2", "node v20.1.0"
};

/// Decodes a reply or hello frame; false with `error` when it is not one.
bool decode_reply(std::string_view frame, reply& out, std::string& error);

} // namespace hubflow::worker_frames
