// The HTTP API over real HTTP (curl and raw sockets), in-process, with a
// real Redis endpoint as the state store (redis-server started on a free
// port) and small fake actors for the hub, function supervisors and stats.
#include <atomic>
#include <mutex>
#include <thread>
#include <utility>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/component_stats.hpp"
#include "core/type_ids.hpp"
#include "endpoints/redis/redis_endpoint.hpp"
#include "fixtures/http_client.hpp"
#include "fixtures/redis_fixture.hpp"
#include "http/http_api.hpp"

using namespace hubflow;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

/// What the fake hub received.
struct hub_inbox {
  std::mutex mtx;
  std::vector<message> messages;
};

/// A hub sink: accepts everything except topics under "refuse/" and the
/// body "refuse me".
caf::behavior fake_hub(caf::event_based_actor*, std::shared_ptr<hub_inbox> inbox) {
  return {
    [=](publish_atom, const message& msg) -> caf::result<ok_atom> {
      if (msg.topic.rfind("refuse/", 0) == 0 || msg.body.str() == "refuse me")
        return caf::make_error(caf::sec::runtime_error,
                               std::string{"not authorized to publish"});
      std::lock_guard<std::mutex> guard{inbox->mtx};
      inbox->messages.push_back(msg);
      return ok_atom::value;
    },
  };
}

/// A function supervisor answering by the invoked method name.
caf::behavior fake_function(caf::event_based_actor*) {
  return {
    [](invoke_atom, const message& msg) -> function_result {
      if (msg.topic == "fail")
        return function_result::make_handler_error("division by zero",
                                                   "ZeroDivisionError");
      if (msg.topic == "busy")
        return function_result::make_failure("all 2 instances are busy",
                                             "overload");
      if (msg.topic == "quiet")
        return function_result::make_nothing();
      // "api/image" and anything else: echo with the method name.
      return function_result::make_output("[" + msg.topic + "] "
                                          + msg.body.str());
    },
  };
}

caf::behavior fake_stats(caf::event_based_actor*) {
  return {
    [](get_atom) {
      return stats_snapshot{"0.1.0", 2500, {
        {"rule", "r1", {{"in", 5}, {"out", 4}}, {}},
        {"function", "grayscale", {{"instances", 2}}, {}},
        {"endpoint", "statestore", {{"state_reads", 9}},
         {{"type", "redis"}, {"state", "up"}}}}};
    },
  };
}

struct curl_result {
  int status = 0;
  std::string body;
};

class http_api_test : public ::testing::Test {
protected:
  http_api_test() : sys_(init_cfg(cfg_)), self_(sys_) {
    store_ = spawn_redis_endpoint(sys_, "statestore",
                                  test::redis_settings_for(redis_));
    inbox_ = std::make_shared<hub_inbox>();
    hub_ = sys_.spawn(fake_hub, inbox_);
    function_ = sys_.spawn(fake_function);
    stats_ = sys_.spawn(fake_stats);
    http_context ctx;
    ctx.hub = as_role<sink_actor>(hub_);
    ctx.functions["grayscale"] = as_role<function_actor>(function_);
    ctx.state_stores["statestore"] = {"redis", as_role<state_store_actor>(store_)};
    ctx.stats = as_role<stats_reader_actor>(stats_);
    http_config cfg;
    cfg.listen = "127.0.0.1:0";
    cfg.max_body = 64 * 1024;
    std::string error;
    api_ = spawn_http_api(sys_, cfg, ctx, error, &port_);
    if (!api_)
      throw std::runtime_error(error);
    base_ = "http://127.0.0.1:" + std::to_string(port_);
  }

  ~http_api_test() override {
    for (auto& a : {api_, store_, hub_, function_, stats_})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }

  static caf::actor_system_config& init_cfg(caf::actor_system_config& cfg) {
    cfg.load<caf::io::middleman>();
    return cfg;
  }

  /// curl with `args`; the status code comes from -w.
  curl_result curl(const std::string& args) {
    auto r = test::run_command("curl -s -S --max-time 10 -w '\\n%{http_code}' "
                               + args);
    curl_result out;
    auto nl = r.output.rfind('\n');
    if (nl == std::string::npos)
      return out;
    out.status = std::atoi(r.output.substr(nl + 1).c_str());
    out.body = r.output.substr(0, nl);
    return out;
  }

  curl_result post_json(const std::string& path, const std::string& body) {
    return curl("-X POST -H 'Content-Type: application/json' --data-binary "
                + test::shell_quote(body) + " " + test::shell_quote(base_ + path));
  }

  static std::string error_code(const std::string& body) {
    auto doc = json::parse(body, nullptr, false);
    return doc.is_object() ? doc.value("errorCode", "") : "";
  }

  test::redis_server redis_;
  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  caf::scoped_actor self_;
  caf::actor store_, hub_, function_, stats_, api_;
  std::shared_ptr<hub_inbox> inbox_;
  std::uint16_t port_ = 0;
  std::string base_;
};

} // namespace

TEST_F(http_api_test, dapr_get_started_sequence_with_curl) {
  auto r = post_json("/v1.0/state/statestore",
                     R"([{"key":"weapon","value":"Death Star"}])");
  EXPECT_EQ(r.status, 204) << r.body;
  r = post_json("/v1.0/state/statestore",
                R"([{"key":"planets","value":{"name":"Tatooine","test":123}}])");
  EXPECT_EQ(r.status, 204) << r.body;
  r = curl(base_ + "/v1.0/state/statestore/planets");
  EXPECT_EQ(r.status, 200);
  auto planets = json::parse(r.body);
  EXPECT_EQ(planets["name"], "Tatooine");
  EXPECT_EQ(planets["test"], 123);
  r = curl(base_ + "/v1.0/state/statestore/weapon");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "\"Death Star\"");
  // Stored the way Dapr's Redis store does: a hash {data, version}.
  EXPECT_EQ(redis_.cli({"HGET", "planets", "data"}),
            R"({"name":"Tatooine","test":123})");
}

