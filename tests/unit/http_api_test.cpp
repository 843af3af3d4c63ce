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

/// A hub sink: accepts everything except topics under "refuse/".
caf::behavior fake_hub(caf::event_based_actor*, std::shared_ptr<hub_inbox> inbox) {
  return {
    [=](publish_atom, const message& msg) -> caf::result<ok_atom> {
      if (msg.topic.rfind("refuse/", 0) == 0)
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
    auto s = redis_settings{};
    s.connection.port = redis_.port();
    s.connection.backoff_min = 20ms;
    s.connection.backoff_max = 200ms;
    s.connection.command_timeout = 2s;
    store_ = spawn_redis_endpoint(sys_, "statestore", s);
    inbox_ = std::make_shared<hub_inbox>();
    hub_ = sys_.spawn(fake_hub, inbox_);
    function_ = sys_.spawn(fake_function);
    stats_ = sys_.spawn(fake_stats);
    http_context ctx;
    ctx.hub = hub_;
    ctx.functions["grayscale"] = function_;
    ctx.state_stores["statestore"] = {"redis", store_};
    ctx.stats = stats_;
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
                + test::shell_quote(body) + " " + base_ + path);
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
  r = curl("-X PUT " + base_ + "/v1.0/state/statestore");
  EXPECT_EQ(r.status, 405);
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
  ctx.stats = odd_stats;
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
