// The Redis endpoint actor against a real redis-server started on a free
// port: every sink mode checked with redis-cli, the state store with etags
// and concurrent writers, authentication, and Redis killed and restarted.
#include <atomic>
#include <thread>

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include "core/sink_error.hpp"
#include "core/type_ids.hpp"
#include "endpoints/redis/redis_endpoint.hpp"
#include "fixtures/redis_fixture.hpp"

using namespace hubflow;
using namespace std::chrono_literals;

namespace {

state_item item(std::string key, std::string value = "",
                std::string etag = "") {
  state_item x;
  x.key = std::move(key);
  x.value = std::move(value);
  x.etag = std::move(etag);
  return x;
}

struct outcome {
  bool ok = false;
  std::string error;
};

class redis_endpoint_test : public ::testing::Test {
protected:
  redis_endpoint_test() : sys_(cfg_), self_(sys_) {
  }

  ~redis_endpoint_test() override {
    for (auto& ep : endpoints_)
      caf::anon_send_exit(ep, caf::exit_reason::user_shutdown);
  }

  caf::actor spawn(redis_settings s, std::string name = "cache") {
    auto ep = spawn_redis_endpoint(sys_, std::move(name), std::move(s));
    endpoints_.push_back(ep);
    return ep;
  }

  outcome write(const caf::actor& ep, message msg, std::string target = "") {
    outcome out;
    self_->request(ep, 30s, publish_atom::value, std::move(msg), target)
      .receive([&](ok_atom) { out.ok = true; },
               [&](caf::error& err) {
                 out.error = error_text(err);
                 last_write_permanent_ = is_permanent(err);
               });
    return out;
  }

  outcome save(const caf::actor& ep, std::vector<state_item> items) {
    outcome out;
    self_->request(ep, 10s, state_save_atom::value, std::move(items))
      .receive([&](ok_atom) { out.ok = true; },
               [&](caf::error& err) {
                 out.error = error_text(err);
                 last_code_ = state_error_code(err);
               });
    return out;
  }

  std::vector<state_entry> get(const caf::actor& ep,
                               std::vector<std::string> keys) {
    std::vector<state_entry> out;
    self_->request(ep, 10s, state_get_atom::value, std::move(keys))
      .receive([&](std::vector<state_entry>& entries) { out = entries; },
               [&](caf::error& err) {
                 ADD_FAILURE() << "get failed: " << error_text(err);
               });
    return out;
  }

  outcome remove(const caf::actor& ep, state_item item) {
    outcome out;
    self_->request(ep, 10s, state_delete_atom::value, std::move(item))
      .receive([&](ok_atom) { out.ok = true; },
               [&](caf::error& err) {
                 out.error = error_text(err);
                 last_code_ = state_error_code(err);
               });
    return out;
  }

  component_stats stats(const caf::actor& ep) {
    component_stats out;
    self_->request(ep, 10s, get_atom::value)
      .receive([&](component_stats& s) { out = s; }, [](caf::error&) {});
    return out;
  }

  static std::string label(const component_stats& s, const std::string& k) {
    return label_of(s, k).value_or("");
  }

  static std::int64_t counter(const component_stats& s, const std::string& k) {
    for (auto& [key, value] : s.counters)
      if (key == k)
        return value;
    return 0;
  }

  static message msg_on(std::string topic, std::string body) {
    message m;
    m.topic = std::move(topic);
    m.body = payload{std::move(body)};
    m.qos = 1;
    m.properties.user_properties = {{"room", "kitchen"}};
    return m;
  }

  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  caf::scoped_actor self_;
  std::vector<caf::actor> endpoints_;
  state_errc last_code_ = state_errc::failed;
  bool last_write_permanent_ = false; // ERROR rather than RETRY
};

} // namespace

