// The MQTT codec as a connection uses it. The first input byte picks the
// side (server: the first packet must be CONNECT, whose protocol level then
// decodes the rest, 3.1, 3.1.1 or 5.0; client: 3.1.1 or 5.0 from the start),
// a small maximum packet size or the default, and how many bytes each read
// carries; the rest is the byte stream. Checked for every stream:
// - packet_reader::feed, fed read by read, yields the same packets and the
//   same final error as decode() run over the whole stream at once;
// - every packet that decodes encodes again (publish_size agreeing with
//   the bytes written) and decodes back to an equal packet.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz_input.hpp"
#include "hub/mqtt_codec.hpp"

using namespace hubflow::mqtt;
using hubflow::fuzz::check;

namespace {

std::string_view view(const byte_buffer& b) {
  return {b.data(), b.size()};
}

/// The level a connection decodes with once `p` was decoded under `opts`.
std::uint8_t level_after(const packet& p, const decode_options& opts) {
  if (auto c = std::get_if<connect_packet>(&p))
    return c->version;
  return opts.version;
}

void check_round_trip(const packet& p, const decode_options& opts) {
  auto version = level_after(p, opts);
  byte_buffer out;
  encode(p, version, out);
  if (auto pub = std::get_if<publish_packet>(&p))
    check(publish_size(pub->msg, header_of(*pub), version) == out.size(),
          "publish_size differs from the encoded size");
  auto again = opts;
  again.max_packet_size = decode_options{}.max_packet_size;
  packet q;
  auto res = decode(view(out), again, q);
  check(res.status == decode_status::ok, "an encoded packet does not decode");
  check(res.consumed == out.size(), "an encoded packet decodes short");
  check(q == p, "an encoded packet decodes to a different packet");
}

/// Encodings of what decode() yields over the whole stream at once, and
/// its final status.
std::vector<byte_buffer> decode_at_once(std::string_view stream,
                                        decode_options opts,
                                        decode_result& last) {
  std::vector<byte_buffer> packets;
  packet p;
  for (;;) {
    last = decode(stream, opts, p);
    if (last.status != decode_status::ok)
      return packets;
    stream.remove_prefix(last.consumed);
    encode(p, level_after(p, opts), packets.emplace_back());
    opts.version = level_after(p, opts);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  hubflow::fuzz::input in{data, size};
  auto flags = in.byte();
  decode_options opts;
  opts.server = (flags & 1) == 0;
  if (!opts.server)
    opts.version = (flags & 2) ? v5 : v311;
  if (flags & 4)
    opts.max_packet_size = 2 + in.byte();
  std::size_t read_size = 1 + (flags >> 3); // 1 to 32 bytes per read
  auto stream = in.rest();

  decode_result at_once;
  auto expected = decode_at_once(stream, opts, at_once);

  std::vector<byte_buffer> fed;
  packet_reader reader;
  decode_result res;
  for (auto rest = stream; !rest.empty();) {
    auto read = rest.substr(0, read_size);
    rest.remove_prefix(read.size());
    res = reader.feed(read, opts, [&](packet& p) {
      check_round_trip(p, opts);
      encode(p, level_after(p, opts), fed.emplace_back());
      opts.version = level_after(p, opts);
      return true;
    });
    if (res.status == decode_status::error)
      break;
  }
  check(fed == expected, "reads and one decode yield different packets");
  check(res.status == at_once.status || stream.empty(),
        "reads and one decode end differently");
  if (res.status == decode_status::error) {
    check(res.reason == at_once.reason, "reads and one decode fail differently");
    check(res.reason >= 0x80, "a decode error without an error reason code");
  }
  return 0;
}
