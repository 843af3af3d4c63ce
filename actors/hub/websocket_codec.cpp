#include "hub/websocket_codec.hpp"

#include <algorithm>

#include <openssl/evp.h>
#include <openssl/sha.h>

namespace hubflow::hub::ws {

namespace {

/// RFC 6455 1.3: appended to the key before hashing.
constexpr std::string_view accept_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

constexpr std::size_t max_control_payload = 125;

bool is_control(std::uint8_t op) {
  return (op & 0x8) != 0;
}

} // namespace

std::uint16_t frame_reader::fail(std::uint16_t code, std::string why) {
  what_ = std::move(why);
  return code;
}

std::uint16_t frame_reader::read(std::string_view in, std::string& data,
                                 std::vector<control_frame>& controls) {
  std::size_t i = 0;
  while (i < in.size() && !closed_) {
    if (state_ == state::header) {
      header_[header_size_++] = static_cast<std::uint8_t>(in[i++]);
      if (header_size_ == 2) {
        // Length 126: 2 more bytes, 127: 8; masked frames add the key.
        auto len = header_[1] & 0x7F;
        header_need_ = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0)
                       + ((header_[1] & 0x80) ? 4 : 0);
      }
      if (header_size_ < header_need_)
        continue;
      if (auto code = start_frame())
        return code;
      if (left_ > 0)
        continue;
    } else {
      auto take = static_cast<std::size_t>(
        std::min<std::uint64_t>(left_, in.size() - i));
      auto& target = is_control(op_) ? control_ : data;
      auto first = target.size();
      target.append(in.data() + i, take);
      for (auto k = first; k < target.size(); ++k)
        target[k] = static_cast<char>(target[k] ^ mask_[mask_at_++ & 3]);
      i += take;
      left_ -= take;
      if (left_ > 0)
        continue;
    }
    // The frame is complete.
    if (is_control(op_)) {
      closed_ = op_ == opcode::close;
      controls.push_back(control_frame{op_, std::move(control_)});
      control_.clear();
    }
    state_ = state::header;
    header_size_ = 0;
    header_need_ = 2;
  }
  return 0;
}

std::uint16_t frame_reader::start_frame() {
  fin_ = (header_[0] & 0x80) != 0;
  op_ = header_[0] & 0x0F;
  if (header_[0] & 0x70)
    return fail(status::protocol_error, "reserved bits set (no extension "
                                        "was negotiated)");
  if (!(header_[1] & 0x80))
    return fail(status::protocol_error, "unmasked client frame");
  std::uint64_t len = header_[1] & 0x7F;
  std::size_t at = 2;
  if (len == 126) {
    len = (std::uint64_t{header_[2]} << 8) | header_[3];
    at = 4;
  } else if (len == 127) {
    len = 0;
    for (std::size_t k = 2; k < 10; ++k)
      len = (len << 8) | header_[k];
    at = 10;
    if (len >> 63)
      return fail(status::protocol_error, "frame length above 2^63");
  }
  for (std::size_t k = 0; k < 4; ++k)
    mask_[k] = header_[at + k];
  mask_at_ = 0;
  left_ = len;
  switch (op_) {
    case opcode::close:
    case opcode::ping:
    case opcode::pong:
      if (!fin_ || len > max_control_payload)
        return fail(status::protocol_error,
                    "control frame fragmented or over 125 bytes");
      break;
    case opcode::text:
      return fail(status::unsupported_data,
                  "text frame (MQTT travels in binary frames)");
    case opcode::binary:
      if (in_message_)
        return fail(status::protocol_error,
                    "new message before the last one's final fragment");
      in_message_ = !fin_;
      break;
    case opcode::continuation:
      if (!in_message_)
        return fail(status::protocol_error,
                    "continuation frame without a message");
      in_message_ = !fin_;
      break;
    default:
      return fail(status::protocol_error,
                  "reserved opcode " + std::to_string(op_));
  }
  if (len > max_payload_)
    return fail(status::too_big, "frame of " + std::to_string(len)
                                   + " bytes, above the hub's maximum of "
                                   + std::to_string(max_payload_));
  state_ = state::payload;
  return 0;
}

void append_frame_header(std::uint8_t op, std::size_t size,
                         std::string& out) {
  out += static_cast<char>(0x80 | op);
  if (size < 126) {
    out += static_cast<char>(size);
  } else if (size <= 0xFFFF) {
    out += static_cast<char>(126);
    out += static_cast<char>(size >> 8);
    out += static_cast<char>(size & 0xFF);
  } else {
    out += static_cast<char>(127);
    for (int shift = 56; shift >= 0; shift -= 8)
      out += static_cast<char>((static_cast<std::uint64_t>(size) >> shift)
                               & 0xFF);
  }
}

std::string close_frame(std::uint16_t code) {
  std::string out;
  append_frame_header(opcode::close, 2, out);
  out += static_cast<char>(code >> 8);
  out += static_cast<char>(code & 0xFF);
  return out;
}

std::string accept_key(std::string_view client_key) {
  std::string text{client_key};
  text += accept_guid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(),
       digest);
  // 20 bytes: 28 characters of base64 and a terminating NUL.
  char encoded[32];
  auto n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded), digest,
                           SHA_DIGEST_LENGTH);
  return std::string(encoded, static_cast<std::size_t>(n));
}

} // namespace hubflow::hub::ws