TEST_F(http_api_test, state_get_returns_etag_and_204_for_missing_keys) {
  ASSERT_EQ(post_json("/v1.0/state/statestore", R"([{"key":"k","value":1}])")
              .status,
            204);
  auto r = test::http_request(port_, "GET", "/v1.0/state/statestore/k");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "1");
  EXPECT_EQ(r.header("etag"), "1");
  EXPECT_EQ(r.header("content-type"), "application/json");
  r = test::http_request(port_, "GET", "/v1.0/state/statestore/nothing-here");
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.body.empty());
}

TEST_F(http_api_test, bulk_get_lists_found_and_missing_keys) {
  ASSERT_EQ(post_json("/v1.0/state/statestore",
                      R"([{"key":"a","value":{"x":1}},{"key":"b","value":"two"}])")
              .status,
            204);
  auto r = post_json("/v1.0/state/statestore/bulk",
                     R"({"keys":["a","b","c"],"parallelism":10})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto doc = json::parse(r.body);
  ASSERT_EQ(doc.size(), 3u);
  EXPECT_EQ(doc[0]["key"], "a");
  EXPECT_EQ(doc[0]["data"]["x"], 1);
  EXPECT_EQ(doc[0]["etag"], "1");
  EXPECT_EQ(doc[1]["data"], "two");
  EXPECT_EQ(doc[2]["key"], "c");
  EXPECT_FALSE(doc[2].contains("data"));
  r = post_json("/v1.0/state/statestore/bulk", R"({"keys":"a"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r.body), "ERR_MALFORMED_REQUEST");
}

TEST_F(http_api_test, etags_conflicts_and_delete_with_if_match) {
  ASSERT_EQ(post_json("/v1.0/state/statestore", R"([{"key":"e","value":1}])")
              .status,
            204);
  auto r = post_json("/v1.0/state/statestore",
                     R"([{"key":"e","value":2,"etag":"1"}])");
  EXPECT_EQ(r.status, 204) << r.body;
  r = post_json("/v1.0/state/statestore", R"([{"key":"e","value":3,"etag":"1"}])");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(error_code(r.body), "ERR_STATE_SAVE");
  EXPECT_NE(r.body.find("etag mismatch"), std::string::npos) << r.body;
  r = post_json("/v1.0/state/statestore",
                R"([{"key":"e","value":3,"etag":"not-a-version"}])");
  EXPECT_EQ(r.status, 400) << r.body;
  r = post_json("/v1.0/state/statestore",
                R"([{"key":"e","value":4,"options":{"concurrency":"first-write"}}])");
  EXPECT_EQ(r.status, 409) << r.body;
  r = post_json("/v1.0/state/statestore",
                R"([{"key":"e","value":5,"etag":"1","options":{"concurrency":"last-write"}}])");
  EXPECT_EQ(r.status, 204) << r.body;
  r = post_json("/v1.0/state/statestore",
                R"([{"key":"e","value":5,"options":{"concurrency":"sometimes"}}])");
  EXPECT_EQ(r.status, 400);

  r = curl("-X DELETE -H 'If-Match: \"1\"' " + base_ + "/v1.0/state/statestore/e");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(error_code(r.body), "ERR_STATE_DELETE");
  auto current = test::http_request(port_, "GET", "/v1.0/state/statestore/e");
  r = curl("-X DELETE -H 'If-Match: " + current.header("etag") + "' " + base_
           + "/v1.0/state/statestore/e");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(curl(base_ + "/v1.0/state/statestore/e").status, 204);
  EXPECT_EQ(curl("-X DELETE " + base_ + "/v1.0/state/statestore/gone").status,
            204);
}

TEST_F(http_api_test, concurrent_http_writers_lose_no_update) {
  ASSERT_EQ(post_json("/v1.0/state/statestore", R"([{"key":"n","value":0}])")
              .status,
            204);
  constexpr int writers = 4;
  constexpr int increments = 15;
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&] {
      for (int done = 0; done < increments;) {
        auto current = test::http_request(port_, "GET", "/v1.0/state/statestore/n");
        if (current.status != 200)
          continue;
        auto next = std::stoi(current.body) + 1;
        auto r = test::http_request(
          port_, "POST", "/v1.0/state/statestore",
          R"([{"key":"n","value":)" + std::to_string(next) + R"(,"etag":")"
            + current.header("etag") + R"("}])");
        if (r.status == 204)
          ++done;
        else if (r.status == 409)
          ++conflicts;
      }
    });
  for (auto& t : threads)
    t.join();
  auto final_value = test::http_request(port_, "GET", "/v1.0/state/statestore/n");
  EXPECT_EQ(final_value.body, std::to_string(writers * increments));
  EXPECT_GT(conflicts.load(), 0) << "the writers never raced";
}

