#include "core/http_parser.hpp"

#include <algorithm>
#include <cctype>

namespace hubflow {

std::string lower(std::string_view s) {
  std::string out{s};
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool is_token_char(unsigned char c) {
  return std::isalnum(c) || std::string_view{"!#$%&'*+-.^_`|~"}.find(c)
                              != std::string_view::npos;
}


int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

} // namespace

bool has_token(std::string_view list, std::string_view token) {
  auto text = lower(list);
  size_t pos = 0;
  while (pos <= text.size()) {
    auto end = text.find(',', pos);
    if (trim(std::string_view{text}.substr(pos, end - pos)) == token)
      return true;
    if (end == std::string::npos)
      break;
    pos = end + 1;
  }
  return false;
}

const std::string* http_request::header(std::string_view lower_name) const {
  for (auto& [k, v] : headers)
    if (k == lower_name)
      return &v;
  return nullptr;
}

std::vector<std::string> http_request::segments() const {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < path.size()) {
    if (path[pos] == '/') {
      ++pos;
      continue;
    }
    auto end = path.find('/', pos);
    out.push_back(percent_decode(std::string_view{path}.substr(pos, end - pos)));
    pos = end == std::string::npos ? path.size() : end;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>>
http_request::query_params() const {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos < query.size()) {
    auto end = query.find('&', pos);
    auto part = std::string_view{query}.substr(pos, end - pos);
    if (!part.empty()) {
      auto eq = part.find('=');
      out.emplace_back(percent_decode(part.substr(0, eq), true),
                       eq == std::string_view::npos
                         ? std::string{}
                         : percent_decode(part.substr(eq + 1), true));
    }
    pos = end == std::string::npos ? query.size() : end + 1;
  }
  return out;
}

http_request_parser::http_request_parser(http_limits limits)
  : limits_(limits) {
}

void http_request_parser::feed(std::string_view bytes) {
  buf_.append(bytes.data(), bytes.size());
}

http_request_parser::status http_request_parser::fail(int code,
                                                      std::string message) {
  error_status_ = code;
  error_message_ = std::move(message);
  return status::error;
}

http_request_parser::status http_request_parser::parse() {
  if (error_status_ != 0)
    return status::error;
  if (!in_body_) {
    // Tolerate empty lines between pipelined requests (RFC 9112 2.2).
    size_t skip = 0;
    while (skip + 1 < buf_.size() && buf_[skip] == '\r'
           && buf_[skip + 1] == '\n')
      skip += 2;
    if (skip > 0)
      buf_.erase(0, skip);
    auto end = buf_.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (buf_.size() > limits_.max_header_bytes)
        return fail(431, "request headers are larger than "
                           + std::to_string(limits_.max_header_bytes)
                           + " bytes");
      return status::incomplete;
    }
    if (end + 4 > limits_.max_header_bytes)
      return fail(431, "request headers are larger than "
                         + std::to_string(limits_.max_header_bytes) + " bytes");
    current_ = http_request{};
    if (auto st = parse_head(std::string_view{buf_}.substr(0, end));
        st == status::error)
      return st;
    buf_.erase(0, end + 4);
    in_body_ = true;
  }
  if (buf_.size() < body_length_)
    return status::incomplete;
  current_.body = buf_.substr(0, body_length_);
  buf_.erase(0, body_length_);
  in_body_ = false;
  expect_continue_ = false;
  return status::complete;
}

http_request_parser::status
http_request_parser::parse_head(std::string_view head) {
  auto line_end = head.find("\r\n");
  auto line = head.substr(0, line_end);
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos
      || line.find(' ', sp2 + 1) != std::string_view::npos)
    return fail(400, "malformed request line");
  current_.method = std::string{line.substr(0, sp1)};
  current_.target = std::string{line.substr(sp1 + 1, sp2 - sp1 - 1)};
  auto version = line.substr(sp2 + 1);
  if (current_.method.empty()
      || !std::all_of(current_.method.begin(), current_.method.end(),
                      [](unsigned char c) { return is_token_char(c); }))
    return fail(400, "malformed request method");
  if (current_.target.empty() || current_.target[0] != '/')
    return fail(400, "the request target must be an absolute path");
  if (version == "HTTP/1.1")
    current_.minor_version = 1;
  else if (version == "HTTP/1.0")
    current_.minor_version = 0;
  else
    return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  auto q = current_.target.find('?');
  current_.path = current_.target.substr(0, q);
  current_.query = q == std::string::npos ? "" : current_.target.substr(q + 1);

  bool has_length = false;
  body_length_ = 0;
  size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    auto eol = head.find("\r\n", pos);
    auto field = head.substr(pos, eol == std::string_view::npos
                                    ? std::string_view::npos
                                    : eol - pos);
    pos = eol == std::string_view::npos ? head.size() : eol + 2;
    if (!field.empty() && (field[0] == ' ' || field[0] == '\t'))
      return fail(400, "obsolete header line folding is not accepted");
    auto colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return fail(400, "malformed header line");
    auto name = field.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(),
                     [](unsigned char c) { return is_token_char(c); }))
      return fail(400, "malformed header name '" + std::string{name} + "'");
    auto value = std::string{trim(field.substr(colon + 1))};
    auto key = lower(name);
    if (key == "content-length") {
      if (value.empty() || value.size() > 18
          || !std::all_of(value.begin(), value.end(),
                          [](unsigned char c) { return std::isdigit(c); }))
        return fail(400, "invalid Content-Length '" + value + "'");
      auto length = std::stoull(value);
      if (has_length && length != body_length_)
        return fail(400, "conflicting Content-Length headers");
      has_length = true;
      body_length_ = length;
    } else if (key == "transfer-encoding") {
      return fail(411, "Transfer-Encoding is not supported: send the body "
                       "with a Content-Length");
    }
    current_.headers.emplace_back(std::move(key), std::move(value));
  }
  if (body_length_ > limits_.max_body_bytes)
    return fail(413, "the request body of " + std::to_string(body_length_)
                       + " bytes exceeds the limit of "
                       + std::to_string(limits_.max_body_bytes) + " bytes");
  auto connection = current_.header("connection");
  if (current_.minor_version == 1)
    current_.keep_alive = !(connection && has_token(*connection, "close"));
  else
    current_.keep_alive = connection && has_token(*connection, "keep-alive");
  auto expect = current_.header("expect");
  expect_continue_ = current_.minor_version == 1 && body_length_ > 0 && expect
                     && lower(*expect) == "100-continue";
  return status::incomplete;
}

http_request http_request_parser::take() {
  return std::move(current_);
}

std::string percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      int hi = hex_value(text[i + 1]);
      int lo = hex_value(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += (plus_is_space && c == '+') ? ' ' : c;
  }
  return out;
}

const char* http_reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string make_http_response(
  int status, std::string_view content_type, std::string_view body,
  bool keep_alive,
  const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " "
                    + http_reason(status) + "\r\n";
  for (auto& [k, v] : headers) {
    // A value may come from a store (an ETag): one with a control byte
    // would end the header early and let it write headers of its own.
    auto unsafe = [](char c) {
      auto u = static_cast<unsigned char>(c);
      return (u < 0x20 && c != '\t') || u == 0x7f;
    };
    if (std::any_of(v.begin(), v.end(), unsafe))
      continue;
    out += k + ": " + v + "\r\n";
  }
  if (!body.empty())
    out += "Content-Type: " + std::string{content_type} + "\r\n";
  // 204 must not carry a body or a Content-Length.
  if (status != 204 && status >= 200)
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += "\r\n";
  out.append(body.data(), body.size());
  return out;
}

} // namespace hubflow
