// The WebSocket frame reader as ws_layer drives it. The first input byte
// picks the size of each read (1 to 64 bytes) and a small or the default
// frame limit; the rest is what a client sends after the upgrade. The
// reader must never give out more MQTT bytes than came in, never a control
// payload over 125 bytes, nothing after a close frame, and an error must
// be a close status it may send (1002, 1003, 1009) with a reason.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_input.hpp"
#include "hub/websocket_codec.hpp"

using namespace hubflow::hub;
using hubflow::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  hubflow::fuzz::input in{data, size};
  auto flags = in.byte();
  std::size_t read_size = 1 + (flags & 0x3F);
  std::uint64_t max_frame = (flags & 0x40) ? 64 : 4 * 1024 * 1024;
  auto stream = in.rest();

  ws::frame_reader reader{max_frame};
  std::string mqtt;
  std::vector<ws::control_frame> controls;
  std::size_t fed = 0;
  for (auto rest = stream; !rest.empty();) {
    auto read = rest.substr(0, read_size);
    rest.remove_prefix(read.size());
    fed += read.size();
    bool was_closed = reader.closed();
    auto before = mqtt.size();
    auto code = reader.read(read, mqtt, controls);
    check(mqtt.size() <= fed, "more MQTT bytes out than frame bytes in");
    check(!was_closed || mqtt.size() == before, "data after a close frame");
    for (auto& c : controls)
      check(c.payload.size() <= 125, "a control payload over 125 bytes");
    if (code != 0) {
      check(code == ws::status::protocol_error
              || code == ws::status::unsupported_data
              || code == ws::status::too_big,
            "an error with a close status the reader may not send");
      check(!reader.what().empty(), "an error without a reason");
      return 0; // the layer closes the connection here
    }
  }
  return 0;
}