TEST_F(http_api_test, a_transaction_upserts_and_deletes_all_or_nothing) {
  ASSERT_EQ(post_json("/v1.0/state/statestore",
                      R"([{"key":"old","value":1},{"key":"kept","value":2}])")
              .status,
            204);
  auto r = post_json("/v1.0/state/statestore/transaction",
                     R"({"operations":[)"
                     R"({"operation":"upsert","request":{"key":"new","value":{"n":3}}},)"
                     R"({"operation":"delete","request":{"key":"old"}}]})");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(test::http_request(port_, "GET", "/v1.0/state/statestore/new").body,
            R"({"n":3})");
  EXPECT_EQ(test::http_request(port_, "GET", "/v1.0/state/statestore/old").status,
            204); // gone
  // A stale etag anywhere refuses the whole transaction: nothing changes.
  r = post_json("/v1.0/state/statestore/transaction",
                R"({"operations":[)"
                R"({"operation":"upsert","request":{"key":"new","value":4}},)"
                R"({"operation":"delete","request":{"key":"kept","etag":"99"}}]})");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(error_code(r.body), "ERR_STATE_TRANSACTION");
  EXPECT_EQ(test::http_request(port_, "GET", "/v1.0/state/statestore/new").body,
            R"({"n":3})");
  EXPECT_EQ(test::http_request(port_, "GET", "/v1.0/state/statestore/kept").body,
            "2");
  r = post_json("/v1.0/state/statestore/transaction",
                R"({"operations":[{"operation":"merge","request":{"key":"k"}}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("must be upsert or delete"),
            std::string::npos)
    << r.body;
}

TEST_F(http_api_test, ttl_from_metadata) {
  auto r = post_json("/v1.0/state/statestore",
                     R"([{"key":"t","value":1,"metadata":{"ttlInSeconds":"120"}}])");
  EXPECT_EQ(r.status, 204) << r.body;
  auto ttl = std::stoll(redis_.cli({"TTL", "t"}));
  EXPECT_GT(ttl, 100);
  // Request metadata in the query string (what Dapr's SDKs send) applies
  // to items without their own.
  r = post_json("/v1.0/state/statestore?metadata.ttlInSeconds=300",
                R"([{"key":"q","value":1},)"
                R"({"key":"own","value":2,"metadata":{"ttlInSeconds":"60"}}])");
  EXPECT_EQ(r.status, 204) << r.body;
  ttl = std::stoll(redis_.cli({"TTL", "q"}));
  EXPECT_GT(ttl, 250);
  EXPECT_LE(ttl, 300);
  EXPECT_LE(std::stoll(redis_.cli({"TTL", "own"})), 60);
  r = post_json("/v1.0/state/statestore?metadata.ttlInSeconds=soon",
                R"([{"key":"q","value":1}])");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("metadata.ttlInSeconds must be an integer"),
            std::string::npos)
    << r.body;
  // An item's own ttl is read whole too: trailing text is not a number.
  r = post_json("/v1.0/state/statestore",
                R"([{"key":"partly","value":1,"metadata":{"ttlInSeconds":"12abc"}}])");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("metadata.ttlInSeconds must be an integer"),
            std::string::npos)
    << r.body;
  EXPECT_EQ(redis_.cli({"EXISTS", "partly"}), "0");
}

TEST_F(http_api_test, bad_requests_get_clear_4xx_answers) {
  auto r = post_json("/v1.0/state/statestore", "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r.body), "ERR_MALFORMED_REQUEST");
  EXPECT_NE(r.body.find("not valid JSON"), std::string::npos);
  r = post_json("/v1.0/state/statestore", R"({"key":"x"})");
  EXPECT_EQ(r.status, 400);
  r = post_json("/v1.0/state/statestore", R"([{"value":1}])");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\\\"key\\\" must be a non-empty string"),
            std::string::npos)
    << r.body;
  r = post_json("/v1.0/state/nostore", R"([{"key":"x","value":1}])");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error_code(r.body), "ERR_STATE_STORE_NOT_FOUND");
  EXPECT_NE(r.body.find("state store nostore is not found"), std::string::npos);
  EXPECT_EQ(curl(base_ + "/v1.0/state/nostore/k").status, 400);
  r = curl(base_ + "/v1.0/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(error_code(r.body), "ERR_NOT_FOUND");
  // Dapr saves with POST or PUT; other methods are 405.
  r = curl("-X PATCH " + base_ + "/v1.0/state/statestore");
  EXPECT_EQ(r.status, 405);
  EXPECT_NE(r.body.find("allowed: POST, PUT"), std::string::npos) << r.body;
  // Oversized body: refused from the headers (curl waits for 100-continue).
  test::temp_dir dir;
  auto big = dir.write("big.json", "[" + std::string(100 * 1024, ' ') + "]");
  r = curl("-X POST -H 'Content-Type: application/json' --data-binary @" + big
           + " " + base_ + "/v1.0/state/statestore");
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_EQ(error_code(r.body), "ERR_BODY_TOO_LARGE");
  // Raw framing errors.
  auto raw = test::parse_http_response(
    test::http_exchange(port_, "NONSENSE\r\n\r\n"));
  EXPECT_EQ(raw.status, 400);
  EXPECT_EQ(raw.header("connection"), "close");
}

TEST_F(http_api_test, keep_alive_and_pipelining_answer_in_order) {
  std::string raw =
    "POST /v1.0/state/statestore HTTP/1.1\r\nContent-Length: 26\r\n\r\n"
    R"([{"key":"p","value":"v1"}])"
    "GET /v1.0/state/statestore/p HTTP/1.1\r\n\r\n"
    "GET /v1.0/healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
  auto all = test::http_exchange(port_, raw);
  std::string rest;
  auto first = test::parse_http_response(all, &rest);
  EXPECT_EQ(first.status, 204) << all;
  auto second = test::parse_http_response(rest, &rest);
  EXPECT_EQ(second.status, 200) << all;
  EXPECT_EQ(second.body, "\"v1\"");
  auto third = test::parse_http_response(rest, &rest);
  EXPECT_EQ(third.status, 204) << all;
  EXPECT_EQ(third.header("connection"), "close");
}

