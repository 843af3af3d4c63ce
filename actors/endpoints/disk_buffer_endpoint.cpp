#include "endpoints/disk_buffer_endpoint.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "core/probe.hpp"
#include "core/reply.hpp"
#include "core/sink_error.hpp"
#include "core/type_ids.hpp"
#include "store/disk_buffer.hpp"

namespace hubflow {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// What the buffer's writer thread tells the actor (store::disk_buffer's
// listener), and the actor's own timers.
using buffer_open_atom = caf::atom_constant<caf::atom("buf_open")>;
using buffer_failed_atom = caf::atom_constant<caf::atom("buf_fail")>;
using buffer_commit_atom = caf::atom_constant<caf::atom("buf_commit")>;
using buffer_read_atom = caf::atom_constant<caf::atom("buf_read")>;
using buffer_handover_atom = caf::atom_constant<caf::atom("buf_hand")>;

/// Records at the endpoint without an answer at most.
constexpr std::size_t forward_window = 1024;
/// Records kept in memory (the front of the queue); the rest is read back
/// from disk, read_batch at a time, when the front runs short.
constexpr std::size_t memory_records = 8192;
constexpr std::size_t read_batch = 2048;
/// Writes that wait for room while the buffer is full (or opening): their
/// publishers' acks wait with them. A write waiting longer than
/// hold_timeout, or beyond held_limit, is answered RETRY (the rule retries
/// it). 20 s stays below the 30 s the embedded hub waits for a rule's
/// answer before it gives up on the PUBACK; answering RETRY at once would
/// have the rule give up after its few short retries.
constexpr std::size_t held_limit = 10000;
constexpr std::size_t held_bytes_limit = 64 * 1024 * 1024; // in memory
constexpr auto hold_timeout = 20s;
/// Backoff after the endpoint answered RETRY: doubles up to the maximum,
/// back to the minimum after an OK.
constexpr std::chrono::milliseconds backoff_min{100};
constexpr std::chrono::milliseconds backoff_max{5000};
constexpr auto tick_interval = 250ms;

/// A ticket to the endpoint: the record's seq in the low 40 bits, the send
/// round in the high 24, so an answer to an earlier round's send (before a
/// backoff resent the record) is recognised.
constexpr int round_shift = 40;
constexpr std::uint64_t seq_mask = (std::uint64_t{1} << round_shift) - 1;
constexpr std::uint32_t round_mask = (1u << (64 - round_shift)) - 1;

/// A record of the queue's front, held in memory.
struct record {
  std::uint64_t seq = 0;
  std::string target;
  message msg;
  std::size_t bytes = 0;
  bool sent = false;      // at the endpoint in round `round`
  bool confirmed = false; // answered OK (or refused for good): gone
  std::uint32_t round = 0;
};

/// A write taken, waiting for its commit before it is answered OK.
struct uncommitted {
  std::uint64_t seq = 0;
  std::size_t bytes = 0;
  reply answer;
};

/// A write waiting for room (or for the file to open).
struct held_write {
  std::string target;
  message msg;
  std::string packed;
  reply answer;
  steady::time_point since;
};

struct buffer_state {
  static inline const char* name = "hubflow.endpoint_buffer";

  std::string endpoint;
  std::size_t max_bytes = 0;
  persistence_sync sync = persistence_sync::batch;
  caf::actor inner; // the endpoint, linked
  std::unique_ptr<store::disk_buffer> disk;
  bool open = false;

  std::uint64_t last_seq = 0; // the highest seq taken
  std::uint64_t durable = 0;  // records up to this are committed
  /// Records up to this seq are in `window` or gone; above it they are on
  /// disk only, until a read brings them in.
  std::uint64_t loaded_through = 0;
  bool reading = false;
  std::uint64_t records = 0; // taken and not confirmed (what max_bytes bounds)
  std::uint64_t bytes = 0;

  std::deque<record> window;   // by seq
  std::size_t send_from = 0;   // window index: everything before it is sent
  std::size_t in_flight = 0;
  std::uint32_t round = 0;
  /// The buffer that replaces this one (a reload) wants the file: answer
  /// what was taken once committed, take nothing more, then stop.
  bool handing_over = false;
  bool backing_off = false;
  std::chrono::milliseconds backoff = backoff_min;

  std::deque<uncommitted> unanswered; // by seq
  std::deque<held_write> held;        // in arrival order
  std::size_t held_bytes = 0;         // their packed sizes

  std::unique_ptr<probe> stats;

