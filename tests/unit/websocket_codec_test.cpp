// The WebSocket frame reader (hub/websocket_codec.hpp): client frames in
// any split, fragmentation, control frames between fragments, and every
// violation it must refuse with the right close status.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fixtures/ws_test_client.hpp"
#include "hub/websocket_codec.hpp"

using namespace hubflow::hub;
using hubflow::test::ws_client_frame;

namespace {

struct result {
  std::uint16_t code = 0;
  std::string data;
  std::vector<ws::control_frame> controls;
};

/// Feeds `bytes` in pieces of `piece` bytes (0: all at once).
result feed(const std::string& bytes, std::size_t piece = 0,
            std::uint64_t max = 1 << 20) {
  ws::frame_reader reader{max};
  result r;
  if (piece == 0)
    piece = bytes.size();
  for (std::size_t i = 0; i < bytes.size() && r.code == 0; i += piece)
    r.code = reader.read(std::string_view{bytes}.substr(i, piece), r.data,
                         r.controls);
  return r;
}

} // namespace

TEST(websocket_codec, binary_frames_of_every_length_form_in_any_split) {
  for (std::size_t size : {0u, 5u, 125u, 126u, 300u, 65535u, 65536u, 70000u}) {
    std::string payload(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
      payload[i] = static_cast<char>(i * 7);
    auto frame = ws_client_frame(ws::opcode::binary, payload);
    for (std::size_t piece : {0u, 1u, 3u, 1000u}) {
      auto r = feed(frame, piece);
      EXPECT_EQ(r.code, 0) << size << " in pieces of " << piece;
      EXPECT_EQ(r.data, payload) << size << " in pieces of " << piece;
    }
  }
}

TEST(websocket_codec, fragments_and_frames_in_one_read_join_up) {
  auto bytes = ws_client_frame(ws::opcode::binary, "ab", false)
               + ws_client_frame(ws::opcode::ping, "hi")
               + ws_client_frame(ws::opcode::continuation, "cd", false)
               + ws_client_frame(ws::opcode::continuation, "ef")
               + ws_client_frame(ws::opcode::binary, "gh");
  for (std::size_t piece : {0u, 1u, 2u}) {
    auto r = feed(bytes, piece);
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.data, "abcdefgh");
    ASSERT_EQ(r.controls.size(), 1u);
    EXPECT_EQ(r.controls[0].op, ws::opcode::ping);
    EXPECT_EQ(r.controls[0].payload, "hi");
  }
}

TEST(websocket_codec, stops_at_a_close_frame) {
  ws::frame_reader reader{1024};
  std::string data;
  std::vector<ws::control_frame> controls;
  auto bytes = ws_client_frame(ws::opcode::binary, "x")
               + ws_client_frame(ws::opcode::close, "\x03\xe8")
               + ws_client_frame(ws::opcode::binary, "after");
  EXPECT_EQ(reader.read(bytes, data, controls), 0);
  EXPECT_TRUE(reader.closed());
  EXPECT_EQ(data, "x");
  ASSERT_EQ(controls.size(), 1u);
  EXPECT_EQ(controls[0].op, ws::opcode::close);
}

TEST(websocket_codec, refuses_what_rfc_6455_forbids) {
  struct bad {
    std::string bytes;
    std::uint16_t code;
    const char* what;
  };
  std::vector<bad> cases = {
    {ws_client_frame(ws::opcode::binary, "x", true, false), 1002, "unmasked"},
    {ws_client_frame(ws::opcode::text, "x"), 1003, "text"},
    {ws_client_frame(ws::opcode::binary, "x", true, true, 0x40), 1002,
     "reserved bits"},
    {ws_client_frame(0x3, "x"), 1002, "reserved opcode"},
    {ws_client_frame(ws::opcode::continuation, "x"), 1002, "continuation"},
    {ws_client_frame(ws::opcode::binary, "a", false)
       + ws_client_frame(ws::opcode::binary, "b"),
     1002, "new message"},
    {ws_client_frame(ws::opcode::ping, std::string(126, 'p')), 1002,
     "control frame"},
    {ws_client_frame(ws::opcode::ping, "p", false), 1002, "control frame"},
    {ws_client_frame(ws::opcode::binary, std::string(2000, 'b')), 1009,
     "above the hub's maximum"},
  };
  for (auto& c : cases) {
    ws::frame_reader reader{1024};
    std::string data;
    std::vector<ws::control_frame> controls;
    EXPECT_EQ(reader.read(c.bytes, data, controls), c.code) << c.what;
    EXPECT_NE(reader.what().find(c.what), std::string::npos)
      << reader.what();
  }
}

TEST(websocket_codec, a_huge_length_is_refused_before_any_payload) {
  // Header only: 2^62 bytes announced, nothing buffered for them.
  std::string header = "\x82\xff";
  header += std::string("\x40\0\0\0\0\0\0\0", 8);
  header += "abcd";
  auto r = feed(header, 0, 4 << 20);
  EXPECT_EQ(r.code, ws::status::too_big);
  EXPECT_TRUE(r.data.empty());
}

TEST(websocket_codec, server_frames_and_accept_key) {
  std::string out;
  ws::append_frame_header(ws::opcode::binary, 5, out);
  EXPECT_EQ(out, std::string("\x82\x05"));
  out.clear();
  ws::append_frame_header(ws::opcode::binary, 300, out);
  EXPECT_EQ(out, std::string("\x82\x7e\x01\x2c"));
  out.clear();
  ws::append_frame_header(ws::opcode::binary, 70000, out);
  EXPECT_EQ(out, std::string("\x82\x7f\0\0\0\0\0\x01\x11\x70", 10));
  EXPECT_EQ(ws::close_frame(1002), std::string("\x88\x02\x03\xea"));
  // RFC 6455 1.3's example.
  EXPECT_EQ(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