TEST_F(http_api_test, many_pipelined_requests_on_one_connection) {
  std::string raw;
  constexpr int count = 500;
  for (int i = 0; i < count; ++i)
    raw += "GET /v1.0/healthz HTTP/1.1\r\n\r\n";
  raw += "GET /v1.0/state/statestore/none HTTP/1.1\r\nConnection: close\r\n\r\n";
  auto all = test::http_exchange(port_, raw, 10s);
  int answered = 0;
  std::string rest = all;
  while (true) {
    auto r = test::parse_http_response(rest, &rest);
    if (r.status != 204)
      break;
    ++answered;
  }
  EXPECT_EQ(answered, count + 1);
}

TEST_F(http_api_test, publish_into_the_hub) {
  auto r = curl("-X POST -H 'Content-Type: application/json' -d '{\"t\":21}' '"
                + base_ + "/v1.0/publish/hub/home/kitchen/temp?qos=1&retain=true'");
  EXPECT_EQ(r.status, 204) << r.body;
  r = curl("-X POST -H 'X-MQTT-QoS: 2' -d 'x' '" + base_
           + "/v1.0/publish/hub/a%2Fb/c'");
  EXPECT_EQ(r.status, 204) << r.body;
  // Dapr's SDKs send request metadata as metadata.* query parameters.
  r = curl("-X POST -d y '" + base_
           + "/v1.0/publish/hub/sdk/t?metadata.qos=1&metadata.retain=true'");
  EXPECT_EQ(r.status, 204) << r.body;
  {
    std::lock_guard<std::mutex> guard{inbox_->mtx};
    ASSERT_EQ(inbox_->messages.size(), 3u);
    EXPECT_EQ(inbox_->messages[2].topic, "sdk/t");
    EXPECT_EQ(inbox_->messages[2].qos, 1);
    EXPECT_TRUE(inbox_->messages[2].retain);
    auto& m = inbox_->messages[0];
    EXPECT_EQ(m.topic, "home/kitchen/temp");
    EXPECT_EQ(m.body.str(), "{\"t\":21}");
    EXPECT_EQ(m.qos, 1);
    EXPECT_TRUE(m.retain);
    EXPECT_EQ(m.properties.content_type, "application/json");
    EXPECT_EQ(m.origin, "http");
    EXPECT_EQ(inbox_->messages[1].topic, "a/b/c");
    EXPECT_EQ(inbox_->messages[1].qos, 2);
  }
  // MQTT 5's request/response properties from Dapr metadata.
  r = curl("-X POST -d q '" + base_
           + "/v1.0/publish/hub/req/t?metadata.responseTopic=rsp/client-7"
             "&metadata.correlationData=call-42'");
  EXPECT_EQ(r.status, 204) << r.body;
  {
    std::lock_guard<std::mutex> guard{inbox_->mtx};
    ASSERT_EQ(inbox_->messages.size(), 4u);
    EXPECT_EQ(inbox_->messages[3].properties.response_topic, "rsp/client-7");
    EXPECT_EQ(inbox_->messages[3].properties.correlation_data, "call-42");
  }
  r = curl("-X POST -d q '" + base_
           + "/v1.0/publish/hub/req/t?metadata.responseTopic=rsp/%23'");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("metadata.responseTopic is a topic name"),
            std::string::npos)
    << r.body;
  r = curl("-X POST -d x " + base_ + "/v1.0/publish/other/t");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(error_code(r.body), "ERR_PUBSUB_NOT_FOUND");
  r = curl("-X POST -d x '" + base_ + "/v1.0/publish/hub/t?qos=7'");
  EXPECT_EQ(r.status, 400);
  r = curl("-X POST -d x '" + base_ + "/v1.0/publish/hub/a/%23'");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("wildcard"), std::string::npos);
  r = curl("-X POST -d x " + base_ + "/v1.0/publish/hub/refuse/this");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(error_code(r.body), "ERR_PUBSUB_PUBLISH_MESSAGE");
  EXPECT_NE(r.body.find("not authorized"), std::string::npos) << r.body;
}

TEST_F(http_api_test, bulk_publish_into_the_hub) {
  // The shape Dapr's JS SDK sends (entryID; metadata on every entry), with
  // the request's metadata in the query: an entry's own metadata wins.
  auto body = R"([
    {"entryID": "a", "event": "plain text", "contentType": "text/plain",
     "metadata": {}},
    {"entryId": "b", "event": {"t": 21}, "contentType": "application/json",
     "metadata": {"qos": "0", "retain": "false"}},
    {"entryId": "c", "event": "AAEC/w==",
     "contentType": "application/octet-stream"},
    {"entryId": "d", "event": [1, 2], "metadata": {"ttlInSeconds": "30"}},
    {"entryId": "e", "event": "no type given"}
  ])";
  auto r = post_json("/v1.0-alpha1/publish/bulk/hub/bulk/t"
                     "?metadata.qos=1&metadata.retain=true",
                     body);
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(r.body, "");
  {
    std::lock_guard<std::mutex> guard{inbox_->mtx};
    ASSERT_EQ(inbox_->messages.size(), 5u);
    auto& m = inbox_->messages;
    for (auto& msg : m) {
      EXPECT_EQ(msg.topic, "bulk/t");
      EXPECT_EQ(msg.origin, "http");
    }
    // In the order of the entries.
    EXPECT_EQ(m[0].body.str(), "plain text");
    EXPECT_EQ(m[0].properties.content_type, "text/plain");
    EXPECT_EQ(m[0].qos, 1);
    EXPECT_TRUE(m[0].retain);
    EXPECT_EQ(m[1].body.str(), R"({"t":21})");
    EXPECT_EQ(m[1].qos, 0);
    EXPECT_FALSE(m[1].retain);
    EXPECT_EQ(m[2].body.str(), std::string("\x00\x01\x02\xff", 4));
    EXPECT_EQ(m[2].qos, 1);
    EXPECT_EQ(m[3].body.str(), "[1,2]");
    EXPECT_EQ(m[3].properties.content_type, "application/json");
    EXPECT_TRUE(m[3].properties.has_message_expiry);
    EXPECT_EQ(m[3].properties.message_expiry, 30u);
    EXPECT_EQ(m[4].properties.content_type, "text/plain");
    inbox_->messages.clear();
  }
  // PUT as Dapr allows; an empty array publishes nothing.
  r = curl("-X PUT -H 'Content-Type: application/json' -d '[]' " + base_
           + "/v1.0-alpha1/publish/bulk/hub/bulk/t");
  EXPECT_EQ(r.status, 204) << r.body;
  // Entries the hub refuses: 500 with Dapr's failedEntries, the others are
  // published.
  r = post_json("/v1.0-alpha1/publish/bulk/hub/bulk/t", R"([
    {"entryId": "ok-1", "event": "fine"},
    {"entryId": "bad-1", "event": "refuse me"},
    {"entryId": "ok-2", "event": "fine too"},
    {"entryId": "bad-2", "event": "refuse me"}])");
  EXPECT_EQ(r.status, 500) << r.body;
  auto doc = json::parse(r.body);
  EXPECT_EQ(doc["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE");
  ASSERT_EQ(doc["failedEntries"].size(), 2u) << r.body;
  EXPECT_EQ(doc["failedEntries"][0]["entryId"], "bad-1");
  EXPECT_EQ(doc["failedEntries"][0]["entryID"], "bad-1"); // the JS SDK's
  EXPECT_NE(doc["failedEntries"][0]["error"].get<std::string>().find(
              "not authorized"),
            std::string::npos);
  EXPECT_EQ(doc["failedEntries"][1]["entryId"], "bad-2");
  {
    std::lock_guard<std::mutex> guard{inbox_->mtx};
    ASSERT_EQ(inbox_->messages.size(), 2u);
    EXPECT_EQ(inbox_->messages[0].body.str(), "fine");
    EXPECT_EQ(inbox_->messages[1].body.str(), "fine too");
  }
}

