// A message as the stores write it: one msgpack array of its fields in a
// fixed order (topic, payload, qos, retain, receive time, origin, the MQTT 5
// properties). The hub's store and the disk buffers write and read it
// through these.
#pragma once

#include <msgpack.hpp>

#include "core/message.hpp"

namespace hubflow::store {

using record_packer = msgpack::packer<msgpack::sbuffer>;

/// Appends `m` as one array to `p`.
void pack_message(record_packer& p, const message& m);

/// The message packed by pack_message; throws std::runtime_error or
/// msgpack::type_error on any other shape.
message unpack_message(const msgpack::object& o);

} // namespace hubflow::store
