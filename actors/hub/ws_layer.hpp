// MQTT over WebSocket (RFC 6455, MQTT 5 section 6) between the transport
// below (the socket, or TLS for wss://) and MQTT: the HTTP upgrade on the
// listener's path with the `mqtt` (or old `mqttv3.1`) subprotocol, then
// binary frames both ways. Every MQTT send() becomes one binary frame;
// pings are answered, a close frame is answered and ends the connection.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/http_parser.hpp"
#include "core/transport.hpp"
#include "hub/websocket_codec.hpp"

namespace hubflow::hub {

class ws_layer final : public layer {
public:
  /// Upgrades on `path` only; client frames may carry up to `max_frame`
  /// bytes (the hub's maximum packet size).
  ws_layer(transport& below, std::string path, std::size_t max_frame);

  bool read(std::string_view in) override;
  bool established() const noexcept override {
    return state_ != state::upgrading;
  }
  const char* name() const noexcept override {
    return "WebSocket";
  }

  /// One binary frame; dropped before the upgrade and after a close frame.
  void send(const char* data, std::size_t size) override;

private:
  enum class state { upgrading, open, closed };

  /// A close frame (1000) when open.
  void say_goodbye() override;

  /// Handles the upgrade request once it is complete.
  bool upgrade(std::string_view in);
  /// Refuses the upgrade with an HTTP error and ends the connection.
  bool refuse(int status, std::string why,
              std::vector<std::pair<std::string, std::string>> headers = {});
  bool read_frames(std::string_view in);
  /// Sends a close frame with `code`, closes below and ends the connection.
  bool fail(std::uint16_t code, std::string why);
  void send_frame(std::uint8_t op, std::string_view payload);

  std::string path_;
  state state_ = state::upgrading;
  http_request_parser request_;
  ws::frame_reader frames_;
  std::vector<ws::control_frame> controls_; // of the current read
  std::string frame_; // scratch: header and payload of a frame sent
};

} // namespace hubflow::hub