TEST_F(http_api_test, bad_bulk_publishes_are_refused_whole) {
  auto bulk = [&](const std::string& body, const std::string& query = "") {
    return post_json("/v1.0-alpha1/publish/bulk/hub/b" + query, body);
  };
  struct refusal {
    std::string body;
    std::string says;
  };
  std::string many = "[";
  for (int i = 0; i < 1001; ++i)
    many += std::string(i ? "," : "") + R"({"entryId":")" + std::to_string(i)
            + R"(","event":1})";
  many += "]";
  std::vector<refusal> refusals = {
    {R"({"entryId":"a","event":1})", "must be a JSON array"},
    {R"([{"event":"x"}])", "entry 0: entryId must be a non-empty string"},
    {R"([{"entryId":"","event":"x"}])", "entryId must be a non-empty string"},
    {R"([{"entryId":"a","event":"x"},{"entryId":"a","event":"y"}])",
     "entry 1: entryId 'a' is duplicated"},
    {R"([{"entryId":"a","event":{"x":1},"contentType":"text/plain"}])",
     "a text/plain event must be a string"},
    {R"([{"entryId":"a","event":"not base64!",
          "contentType":"application/octet-stream"}])",
     "must be a base64 string"},
    {R"([{"entryId":"a","event":"x","contentType":"image/png"}])",
     "does not say how the event becomes bytes"},
    {R"([{"entryId":"a","event":"x","metadata":{"qos":"3"}}])",
     "entry 0: qos must be 0, 1 or 2, not '3'"},
    {R"([{"entryId":"a","event":"x","metadata":{"qos":1}}])",
     "metadata.qos must be a string"},
    {"[1,", "not valid JSON"},
    {many, "1001 entries; at most 1000 per request"},
  };
  for (auto& x : refusals) {
    auto r = bulk(x.body);
    EXPECT_EQ(r.status, 400) << x.body;
    EXPECT_EQ(error_code(r.body), "ERR_PUBSUB_EVENTS_SER") << r.body;
    EXPECT_NE(r.body.find(x.says), std::string::npos) << r.body;
  }
  auto r = bulk(R"([{"entryId":"a","event":"x"}])", "?metadata.retain=maybe");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("retain must be true or false"), std::string::npos);
  r = post_json("/v1.0-alpha1/publish/bulk/other/b", "[]");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(error_code(r.body), "ERR_PUBSUB_NOT_FOUND");
  r = post_json("/v1.0-alpha1/publish/bulk/hub/a/%23", "[]");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("wildcard"), std::string::npos);
  r = curl(base_ + "/v1.0-alpha1/publish/bulk/hub/b");
  EXPECT_EQ(r.status, 405);
  // Nothing of a refused request reached the hub.
  std::lock_guard<std::mutex> guard{inbox_->mtx};
  EXPECT_TRUE(inbox_->messages.empty());
}

TEST_F(http_api_test, metadata_attributes_show_under_extended) {
  auto put = [&](const std::string& key, const std::string& value) {
    return curl("-X PUT -H 'Content-Type: text/plain' --data-binary "
                + test::shell_quote(value) + " " + base_ + "/v1.0/metadata/"
                + key);
  };
  EXPECT_EQ(put("line", "packing-3").status, 204);
  EXPECT_EQ(put("owner", "plant ops").status, 204);
  EXPECT_EQ(put("line", "packing-4").status, 204); // replaced
  auto r = curl(base_ + "/v1.0/metadata");
  ASSERT_EQ(r.status, 200);
  auto doc = json::parse(r.body);
  EXPECT_EQ(doc["extended"], json({{"line", "packing-4"}, {"owner", "plant ops"}}))
    << r.body;
  // Bounded: value size, key size, number of attributes.
  r = put("big", std::string(4097, 'x'));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("longer than 4096 bytes"), std::string::npos);
  EXPECT_EQ(put(std::string(257, 'k'), "v").status, 400);
  for (int i = 0; i < 62; ++i)
    ASSERT_EQ(put("k" + std::to_string(i), "v").status, 204) << i;
  r = put("one-too-many", "v");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("64 attributes are set already"), std::string::npos);
  EXPECT_EQ(put("line", "packing-5").status, 204); // a set one still changes
  r = curl(base_ + "/v1.0/metadata/line");
  EXPECT_EQ(r.status, 405);
  EXPECT_NE(r.body.find("allowed: PUT"), std::string::npos);
}

