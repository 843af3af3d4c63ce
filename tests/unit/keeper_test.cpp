// The keeper with real CAF actors: a child that dies is restarted after a
// backoff that doubles, each restart is counted in what the keeper reports
// to the stats actor, and nothing is restarted at shutdown. Then the actors
// main.cpp puts under it, killed from outside: the HTTP API and the stats
// port come back on their ports, the stats actor with its numbers.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <optional>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "core/keeper.hpp"
#include "core/type_ids.hpp"
#include "fixtures/fixtures.hpp"
#include "fixtures/loopback_socket.hpp"
#include "http/http_api.hpp"
#include "stats/stats.hpp"
#include "stats/stats_port.hpp"

using namespace hubflow;
using namespace hubflow::test;
using steady = std::chrono::steady_clock;

namespace {

/// What the test's stand-in for the stats actor received, by component.
struct reports {
  std::mutex mtx;
  std::map<std::string, component_stats> latest;

  std::int64_t counter(const std::string& name, const std::string& key) {
    std::lock_guard<std::mutex> guard{mtx};
    auto i = latest.find(name);
    if (i == latest.end())
      return -1;
    for (auto& [k, v] : i->second.counters)
      if (k == key)
        return v;
    return -1;
  }
};

caf::behavior stats_catcher(caf::event_based_actor*,
                            std::shared_ptr<reports> got) {
  return {
    [got](report_atom, component_stats& c) {
      EXPECT_EQ(c.kind, "keeper");
      std::lock_guard<std::mutex> guard{got->mtx};
      got->latest[c.name] = std::move(c);
    },
  };
}

/// Dies of an exception in its first handler, as a buggy actor would.
caf::behavior crashing_child(caf::event_based_actor* self) {
  self->send(self, tick_atom::value);
  return {
    [](tick_atom) { throw std::runtime_error("child failed"); },
  };
}

caf::behavior healthy_child(caf::event_based_actor*) {
  return {
    [](tick_atom) {},
  };
}

/// Records when the keeper asked for a replacement.
struct restart_log {
  std::mutex mtx;
  std::vector<steady::time_point> at;

