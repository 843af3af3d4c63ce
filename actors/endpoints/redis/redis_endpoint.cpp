#include "endpoints/redis/redis_endpoint.hpp"

#include <functional>
#include <memory>
#include <string_view>

#include <caf/all.hpp>

#include "core/probe.hpp"
#include "core/reply.hpp"
#include "core/sink_error.hpp"
#include "core/type_ids.hpp"
#include "endpoints/redis/redis_commands.hpp"
#include "endpoints/redis/redis_replies.hpp"

namespace hubflow {

namespace {

// Messages from the client's I/O thread.
using redis_reply_atom = caf::atom_constant<caf::atom("redis_rep")>;
using redis_link_atom = caf::atom_constant<caf::atom("redis_link")>;

using continuation = std::function<void(redis_reply&)>;

struct redis_endpoint_state {
  static inline const char* name = "hubflow.redis_endpoint";

  std::string endpoint;
  std::shared_ptr<const redis_settings> settings;
  probe stats{"endpoint", ""};
  bool report_scheduled = false;
  redis_client::link_state link = redis_client::link_state::connecting;
  /// What to do with each reply, by the ticket its command was sent with;
  /// run in the actor's context.
  awaiting<continuation> pending;
  // Last member: destroyed first, so its I/O thread stops before the rest.
  std::unique_ptr<redis_client> client;
};

using redis_actor = caf::stateful_actor<redis_endpoint_state>;

/// Reports the counters soon (batched: one report per interval at most).
void touch_stats(redis_actor* self) {
  auto& st = self->state;
  st.stats.set("inflight", static_cast<std::int64_t>(st.pending.size()));
  if (!st.report_scheduled) {
    st.report_scheduled = true;
    self->delayed_send(self, stats_interval(self->home_system()),
                       tick_atom::value);
  }
}

/// Sends `argv` to Redis; `then` runs in this actor with the reply.
void execute(redis_actor* self, std::vector<std::string> argv,
             continuation then) {
  auto& st = self->state;
  auto id = st.pending.add(std::move(then));
  caf::weak_actor_ptr weak{self->ctrl()};
  st.client->send(std::move(argv), [weak, id](redis_reply reply) {
    if (auto hdl = caf::actor_cast<caf::actor>(weak.lock()))
      caf::anon_send(hdl, redis_reply_atom::value, id, std::move(reply));
  });
  touch_stats(self);
}

/// What a failed write means (core/sink_error.hpp): RETRY when Redis never
/// saw or answered the command, or answered that it cannot serve now;
/// ERROR when it ran the command and refused it (WRONGTYPE, a command
/// error, not authorised), which a retry would only repeat.
sink_errc failure_kind(const redis_reply& reply) {
  if (reply.transient())
    return sink_errc::retry;
  std::string_view text = reply.str;
  auto starts = [&](std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
  };
  for (auto busy : {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY",
                    "CLUSTERDOWN", "OOM"})
    if (starts(busy))
      return sink_errc::retry;
  if (starts("NOAUTH") || starts("NOPERM") || starts("WRONGPASS"))
    return sink_errc::not_authorized;
  return sink_errc::unspecified;
}

/// A sink write: one attempt. Retries are the rule's (its backoff, its
/// retry.max, its parking while the endpoint restarts): one layer, so a
/// message is not tried retry.max times the endpoint's own retries.
void write(redis_actor* self, const message& msg, const std::string& target,
           reply answer) {
  auto& st = self->state;
  st.stats.add("messages_in");
  std::string error;
  auto name = render_key(*st.settings, target, msg, error);
  if (!name) {
    st.stats.add("errors");
    touch_stats(self);
    // Made invalid by its template: no retry can change that.
    answer.deliver(make_sink_error(sink_errc::topic_name_invalid,
                                   "redis endpoint '" + st.endpoint
                                     + "': " + error));
    return;
  }
  execute(self, make_write_command(*st.settings, *name, msg),
          [self, key = *name, answer](redis_reply& reply) mutable {
            auto& st = self->state;
            if (!reply.failed()) {
              st.stats.add("messages_out");
              answer.deliver(ok_atom::value);
              return;
            }
            st.stats.add("errors");
            answer.deliver(make_sink_error(
              failure_kind(reply), "redis endpoint '" + st.endpoint
                                     + "': writing '" + key
                                     + "' failed: " + reply.str));
          });
}

/// Runs a state save or delete and answers ok or what `decode` makes of
/// the reply, counted as a conflict (etag) or an error.
caf::result<ok_atom>
state_write(redis_actor* self, std::vector<std::string> cmd,
            std::function<caf::error(redis_reply&)> decode) {
  auto rp = self->make_response_promise();
  execute(self, std::move(cmd),
          [self, rp, decode = std::move(decode)](redis_reply& reply) mutable {
            if (auto err = decode(reply)) {
              self->state.stats.add(state_error_code(err)
                                        == state_errc::etag_mismatch
                                      ? "state_conflicts"
                                      : "state_errors");
              rp.deliver(std::move(err));
              return;
            }
            rp.deliver(ok_atom::value);
          });
  return caf::delegated<ok_atom>{};
}

caf::behavior redis_endpoint(redis_actor* self, std::string name,
                             std::shared_ptr<const redis_settings> settings) {
  auto& st = self->state;
  st.endpoint = name;
  st.settings = settings;
  st.stats = probe{"endpoint", name};
  st.stats.label("type", "redis");
  st.stats.label("mode", to_string(settings->mode));
  st.stats.label("state", "connecting");
  caf::weak_actor_ptr weak{self->ctrl()};
  st.client = std::make_unique<redis_client>(
    settings->connection,
    [weak](redis_client::link_state s, const std::string& why) {
      if (auto hdl = caf::actor_cast<caf::actor>(weak.lock()))
        caf::anon_send(hdl, redis_link_atom::value,
                       static_cast<std::uint8_t>(s), why);
    });
  st.stats.label("address", st.client->address());
  touch_stats(self);
  auto sink = [self](message& msg, const std::string& target, reply answer) {
    write(self, msg, target, std::move(answer));
  };
  return sink_handlers(self, sink).or_else(
    [=](state_save_atom, const std::vector<state_item>& items)
      -> caf::result<ok_atom> {
      auto& st = self->state;
      st.stats.add("state_writes");
      caf::error err;
      auto cmd = make_save_command(items, st.settings->key_prefix, err);
      if (err) {
        st.stats.add("state_errors");
        touch_stats(self);
        return err;
      }
      if (items.empty())
        return ok_atom::value;
      return state_write(self, std::move(cmd), [items](redis_reply& reply) {
        return decode_save_reply(reply, items);
      });
    },
    [=](state_get_atom, const std::vector<std::string>& keys)
      -> caf::result<std::vector<state_entry>> {
      auto& st = self->state;
      st.stats.add("state_reads");
      if (keys.empty())
        return std::vector<state_entry>{};
      auto rp = self->make_response_promise();
      execute(self, make_get_command(keys, st.settings->key_prefix),
              [self, rp, keys](redis_reply& reply) mutable {
                caf::error err;
                auto entries = decode_get_reply(keys, reply, err);
                if (err) {
                  self->state.stats.add("state_errors");
                  rp.deliver(std::move(err));
                  return;
                }
                rp.deliver(std::move(entries));
              });
      return caf::delegated<std::vector<state_entry>>{};
    },
    [=](state_delete_atom, const state_item& item) -> caf::result<ok_atom> {
      auto& st = self->state;
      st.stats.add("state_deletes");
      caf::error err;
      auto cmd = make_delete_command(item, st.settings->key_prefix, err);
      if (err) {
        st.stats.add("state_errors");
        touch_stats(self);
        return err;
      }
      return state_write(self, std::move(cmd),
                         [key = item.key](redis_reply& reply) {
                           return decode_delete_reply(reply, key);
                         });
    },
    [=](redis_reply_atom, std::uint64_t id, redis_reply& reply) {
      if (auto then = self->state.pending.take(id)) {
        (*then)(reply);
        touch_stats(self);
      }
    },
    [=](redis_link_atom, std::uint8_t raw, const std::string& why) {
      auto& st = self->state;
      auto s = static_cast<redis_client::link_state>(raw);
      if (s == redis_client::link_state::up)
        st.stats.add("connects");
      else if (s == redis_client::link_state::down
               && st.link == redis_client::link_state::up)
        st.stats.add("disconnects");
      st.link = s;
      st.stats.label("state", redis_client::to_string(s));
      if (!why.empty())
        st.stats.label("last_error", why);
      st.stats.set("up", s == redis_client::link_state::up ? 1 : 0);
      touch_stats(self);
    },
    [=](tick_atom) {
      self->state.report_scheduled = false;
      self->state.stats.report(self);
    },
    [=](get_atom) { return self->state.stats.snapshot(); });
}

} // namespace

caf::actor spawn_redis_endpoint(caf::actor_system& sys, std::string name,
                                redis_settings settings) {
  return sys.spawn(redis_endpoint, std::move(name),
                   std::make_shared<const redis_settings>(std::move(settings)));
}

} // namespace hubflow
