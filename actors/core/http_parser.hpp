// An incremental HTTP/1.1 request parser and response writer: the HTTP
// API's, and the request reader of the hub's WebSocket upgrade
// (hub/ws_layer.hpp). Bytes are fed as they arrive; complete requests come
// out one at a time (pipelining keeps its order). Limits are enforced
// before buffering: oversized headers are refused with 431, bodies above
// max_body with 413 (before the body is read, so `Expect: 100-continue`
// clients send nothing).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hubflow {

struct http_request {
  std::string method;
  std::string target;  // as sent: /v1.0/state/s/k?x=1
  std::string path;    // target without the query, still percent-encoded
  std::string query;   // after '?', still encoded
  int minor_version = 1; // HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> headers; // names lower
  std::string body;
  bool keep_alive = true;

  /// The value of header `lower_name`, or nullptr.
  const std::string* header(std::string_view lower_name) const;
  /// Path segments, percent-decoded one by one (so %2F stays inside one).
  std::vector<std::string> segments() const;
  /// Query parameters in order (decoded, '+' as space).
  std::vector<std::pair<std::string, std::string>> query_params() const;
};

struct http_limits {
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 4 * 1024 * 1024;
};

class http_request_parser {
public:
  enum class status { incomplete, complete, error };

  explicit http_request_parser(http_limits limits = {});

  /// Appends bytes read from the connection.
  void feed(std::string_view bytes);

  /// Parses from what was fed. `complete`: take() the request; `error`:
  /// answer error_status() and close the connection.
  status parse();

  http_request take();

  /// True once the headers of a request with `Expect: 100-continue` are in
  /// and its body is still missing (answer "100 Continue" once).
  bool wants_continue() const {
    return in_body_ && expect_continue_;
  }
  void continue_sent() {
    expect_continue_ = false;
  }

  /// Takes the bytes received after the last complete request: a
  /// connection that switches protocols (a WebSocket upgrade) reads them.
  std::string release_buffered() {
    return std::exchange(buf_, {});
  }

  /// Bytes received and not yet consumed by a complete request.
  std::size_t buffered() const {
    return buf_.size();
  }

  /// True while part of a request is in: bytes of its head, or a head
  /// whose body has not fully arrived (the server times these out).
  bool mid_request() const {
    return in_body_ || !buf_.empty();
  }

  int error_status() const {
    return error_status_;
  }
  const std::string& error_message() const {
    return error_message_;
  }

private:
  status fail(int code, std::string message);
  status parse_head(std::string_view head);

  http_limits limits_;
  std::string buf_;
  bool in_body_ = false;
  bool expect_continue_ = false;
  std::size_t body_length_ = 0;
  http_request current_;
  int error_status_ = 0;
  std::string error_message_;
};

/// `s` with ASCII letters in lower case (header names, tokens, media
/// types: HTTP compares them without regard to case).
std::string lower(std::string_view s);

/// Whether the comma-separated header value `list` holds `token`
/// (compared without regard to case; `token` in lower case).
bool has_token(std::string_view list, std::string_view token);

/// Decodes %XX escapes (and '+' as space when `plus_is_space`); invalid
/// escapes are kept as they are.
std::string percent_decode(std::string_view text, bool plus_is_space = false);

/// The standard reason phrase of a status code.
const char* http_reason(int status);

/// One complete response. `headers` are added as given, except those whose
/// value holds a control byte (CR, LF, ...: never sent, so no value can add
/// headers or end the head); Content-Length, Connection and (for a
/// non-empty body) Content-Type are set here.
std::string make_http_response(
  int status, std::string_view content_type, std::string_view body,
  bool keep_alive,
  const std::vector<std::pair<std::string, std::string>>& headers = {});

} // namespace hubflow