  std::size_t size() {
    std::lock_guard<std::mutex> guard{mtx};
    return at.size();
  }
  std::vector<steady::time_point> times() {
    std::lock_guard<std::mutex> guard{mtx};
    return at;
  }
};

/// Sends `request` to 127.0.0.1:port and returns all it answers until it
/// closes or 5 s pass (empty when nothing listens).
std::string talk(std::uint16_t port, const std::string& request) {
  test::loopback_socket conn{port};
  if (conn.send_all(request))
    conn.wait_closed(test::deadline_in(5s));
  return conn.received();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class keeper_test : public ::testing::Test {
protected:
  keeper_test() : sys_(cfg_.load<caf::io::middleman>()), self_(sys_) {
    got_ = std::make_shared<reports>();
    catcher_ = sys_.spawn(stats_catcher, got_);
    sys_.registry().put(stats_registry_name, catcher_);
  }
  ~keeper_test() override {
    sys_.registry().erase(stats_registry_name);
    caf::anon_send_exit(catcher_, caf::exit_reason::user_shutdown);
  }

  /// Sends the keeper the exit main sends at shutdown and waits until it is
  /// gone: after that it can restart nothing. Other actors' down messages
  /// that arrive meanwhile are kept in `downs_`.
  void shut_down(const caf::actor& keeper) {
    self_->monitor(keeper);
    self_->send_exit(keeper, caf::exit_reason::user_shutdown);
    auto deadline = steady::now() + std::chrono::seconds(5);
    bool down = false;
    while (!down && steady::now() < deadline)
      self_->receive(
        [&](caf::down_msg& dm) {
          if (dm.source == keeper)
            down = true;
          else
            downs_.push_back(std::move(dm));
        },
        caf::after(std::chrono::milliseconds(100)) >> [] {});
    ASSERT_TRUE(down) << "the keeper did not stop";
  }

  /// The next down message of an actor other than a keeper.
  std::optional<caf::down_msg> next_down() {
    if (downs_.empty())
      self_->receive([&](caf::down_msg& dm) { downs_.push_back(std::move(dm)); },
                     caf::after(std::chrono::seconds(5)) >> [] {});
    if (downs_.empty())
      return std::nullopt;
    auto dm = std::move(downs_.front());
    downs_.erase(downs_.begin());
    return dm;
  }

  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  caf::scoped_actor self_;
  std::shared_ptr<reports> got_;
  caf::actor catcher_;
  std::vector<caf::down_msg> downs_;
};

} // namespace

TEST_F(keeper_test, restarts_a_dying_child_with_doubling_backoff) {
  auto log = std::make_shared<restart_log>();
  auto started = steady::now();
  keeper_child child{"crashy", sys_.spawn(crashing_child),
                     [this, log](std::string&) {
                       std::lock_guard<std::mutex> guard{log->mtx};
                       log->at.push_back(steady::now());
                       return sys_.spawn(crashing_child);
                     },
                     {}};
  auto keeper = spawn_keeper(sys_, {child});
  // 100 + 200 + 400 + 800 ms until the fourth restart.
  ASSERT_TRUE(wait_until([&] { return log->size() >= 4; }, 10s));
  auto times = log->times();
  using std::chrono::milliseconds;
  EXPECT_GE(times[0] - started, milliseconds(100));
  for (std::size_t i = 1; i < 4; ++i)
    EXPECT_GE(times[i] - times[i - 1], milliseconds(100 << i))
      << "restart " << i;
  // Counted where `hubflowctl stats` shows it.
  EXPECT_TRUE(wait_until([&] {
    return got_->counter("crashy", "restarts") >= 4
           && got_->counter("crashy", "exits") >= 4;
  })) << got_->counter("crashy", "restarts");
  shut_down(keeper);
}

TEST_F(keeper_test, backoff_stops_growing_at_its_maximum) {
  auto log = std::make_shared<restart_log>();
  keeper_child child{"crashy", sys_.spawn(crashing_child),
                     [this, log](std::string&) {
                       std::lock_guard<std::mutex> guard{log->mtx};
                       log->at.push_back(steady::now());
                       return sys_.spawn(crashing_child);
                     },
                     {}};
  keeper_options opts;
  opts.backoff_max = std::chrono::milliseconds(200);
  auto keeper = spawn_keeper(sys_, {child}, opts);
  // Capped: 100 + 5 * 200 ms; doubling on would take 6.3 s.
  EXPECT_TRUE(wait_until([&] { return log->size() >= 6; }, 3s))
    << log->size() << " restarts";
  shut_down(keeper);
}

TEST_F(keeper_test, a_failed_restart_is_tried_again) {
  auto attempts = std::make_shared<std::atomic<int>>(0);
  keeper_child child{"flaky", sys_.spawn(crashing_child),
                     [this, attempts](std::string& error) -> caf::actor {
                       if (++*attempts <= 2) {
                         error = "port busy";
                         return {};
                       }
                       return sys_.spawn(healthy_child);
                     },
                     {}};
  auto keeper = spawn_keeper(sys_, {child});
  EXPECT_TRUE(wait_until([&] {
    return got_->counter("flaky", "restarts") == 1
           && got_->counter("flaky", "restart_failures") == 2;
  })) << got_->counter("flaky", "restart_failures");
  EXPECT_EQ(attempts->load(), 3);
  shut_down(keeper);
}

TEST_F(keeper_test, shutdown_stops_the_children_and_restarts_none) {
  auto restarts = std::make_shared<std::atomic<int>>(0);
  auto first = sys_.spawn(healthy_child);
  keeper_child child{"steady", first,
                     [this, restarts](std::string&) {
                       ++*restarts;
                       return sys_.spawn(healthy_child);
                     },
                     {}};
  auto keeper = spawn_keeper(sys_, {child});
  self_->monitor(first);
  shut_down(keeper);
  auto down = next_down();
  ASSERT_TRUE(down) << "the child was not stopped";
  EXPECT_EQ(down->source, first.address());
  EXPECT_EQ(down->reason, caf::exit_reason::user_shutdown);
  EXPECT_EQ(restarts->load(), 0);
}

TEST_F(keeper_test, a_child_stopped_for_shutdown_is_not_restarted) {
  auto restarts = std::make_shared<std::atomic<int>>(0);
  auto first = sys_.spawn(healthy_child);
  keeper_child child{"steady", first,
                     [this, restarts](std::string&) {
                       ++*restarts;
                       return sys_.spawn(healthy_child);
                     },
                     {}};
  auto keeper = spawn_keeper(sys_, {child});
  self_->monitor(first);
  self_->send_exit(first, caf::exit_reason::user_shutdown);
  ASSERT_TRUE(next_down());
  // The keeper heard of the exit before it hears of its own shutdown.
  shut_down(keeper);
  EXPECT_EQ(restarts->load(), 0);
}

TEST_F(keeper_test, whoever_holds_a_replaced_child_is_told_its_replacement) {
  // A rule stands for the dependents, the HTTP API for a following child
  // (which passes on what it is told).
  caf::scoped_actor rule{sys_};
  caf::scoped_actor http{sys_};
  auto follower = sys_.spawn([to = caf::actor{http.ptr()}](
                               caf::event_based_actor* self) -> caf::behavior {
    return {
      [self, to](rewire_atom a, const caf::actor& old, const caf::actor& fresh) {
        self->send(to, a, old, fresh);
      },
    };
  });
  auto hub = sys_.spawn(healthy_child);
  auto replacement = std::make_shared<caf::actor>();
  auto replaced = std::make_shared<std::atomic<int>>(0);
  keeper_options opts;
  opts.dependents = {caf::actor{rule.ptr()}};
  opts.on_replaced = [replaced](const caf::actor&, const caf::actor&) {
    ++*replaced;
  };
  auto keeper = spawn_keeper(
    sys_,
    {keeper_child{"hub", hub,
                  [this, replacement](std::string&) {
                    *replacement = sys_.spawn(healthy_child);
                    return *replacement;
                  },
                  false},
     keeper_child{"http_api", follower, {}, true}},
    opts);
  self_->monitor(hub);
  self_->send_exit(hub, caf::exit_reason::kill);
  ASSERT_TRUE(next_down());
  for (auto* holder : {&rule, &http}) {
    bool told = false;
    (*holder)->receive(
      [&](rewire_atom, const caf::actor& old, const caf::actor& fresh) {
        EXPECT_EQ(old, hub);
        EXPECT_EQ(fresh, *replacement);
        told = true;
      },
      caf::after(std::chrono::seconds(5)) >> [] {});
    EXPECT_TRUE(told);
  }
  EXPECT_EQ(replaced->load(), 1);
  shut_down(keeper);
}

/// As main.cpp keeps them; `restart` is what main.cpp passes.
class kept_services : public keeper_test {
protected:
  void kill_and_wait(const caf::actor& victim) {
    self_->monitor(victim);
    self_->send_exit(victim, caf::exit_reason::kill);
    ASSERT_TRUE(next_down());
  }
};

TEST_F(kept_services, the_http_api_comes_back_on_its_port) {
  http_config cfg;
  cfg.enabled = true;
  cfg.listen = "127.0.0.1:0";
  std::string error;
  std::uint16_t port = 0;
  auto http = spawn_http_api(sys_, cfg, http_context{}, error, &port);
  ASSERT_TRUE(http) << error;
  cfg.listen = "127.0.0.1:" + std::to_string(port);
  auto restarted = std::make_shared<std::atomic<int>>(0);
  auto keeper = spawn_keeper(
    sys_, {keeper_child{"http_api", http,
                        [this, cfg, restarted](std::string& err) {
                          ++*restarted;
                          return spawn_http_api(sys_, cfg, http_context{},
                                                err);
                        },
                        {}}});
  const std::string healthz = "GET /v1.0/healthz HTTP/1.1\r\nHost: t\r\n"
                              "Connection: close\r\n\r\n";
  ASSERT_TRUE(contains(talk(port, healthz), " 204 "));
  kill_and_wait(http);
  EXPECT_TRUE(wait_until([&] {
    return contains(talk(port, healthz), " 204 ");
  })) << "no HTTP API on port " << port << " after the kill";
  EXPECT_EQ(restarted->load(), 1);
  EXPECT_TRUE(wait_until(
    [&] { return got_->counter("http_api", "restarts") == 1; }));
  shut_down(keeper);
}

TEST_F(kept_services, stats_and_the_stats_port_come_back_with_their_data) {
  // The stand-in stats actor of keeper_test makes room for the real one.
  sys_.registry().erase(stats_registry_name);
  stats_config cfg;
  auto store = make_stats_store();
  auto stats = spawn_stats(sys_, cfg, store);
  auto ctx = std::make_shared<stats_port_context>();
  ctx->token = std::string(64, 'a');
  std::string error;
  std::uint16_t port = 0;
  auto stats_port = spawn_stats_port(sys_, "127.0.0.1", 0, ctx, error, &port);
  ASSERT_TRUE(stats_port) << error;
  auto keeper = spawn_keeper(
    sys_, {keeper_child{"stats", stats,
                        [this, cfg, store](std::string&) {
                          return spawn_stats(sys_, cfg, store);
                        },
                        {}},
           keeper_child{"stats_port", stats_port,
                        [this, port, ctx](std::string& err) {
                          return spawn_stats_port(sys_, "127.0.0.1", port, ctx,
                                                  err);
                        },
                        {}}});
  component_stats rule{"rule", "r1", {{"in", 7}}, {}};
  caf::anon_send(stats, report_atom::value, rule);
  auto request = "HUBFLOW-STATS 1 " + ctx->token + "\n";
  ASSERT_TRUE(wait_until([&] {
    return contains(talk(port, request), "\"in\":7");
  }));
  kill_and_wait(stats);
  kill_and_wait(stats_port);
  // The new stats actor still knows r1, and the keeper's own counters.
  std::string snapshot;
  EXPECT_TRUE(wait_until([&] {
    snapshot = talk(port, request);
    return contains(snapshot, "\"in\":7")
           && contains(snapshot, "\"name\":\"stats\"")
           && contains(snapshot, "\"restarts\":1");
  })) << snapshot;
  shut_down(keeper);
}
