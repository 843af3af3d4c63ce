// The answer owed for one message, on the hot paths without CAF requests.
//
// Why: CAF 0.17 keeps an actor's outstanding requests in a flat vector that
// is searched and erased linearly, and a request with a timeout costs two
// trips through the clock thread. With thousands of messages in flight
// (a rule waiting for Kafka acks, a function queue under load) shifting that
// vector took about 30% of the broker's CPU (perf, rule path, session 2).
// So the hot protocols (deliver, publish, invoke; see type_ids.hpp) also
// come in a ticketed form: the sender sends a plain message carrying a
// ticket it chose and keeps its own table of what it awaits; the receiver
// answers with (reply_atom, ticket, answer...). The request form stays for
// callers off the hot path (HTTP API, tests), and one `reply` object serves
// both, so a receiver has one code path.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/message_handler.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>

#include "core/type_ids.hpp"

namespace hubflow {

/// Where the answer for one message goes: a response promise (the sender
/// used request) or a ticket (the sender wants (reply_atom, ticket, ...)).
/// Answering a default-constructed reply does nothing: a sender that wants
/// no answer (QoS 0) passes ticket 0.
class reply {
public:
  reply() = default;

  explicit reply(caf::response_promise promise)
      : promise_(std::move(promise)) {
  }

  reply(caf::strong_actor_ptr to, std::uint64_t ticket)
      : to_(ticket != 0 ? std::move(to) : nullptr), ticket_(ticket) {
  }

  /// Answers with `xs` (ok_atom, a caf::error, a function_result, ...).
  /// Only the first call answers; later ones do nothing.
  template <class... Ts>
  void deliver(Ts&&... xs) {
    if (to_) {
      caf::anon_send(caf::actor_cast<caf::actor>(std::exchange(to_, nullptr)),
                     reply_atom::value, ticket_, std::forward<Ts>(xs)...);
    } else if (promise_.pending()) {
      auto promise = std::exchange(promise_, caf::response_promise{});
      promise.deliver(std::forward<Ts>(xs)...);
    }
  }

private:
  friend class ok_answers;

  caf::response_promise promise_;
  caf::strong_actor_ptr to_;
  std::uint64_t ticket_ = 0;
};

/// Hands every message of a burst the current handler received (messages
/// with the tickets they came with, see type_ids.hpp) to `each(message&,
/// reply)`, in order, with the reply its ticket asks for.
template <class Actor, class OnMessage>
void for_each_in_burst(Actor* self, std::vector<message>& msgs,
                       const std::vector<std::uint64_t>& tickets,
                       OnMessage each) {
  for (std::size_t i = 0; i < msgs.size() && i < tickets.size(); ++i)
    each(msgs[i], reply{self->current_sender(), tickets[i]});
}

/// Every form of the sink protocol (type_ids.hpp), for a sink with one
/// code path: `write(message& msg, const std::string& target, reply answer)`
/// runs for each message, in order (it may move from `msg`; an empty target
/// means the sink's default). The forms: (publish_atom, message) and
/// (publish_atom, message, target) as requests, answered ok_atom or a
/// caf::error (core/sink_error.hpp says which errors are worth a retry);
/// (publish_atom, message, target, ticket) and the burst (publish_atom,
/// std::vector<message>, target, std::vector<ticket>), answered per ticket.
/// `before()` runs once per handler, before its first write (e.g. reading
/// the clocks once per burst). Add the sink's other handlers with or_else.
template <class Actor, class Write, class Before>
caf::message_handler sink_handlers(Actor* self, Write write, Before before) {
  return {
    [=](publish_atom, message& msg) mutable {
      before();
      write(msg, std::string{},
            reply{self->template make_response_promise<ok_atom>()});
    },
    [=](publish_atom, message& msg, const std::string& target) mutable {
      before();
      write(msg, target, reply{self->template make_response_promise<ok_atom>()});
    },
    [=](publish_atom, message& msg, const std::string& target,
        std::uint64_t ticket) mutable {
      before();
      write(msg, target, reply{self->current_sender(), ticket});
    },
    [=](publish_atom, std::vector<message>& msgs, const std::string& target,
        const std::vector<std::uint64_t>& tickets) mutable {
      before();
      for_each_in_burst(self, msgs, tickets, [&](message& msg, reply answer) {
        write(msg, target, std::move(answer));
      });
    },
  };
}

template <class Actor, class Write>
caf::message_handler sink_handlers(Actor* self, Write write) {
  return sink_handlers(self, std::move(write), [] {});
}

/// Ok answers collected while an actor handles a burst (a poll's worth of
/// Kafka delivery reports, a batch of answers from a destination) and sent
/// as one (reply_atom, std::vector<std::uint64_t> tickets, ok_atom) per
/// requester when the collection goes out of scope (or on flush).
///
/// Why: a CAF message costs an allocation, a mailbox enqueue and a dispatch;
/// one per acknowledged message per hop was most of the broker's CPU on the
/// MQTT -> rule -> Kafka path (perf, session 3), and a burst of answers
/// queued behind each other delayed the PUBACKs of the whole burst.
/// Receivers of ok answers accept both forms. Errors are never batched, and
/// replies to requests (promises) are delivered at once.
class ok_answers {
public:
  ok_answers() = default;
  ok_answers(const ok_answers&) = delete;
  ok_answers& operator=(const ok_answers&) = delete;

