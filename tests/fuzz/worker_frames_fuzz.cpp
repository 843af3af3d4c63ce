// The msgpack frames exchanged with python and node workers. A worker is a
// separate process running user code, so whatever it writes must at worst
// retire it, never hurt the broker. The first input byte picks the check:
// - even: the rest is a reply frame as a worker could send it;
//   decode_reply either fills the reply or names the error (also for frames
//   that claim more elements than they hold: no allocation of the claim);
// - odd: the rest supplies the fields of a request and of a reply; the
//   request must unpack to the documented map, and a reply packed from
//   those fields must decode to the same fields.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <msgpack.hpp>

#include "functions/process/worker_frames.hpp"
#include "fuzz_input.hpp"

using namespace hubflow;
using hubflow::fuzz::check;

namespace {

std::string_view str_of(const msgpack::object& o) {
  if (o.type == msgpack::type::STR)
    return {o.via.str.ptr, o.via.str.size};
  if (o.type == msgpack::type::BIN)
    return {o.via.bin.ptr, o.via.bin.size};
  return {};
}

const msgpack::object* field(const msgpack::object& map, std::string_view key) {
  for (std::uint32_t i = 0; i < map.via.map.size; ++i)
    if (str_of(map.via.map.ptr[i].key) == key)
      return &map.via.map.ptr[i].val;
  return nullptr;
}

void check_request(hubflow::fuzz::input& in) {
  worker_frames::request r;
  r.id = in.byte() * 0x0101010101ull;
  r.json = in.byte() & 1;
  r.qos = in.byte() % 3;
  r.timestamp_ms = -static_cast<std::int64_t>(in.byte()) * 1000003;
  r.topic = in.string();
  r.function_name = in.string();
  r.invoke_id = in.string();
  r.event = in.string();
  auto frame = worker_frames::encode_request(r);
  auto handle = msgpack::unpack(frame.data(), frame.size());
  auto& root = handle.get();
  check(root.type == msgpack::type::MAP, "a request that is not a map");
  auto id = field(root, "id");
  auto event = field(root, "event");
  auto context = field(root, "context");
  check(id && id->as<std::uint64_t>() == r.id, "a request with the wrong id");
  check(event && str_of(*event) == r.event, "a request with the wrong event");
  check(context && context->type == msgpack::type::MAP, "a request without context");
  auto topic = field(*context, "messageTopic");
  check(topic && str_of(*topic) == r.topic, "a request with the wrong topic");

  // A reply as a well-behaved worker writes it.
  worker_frames::reply want;
  want.id = r.id;
  want.ok = r.json;
  if (r.qos)
    want.output = std::string{r.event};
  want.error = std::string{r.invoke_id};
  want.runtime = std::string{r.function_name};
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk{buf};
  pk.pack_map(5);
  pk.pack("id");
  pk.pack(want.id);
  pk.pack("ok");
  pk.pack(want.ok);
  pk.pack("output");
  if (want.output)
    pk.pack(*want.output);
  else
    pk.pack_nil();
  pk.pack("error");
  pk.pack(want.error);
  pk.pack("runtime");
  pk.pack(want.runtime);
  worker_frames::reply got;
  std::string error;
  check(worker_frames::decode_reply({buf.data(), buf.size()}, got, error),
        "a well-formed reply does not decode");
  check(got.id == want.id && got.ok == want.ok && got.output == want.output
          && got.error == want.error && got.runtime == want.runtime,
        "a reply decodes to different fields");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  hubflow::fuzz::input in{data, size};
  if (in.byte() & 1) {
    check_request(in);
    return 0;
  }
  auto frame = in.rest();
  worker_frames::reply reply;
  std::string error;
  if (!worker_frames::decode_reply(frame, reply, error))
    check(!error.empty(), "a refused frame without an error");
  return 0;
}