  ~buffer_state() {
    if (disk)
      disk->close(); // applies what was queued: confirmations are kept
  }
};

using buffer_actor = caf::stateful_actor<buffer_state>;

void pump(buffer_actor* self);

/// Runs `f`, logging and counting what it throws instead of stopping the
/// actor (and the endpoint with it).
template <class F>
void guarded(buffer_actor* self, const char* what, F f) {
  try {
    f();
  } catch (const std::exception& e) {
    self->state.stats->add("errors");
    spdlog::error("buffer {}: {}: {}", self->state.endpoint, what, e.what());
  }
}

record* find(buffer_state& st, std::uint64_t seq) {
  auto i = std::lower_bound(st.window.begin(), st.window.end(), seq,
                            [](const record& r, std::uint64_t s) {
                              return r.seq < s;
                            });
  return i != st.window.end() && i->seq == seq ? &*i : nullptr;
}

/// Takes a write into the queue: stored, answered once committed.
void take(buffer_actor* self, std::string& target, message& msg,
          std::string packed, reply answer) {
  auto& st = self->state;
  auto seq = ++st.last_seq;
  auto size = packed.size();
  st.disk->append(seq, std::move(packed));
  ++st.records;
  st.bytes += size;
  st.stats->add("taken");
  if (st.sync == persistence_sync::off)
    answer.deliver(ok_atom::value); // written behind, promises no more
  else
    st.unanswered.push_back(uncommitted{seq, size, std::move(answer)});
  // Kept in memory too, unless older records wait on disk only (they go
  // first) or the front is large enough.
  if (st.loaded_through + 1 == seq && st.window.size() < memory_records) {
    st.window.push_back(record{seq, std::move(target), std::move(msg), size});
    st.loaded_through = seq;
  }
}

bool has_room(const buffer_state& st, std::size_t size) {
  return st.bytes + size <= st.max_bytes;
}

/// Takes held writes, oldest first, while there is room.
void take_held(buffer_actor* self) {
  auto& st = self->state;
  while (st.open && !st.held.empty()
         && has_room(st, st.held.front().packed.size())) {
    auto h = std::move(st.held.front());
    st.held.pop_front();
    st.held_bytes -= h.packed.size();
    take(self, h.target, h.msg, std::move(h.packed), std::move(h.answer));
  }
}

void refuse_full(buffer_actor* self, reply& answer) {
  auto& st = self->state;
  st.stats->add("refused_full");
  answer.deliver(make_sink_error(
    sink_errc::retry, "buffer " + st.endpoint + ": full ("
                        + std::to_string(st.bytes) + " of "
                        + std::to_string(st.max_bytes) + " bytes)"));
}

/// The sink protocol: one write per message a rule sends.
void write(buffer_actor* self, message& msg, const std::string& target,
           reply answer) {
  auto& st = self->state;
  try {
    auto packed = store::pack_buffered(target, msg);
    if (packed.size() > st.max_bytes) {
      st.stats->add("refused_too_large");
      answer.deliver(make_sink_error(
        sink_errc::quota_exceeded,
        "buffer " + st.endpoint + ": a record of " + std::to_string(packed.size())
          + " bytes is larger than buffer.max_bytes"));
      return;
    }
    if (st.handing_over) {
      answer.deliver(make_sink_error(sink_errc::retry,
                                     "buffer " + st.endpoint
                                       + ": replaced by a reload"));
      return;
    }
    if (st.open && st.held.empty() && has_room(st, packed.size())) {
      auto t = target;
      take(self, t, msg, std::move(packed), std::move(answer));
      return;
    }
    if (st.held.size() >= held_limit
        || st.held_bytes + packed.size() > held_bytes_limit) {
      refuse_full(self, answer);
      return;
    }
    st.held_bytes += packed.size();
    st.held.push_back(
      held_write{target, std::move(msg), std::move(packed), std::move(answer),
                 steady::now()});
  } catch (const std::exception& e) {
    st.stats->add("errors");
    answer.deliver(make_sink_error(sink_errc::retry, "buffer " + st.endpoint
                                                       + ": " + e.what()));
  }
}

/// Drops confirmed records from the front of the window.
void drop_confirmed(buffer_state& st) {
  while (!st.window.empty() && st.window.front().confirmed) {
    st.window.pop_front();
    if (st.send_from > 0)
      --st.send_from;
  }
}

/// The endpoint answered record `seq`: OK, or refused for good with
/// `dead_reason` (kept as a dead letter).
void confirm(buffer_actor* self, std::uint64_t seq,
             const std::string* dead_reason) {
  auto& st = self->state;
  auto r = find(st, seq);
  if (!r || r->confirmed)
    return; // answered twice (sent again after a backoff)
  r->confirmed = true;
  if (r->sent)
    --st.in_flight;
  --st.records;
  st.bytes -= r->bytes;
  if (dead_reason) {
    st.stats->add("dead_lettered");
    spdlog::error("buffer {}: the endpoint refused record {} (for '{}') for "
                  "good: {}; kept as a dead letter (hubflowctl store)",
                  st.endpoint, seq, r->target.empty() ? r->msg.topic : r->target,
                  *dead_reason);
    st.disk->dead_letter(seq, *dead_reason);
  } else {
    st.stats->add("forwarded");
    st.disk->remove(seq);
  }
}

/// The endpoint answered RETRY for a record of the current round: wait,
/// then send again from the first unconfirmed record.
void back_off(buffer_actor* self, const std::string& why) {
  auto& st = self->state;
  if (st.backing_off)
    return;
  if (st.backoff == backoff_min)
    spdlog::warn("buffer {}: the endpoint cannot take records now ({}); "
                 "{} records wait in the buffer",
                 st.endpoint, why, st.records);
  st.stats->add("forward_retries");
  st.backing_off = true;
  for (auto& r : st.window)
    r.sent = false;
  st.in_flight = 0;
  st.send_from = 0;
  st.round = (st.round + 1) & round_mask;
  self->delayed_send(self, st.backoff, retry_atom::value);
  st.backoff = std::min(st.backoff * 2, backoff_max);
}

void answered(buffer_actor* self, std::uint64_t ticket, const caf::error& err) {
  auto& st = self->state;
  auto seq = ticket & seq_mask;
  auto r = find(st, seq);
  if (!r || r->confirmed)
    return;
  if (!err) {
    st.backoff = backoff_min;
    confirm(self, seq, nullptr);
    return;
  }
  auto text = err.category() == sink_error_category ? sink_error_text(err)
                                                    : self->system().render(err);
  if (is_permanent(err)) {
    confirm(self, seq, &text);
    return;
  }
  if (r->sent && r->round == static_cast<std::uint32_t>(ticket >> round_shift))
    back_off(self, text);
}

/// Sends what the window allows, and reads more from disk when the
/// front runs short.
void pump(buffer_actor* self) {
  auto& st = self->state;
  drop_confirmed(st);
  if (!st.open || st.handing_over)
    return;
  if (!st.backing_off) {
    while (st.send_from < st.window.size() && st.in_flight < forward_window) {
      auto& r = st.window[st.send_from];
      if (r.seq > st.durable)
        break; // forwarded once committed
      ++st.send_from;
      if (r.confirmed || r.sent)
        continue;
      r.sent = true;
      r.round = st.round;
      ++st.in_flight;
      auto ticket = (std::uint64_t{st.round} << round_shift) | r.seq;
      self->send(st.inner, publish_atom::value, r.msg, r.target, ticket);
    }
  }
  if (!st.reading && st.loaded_through < st.last_seq
      && st.window.size() + read_batch <= memory_records) {
    st.reading = true;
    st.disk->read(st.loaded_through + 1, read_batch, st.last_seq);
  }
}

void committed(buffer_actor* self, std::uint64_t through,
               std::uint64_t failed_from, std::uint64_t failed_to) {
  auto& st = self->state;
  ok_answers answers;
  if (failed_to != 0) {
    st.stats->add("store_failures");
    if (st.sync == persistence_sync::off) {
      // Already answered: forwarded from memory, not kept on disk.
      st.durable = std::max(st.durable, failed_to);
      return;
    }
    // Not stored: answered RETRY (the rule sends them again) and forgotten.
    while (!st.unanswered.empty() && st.unanswered.front().seq <= failed_to) {
      auto& u = st.unanswered.front();
      if (u.seq >= failed_from) {
        --st.records;
        st.bytes -= u.bytes;
        u.answer.deliver(make_sink_error(
          sink_errc::retry, "buffer " + st.endpoint + ": not stored"));
        if (auto r = find(st, u.seq)) {
          r->confirmed = true; // never sent: durable did not reach it
        }
      }
      st.unanswered.pop_front();
    }
    return;
  }
  st.durable = std::max(st.durable, through);
  while (!st.unanswered.empty() && st.unanswered.front().seq <= through) {
    answers.add(st.unanswered.front().answer);
    st.unanswered.pop_front();
  }
}

void loaded(buffer_actor* self, std::vector<std::uint64_t>& seqs,
            std::vector<std::string>& targets, std::vector<message>& msgs,
            std::vector<std::uint64_t>& sizes, bool complete,
            std::uint64_t through) {
  auto& st = self->state;
  st.reading = false;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i] <= st.loaded_through)
      continue;
    st.window.push_back(record{seqs[i], std::move(targets[i]),
                               std::move(msgs[i]),
                               static_cast<std::size_t>(sizes[i])});
    st.loaded_through = seqs[i];
  }
  if (complete)
    st.loaded_through = std::max(st.loaded_through, through);
}

