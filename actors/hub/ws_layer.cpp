#include "hub/ws_layer.hpp"

namespace hubflow::hub {

namespace {

/// An upgrade request is a GET with a dozen headers; browsers send ~1 KiB.
constexpr std::size_t max_upgrade_request = 8 * 1024;

/// The subprotocol to answer with (MQTT 5 6.0: "mqtt"; MQTT 3.1 clients
/// ask for "mqttv3.1"), or nullptr when the client offers neither.
const char* mqtt_subprotocol(const http_request& req) {
  auto offered = req.header("sec-websocket-protocol");
  if (!offered)
    return nullptr;
  if (has_token(*offered, "mqtt"))
    return "mqtt";
  if (has_token(*offered, "mqttv3.1"))
    return "mqttv3.1";
  return nullptr;
}

} // namespace

ws_layer::ws_layer(transport& below, std::string path, std::size_t max_frame)
  : layer(below),
    path_(std::move(path)),
    request_(http_limits{max_upgrade_request, 0}),
    frames_(max_frame) {
}

bool ws_layer::read(std::string_view in) {
  up_.clear();
  switch (state_) {
    case state::upgrading:
      return upgrade(in);
    case state::open:
      return read_frames(in);
    case state::closed:
      break;
  }
  return true;
}

bool ws_layer::upgrade(std::string_view in) {
  // A request starts with a method; MQTT (0x10 CONNECT) or TLS (0x16)
  // would otherwise wait for a blank line until the CONNECT timeout.
  if (request_.buffered() == 0 && !in.empty() && (in[0] < 'A' || in[0] > 'Z'))
    return refuse(400, "not an HTTP request (plain MQTT or TLS on a "
                       "WebSocket port?)");
  request_.feed(in);
  auto st = request_.parse();
  if (st == http_request_parser::status::incomplete)
    return true;
  if (st == http_request_parser::status::error)
    return refuse(request_.error_status(), request_.error_message());
  auto req = request_.take();
  auto upgrade = req.header("upgrade");
  auto connection = req.header("connection");
  auto key = req.header("sec-websocket-key");
  auto version = req.header("sec-websocket-version");
  if (req.method != "GET")
    return refuse(405, "WebSocket upgrade with " + req.method);
  if (req.path != path_)
    return refuse(404, "WebSocket upgrade on " + req.path + ", not "
                         + path_);
  if (!upgrade || !has_token(*upgrade, "websocket") || !connection
      || !has_token(*connection, "upgrade") || !key || key->size() != 24)
    return refuse(400, "not a WebSocket upgrade request");
  if (!version || *version != "13")
    return refuse(426, "WebSocket version is not 13",
                  {{"Sec-WebSocket-Version", "13"}});
  auto protocol = mqtt_subprotocol(req);
  if (!protocol)
    return refuse(400, "WebSocket upgrade without the mqtt subprotocol");
  std::string response = "HTTP/1.1 101 Switching Protocols\r\n"
                         "Upgrade: websocket\r\n"
                         "Connection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: "
                         + ws::accept_key(*key)
                         + "\r\n"
                           "Sec-WebSocket-Protocol: "
                         + protocol + "\r\n\r\n";
  below_.send(response.data(), response.size());
  state_ = state::open;
  // Frames a client sent before our answer (RFC 6455 says it must wait;
  // reading them costs nothing).
  auto rest = request_.release_buffered();
  return rest.empty() || read_frames(rest);
}

bool ws_layer::refuse(int status, std::string why,
                      std::vector<std::pair<std::string, std::string>> headers) {
  auto response = make_http_response(status, "text/plain", why + "\n", false,
                                     headers);
  below_.send(response.data(), response.size());
  failure_ = "upgrade refused (" + std::to_string(status) + "): "
             + std::move(why);
  state_ = state::closed;
  below_.shutdown_write();
  return false;
}

bool ws_layer::read_frames(std::string_view in) {
  controls_.clear();
  if (auto code = frames_.read(in, up_, controls_))
    return fail(code, frames_.what());
  for (auto& c : controls_) {
    if (c.op == ws::opcode::ping) {
      send_frame(ws::opcode::pong, c.payload);
    } else if (c.op == ws::opcode::close) {
      // Answered with the client's status (RFC 6455 5.5.1). The MQTT
      // bytes before it (a DISCONNECT) are still read: layer::read.
      auto code = c.payload.size() >= 2
                    ? static_cast<std::uint16_t>(
                      (static_cast<unsigned char>(c.payload[0]) << 8)
                      | static_cast<unsigned char>(c.payload[1]))
                    : ws::status::normal;
      auto answer = ws::close_frame(code);
      below_.send(answer.data(), answer.size());
      state_ = state::closed;
      below_.close();
      return false;
    }
  }
  return true;
}

bool ws_layer::fail(std::uint16_t code, std::string why) {
  auto frame = ws::close_frame(code);
  below_.send(frame.data(), frame.size());
  failure_ = std::move(why) + " (close " + std::to_string(code) + ")";
  state_ = state::closed;
  below_.shutdown_write();
  return false;
}

void ws_layer::send_frame(std::uint8_t op, std::string_view payload) {
  // Header and payload in one send: one write (or one TLS record) each.
  frame_.clear();
  ws::append_frame_header(op, payload.size(), frame_);
  frame_.append(payload);
  below_.send(frame_.data(), frame_.size());
  if (frame_.capacity() > (1u << 20))
    std::string{}.swap(frame_); // give a burst's memory back
}

void ws_layer::send(const char* data, std::size_t size) {
  if (state_ == state::open && size > 0)
    send_frame(ws::opcode::binary, std::string_view{data, size});
}

void ws_layer::say_goodbye() {
  if (state_ == state::open) {
    auto frame = ws::close_frame(ws::status::normal);
    below_.send(frame.data(), frame.size());
  }
  state_ = state::closed;
}

} // namespace hubflow::hub