TEST_F(redis_endpoint_test, set_mode_with_key_template_and_ttl) {
  test::redis_server redis;
  auto s = test::redis_settings_for(redis);
  s.mode = redis_mode::set;
  s.key = redis_key_template("sensor:{topic.1}");
  s.ttl = 60s;
  auto ep = spawn(s);
  auto r = write(ep, msg_on("home/kitchen/temp", "21.5"));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(redis.cli({"GET", "sensor:kitchen"}), "21.5");
  auto pttl = std::stoll(redis.cli({"PTTL", "sensor:kitchen"}));
  EXPECT_GT(pttl, 50000);
  EXPECT_LE(pttl, 60000);
  // A rule's `to.topic` replaces the key setting, placeholders included.
  r = write(ep, msg_on("home/hall/temp", "19"), "room:{property.room}");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(redis.cli({"GET", "room:kitchen"}), "19");
  // A template the message cannot fill is a clear error, not a retry.
  r = write(ep, msg_on("flat", "1"), "x:{topic.3}");
  EXPECT_FALSE(r.ok);
  // {topic.3} counts from 0 (the old form): the message names level 4.
  EXPECT_NE(r.error.find("has no level 4"), std::string::npos) << r.error;
}

TEST_F(redis_endpoint_test, publish_mode_reaches_a_subscriber) {
  test::redis_server redis;
  auto s = test::redis_settings_for(redis);
  s.mode = redis_mode::publish;
  auto ep = spawn(s);
  test::process sub{{"redis-cli", "-p", std::to_string(redis.port()), "--raw",
                     "SUBSCRIBE", "alerts"}};
  ASSERT_TRUE(test::wait_until([&] {
    return redis.cli({"PUBSUB", "NUMSUB", "alerts"}) == "alerts\n1";
  }));
  auto r = write(ep, msg_on("ignored", "fire in the kitchen"), "alerts");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(test::wait_until([&] {
    return sub.output().find("fire in the kitchen") != std::string::npos;
  })) << sub.output();
}

TEST_F(redis_endpoint_test, xadd_mode_with_maxlen) {
  test::redis_server redis;
  auto s = test::redis_settings_for(redis);
  s.mode = redis_mode::xadd;
  s.key = redis_key_template("events");
  s.maxlen = 3;
  auto ep = spawn(s);
  for (int i = 0; i < 5; ++i) {
    auto r = write(ep, msg_on("plant/line1", "m" + std::to_string(i)));
    ASSERT_TRUE(r.ok) << r.error;
  }
  EXPECT_EQ(redis.cli({"XLEN", "events"}), "3");
  auto last = redis.cli({"XREVRANGE", "events", "+", "-", "COUNT", "1"});
  EXPECT_NE(last.find("payload\nm4"), std::string::npos) << last;
  EXPECT_NE(last.find("topic\nplant/line1"), std::string::npos) << last;
  EXPECT_NE(last.find("property.room\nkitchen"), std::string::npos) << last;
}

TEST_F(redis_endpoint_test, list_modes_push_and_trim) {
  test::redis_server redis;
  auto s = test::redis_settings_for(redis);
  s.mode = redis_mode::lpush;
  s.key = redis_key_template("recent");
  s.maxlen = 2;
  auto lpush = spawn(s, "recent");
  s.mode = redis_mode::rpush;
  s.key = redis_key_template("log");
  s.maxlen.reset();
  auto rpush = spawn(s, "log");
  for (auto body : {"a", "b", "c"}) {
    ASSERT_TRUE(write(lpush, msg_on("t", body)).ok);
    ASSERT_TRUE(write(rpush, msg_on("t", body)).ok);
  }
  EXPECT_EQ(redis.cli({"LRANGE", "recent", "0", "-1"}), "c\nb");
  EXPECT_EQ(redis.cli({"LRANGE", "log", "0", "-1"}), "a\nb\nc");
}

TEST_F(redis_endpoint_test, password_and_database_are_used) {
  test::redis_server redis{"requirepass s3cret"};
  auto s = test::redis_settings_for(redis);
  s.mode = redis_mode::set;
  s.connection.password = "s3cret";
  s.connection.db = 3;
  auto ep = spawn(s);
  ASSERT_TRUE(write(ep, msg_on("k1", "v1")).ok);
  EXPECT_EQ(redis.cli({"-a", "s3cret", "--no-auth-warning", "-n", "3", "GET",
                       "k1"}),
            "v1");
  // A wrong password is reported as such, and the link stays down.
  s.connection.password = "wrong";
  auto bad = spawn(s, "bad");
  auto r = write(bad, msg_on("k2", "v2"));
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("AUTH failed"), std::string::npos) << r.error;
  EXPECT_TRUE(test::wait_until([&] {
    auto st = stats(bad);
    return label(st, "state") == "down"
           && label(st, "last_error").find("AUTH failed") != std::string::npos;
  }));
}

