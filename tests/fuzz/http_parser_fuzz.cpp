// The HTTP/1.1 request parser as the HTTP API drives it. The first input
// byte picks the size of each read (1 to 64 bytes) and small or default
// header and body limits; the rest is what a client sends, pipelining
// allowed. Every complete request is taken apart as the routes do
// (headers, path segments, query parameters) and written out again: the
// parser must read that text back to the same request. An error must be a
// 4xx/5xx status with a message, after which the parser stays in error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/http_parser.hpp"
#include "fuzz_input.hpp"

using namespace hubflow;
using hubflow::fuzz::check;

namespace {

std::string serialize(const http_request& r) {
  std::string out = r.method + " " + r.target + " HTTP/1."
                    + std::to_string(r.minor_version) + "\r\n";
  for (auto& [name, value] : r.headers)
    out += name + ": " + value + "\r\n";
  out += "\r\n";
  out += r.body;
  return out;
}

void check_request(const http_request& r, const http_limits& limits) {
  check(!r.method.empty(), "a request without a method");
  check(!r.target.empty() && r.target[0] == '/', "a target not starting with /");
  check(r.target.compare(0, r.path.size(), r.path) == 0,
        "the path is not the front of the target");
  check(r.body.size() <= limits.max_body_bytes, "a body above the limit");
  for (auto& [name, value] : r.headers)
    check(r.header(name) != nullptr, "header() misses a header");
  (void) r.segments();
  (void) r.query_params();
  (void) percent_decode(r.path);
  auto response = make_http_response(200, "application/json", r.body,
                                     r.keep_alive, {{"x-path", r.path}});
  check(response.rfind("HTTP/1.1 200 ", 0) == 0, "a response without status line");

  // Written out, the head may be longer than it came in ("name: value"
  // where the client sent "name:value"): only the body limit carries over.
  auto text = serialize(r);
  auto relaxed = limits;
  relaxed.max_header_bytes = text.size();
  http_request_parser again{relaxed};
  again.feed(text);
  check(again.parse() == http_request_parser::status::complete,
        "a request written out again does not parse");
  auto copy = again.take();
  check(copy.method == r.method && copy.target == r.target
          && copy.path == r.path && copy.query == r.query
          && copy.minor_version == r.minor_version && copy.headers == r.headers
          && copy.body == r.body && copy.keep_alive == r.keep_alive,
        "a request written out again parses differently");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  hubflow::fuzz::input in{data, size};
  auto flags = in.byte();
  std::size_t read_size = 1 + (flags & 0x3F);
  http_limits limits;
  if (flags & 0x40)
    limits.max_header_bytes = 16 + in.byte();
  if (flags & 0x80)
    limits.max_body_bytes = in.byte();
  auto stream = in.rest();

  http_request_parser parser{limits};
  for (auto rest = stream; !rest.empty();) {
    auto read = rest.substr(0, read_size);
    rest.remove_prefix(read.size());
    parser.feed(read);
    for (;;) {
      auto st = parser.parse();
      if (st == http_request_parser::status::incomplete) {
        if (parser.wants_continue())
          parser.continue_sent();
        break;
      }
      if (st == http_request_parser::status::error) {
        check(parser.error_status() >= 400 && parser.error_status() < 600,
              "an error that is not a 4xx or 5xx status");
        check(!parser.error_message().empty(), "an error without a message");
        check(parser.parse() == http_request_parser::status::error,
              "the parser left its error state");
        return 0;
      }
      check_request(parser.take(), limits);
    }
  }
  return 0;
}