/// Held writes that waited too long are answered RETRY: the rule retries
/// them, and the publisher's acknowledgement keeps waiting.
void expire_held(buffer_actor* self) {
  auto& st = self->state;
  auto now = steady::now();
  while (!st.held.empty() && now - st.held.front().since >= hold_timeout) {
    refuse_full(self, st.held.front().answer);
    st.held_bytes -= st.held.front().packed.size();
    st.held.pop_front();
  }
}

void update_probe(buffer_state& st) {
  st.stats->set("buffered_records", static_cast<std::int64_t>(st.records));
  st.stats->set("buffered_bytes", static_cast<std::int64_t>(st.bytes));
  st.stats->set("max_bytes", static_cast<std::int64_t>(st.max_bytes));
  st.stats->set("in_flight", static_cast<std::int64_t>(st.in_flight));
  st.stats->set("held", static_cast<std::int64_t>(st.held.size()));
}

/// The writer thread's callbacks: messages to the actor (dropped once it
/// is gone).
store::disk_buffer::listener listener_for(buffer_actor* self) {
  auto addr = self->address();
  auto tell = [addr](auto... xs) {
    if (auto to = caf::actor_cast<caf::actor>(addr))
      caf::anon_send(to, std::move(xs)...);
  };
  store::disk_buffer::listener l;
  l.opened = [tell](const store::buffer_summary& held, std::uint64_t last) {
    tell(buffer_open_atom::value, held.records, held.bytes, held.dead_letters,
         last);
  };
  l.handover = [tell] { tell(buffer_handover_atom::value); };
  l.failed = [tell](const std::string& error) {
    tell(buffer_failed_atom::value, error);
  };
  l.committed = [tell](std::uint64_t through, std::uint64_t from,
                       std::uint64_t to) {
    tell(buffer_commit_atom::value, through, from, to);
  };
  l.read = [tell](std::vector<store::buffered_record> records, bool complete,
                  std::uint64_t through) {
    std::vector<std::uint64_t> seqs, sizes;
    std::vector<std::string> targets;
    std::vector<message> msgs;
    for (auto& r : records) {
      seqs.push_back(r.seq);
      sizes.push_back(r.bytes);
      targets.push_back(std::move(r.target));
      msgs.push_back(std::move(r.msg));
    }
    tell(buffer_read_atom::value, std::move(seqs), std::move(targets),
         std::move(msgs), std::move(sizes), complete, through);
  };
  return l;
}

