// The HTTP/1.1 request parser, response writer, Prometheus conversion and
// the metadata document: no sockets.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/http_parser.hpp"
#include "http/http_api.hpp"
#include "http/prometheus.hpp"

using namespace hubflow;
using status = http_request_parser::status;

TEST(http_parser, parses_a_request_fed_byte_by_byte) {
  std::string raw = "POST /v1.0/state/store?x=1&y=a%20b+c HTTP/1.1\r\n"
                    "Host: localhost\r\nContent-Type: application/json\r\n"
                    "Content-Length: 5\r\n\r\nhello";
  http_request_parser p;
  for (size_t i = 0; i + 1 < raw.size(); ++i) {
    p.feed(raw.substr(i, 1));
    ASSERT_EQ(p.parse(), status::incomplete) << "after byte " << i;
  }
  p.feed(raw.substr(raw.size() - 1));
  ASSERT_EQ(p.parse(), status::complete);
  auto req = p.take();
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.path, "/v1.0/state/store");
  EXPECT_EQ(req.body, "hello");
  EXPECT_TRUE(req.keep_alive);
  ASSERT_NE(req.header("content-type"), nullptr);
  EXPECT_EQ(*req.header("content-type"), "application/json");
  auto params = req.query_params();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[1].second, "a b c");
  EXPECT_EQ(req.segments(), (std::vector<std::string>{"v1.0", "state", "store"}));
}

TEST(http_parser, pipelined_requests_come_out_in_order) {
  http_request_parser p;
  p.feed("GET /a HTTP/1.1\r\n\r\nDELETE /b HTTP/1.1\r\nContent-Length: 0\r\n"
         "\r\nPOST /c HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi");
  std::vector<std::string> paths;
  while (p.parse() == status::complete)
    paths.push_back(p.take().path);
  EXPECT_EQ(paths, (std::vector<std::string>{"/a", "/b", "/c"}));
}

