// RFC 6455 framing for MQTT over WebSocket, without I/O: an incremental
// reader of client frames (masked, binary, fragmented, with control frames
// in between), the server's frame header, and the handshake's accept key.
// MQTT bytes stream through as they arrive: only a frame header (at most
// 14 bytes) and a control frame's payload (at most 125) are ever held, so
// a frame's size costs no memory; it is still bounded (max_payload).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hubflow::hub::ws {

enum opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

/// Close status codes (RFC 6455 7.4.1).
namespace status {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003; // text frames
inline constexpr std::uint16_t too_big = 1009;
} // namespace status

/// A complete control frame from the client (ping, pong or close).
struct control_frame {
  std::uint8_t op;
  std::string payload; // at most 125 bytes, unmasked
};

class frame_reader {
public:
  /// Frames whose payload is longer than `max_payload` are refused (1009).
  explicit frame_reader(std::uint64_t max_payload) noexcept
    : max_payload_(max_payload) {
  }

  /// Reads all of `in`: the payload of binary messages (unmasked, across
  /// fragments) is appended to `data`, complete control frames to
  /// `controls`. Stops after a close frame (closed() is then true; the rest
  /// is ignored). Returns 0, or the close status to send for a violation
  /// (unmasked frame, text, reserved bits or opcodes, a bad fragment
  /// sequence, a control frame over 125 bytes or fragmented, a frame over
  /// max_payload); what() says which.
  std::uint16_t read(std::string_view in, std::string& data,
                     std::vector<control_frame>& controls);

  bool closed() const noexcept {
    return closed_;
  }
  const std::string& what() const noexcept {
    return what_;
  }

private:
  enum class state { header, payload };

  /// The header is complete: checks it and sets up the payload.
  std::uint16_t start_frame();
  std::uint16_t fail(std::uint16_t code, std::string why);

  std::uint64_t max_payload_;
  state state_ = state::header;
  std::uint8_t header_[14] = {};
  std::size_t header_size_ = 0; // bytes of header_ read
  std::size_t header_need_ = 2; // bytes the header has (known after 2)
  std::uint8_t op_ = 0;         // of the current frame
  bool fin_ = false;
  std::uint64_t left_ = 0; // payload bytes of the current frame to come
  std::uint8_t mask_[4] = {};
  std::size_t mask_at_ = 0;        // index of the next payload byte's key
  bool in_message_ = false;        // a fragmented binary message goes on
  std::string control_;            // payload of the control frame so far
  bool closed_ = false;
  std::string what_;
};

/// Appends a server frame header (FIN set, unmasked) for `size` payload
/// bytes of `op` to `out`.
void append_frame_header(std::uint8_t op, std::size_t size, std::string& out);

/// A close frame with `code` (servers send it unmasked).
std::string close_frame(std::uint16_t code);

/// Sec-WebSocket-Accept for the client's Sec-WebSocket-Key.
std::string accept_key(std::string_view client_key);

} // namespace hubflow::hub::ws