TEST_F(redis_endpoint_test, state_store_save_get_delete_with_etags) {
  test::redis_server redis;
  auto ep = spawn(test::redis_settings_for(redis), "statestore");
  ASSERT_TRUE(save(ep, {item("weapon", "\"Death Star\"")}).ok);
  ASSERT_TRUE(
    save(ep, {item("planets", R"({"name":"Tatooine","test":123})")}).ok);
  auto entries = get(ep, {"weapon", "planets", "missing"});
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_TRUE(entries[0].found);
  EXPECT_EQ(entries[0].value, "\"Death Star\"");
  EXPECT_EQ(entries[0].etag, "1");
  EXPECT_EQ(entries[1].value, R"({"name":"Tatooine","test":123})");
  EXPECT_FALSE(entries[2].found);
  // Dapr's Redis layout: a hash {data, version}.
  EXPECT_EQ(redis.cli({"HGET", "weapon", "data"}), "\"Death Star\"");
  EXPECT_EQ(redis.cli({"HGET", "weapon", "version"}), "1");

  // Matching etag: written, version moves on.
  ASSERT_TRUE(save(ep, {item("weapon", "\"X-wing\"", "1")}).ok);
  EXPECT_EQ(get(ep, {"weapon"})[0].etag, "2");
  // Stale etag: refused, nothing changes.
  auto r = save(ep, {item("weapon", "\"TIE\"", "1")});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(last_code_, state_errc::etag_mismatch);
  EXPECT_NE(r.error.find("etag mismatch"), std::string::npos) << r.error;
  EXPECT_EQ(get(ep, {"weapon"})[0].value, "\"X-wing\"");
  // first-write without etag: only for new keys.
  auto first = item("weapon", "\"TIE\"");
  first.concurrency = state_concurrency::first_write;
  EXPECT_FALSE(save(ep, {first}).ok);
  first.key = "ship";
  EXPECT_TRUE(save(ep, {first}).ok);
  // last-write ignores a stale etag.
  auto last = item("weapon", "\"TIE\"", "1");
  last.concurrency = state_concurrency::last_write;
  EXPECT_TRUE(save(ep, {last}).ok);
  EXPECT_EQ(get(ep, {"weapon"})[0].value, "\"TIE\"");

  // Bulk save is all or nothing.
  r = save(ep, {item("a", "1"), item("weapon", "\"Y\"", "999")});
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(get(ep, {"a"})[0].found);

  // Delete with a stale etag is refused; with the right one it works.
  auto etag = get(ep, {"weapon"})[0].etag;
  EXPECT_FALSE(remove(ep, item("weapon", "", "1")).ok);
  EXPECT_EQ(last_code_, state_errc::etag_mismatch);
  EXPECT_TRUE(remove(ep, item("weapon", "", etag)).ok);
  EXPECT_FALSE(get(ep, {"weapon"})[0].found);
  EXPECT_TRUE(remove(ep, item("never-there")).ok);

  // TTL from Dapr's metadata.ttlInSeconds.
  auto expiring = item("session", "{}");
  expiring.ttl_seconds = 100;
  ASSERT_TRUE(save(ep, {expiring}).ok);
  auto ttl = std::stoll(redis.cli({"TTL", "session"}));
  EXPECT_GT(ttl, 90);
  // A later save without a TTL makes it permanent again.
  ASSERT_TRUE(save(ep, {item("session", "{}")}).ok);
  EXPECT_EQ(redis.cli({"TTL", "session"}), "-1");
}

