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

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>

#include <caf/actor_cast.hpp>
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
  caf::response_promise promise_;
  caf::strong_actor_ptr to_;
  std::uint64_t ticket_ = 0;
};

/// What an actor sent with a ticket and still awaits, by ticket. Tickets
/// start at 1 (0 means "no answer wanted").
template <class T>
class awaiting {
public:
  /// Stores `x` and returns the ticket to send with it.
  std::uint64_t add(T x) {
    auto ticket = next_++;
    entries_.emplace(ticket, std::move(x));
    return ticket;
  }

  /// Removes and returns the entry for `ticket`; nothing when it is
  /// unknown (answered twice, or already given up on).
  std::optional<T> take(std::uint64_t ticket) {
    auto i = entries_.find(ticket);
    if (i == entries_.end())
      return std::nullopt;
    std::optional<T> out{std::move(i->second)};
    entries_.erase(i);
    return out;
  }

  std::size_t size() const {
    return entries_.size();
  }

  std::unordered_map<std::uint64_t, T>& entries() {
    return entries_;
  }

private:
  std::uint64_t next_ = 1;
  std::unordered_map<std::uint64_t, T> entries_;
};

} // namespace hubflow
