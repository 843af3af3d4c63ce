#include "functions/process/worker_frames.hpp"

#include <msgpack.hpp>

namespace hubflow::worker_frames {

namespace {

using packer = msgpack::packer<msgpack::sbuffer>;

void pack_str(packer& pk, std::string_view s) {
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

std::string_view key_of(const msgpack::object& o) {
  if (o.type != msgpack::type::STR)
    return {};
  return {o.via.str.ptr, o.via.str.size};
}

/// Strings and binaries both carry text here: workers in other languages
/// may encode either.
bool bytes_of(const msgpack::object& o, std::string& out) {
  if (o.type == msgpack::type::STR)
    out.assign(o.via.str.ptr, o.via.str.size);
  else if (o.type == msgpack::type::BIN)
    out.assign(o.via.bin.ptr, o.via.bin.size);
  else
    return false;
  return true;
}

} // namespace

std::string encode_request(const request& r) {
  msgpack::sbuffer buf;
  packer pk{buf};
  pk.pack_map(4);
  pack_str(pk, "id");
  pk.pack_uint64(r.id);
  pack_str(pk, "event");
  pk.pack_bin(static_cast<std::uint32_t>(r.event.size()));
  pk.pack_bin_body(r.event.data(), static_cast<std::uint32_t>(r.event.size()));
  pack_str(pk, "json");
  if (r.json)
    pk.pack_true();
  else
    pk.pack_false();
  pack_str(pk, "context");
  pk.pack_map(5);
  pack_str(pk, "messageQOS");
  pk.pack_uint8(r.qos);
  pack_str(pk, "messageTopic");
  pack_str(pk, r.topic);
  pack_str(pk, "messageTimestamp");
  pk.pack_int64(r.timestamp_ms);
  pack_str(pk, "functionName");
  pack_str(pk, r.function_name);
  pack_str(pk, "functionInvokeID");
  pack_str(pk, r.invoke_id);
  return std::string{buf.data(), buf.size()};
}

bool decode_reply(std::string_view frame, reply& out, std::string& error) {
  msgpack::object_handle handle;
  try {
    // Every element takes at least one byte, so no count may exceed the
    // frame's size: msgpack would otherwise allocate what a 6-byte frame
    // claims (up to 2^32 elements) before finding the bytes missing. The
    // depth bound keeps its recursion shallow.
    auto most = frame.size();
    msgpack::unpack_limit limit{most, most, most, most, most, 64};
    bool referenced = false;
    handle = msgpack::unpack(frame.data(), frame.size(), referenced, nullptr,
                             nullptr, limit);
  } catch (const std::exception& e) {
    error = std::string{"not msgpack: "} + e.what();
    return false;
  }
  const auto& root = handle.get();
  if (root.type != msgpack::type::MAP) {
    error = "not a msgpack map";
    return false;
  }
  out = reply{};
  bool has_id = false, has_ok = false;
  for (std::uint32_t i = 0; i < root.via.map.size; ++i) {
    auto key = key_of(root.via.map.ptr[i].key);
    const auto& value = root.via.map.ptr[i].val;
    bool valid = true;
    if (key == "id") {
      valid = value.type == msgpack::type::POSITIVE_INTEGER;
      if (valid)
        out.id = value.via.u64;
      has_id = valid;
    } else if (key == "ok") {
      valid = value.type == msgpack::type::BOOLEAN;
      if (valid)
        out.ok = value.via.boolean;
      has_ok = valid;
    } else if (key == "output") {
      if (value.type != msgpack::type::NIL) {
        out.output.emplace();
        valid = bytes_of(value, *out.output);
      }
    } else if (key == "error") {
      valid = value.type == msgpack::type::NIL || bytes_of(value, out.error);
    } else if (key == "errorType") {
      valid = value.type == msgpack::type::NIL || bytes_of(value, out.error_type);
    } else if (key == "traceback") {
      valid = value.type == msgpack::type::NIL || bytes_of(value, out.traceback);
    } else if (key == "runtime") {
      valid = value.type == msgpack::type::NIL || bytes_of(value, out.runtime);
    }
    // Other keys are ignored: newer workers may say more.
    if (!valid) {
      error = "field '" + std::string{key} + "' has the wrong type";
      return false;
    }
  }
  if (!has_id || !has_ok) {
    error = has_id ? "missing 'ok'" : "missing 'id'";
    return false;
  }
  return true;
}

} // namespace hubflow::worker_frames