TEST_F(http_api_test, dapr_areas_hubflow_lacks_answer_501) {
  struct area {
    std::string method, path, named;
  };
  std::vector<area> areas = {
    {"POST", "/v1.0/bindings/kafka", "bindings API (/v1.0/bindings/...)"},
    {"PUT", "/v1.0/bindings/kafka", "bindings API"},
    {"GET", "/v1.0/actors/cart/1/state/items", "actors API"},
    {"PUT", "/v1.0/actors/cart/1/method/add", "actors API"},
    {"GET", "/v1.0/secrets/vault/db", "secrets API"},
    {"GET", "/v1.0/secrets/vault/bulk", "secrets API"},
    {"GET", "/v1.0/configuration/cfg?key=a", "configuration API"},
    {"GET", "/v1.0-alpha1/configuration/cfg/subscribe", "configuration API"},
    {"POST", "/v1.0-alpha1/lock/redislock", "distributed lock API"},
    {"POST", "/v1.0/unlock/redislock", "distributed lock API"},
    {"POST", "/v1.0-beta1/workflows/dapr/order/start", "workflow API"},
    {"GET", "/v1.0-alpha1/workflows/dapr/abc", "workflow API"},
    {"PUT", "/v1.0-alpha1/crypto/keys/encrypt", "cryptography API"},
    {"POST", "/v1.0-alpha1/jobs/nightly", "jobs API"},
    {"POST", "/v1.0-alpha1/conversation/llm/converse", "conversation API"},
    {"POST", "/v1.0/subscribe", "subscription API"},
    {"POST", "/v1.0-alpha1/state/statestore/query", "state query API"},
    {"POST", "/v1.0/shutdown", "shutdown API"},
  };
  for (auto& a : areas) {
    auto r = curl("-X " + a.method + " '" + base_ + a.path + "'");
    EXPECT_EQ(r.status, 501) << a.method << " " << a.path << ": " << r.body;
    EXPECT_EQ(error_code(r.body), "ERR_API_UNIMPLEMENTED") << r.body;
    EXPECT_NE(r.body.find("Dapr's " + a.named), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("is not offered by hubflow"), std::string::npos);
  }
  // Paths Dapr does not know either stay 404; a key is GET and DELETE only,
  // as in Dapr.
  for (auto path : {"/v1.0/nothing", "/v1.0-alpha1/state/statestore/k",
                    "/v2.0/bindings/x", "/v1.0-alpha1/publish/hub/t"}) {
    auto r = curl("-X POST " + base_ + path);
    EXPECT_EQ(r.status, 404) << path << ": " << r.body;
  }
  auto r = curl("-X POST -d x " + base_ + "/v1.0/state/statestore/some-key");
  EXPECT_EQ(r.status, 405);
  EXPECT_NE(r.body.find("allowed: GET, DELETE"), std::string::npos);
  // What Dapr takes with PUT as well as POST.
  r = curl("-X PUT -H 'Content-Type: application/json' -d "
           "'[{\"key\":\"put\",\"value\":1}]' "
           + base_ + "/v1.0/state/statestore");
  EXPECT_EQ(r.status, 204) << r.body;
  r = curl("-X PUT -d '{\"keys\":[\"put\"]}' " + base_
           + "/v1.0/state/statestore/bulk");
  EXPECT_EQ(r.status, 200) << r.body;
  r = curl("-X PUT -d '{\"operations\":[]}' " + base_
           + "/v1.0/state/statestore/transaction");
  EXPECT_EQ(r.status, 204) << r.body;
  r = curl("-X PUT -d x " + base_ + "/v1.0/publish/hub/put/t");
  EXPECT_EQ(r.status, 204) << r.body;
}

TEST_F(http_api_test, invoke_functions) {
  // Dapr's image pipeline shape: post bytes, get the function's result.
  auto r = curl("-X POST --data-binary 'PNG...' " + base_
                + "/v1.0/invoke/grayscale/method/api/image");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "[api/image] PNG...");
  r = curl("-X POST -d x " + base_ + "/v1.0/invoke/grayscale/method/quiet");
  EXPECT_EQ(r.status, 204);
  r = curl("-X POST -d x " + base_ + "/v1.0/invoke/grayscale/method/fail");
  EXPECT_EQ(r.status, 500);
  auto doc = json::parse(r.body);
  EXPECT_EQ(doc["errorCode"], "ERR_FUNCTION_HANDLER");
  EXPECT_EQ(doc["message"], "division by zero");
  EXPECT_EQ(doc["errorType"], "ZeroDivisionError");
  r = curl("-X POST -d x " + base_ + "/v1.0/invoke/grayscale/method/busy");
  EXPECT_EQ(r.status, 503);
  r = curl("-X POST -d x " + base_ + "/v1.0/invoke/classify/method/api/image");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(error_code(r.body), "ERR_FUNCTION_NOT_FOUND");
  EXPECT_NE(r.body.find("function classify is not found"), std::string::npos);
}