TEST_F(redis_endpoint_test, concurrent_writers_lose_no_update) {
  test::redis_server redis;
  auto ep = spawn(test::redis_settings_for(redis), "statestore");
  ASSERT_TRUE(save(ep, {item("counter", "0")}).ok);
  constexpr int writers = 6;
  constexpr int increments = 40;
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&] {
      caf::scoped_actor me{sys_};
      for (int i = 0; i < increments;) {
        state_entry current;
        me->request(ep, 10s, state_get_atom::value,
                    std::vector<std::string>{"counter"})
          .receive([&](std::vector<state_entry>& e) { current = e[0]; },
                   [&](caf::error&) {});
        auto next = std::to_string(std::stoll(current.value) + 1);
        bool saved = false;
        me->request(ep, 10s, state_save_atom::value,
                    std::vector<state_item>{item("counter", next, current.etag)})
          .receive([&](ok_atom) { saved = true; },
                   [&](caf::error& err) {
                     if (state_error_code(err) == state_errc::etag_mismatch)
                       ++conflicts;
                   });
        if (saved)
          ++i; // else someone else won this round: read again
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(get(ep, {"counter"})[0].value,
            std::to_string(writers * increments));
  EXPECT_GT(conflicts.load(), 0) << "the writers never raced";
  auto st = stats(ep);
  EXPECT_EQ(counter(st, "state_conflicts"), conflicts.load());
}

TEST_F(redis_endpoint_test, redis_down_gives_clear_errors_and_recovers) {
  auto redis = std::make_unique<test::redis_server>();
  auto s = test::redis_settings_for(*redis);
  s.mode = redis_mode::rpush;
  s.key = redis_key_template("acked");
  auto ep = spawn(s, "journal");
  auto state_ep = spawn(test::redis_settings_for(*redis), "statestore");
  // Writers keep going while Redis is killed and started again.
  std::vector<std::string> acked;
  std::vector<std::string> failed_errors;
  int n = 0;
  auto write_some = [&](int count) {
    for (int i = 0; i < count; ++i, ++n) {
      auto body = "m" + std::to_string(n);
      auto r = write(ep, msg_on("t", body));
      if (r.ok)
        acked.push_back(body);
      else
        failed_errors.push_back(r.error);
    }
  };
  write_some(20);
  ASSERT_EQ(acked.size(), 20u);
  redis->stop(9); // crash
  write_some(5);
  ASSERT_FALSE(failed_errors.empty());
  EXPECT_NE(failed_errors.back().find("127.0.0.1:"), std::string::npos)
    << failed_errors.back();
  // One attempt, answered RETRY: retries are the rule's.
  EXPECT_NE(failed_errors.back().find("writing 'acked' failed: "),
            std::string::npos)
    << failed_errors.back();
  EXPECT_FALSE(last_write_permanent_);
  auto r = save(state_ep, {item("k", "1", "")});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(last_code_, state_errc::unavailable) << r.error;
  EXPECT_TRUE(test::wait_until(
    [&] { return label(stats(ep), "state") == "down"; }));

  redis->start(); // same port, same append-only file
  EXPECT_TRUE(test::wait_until(
    [&] { return label(stats(ep), "state") == "up"; }, 10s));
  write_some(20);
  EXPECT_GE(acked.size(), 40u);
  // Every acknowledged write is in Redis (retries may add duplicates:
  // at-least-once), in order.
  auto stored = redis->cli({"LRANGE", "acked", "0", "-1"});
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < stored.size();) {
    auto end = stored.find('\n', pos);
    lines.push_back(stored.substr(pos, end - pos));
    pos = end == std::string::npos ? stored.size() : end + 1;
  }
  for (auto& body : acked)
    EXPECT_NE(std::find(lines.begin(), lines.end(), body), lines.end())
      << body << " was acknowledged but is not in Redis";
  EXPECT_TRUE(save(state_ep, {item("k", "1", "")}).ok);
  auto st = stats(ep);
  EXPECT_GE(counter(st, "disconnects"), 1);
  EXPECT_GE(counter(st, "connects"), 2);
  EXPECT_EQ(counter(st, "retries"), 0);
}

TEST_F(redis_endpoint_test, a_command_redis_refuses_is_permanent_and_not_retried) {
  auto redis = std::make_unique<test::redis_server>();
  redis->cli({"SET", "journal", "not a list"});
  auto s = test::redis_settings_for(*redis);
  s.mode = redis_mode::rpush;
  s.key = redis_key_template("journal");
  auto ep = spawn(s, "journal");
  auto r = write(ep, msg_on("t", "entry"));
  ASSERT_FALSE(r.ok);
  EXPECT_TRUE(last_write_permanent_) << r.error;
  EXPECT_NE(r.error.find("WRONGTYPE"), std::string::npos) << r.error;
  // Redis being down is RETRY.
  redis->stop(9);
  EXPECT_TRUE(test::wait_until(
    [&] { return label(stats(ep), "state") == "down"; }));
  r = write(ep, msg_on("t", "entry"));
  ASSERT_FALSE(r.ok);
  EXPECT_FALSE(last_write_permanent_) << r.error;
  EXPECT_EQ(counter(stats(ep), "retries"), 0);
}
