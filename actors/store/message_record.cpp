#include "store/message_record.hpp"

#include <stdexcept>
#include <string>

namespace hubflow::store {

namespace {

/// The `count` items of an array, or an error for any other shape.
const msgpack::object* items_of(const msgpack::object& o, std::size_t count) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != count)
    throw std::runtime_error("a record of an unexpected shape");
  return o.via.array.ptr;
}

std::string bytes_of(const msgpack::object& o) {
  if (o.type == msgpack::type::BIN)
    return std::string{o.via.bin.ptr, o.via.bin.size};
  return o.as<std::string>();
}

} // namespace

void pack_message(record_packer& p, const message& m) {
  const auto& pr = m.properties;
  p.pack_array(14);
  p.pack(m.topic);
  p.pack_bin(static_cast<std::uint32_t>(m.body.size()));
  p.pack_bin_body(m.body.view().data(),
                  static_cast<std::uint32_t>(m.body.size()));
  p.pack(m.qos);
  p.pack(m.retain);
  p.pack(static_cast<std::int64_t>(m.received.time_since_epoch().count()));
  p.pack(m.origin);
  p.pack(pr.has_payload_format);
  p.pack(pr.payload_format);
  p.pack(pr.has_message_expiry);
  p.pack(pr.message_expiry);
  p.pack(pr.content_type);
  p.pack(pr.response_topic);
  p.pack(pr.correlation_data);
  p.pack_array(static_cast<std::uint32_t>(pr.user_properties.size()));
  for (auto& [k, v] : pr.user_properties) {
    p.pack_array(2);
    p.pack(k);
    p.pack(v);
  }
}

message unpack_message(const msgpack::object& o) {
  auto f = items_of(o, 14);
  message m;
  m.topic = f[0].as<std::string>();
  m.body = payload{bytes_of(f[1])};
  m.qos = f[2].as<std::uint8_t>();
  m.retain = f[3].as<bool>();
  m.received = message::clock::time_point{
    message::clock::duration{f[4].as<std::int64_t>()}};
  m.origin = f[5].as<std::string>();
  auto& pr = m.properties;
  pr.has_payload_format = f[6].as<bool>();
  pr.payload_format = f[7].as<std::uint8_t>();
  pr.has_message_expiry = f[8].as<bool>();
  pr.message_expiry = f[9].as<std::uint32_t>();
  pr.content_type = f[10].as<std::string>();
  pr.response_topic = f[11].as<std::string>();
  pr.correlation_data = bytes_of(f[12]);
  auto& up = f[13];
  if (up.type != msgpack::type::ARRAY)
    throw std::runtime_error("user properties are not a list");
  for (std::uint32_t i = 0; i < up.via.array.size; ++i) {
    auto kv = items_of(up.via.array.ptr[i], 2);
    pr.user_properties.emplace_back(kv[0].as<std::string>(),
                                    kv[1].as<std::string>());
  }
  return m;
}

} // namespace hubflow::store