TEST_F(http_api_test, health_metrics_and_metadata) {
  auto r = curl(base_ + "/v1.0/healthz");
  EXPECT_EQ(r.status, 204);
  // What Dapr's SDKs wait for before their first call.
  EXPECT_EQ(curl(base_ + "/v1.0/healthz/outbound").status, 204);
  auto m = test::http_request(port_, "GET", "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.header("content-type").find("text/plain; version=0.0.4"),
            std::string::npos);
  EXPECT_NE(m.body.find("hubflow_rule_in{name=\"r1\"} 5\n"), std::string::npos)
    << m.body;
  EXPECT_NE(m.body.find("hubflow_endpoint_info{name=\"statestore\",state=\"up\","
                        "type=\"redis\"} 1"),
            std::string::npos)
    << m.body;
  r = curl(base_ + "/v1.0/metadata");
  ASSERT_EQ(r.status, 200);
  auto doc = json::parse(r.body);
  EXPECT_EQ(doc["rules"][0]["name"], "r1");
  EXPECT_EQ(doc["functions"][0]["name"], "grayscale");
  EXPECT_EQ(doc["functions"][0]["instances"], 2);
  EXPECT_EQ(doc["endpoints"][0]["state"], "up");
  EXPECT_EQ(doc["components"][0]["name"], "statestore");
}

TEST_F(http_api_test, redis_down_answers_503_and_recovers) {
  ASSERT_EQ(post_json("/v1.0/state/statestore", R"([{"key":"d","value":1}])")
              .status,
            204);
  redis_.stop(9);
  auto r = post_json("/v1.0/state/statestore", R"([{"key":"d","value":2}])");
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(error_code(r.body), "ERR_STATE_SAVE");
  EXPECT_NE(r.body.find("127.0.0.1:" + std::to_string(redis_.port())),
            std::string::npos)
    << r.body;
  r = curl(base_ + "/v1.0/state/statestore/d");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(error_code(r.body), "ERR_STATE_GET");
  redis_.start();
  // Recovers without restarting anything; the acknowledged write survived.
  EXPECT_TRUE(test::wait_until(
    [&] { return curl(base_ + "/v1.0/state/statestore/d").status == 200; },
    10s));
  EXPECT_EQ(curl(base_ + "/v1.0/state/statestore/d").body, "1");
  EXPECT_EQ(post_json("/v1.0/state/statestore", R"([{"key":"d","value":3}])")
              .status,
            204);
}

TEST_F(http_api_test, idle_and_half_sent_connections_are_closed) {
  http_config cfg;
  cfg.listen = "127.0.0.1:0";
  cfg.idle_timeout = 300ms;
  cfg.request_timeout = 400ms;
  std::string error;
  std::uint16_t port = 0;
  auto api = spawn_http_api(sys_, cfg, {}, error, &port);
  ASSERT_TRUE(api) << error;
  auto start = std::chrono::steady_clock::now();
  auto answer = test::http_exchange(port, "", 8s);
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(answer.empty()) << answer;
  EXPECT_LT(waited, 5s) << "the server kept an idle connection open";
  // Half a request: 408 once the request deadline passed, then closed.
  start = std::chrono::steady_clock::now();
  auto late = test::parse_http_response(
    test::http_exchange(port, "GET /v1.0/heal", 8s));
  waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(late.status, 408) << late.body;
  EXPECT_EQ(error_code(late.body), "ERR_REQUEST_TIMEOUT");
  EXPECT_EQ(late.header("connection"), "close");
  EXPECT_GE(waited, 400ms);
  EXPECT_LT(waited, 5s) << "the server kept a half-sent request open";
  // A keep-alive client that is answered is not cut off mid-exchange.
  auto r = test::http_request(port, "GET", "/v1.0/healthz");
  EXPECT_EQ(r.status, 204);
  caf::anon_send_exit(api, caf::exit_reason::user_shutdown);
}

TEST_F(http_api_test, text_that_is_not_utf8_gets_400_naming_it) {
  struct bad_request {
    std::string method, target, body;
    std::map<std::string, std::string> headers;
    std::string problem;
  };
  const std::string path = "path is not valid UTF-8";
  const std::vector<bad_request> requests = {
    {"GET", "/v1.0/state/%FF/k", "", {}, path},
    {"GET", "/v1.0/state/statestore/%FF", "", {}, path},
    {"GET", "/v1.0/state/statestore/\xff", "", {}, path},
    {"GET", "/v1.0/\xff", "", {}, path},
    {"PUT", "/v1.0/state/%C0%AF", "", {}, path},
    {"POST", "/v1.0/state/%FF", "[]", {}, path},
    {"POST", "/v1.0/state/%FF/bulk", R"({"keys":[]})", {}, path},
    {"POST", "/v1.0/publish/hub/t/%FF", "x", {}, path},
    {"POST", "/v1.0/publish/%FF/t", "x", {}, path},
    {"POST", "/v1.0/invoke/%FF/method/m", "x", {}, path},
    {"POST", "/v1.0/invoke/grayscale/method/%ED%A0%80", "x", {}, path},
    {"POST", "/v1.0/publish/hub/t?qos=%FF", "x", {}, "query is not valid UTF-8"},
    {"DELETE", "/v1.0/state/statestore/k?concurrency=%FF", "", {},
     "query is not valid UTF-8"},
    {"DELETE", "/v1.0/state/statestore/k", "", {{"If-Match", "\xff"}},
     "header If-Match is not valid UTF-8"},
    {"POST", "/v1.0/publish/hub/t", "x", {{"X-MQTT-QoS", "\xff"}},
     "header X-MQTT-QoS is not valid UTF-8"},
    {"POST", "/v1.0/publish/hub/t", "x", {{"X-MQTT-Retain", "\xc3"}},
     "header X-MQTT-Retain is not valid UTF-8"},
    {"POST", "/v1.0/publish/hub/t", "x", {{"Content-Type", "text/\xff"}},
     "header Content-Type is not valid UTF-8"},
  };
  for (auto& req : requests) {
    auto r = test::http_request(port_, req.method, req.target, req.body,
                                req.headers);
    EXPECT_EQ(r.status, 400) << req.method << " " << req.target;
    EXPECT_EQ(error_code(r.body), "ERR_MALFORMED_REQUEST") << r.body;
    EXPECT_NE(r.body.find(req.problem), std::string::npos) << r.body;
    ASSERT_EQ(test::http_request(port_, "GET", "/v1.0/healthz").status, 204)
      << "the API stopped serving after " << req.method << " " << req.target;
  }
  {
    std::lock_guard<std::mutex> guard{inbox_->mtx};
    EXPECT_TRUE(inbox_->messages.empty());
  }
  // UTF-8 itself is welcome, encoded or raw.
  EXPECT_EQ(post_json("/v1.0/state/statestore",
                      "[{\"key\":\"caf\xc3\xa9\",\"value\":1}]")
              .status,
            204);
  EXPECT_EQ(test::http_request(port_, "GET", "/v1.0/state/statestore/caf%C3%A9")
              .status,
            200);
  EXPECT_EQ(test::http_request(port_, "GET", "/v1.0/state/statestore/caf\xc3\xa9")
              .status,
            200);
  // MQTT forbids U+0000 in topics.
  auto r = test::http_request(port_, "POST", "/v1.0/publish/hub/a%00b", "x");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("U+0000"), std::string::npos) << r.body;
}