caf::behavior buffer_behavior(
  buffer_actor* self, endpoint_config cfg,
  std::function<caf::actor(caf::actor_system&, const endpoint_config&)>
    spawn_endpoint) {
  auto& init = self->state;
  init.endpoint = cfg.name;
  init.max_bytes = cfg.buffer.max_bytes;
  init.sync = cfg.buffer_sync;
  init.stats = std::make_unique<probe>("buffer", cfg.name);
  // Shown from the start, not from the first time they count.
  for (auto counter : {"taken", "forwarded", "forward_retries", "refused_full",
                       "refused_too_large", "dead_lettered", "store_failures",
                       "errors"})
    init.stats->add(counter, 0);
  init.inner = spawn_endpoint(self->system(), cfg);
  self->link_to(init.inner); // stops with it, and it with the buffer
  persistence_config where;
  where.enabled = true;
  where.path = cfg.buffer_path;
  where.sync = cfg.buffer_sync;
  init.disk = store::disk_buffer::start(where, cfg.name, listener_for(self));
  // Subscriptions, state store requests, ...: the endpoint's business.
  self->set_default_handler(
    [](caf::scheduled_actor* base, caf::message_view& x)
      -> caf::result<caf::message> {
      auto me = static_cast<buffer_actor*>(base);
      me->delegate(me->state.inner, x.move_content_to_message());
      return caf::delegated<caf::message>{};
    });
  self->delayed_send(self, tick_interval, tick_atom::value);
  return caf::message_handler{
    [=](buffer_open_atom, std::uint64_t records, std::uint64_t bytes,
        std::uint64_t dead_letters, std::uint64_t last_seq) {
      auto& st = self->state;
      st.open = true;
      st.last_seq = st.durable = last_seq;
      st.records = records;
      st.bytes = bytes;
      st.loaded_through = records == 0 ? last_seq : 0;
      if (records > 0 || dead_letters > 0)
        spdlog::info("buffer {}: {} records ({} bytes) to forward, {} dead "
                     "letters, in {}",
                     st.endpoint, records, bytes, dead_letters,
                     store::disk_buffer::file_of(where, st.endpoint));
      st.stats->set("dead_letters_stored",
                    static_cast<std::int64_t>(dead_letters));
      guarded(self, "opening", [&] {
        take_held(self);
        pump(self);
      });
    },
    [=](buffer_failed_atom, const std::string& error) {
      auto& st = self->state;
      spdlog::error("buffer {}: {}", st.endpoint, error);
      for (auto& h : st.held)
        h.answer.deliver(make_sink_error(sink_errc::retry,
                                         "buffer " + st.endpoint + ": "
                                           + error));
      st.held.clear();
      st.held_bytes = 0;
      self->quit(caf::make_error(caf::sec::runtime_error, error));
    },
    [=](buffer_commit_atom, std::uint64_t through, std::uint64_t failed_from,
        std::uint64_t failed_to) {
      guarded(self, "a commit", [&] {
        committed(self, through, failed_from, failed_to);
        pump(self);
      });
      auto& st = self->state;
      if (st.handing_over && st.unanswered.empty())
        self->quit(caf::exit_reason::user_shutdown);
    },
    [=](buffer_handover_atom) {
      // Records at the endpoint stay in the file: the new buffer sends
      // them again (at least once).
      auto& st = self->state;
      spdlog::info("buffer {}: handing the file over to the buffer that "
                   "replaces this one",
                   st.endpoint);
      st.handing_over = true;
      for (auto& h : st.held)
        h.answer.deliver(make_sink_error(
          sink_errc::retry, "buffer " + st.endpoint + ": replaced by a reload"));
      st.held.clear();
      st.held_bytes = 0;
      if (st.unanswered.empty())
        self->quit(caf::exit_reason::user_shutdown);
    },
    [=](buffer_read_atom, std::vector<std::uint64_t>& seqs,
        std::vector<std::string>& targets, std::vector<message>& msgs,
        std::vector<std::uint64_t>& sizes, bool complete,
        std::uint64_t through) {
      guarded(self, "a read", [&] {
        loaded(self, seqs, targets, msgs, sizes, complete, through);
        pump(self);
      });
    },
    [=](reply_atom, std::uint64_t ticket, ok_atom) {
      guarded(self, "an answer", [&] {
        answered(self, ticket, caf::error{});
        take_held(self);
        pump(self);
      });
    },
    [=](reply_atom, const std::vector<std::uint64_t>& tickets, ok_atom) {
      guarded(self, "answers", [&] {
        for (auto t : tickets)
          answered(self, t, caf::error{});
        take_held(self);
        pump(self);
      });
    },
    [=](reply_atom, std::uint64_t ticket, const caf::error& err) {
      guarded(self, "an answer", [&] {
        answered(self, ticket, err);
        take_held(self);
        pump(self);
      });
    },
    [=](retry_atom) {
      self->state.backing_off = false;
      guarded(self, "sending again", [&] { pump(self); });
    },
    [=](tick_atom) {
      auto& st = self->state;
      guarded(self, "a tick", [&] { expire_held(self); });
      update_probe(st);
      st.stats->report(self);
      self->delayed_send(self, tick_interval, tick_atom::value);
    },
  }
    .or_else(sink_handlers(self,
                           [=](message& msg, const std::string& target,
                               reply answer) {
                             write(self, msg, target, std::move(answer));
                           }));
}

} // namespace

caf::actor spawn_disk_buffer(
  caf::actor_system& sys, const endpoint_config& cfg,
  std::function<caf::actor(caf::actor_system&, const endpoint_config&)>
    spawn_endpoint) {
  return sys.spawn([cfg, spawn_endpoint](buffer_actor* self) {
    return buffer_behavior(self, cfg, spawn_endpoint);
  });
}

} // namespace hubflow