TEST(http_parser, keep_alive_follows_the_version_and_connection_header) {
  auto parse_one = [](const std::string& raw) {
    http_request_parser p;
    p.feed(raw);
    EXPECT_EQ(p.parse(), status::complete);
    return p.take();
  };
  EXPECT_TRUE(parse_one("GET / HTTP/1.1\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse_one("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
  EXPECT_FALSE(parse_one("GET / HTTP/1.0\r\n\r\n").keep_alive);
  EXPECT_TRUE(parse_one("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
}

TEST(http_parser, refuses_oversized_bodies_before_reading_them) {
  http_limits limits;
  limits.max_body_bytes = 10;
  http_request_parser p{limits};
  p.feed("POST /x HTTP/1.1\r\nContent-Length: 11\r\n\r\n");
  EXPECT_EQ(p.parse(), status::error);
  EXPECT_EQ(p.error_status(), 413);
  EXPECT_NE(p.error_message().find("exceeds the limit of 10 bytes"),
            std::string::npos);
}

TEST(http_parser, refuses_oversized_headers) {
  http_limits limits;
  limits.max_header_bytes = 64;
  http_request_parser p{limits};
  p.feed("GET /x HTTP/1.1\r\nX-Long: " + std::string(100, 'a'));
  EXPECT_EQ(p.parse(), status::error);
  EXPECT_EQ(p.error_status(), 431);
}

TEST(http_parser, refuses_malformed_framing) {
  auto error_of = [](const std::string& raw) {
    http_request_parser p;
    p.feed(raw);
    EXPECT_EQ(p.parse(), status::error) << raw;
    return p.error_status();
  };
  EXPECT_EQ(error_of("GARBAGE\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET / HTTP/2.0\r\n\r\n"), 505);
  EXPECT_EQ(error_of("GET noslash HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(error_of("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
  EXPECT_EQ(error_of("POST / HTTP/1.1\r\nContent-Length: 1\r\n"
                     "Content-Length: 2\r\n\r\n"),
            400);
  EXPECT_EQ(error_of("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411);
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"), 400);
  EXPECT_EQ(error_of("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n"), 400);
}

TEST(http_parser, expect_continue_is_signalled_once_headers_are_in) {
  http_request_parser p;
  p.feed("POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  EXPECT_EQ(p.parse(), status::incomplete);
  EXPECT_TRUE(p.wants_continue());
  p.continue_sent();
  EXPECT_FALSE(p.wants_continue());
  p.feed("abc");
  EXPECT_EQ(p.parse(), status::complete);
  EXPECT_EQ(p.take().body, "abc");
}

TEST(http_parser, mid_request_tells_when_part_of_a_request_is_in) {
  http_request_parser p;
  EXPECT_FALSE(p.mid_request());
  p.feed("G");
  EXPECT_EQ(p.parse(), status::incomplete);
  EXPECT_TRUE(p.mid_request());
  p.feed("ET / HTTP/1.1\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(p.parse(), status::incomplete);
  EXPECT_TRUE(p.mid_request()) << "the head is in, the body is not";
  p.feed("ok");
  EXPECT_EQ(p.parse(), status::complete);
  p.take();
  EXPECT_FALSE(p.mid_request());
  // Blank lines between pipelined requests are not a request.
  p.feed("\r\n");
  EXPECT_EQ(p.parse(), status::incomplete);
  EXPECT_FALSE(p.mid_request());
}

TEST(http_parser, segments_are_decoded_one_by_one) {
  http_request req;
  req.path = "/v1.0/state/my%20store/a%2Fb";
  EXPECT_EQ(req.segments(),
            (std::vector<std::string>{"v1.0", "state", "my store", "a/b"}));
  EXPECT_EQ(percent_decode("100%"), "100%"); // invalid escapes stay
  EXPECT_EQ(percent_decode("%zz"), "%zz");
}

TEST(http_response, writes_status_headers_and_length) {
  auto r = make_http_response(200, "application/json", "{}", true,
                              {{"ETag", "3"}});
  EXPECT_EQ(r, "HTTP/1.1 200 OK\r\nETag: 3\r\nContent-Type: application/json"
               "\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}");
  auto empty = make_http_response(204, "", "", false);
  EXPECT_EQ(empty, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
  // An ETag a tampered store returns cannot inject a header.
  auto injected = make_http_response(200, "text/plain", "x", true,
                                     {{"ETag", "1\r\nSet-Cookie: a=b"}});
  EXPECT_EQ(injected.find("Set-Cookie"), std::string::npos) << injected;
  EXPECT_EQ(injected.find("ETag"), std::string::npos) << injected;
}

TEST(prometheus, converts_the_stats_snapshot) {
  stats_snapshot snapshot{"0.1.0", 1500, {
    {"endpoint", "statestore", {{"messages_out", 7}, {"state_reads", 2}},
     {{"type", "redis"}, {"state", "up"}, {"last_error", "said \"no\"\nbye"}}},
    {"endpoint", "kafka-1", {{"messages_out", 3}}, {}},
    {"function", "sayhi", {{"instances", 2}}, {}}}};
  auto text = stats_to_prometheus(snapshot);
  EXPECT_NE(text.find("hubflow_uptime_seconds 1.5\n"), std::string::npos)
    << text;
  EXPECT_NE(text.find("# TYPE hubflow_endpoint_messages_out untyped\n"
                      "hubflow_endpoint_messages_out{name=\"statestore\"} 7\n"
                      "hubflow_endpoint_messages_out{name=\"kafka-1\"} 3\n"),
            std::string::npos)
    << text;
  EXPECT_NE(text.find("hubflow_function_instances{name=\"sayhi\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("hubflow_endpoint_info{name=\"statestore\","
                      "last_error=\"said \\\"no\\\"\\nbye\","
                      "state=\"up\",type=\"redis\"} 1\n"),
            std::string::npos)
    << text;
  // Exactly one TYPE line per family.
  size_t count = 0;
  for (size_t pos = 0;
       (pos = text.find("# TYPE hubflow_endpoint_messages_out", pos))
       != std::string::npos;
       ++pos)
    ++count;
  EXPECT_EQ(count, 1u);
  EXPECT_EQ(prometheus_name("in-flight.count"), "in_flight_count");
  EXPECT_EQ(prometheus_name("9lives"), "_9lives");
}

TEST(http_metadata, lists_rules_functions_endpoints_and_stores) {
  http_context ctx;
  ctx.functions["sayhi"] = function_actor{};
  ctx.state_stores["statestore"] = {"redis", state_store_actor{}};
  stats_snapshot stats{"0.1.0", 0, {
    {"rule", "r1", {{"out", 2}, {"in", 1}}, {}},
    {"function", "sayhi", {{"instances", 3}}, {}},
    {"endpoint", "statestore", {}, {{"type", "redis"}, {"state", "down"}}}}};
  auto doc = nlohmann::ordered_json::parse(http_metadata_json(stats, ctx));
  EXPECT_EQ(doc["rules"][0]["name"], "r1");
  EXPECT_EQ(doc["functions"][0]["name"], "sayhi");
  EXPECT_EQ(doc["functions"][0]["instances"], 3);
  EXPECT_EQ(doc["endpoints"][0]["state"], "down");
  EXPECT_EQ(doc["components"][0]["type"], "state.redis");
  // Counters in name order, as the stats JSON has always listed them.
  EXPECT_EQ(doc["rules"][0]["counters"].dump(), R"({"in":1,"out":2})");
}

TEST(http_metadata, names_that_are_not_utf8_are_replaced_not_thrown) {
  http_context ctx;
  stats_snapshot stats{"0.1.0", 0, {
    {"rule", "r\xff", {{"in\xfe", 1}}, {{"last_error", "\xc3"}}}}};
  auto doc = nlohmann::json::parse(http_metadata_json(stats, ctx));
  EXPECT_EQ(doc["rules"][0]["name"], "r\xef\xbf\xbd");
  EXPECT_EQ(doc["id"], "hubflow");
}