TEST_F(http_api_test, deeply_nested_json_gets_400) {
  // 30000 levels fit the fixture's 64 KiB body limit; the real broker's
  // 50000 are in tests/integration/http_hardening_test.cpp.
  auto nested = [](std::size_t depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  auto r = post_json("/v1.0/state/statestore",
                     R"([{"key":"deep","value":)" + nested(30000) + "}]");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(error_code(r.body), "ERR_MALFORMED_REQUEST");
  EXPECT_NE(r.body.find("JSON nested deeper than 64 levels"), std::string::npos)
    << r.body;
  r = post_json("/v1.0/state/statestore/bulk",
                R"({"keys":)" + nested(30000) + "}");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("JSON nested deeper than 64 levels"), std::string::npos);
  // At the limit: the body's array and item object are two of the 64.
  r = post_json("/v1.0/state/statestore",
                R"([{"key":"deep","value":)" + nested(62) + "}]");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(curl(base_ + "/v1.0/state/statestore/deep").body, nested(62));
  // A value written by another tool, too deep to embed, comes back as text.
  redis_.cli({"HSET", "deeper", "data", nested(100), "version", "1"});
  r = post_json("/v1.0/state/statestore/bulk", R"({"keys":["deeper"]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)[0]["data"], nested(100));
  EXPECT_EQ(curl(base_ + "/v1.0/healthz").status, 204);
}

TEST_F(http_api_test, a_stats_actor_answering_another_type_is_503) {
  // A stats actor of the old protocol (JSON text): the typed request fails
  // as a whole, and the API goes on.
  auto odd_stats = sys_.spawn([]() -> caf::behavior {
    return {
      [](get_atom) -> std::string { return R"({"components":[]})"; },
    };
  });
  http_context ctx;
  ctx.stats = as_role<stats_reader_actor>(odd_stats);
  http_config cfg;
  cfg.listen = "127.0.0.1:0";
  std::string error;
  std::uint16_t port = 0;
  auto api = spawn_http_api(sys_, cfg, ctx, error, &port);
  ASSERT_TRUE(api) << error;
  for (auto path : {"/v1.0/metadata", "/metrics"}) {
    auto r = test::http_request(port, "GET", path);
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(error_code(r.body), "ERR_STATS_UNAVAILABLE");
    EXPECT_EQ(test::http_request(port, "GET", "/v1.0/healthz").status, 204);
  }
  for (auto& a : {api, odd_stats})
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

TEST_F(http_api_test, connections_above_the_limit_get_503) {
  http_config cfg;
  cfg.listen = "127.0.0.1:0";
  cfg.max_connections = 2;
  std::string error;
  std::uint16_t port = 0;
  auto api = spawn_http_api(sys_, cfg, {}, error, &port);
  ASSERT_TRUE(api) << error;
  std::vector<test::http_connection> clients;
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back(port);
    ASSERT_EQ(clients.back().request("GET /v1.0/healthz HTTP/1.1\r\n\r\n").status,
              204);
  }
  auto refused = test::parse_http_response(
    test::http_exchange(port, "GET /v1.0/healthz HTTP/1.1\r\n\r\n", 5s));
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(error_code(refused.body), "ERR_TOO_MANY_CONNECTIONS");
  EXPECT_EQ(refused.header("connection"), "close");
  // The open ones are served; once one closes, a new one is accepted.
  EXPECT_EQ(clients[0].request("GET /v1.0/healthz HTTP/1.1\r\n\r\n").status, 204);
  clients.pop_back();
  EXPECT_TRUE(test::wait_until([&] {
    return test::http_request(port, "GET", "/v1.0/healthz").status == 204;
  }));
  caf::anon_send_exit(api, caf::exit_reason::user_shutdown);
}

TEST_F(http_api_test, busy_port_is_reported) {
  http_config cfg;
  cfg.listen = "127.0.0.1:" + std::to_string(port_);
  std::string error;
  auto second = spawn_http_api(sys_, cfg, {}, error);
  EXPECT_FALSE(second);
  EXPECT_NE(error.find("cannot listen on 127.0.0.1:" + std::to_string(port_)),
            std::string::npos)
    << error;
  cfg.listen = "nonsense";
  EXPECT_FALSE(spawn_http_api(sys_, cfg, {}, error));
  EXPECT_NE(error.find("is not host:port"), std::string::npos);
}