  ~ok_answers() {
    flush();
  }

  /// Answers `r` with ok_atom: now for a promise, at the next flush for a
  /// ticket. `r` is answered afterwards either way.
  void add(reply& r) {
    if (!r.to_) {
      r.deliver(ok_atom::value);
      return;
    }
    auto to = std::exchange(r.to_, nullptr);
    // Bursts usually answer one or a few requesters: search from the back.
    auto i = std::find_if(batches_.rbegin(), batches_.rend(),
                          [&](auto& b) { return b.to == to; });
    if (i == batches_.rend()) {
      batches_.push_back(batch{std::move(to), {}});
      i = batches_.rbegin();
    }
    i->tickets.push_back(r.ticket_);
  }

  /// Sends what was collected.
  void flush() {
    for (auto& b : batches_)
      caf::anon_send(caf::actor_cast<caf::actor>(std::move(b.to)),
                     reply_atom::value, std::move(b.tickets), ok_atom::value);
    batches_.clear();
  }

private:
  struct batch {
    caf::strong_actor_ptr to;
    std::vector<std::uint64_t> tickets;
  };
  std::vector<batch> batches_;
};

/// What an actor sent with a ticket and still awaits, by ticket.
///
/// Entries live in reusable slots rather than a hash map: a rule or a hub
/// connection adds and takes one entry per message, and a map node per
/// entry was a malloc, a free and a hash per message (4-5% of the broker's
/// CPU on the MQTT -> rule -> Kafka path, perf, session 3). A ticket is the
/// slot's index + 1 (never 0, which means "no answer wanted") in its low
/// 32 bits and the slot's generation in its high 32 bits, so a ticket that
/// was already answered (or given up on) is recognised as stale even when
/// its slot holds a newer entry.
template <class T>
class awaiting {
public:
  /// Stores `x` and returns the ticket to send with it.
  template <class U>
  std::uint64_t add(U&& x) {
    std::uint32_t index;
    if (free_.empty()) {
      index = static_cast<std::uint32_t>(slots_.size());
      slots_.emplace_back();
    } else {
      index = free_.back();
      free_.pop_back();
    }
    auto& s = slots_[index];
    s.value.emplace(std::forward<U>(x));
    ++size_;
    return (std::uint64_t{s.generation} << 32) | (index + 1u);
  }

  /// The entry for `ticket`, or null when it is unknown. The pointer is
  /// valid until the next add.
  T* find(std::uint64_t ticket) {
    auto s = slot_of(ticket);
    return s != nullptr ? &*s->value : nullptr;
  }

  /// Removes and returns the entry for `ticket`; nothing when it is
  /// unknown (answered twice, or already given up on).
  std::optional<T> take(std::uint64_t ticket) {
    auto s = slot_of(ticket);
    if (s == nullptr)
      return std::nullopt;
    std::optional<T> out{std::move(*s->value)};
    release(*s);
    return out;
  }

  /// Removes the entry for `ticket`; false when it is unknown.
  bool erase(std::uint64_t ticket) {
    auto s = slot_of(ticket);
    if (s == nullptr)
      return false;
    release(*s);
    return true;
  }

  /// Removes every entry for which `pred(entry)` holds.
  template <class Predicate>
  void erase_if(Predicate pred) {
    for (auto& s : slots_)
      if (s.value && pred(*s.value))
        release(s);
  }

  std::size_t size() const {
    return size_;
  }

private:
  struct slot {
    std::uint32_t generation = 0;
    std::optional<T> value;
  };

  slot* slot_of(std::uint64_t ticket) {
    auto index = static_cast<std::uint32_t>(ticket) - 1u;
    if (index >= slots_.size())
      return nullptr;
    auto& s = slots_[index];
    if (!s.value || s.generation != static_cast<std::uint32_t>(ticket >> 32))
      return nullptr;
    return &s;
  }

  void release(slot& s) {
    s.value.reset();
    ++s.generation; // tickets handed out for this slot are now stale
    --size_;
    free_.push_back(static_cast<std::uint32_t>(&s - slots_.data()));
  }

  std::vector<slot> slots_;
  std::vector<std::uint32_t> free_;
  std::size_t size_ = 0;
};

} // namespace hubflow
